package amplitude

import (
	"hash/maphash"
	"sync"
	"time"
)

// arrivalGuard bounds what Amplitude can count per device_id and per user_id
// where requests arrive, whatever the delays between the send and the
// arrival. The pacer spaces sends, but Amplitude counts arrivals: a request
// delayed on the way (a busy machine, a slow network hop) arrives together
// with the ones sent after it, and the pacer's slack (half its headroom,
// 55 ms of bunching on HTTP V2) is then not enough. The guard needs no
// estimate of the delay: an event may be sent only while its id has fewer
// than the limit of events in flight or answered within the last window
// (counted per bucket of a tenth of it, rounded up).
//
// Why that suffices: take any window of Amplitude's length ending at an
// arrival, holding events of one id, and the last of them to be sent, at s.
// Every other one was sent at or before s and arrived in the window, so its
// answer came after the window's start, which is at or after s minus the
// window (its own arrival, at or after s, ends the window at the latest). At
// s, each of them was therefore in flight or answered within the last
// window: the guard counted them all, so the window holds at most the limit.
//
// The cost, next to the pacer: an id whose requests take a latency L to be
// answered sends at most limit/(window+L) per window (HTTP V2 with 100 ms
// answers: 27 events/s, the pacer's own rate). State is kept only for ids
// with events in flight or answered within the last window: about 100 bytes
// each (a map entry of 40 bytes and the map's own overhead), swept as the ids
// go quiet.
type arrivalGuard struct {
	limit  uint32 // events per window and id
	window int64  // ns
	bucket int64  // ns: window/guardBuckets-1
	seed   maphash.Seed
	shards [guardShards]guardShard
}

const (
	guardShards = 64
	// guardBuckets covers a window and the bucket it starts in.
	guardBuckets = 11
)

type guardShard struct {
	mu  sync.Mutex
	ids map[uint64]guardState
	// ops counts the operations since the last sweep, in bucket swept.
	ops   int
	swept int64
}

// guardState is one id's events in flight and answered recently.
type guardState struct {
	inFlight uint32
	// last is the latest bucket (unix ns / bucket) answered counts were
	// added to; answered[k%guardBuckets] holds bucket k for k in
	// (last-guardBuckets, last].
	last     int64
	answered [guardBuckets]uint16
}

// newArrivalGuard returns the guard of an endpoint's per-id limit.
func newArrivalGuard(endpoint string) *arrivalGuard {
	b := endpointBudgets[endpoint]
	return newArrivalGuardWith(uint32(b.eps*b.window.Seconds()), b.window)
}

func newArrivalGuardWith(limit uint32, window time.Duration) *arrivalGuard {
	g := &arrivalGuard{limit: limit, window: int64(window), bucket: int64(window) / (guardBuckets - 1), seed: maphash.MakeSeed()}
	for i := range g.shards {
		g.shards[i].ids = map[uint64]guardState{}
	}
	return g
}

func (g *arrivalGuard) hash(k idKey) uint64 {
	h := maphash.String(g.seed, k.id)
	if k.user {
		h = ^h*0x9e3779b97f4a7c15 + 1
	}
	return h
}

// admit counts one event of e's ids in flight at now and returns true, or
// counts nothing and returns when to ask again. A nil guard admits all.
func (g *arrivalGuard) admit(e *event, now time.Time) (time.Time, bool) {
	if g == nil {
		return time.Time{}, true
	}
	n := now.UnixNano()
	var hd uint64
	if e.deviceID != "" {
		hd = g.hash(deviceKey(e.deviceID))
		if at, ok := g.take(hd, n); !ok {
			return time.Unix(0, at), false
		}
	}
	if e.userID != "" {
		if at, ok := g.take(g.hash(userKey(e.userID)), n); !ok {
			if hd != 0 {
				g.finish(hd, n, false)
			}
			return time.Unix(0, at), false
		}
	}
	return time.Time{}, true
}

// answered moves e's events from in flight to answered at now: their
// request's answer came (whatever it was), so they reached Amplitude, if at
// all, by now.
func (g *arrivalGuard) answered(events []*event, now time.Time) {
	if g == nil {
		return
	}
	n := now.UnixNano()
	for _, e := range events {
		if e.deviceID != "" {
			g.finish(g.hash(deviceKey(e.deviceID)), n, true)
		}
		if e.userID != "" {
			g.finish(g.hash(userKey(e.userID)), n, true)
		}
	}
}

// take counts one event of the id h in flight at n (unix ns), or returns
// when to ask again.
func (g *arrivalGuard) take(h uint64, n int64) (int64, bool) {
	s := &g.shards[h>>58]
	k := n / g.bucket
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick(k)
	st := s.ids[h]
	used, oldest := st.inFlight, int64(-1)
	for b := max(k-(guardBuckets-1), st.last-(guardBuckets-1)); b <= st.last; b++ {
		if c := st.answered[mod(b)]; c > 0 {
			used += uint32(c)
			if oldest < 0 {
				oldest = b
			}
		}
	}
	if used >= g.limit {
		// Ask again once the oldest answered bucket has left the window,
		// or, when only events in flight fill it, a bucket later.
		at := n + g.bucket
		if oldest >= 0 {
			at = max(n+1, (oldest+guardBuckets)*g.bucket)
		}
		return at, false
	}
	st.inFlight++
	s.ids[h] = st
	return 0, true
}

// finish takes one event of the id h out of flight at n, counting it as
// answered then (or, when answered is false, as never sent).
func (g *arrivalGuard) finish(h uint64, n int64, answered bool) {
	s := &g.shards[h>>58]
	k := n / g.bucket
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.ids[h]
	if !ok {
		return
	}
	st.inFlight = max(st.inFlight, 1) - 1
	if answered {
		if k > st.last {
			for b := max(st.last+1, k-(guardBuckets-1)); b <= k; b++ {
				st.answered[mod(b)] = 0
			}
			st.last = k
		}
		// An answer dated before the latest (a concurrent one read the
		// clock later) counts in the latest bucket: later, never earlier.
		i := mod(max(k, st.last))
		if st.answered[i] < ^uint16(0) {
			st.answered[i]++
		}
	}
	s.ids[h] = st
	s.tick(k)
}

// tick sweeps the shard's quiet ids (nothing in flight, nothing answered in
// the window): at most once per window, and only once the operations since
// the last sweep are half as many as the ids (so a sweep costs O(1) per
// operation). A sweep that leaves fewer ids than it removed rebuilds the map,
// whose iteration otherwise keeps costing its largest size. It runs under
// s.mu.
func (s *guardShard) tick(k int64) {
	s.ops++
	if k-s.swept < guardBuckets || s.ops < len(s.ids)/2 {
		return
	}
	s.ops, s.swept = 0, k
	removed := 0
	for h, st := range s.ids {
		if st.inFlight == 0 && st.last <= k-guardBuckets {
			delete(s.ids, h)
			removed++
		}
	}
	if removed > len(s.ids) {
		ids := make(map[uint64]guardState, len(s.ids))
		for h, st := range s.ids {
			ids[h] = st
		}
		s.ids = ids
	}
}

func mod(b int64) int {
	return int(((b % guardBuckets) + guardBuckets) % guardBuckets)
}
