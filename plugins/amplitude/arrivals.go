package amplitude

import "time"

// The arrival guard bounds what Amplitude can count per device_id and per
// user_id where requests arrive, whatever the delays between the send and
// the arrival. The pacer spaces sends, but Amplitude counts arrivals: a
// request delayed on the way (a busy machine, a slow network hop) arrives
// together with the ones sent after it, and the pacer's slack (half its
// headroom, 55 ms of bunching on HTTP V2) is then not enough. The guard
// needs no estimate of the delay: an event may be sent only while its id has
// fewer than the limit of events in flight or answered within the last
// window (counted per bucket of a tenth of it, rounded up).
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
// answers: 27 events/s, about the pacer's own rate, 26.5).
//
// The guard's state of an id lives in the id's slot of the pacer
// (pacer.charge asks both under one lookup): the events in flight, the
// latest bucket answered (its index modulo 2^32: an id quiet for 2^31
// buckets, 6.8 years on HTTP V2, would be misread) and the answered counts
// of the last guardBuckets buckets, in bytes where the limit fits (HTTP V2:
// 30; 16 bytes) and in 16-bit words otherwise (Batch: 30,000; 28 bytes).
// Counts stay within the limit (an event is admitted only while its id's
// count is below it) and saturate at their width otherwise. An id with
// nothing in flight and nothing answered within the window is idle for the
// guard: the pacer forgets it once its budget is idle too, which bounds the
// table by the ids active within the last window.

const (
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

// answered moves e's events from in flight to answered at now: their
// request's answer came (whatever it was), so they reached Amplitude, if at
// all, by now. The slots of a chunk of them are loaded first, all their
// misses at once (an answer comes long after its request's send, when they
// are cold again).
func (p *pacer) answered(events []*event, now time.Time) {
	if p == nil || p.limit == 0 {
		return
	}
	if p.narrow != nil {
		p.narrow.answered(p, events, now.UnixNano())
	} else {
		p.wide.answered(p, events, now.UnixNano())
	}
}

func (t *paceTables[C]) answered(p *pacer, events []*event, n int64) {
	if len(events) >= prefetchMin {
		t.load(p, events, true, n)
		return
	}
	hour, k := int32(n/int64(time.Hour)), n/p.bucket
	for _, e := range events {
		hd, hu := e.hashes()
		jd, ju := e.hints()
		t.finish(p, hd, jd, n, hour, k)
		t.finish(p, hu, ju, n, hour, k)
	}
}

// finish counts one event of the id h (0: none), whose slot was hint
// (FindHinted), answered at n (in hour and bucket k).
func (t *paceTables[C]) finish(p *pacer, h uint64, hint uint32, n int64, hour int32, k int64) {
	if h == 0 {
		return
	}
	s := t.shard(h)
	s.mu.Lock()
	s.finishLocked(p, h, hint, n, hour, k)
	s.mu.Unlock()
}

// finishLocked is finish under s.mu, for an id of s (0: none).
func (s *pacerShard[C]) finishLocked(p *pacer, h uint64, hint uint32, n int64, hour int32, k int64) {
	if h == 0 {
		return
	}
	if sl := s.find(p, h, hint, n, hour, k, false); sl != nil {
		sl.Val.guard.finish(k, true)
	}
}

// admit counts one event in flight at n (unix ns, in bucket k of bucket ns)
// within limit, or counts nothing and returns when to ask again.
func (st *guardState[C]) admit(n, k int64, limit uint32, bucket int64) (int64, bool) {
	last := st.lastAt(k)
	used := uint32(st.inFlight)
	lo := max(k-(guardBuckets-1), last-(guardBuckets-1)) // the window's first bucket held
	for b, i := lo, mod(lo); b <= last; b++ {            // i is mod(b): one division, not one a bucket
		used += uint32(st.answered[i]) // no branch on the count: most are 0 or not, at random
		if i++; i == guardBuckets {
			i = 0
		}
	}
	if used >= limit || st.inFlight == ^C(0) {
		// Ask again once the oldest answered bucket has left the window,
		// or, when only events in flight fill it, a bucket later.
		at := n + bucket
		for b := lo; b <= last; b++ {
			if st.answered[mod(b)] > 0 {
				at = max(n+1, (b+guardBuckets)*bucket)
				break
			}
		}
		return at, false
	}
	st.inFlight++
	return 0, true
}

// finish takes one event out of flight in bucket k, counting it as answered
// then (or, when answered is false, as never sent).
func (st *guardState[C]) finish(k int64, answered bool) {
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

// mod returns b modulo guardBuckets, in [0, guardBuckets).
func mod(b int64) int {
	if b >= 0 { // buckets since 1970: one unsigned division by a constant
		return int(uint64(b) % guardBuckets)
	}
	return int(((b % guardBuckets) + guardBuckets) % guardBuckets)
}
