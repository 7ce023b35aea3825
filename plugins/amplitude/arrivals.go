package amplitude

import (
	"math"
	"sync"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/idtable"
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
// answers: 27 events/s, the pacer's own rate).
//
// The table: per shard (64, by the top bits of the id's hash, the pacer's,
// each with its own lock), an idtable (outside the Go heap on Linux, like
// the pacer's) keyed by the hash the pacer uses (event.hashes: one hash per
// id per event for both), whose value packs the events in flight, the
// latest bucket answered (its index modulo 2^32: an id quiet for 2^31
// buckets, 6.8 years on HTTP V2, would be misread) and the answered counts
// of the last guardBuckets buckets, in bytes where the limit fits (HTTP V2:
// 30; 16-byte values, 24-byte slots) and in 16-bit words otherwise (Batch:
// 30,000; 28-byte values, 40-byte slots). Counts stay within the limit
// (an event is admitted only while its id's count is below it) and saturate
// at their width otherwise. Ids with
// nothing in flight and nothing answered within the window are idle: a
// lookup that passes one reuses its slot, and a table at 3/4 load is
// rebuilt without them at half load (so it also shrinks), which bounds the
// table by the ids active within the last window. The send path's prefetch
// loads a batch's slots with the pacer's (pacer.prefetch).
type arrivalGuard struct {
	limit  uint32 // events per window and id
	window int64  // ns
	bucket int64  // ns: window/guardBuckets-1
	// narrow holds the counts in bytes when the limit fits them, else wide
	// in 16-bit words (concrete types, not an interface: a call through one
	// would move prefetch's array of hashes to the heap).
	narrow *guardTables[uint8]
	wide   *guardTables[uint16]
}

const (
	guardShards = 64
	// guardBuckets covers a window and the bucket it starts in.
	guardBuckets = 11
)

// guardCount is the width of the guard's counts, chosen by the limit.
type guardCount interface{ ~uint8 | ~uint16 }

// guardState is one id's events in flight and answered recently.
type guardState[C guardCount] struct {
	// last is the latest bucket (unix ns / bucket, modulo 2^32) answered
	// counts were added to; answered[k%guardBuckets] holds bucket k for k
	// in (last-guardBuckets, last].
	last     uint32
	inFlight C
	answered [guardBuckets]C
}

// lastAt returns the full index of st.last, knowing the current
// bucket k (within 2^31 buckets of it).
func (st *guardState[C]) lastAt(k int64) int64 {
	return k - int64(int32(uint32(k)-st.last))
}

// idle reports whether st behaves as a fresh id's state in bucket k.
func (st *guardState[C]) idle(k int64) bool {
	return st.inFlight == 0 && st.lastAt(k) <= k-guardBuckets
}

type guardTables[C guardCount] struct {
	shards [guardShards]guardShard[C]
}

type guardShard[C guardCount] struct {
	mu    sync.Mutex
	table idtable.Table[guardState[C]]
}

// newArrivalGuard returns the guard of an endpoint's per-id limit.
func newArrivalGuard(endpoint string) *arrivalGuard {
	b := endpointBudgets[endpoint]
	return newArrivalGuardWith(uint32(b.eps*b.window.Seconds()), b.window)
}

func newArrivalGuardWith(limit uint32, window time.Duration) *arrivalGuard {
	g := &arrivalGuard{limit: limit, window: int64(window), bucket: int64(window) / (guardBuckets - 1)}
	if limit <= math.MaxUint8 {
		g.narrow = newGuardTables[uint8]()
	} else {
		g.wide = newGuardTables[uint16]() // limits over 65,535 saturate their counts
	}
	return g
}

func newGuardTables[C guardCount]() *guardTables[C] {
	t := &guardTables[C]{}
	for i := range t.shards {
		t.shards[i].table.Resize(minSlots)
	}
	return t
}

// admit counts one event of e's ids in flight at now and returns true, or
// counts nothing and returns when to ask again. A nil guard admits all.
func (g *arrivalGuard) admit(e *event, now time.Time) (time.Time, bool) {
	if g == nil {
		return time.Time{}, true
	}
	n := now.UnixNano()
	k := n / g.bucket
	hd, hu := e.hashes()
	var at int64
	var ok bool
	if g.narrow != nil {
		at, ok = g.narrow.admit(hd, hu, n, k, g.limit, g.bucket)
	} else {
		at, ok = g.wide.admit(hd, hu, n, k, g.limit, g.bucket)
	}
	if !ok {
		return time.Unix(0, at), false
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
	k := now.UnixNano() / g.bucket
	if g.narrow != nil {
		g.narrow.answered(events, k)
	} else {
		g.wide.answered(events, k)
	}
}

// prefetch loads the slots of the hashes hs, in the shards of mask, into
// the cache (see pacer.prefetch). A nil guard does nothing.
func (g *arrivalGuard) prefetch(hs []uint64, mask uint64) {
	switch {
	case g == nil:
	case g.narrow != nil:
		g.narrow.touch(hs, mask)
	default:
		g.wide.touch(hs, mask)
	}
}

// tracked returns the number of ids with state.
func (g *arrivalGuard) tracked() int {
	if g.narrow != nil {
		return g.narrow.tracked()
	}
	return g.wide.tracked()
}

// has reports whether the id h has state.
func (g *arrivalGuard) has(h uint64) bool {
	if g.narrow != nil {
		return g.narrow.has(h)
	}
	return g.wide.has(h)
}

// admit counts one event of the ids hd and hu (0: none) in flight at n
// (unix ns, in bucket k of bucket ns) within limit, or counts nothing and
// returns when to ask again. It locks both shards and loads both slots
// before reading either, so that their cache misses overlap, as pacer.take
// does.
func (t *guardTables[C]) admit(hd, hu uint64, n, k int64, limit uint32, bucket int64) (int64, bool) {
	var sd, su *guardShard[C]
	var md, mu *sync.Mutex
	if hd != 0 {
		sd = &t.shards[hd>>58]
		md = &sd.mu
	}
	if hu != 0 {
		su = &t.shards[hu>>58]
		mu = &su.mu
	}
	lockPair(md, mu, hd>>58 < hu>>58)
	defer unlockPair(md, mu)
	if sd != nil {
		sd.table.Touch(hd)
	}
	if su != nil {
		su.table.Touch(hu)
	}
	if sd != nil {
		if at, ok := sd.take(hd, n, k, limit, bucket); !ok {
			return at, false
		}
	}
	if su != nil {
		if at, ok := su.take(hu, n, k, limit, bucket); !ok {
			if sd != nil {
				sd.finish(hd, k, false)
			}
			return at, false
		}
	}
	return 0, true
}

// answered moves events from in flight to answered in bucket k: the slots
// of a chunk of them are loaded first, all their misses at once (an answer
// comes long after its request's send, when they are cold again).
func (t *guardTables[C]) answered(events []*event, k int64) {
	if len(events) < prefetchMin {
		for _, e := range events {
			hd, hu := e.hashes()
			t.finish(hd, k)
			t.finish(hu, k)
		}
		return
	}
	var hs [2 * prefetchChunk]uint64
	for len(events) > 0 {
		chunk := events[:min(len(events), prefetchChunk)]
		events = events[len(chunk):]
		n, mask := chunkHashes(chunk, &hs)
		t.touch(hs[:n], mask)
		for _, h := range hs[:n] {
			t.finish(h, k)
		}
	}
}

// finish counts one event of the id h (0: none) answered in bucket k.
func (t *guardTables[C]) finish(h uint64, k int64) {
	if h == 0 {
		return
	}
	s := &t.shards[h>>58]
	s.mu.Lock()
	s.finish(h, k, true)
	s.mu.Unlock()
}

// take counts one event of the id h in flight at n (unix ns, in bucket k of
// bucket ns) within limit, or returns when to ask again. It runs under s.mu.
func (s *guardShard[C]) take(h uint64, n, k int64, limit uint32, bucket int64) (int64, bool) {
	st := &s.find(h, k, true).Val
	last := st.lastAt(k)
	used, oldest := uint32(st.inFlight), int64(-1)
	b := max(k-(guardBuckets-1), last-(guardBuckets-1))
	for i := mod(b); b <= last; b++ { // i is mod(b): one division, not one a bucket
		if c := st.answered[i]; c > 0 {
			used += uint32(c)
			if oldest < 0 {
				oldest = b
			}
		}
		if i++; i == guardBuckets {
			i = 0
		}
	}
	if used >= limit || st.inFlight == ^C(0) {
		// Ask again once the oldest answered bucket has left the window,
		// or, when only events in flight fill it, a bucket later.
		at := n + bucket
		if oldest >= 0 {
			at = max(n+1, (oldest+guardBuckets)*bucket)
		}
		return at, false
	}
	st.inFlight++
	return 0, true
}

// finish takes one event of the id h out of flight in bucket k, counting it
// as answered then (or, when answered is false, as never sent). It runs
// under s.mu.
func (s *guardShard[C]) finish(h uint64, k int64, answered bool) {
	sl := s.find(h, k, false)
	if sl == nil {
		return
	}
	st := &sl.Val
	st.inFlight = max(st.inFlight, 1) - 1
	if !answered {
		return
	}
	last := st.lastAt(k)
	if k > last {
		b := max(last+1, k-(guardBuckets-1))
		for i := mod(b); b <= k; b++ {
			st.answered[i] = 0
			if i++; i == guardBuckets {
				i = 0
			}
		}
		last = k
		st.last = uint32(k)
	}
	// An answer dated before the latest (a concurrent one read the clock
	// later) counts in the latest bucket: later, never earlier.
	if i := mod(last); st.answered[i] < ^C(0) {
		st.answered[i]++
	}
}

// find returns the slot of the id h in bucket k, or with insert a fresh
// one, reusing the first idle slot on the way or rebuilding a full table;
// nil when absent and not inserted. It runs under s.mu.
func (s *guardShard[C]) find(h uint64, k int64, insert bool) *idtable.Slot[guardState[C]] {
	if j, ok := s.table.Find(h); ok { // most lookups: no idle checks on the way
		return s.table.At(j)
	}
	// A fresh id's latest answered bucket is one that has left the window.
	fresh := guardState[C]{last: uint32(k - guardBuckets)}
	j, found, reuse := s.table.FindReusable(h, func(sl *idtable.Slot[guardState[C]]) bool {
		return sl.Val.idle(k)
	})
	switch {
	case found:
		return s.table.At(j)
	case !insert:
		return nil
	case reuse >= 0:
		sl := s.table.At(reuse)
		*sl = idtable.Slot[guardState[C]]{Key: h, Val: fresh}
		return sl
	case 4*(s.table.Len()+1) > 3*s.table.Size():
		s.table.Retain(func(sl *idtable.Slot[guardState[C]]) bool {
			return !sl.Val.idle(k)
		}, func(live int) int {
			return max(minSlots, 2*(live+1)+3) &^ 3 // a multiple of a line's slots
		})
		return s.find(h, k, true)
	}
	sl := s.table.Fill(j, h)
	sl.Val = fresh
	return sl
}

func (t *guardTables[C]) touch(hs []uint64, mask uint64) {
	forShards(mask, func(i int) { t.shards[i].mu.Lock() })
	for _, h := range hs {
		t.shards[h>>58].table.Touch(h)
	}
	forShards(mask, func(i int) { t.shards[i].mu.Unlock() })
}

func (t *guardTables[C]) tracked() int {
	return sumLocked(t.shards[:], func(s *guardShard[C]) (*sync.Mutex, func() int) {
		return &s.mu, s.table.Len
	})
}

func (t *guardTables[C]) has(h uint64) bool {
	s := &t.shards[h>>58]
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.table.Find(h)
	return ok
}

func mod(b int64) int {
	return int(((b % guardBuckets) + guardBuckets) % guardBuckets)
}
