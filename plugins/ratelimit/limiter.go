package ratelimit

import (
	"sync"
	"time"
)

// Window geometry. A second is split into secSubBuckets buckets; a key's
// per-second count is the sum of the newest secSlots buckets, which cover
// between 1 s and 1.1 s of history. Counting over a window slightly longer
// than a second is what makes the limit exact: an event passes only when that
// sum stays within per_second, so no interval of one second can hold more.
// The daily window works the same way with hourly buckets (24 to 25 hours).
const (
	secSubBuckets = 10
	secBucketNs   = int64(time.Second) / secSubBuckets
	secSlots      = secSubBuckets + 1
	hourNs        = int64(time.Hour)
	daySlots      = 25
	numShards     = 64
	// maxKeys bounds how many keys one message can be limited by.
	maxKeys = 8
)

// reason says which limit held an event back.
type reason uint8

const (
	reasonNone reason = iota
	reasonPerSecond
	reasonPerDay
)

// String returns the name used in metadata, metrics and docs.
func (r reason) String() string {
	switch r {
	case reasonPerSecond:
		return "per_second"
	case reasonPerDay:
		return "per_day"
	}
	return "none"
}

// verdict is the outcome of limiter.take.
type verdict struct {
	reason  reason // reasonNone: the event passed and was counted
	key     int    // index (in the caller's hashes) of the key that limited
	retryAt int64  // unix nanoseconds at which the limiting keys have room again
}

// keyState is the full ("hot") state of one key: two rings of bucket counts
// with running totals. 152 bytes, no pointers (the GC never scans them).
type keyState struct {
	hash     uint64 // the key
	secLast  uint32 // index of the newest 100 ms bucket, relative to limiter.epoch
	dayLast  uint32 // unix hour of the newest hourly bucket
	secTotal uint32
	dayTotal uint32
	sec      [secSlots]uint16
	live     bool // in use (see hotTable)
	day      [daySlots]uint32
}

// advance moves both rings forward to the buckets sb and hour, expiring what
// falls out of the windows. A clock that steps back never moves them back:
// events are then counted in the newest bucket, which only errs on the strict
// side.
func (s *keyState) advance(sb, hour uint32) {
	advanceRing(s.sec[:], &s.secLast, &s.secTotal, sb)
	advanceRing(s.day[:], &s.dayLast, &s.dayTotal, hour)
}

// advanceRing moves a ring of bucket counts, whose newest bucket is *last and
// whose counts sum to *total, forward to bucket cur.
func advanceRing[T uint16 | uint32](ring []T, last, total *uint32, cur uint32) {
	d := cur - *last
	if int32(d) <= 0 {
		return
	}
	n := uint32(len(ring))
	if d >= n {
		clear(ring)
		*total = 0
	} else {
		for i := uint32(1); i <= d; i++ {
			j := (*last + i) % n
			*total -= uint32(ring[j])
			ring[j] = 0
		}
	}
	*last = cur
}

// bucketsToFree returns after how many more buckets the oldest buckets of a
// ring (newest bucket last) hold at least need events in total.
func bucketsToFree[T uint16 | uint32](ring []T, last, need uint32) uint32 {
	n := uint32(len(ring))
	freed := uint32(0)
	for j := uint32(1); ; j++ {
		freed += uint32(ring[(last+j)%n])
		if freed >= need || j == n {
			return j
		}
	}
}

// count adds one event to the newest buckets.
func (s *keyState) count() {
	s.sec[s.secLast%secSlots]++
	s.secTotal++
	s.day[s.dayLast%daySlots]++
	s.dayTotal++
}

// newestDayHour is the hour of the newest non-empty daily bucket (dayLast when
// the ring is empty).
func (s *keyState) newestDayHour() uint32 {
	for i := uint32(0); i < daySlots; i++ {
		if s.day[(s.dayLast-i)%daySlots] != 0 {
			return s.dayLast - i
		}
	}
	return s.dayLast
}

// shard is one lock's worth of keys. Keys are 64-bit hashes (see
// deviceRateLimit.extract); a collision makes two keys share a limit, which errs on
// the strict side and has a probability around 3e-8 with a million keys.
type shard struct {
	mu sync.Mutex
	// hot holds the full state of the keys seen in the last seconds.
	hot hotTable
	// cold holds idle keys with a small daily count, packed as
	// unix hour<<32 | count: all of it is treated as having happened in that
	// hour, so it expires no earlier than it really would.
	cold map[uint64]uint64
	// peakCold is the largest size of cold since it was last rebuilt (Go
	// maps never shrink).
	peakCold int
	_        [8]byte // 128 bytes: shards do not share cache lines
}

// limiter is the keyed sliding-window limiter: every key may count at most
// perSec events in any one second and perDay in any 24 hours. It is safe for
// concurrent use; the clock is always passed in (unix nanoseconds).
type limiter struct {
	perSec, perDay uint32
	// demoteMax is the largest daily count an idle key may be compressed with
	// into the cold map (bounding how much the compression over-counts).
	demoteMax uint32
	epoch     int64
	shards    [numShards]shard
}

// newLimiter returns a limiter; epoch is the current time (unix nanoseconds),
// from which per-second buckets are numbered.
func newLimiter(perSec, perDay uint32, epoch int64) *limiter {
	l := &limiter{perSec: perSec, perDay: perDay, demoteMax: max(perDay/64, 1), epoch: epoch}
	for i := range l.shards {
		l.shards[i].cold = map[uint64]uint64{}
	}
	return l
}

// buckets maps a time to its per-second bucket and unix hour.
func (l *limiter) buckets(now int64) (sb, hour uint32) {
	rel := max(now-l.epoch, 0)
	return uint32(rel / secBucketNs), uint32(now / hourNs)
}

func (l *limiter) shardOf(h uint64) *shard {
	return &l.shards[h>>58]
}

// state returns the state of key h, creating it (or promoting it from the
// cold map). The caller holds s.mu; the state stays at its address until the
// next sweep.
func (s *shard) state(h uint64, sb, hour uint32) *keyState {
	if st := s.hot.get(h); st != nil {
		return st
	}
	st := s.hot.insert(h)
	st.secLast, st.dayLast = sb, hour
	if c, ok := s.cold[h]; ok {
		delete(s.cold, h)
		st.dayLast = uint32(c >> 32)
		st.day[st.dayLast%daySlots] = uint32(c)
		st.dayTotal = uint32(c)
	}
	return st
}

// take counts one event for every key in hs if all of them have room under
// both limits at now; otherwise it counts nothing and says which limit and
// key held the event back, and when all limiting keys have room again.
func (l *limiter) take(now int64, hs []uint64) verdict {
	sb, hour := l.buckets(now)
	var order [maxKeys]uint8
	n := l.lock(hs, &order)
	defer l.unlock(&order, n)

	var states [maxKeys]*keyState
	for i, h := range hs {
		states[i] = l.shardOf(h).state(h, sb, hour)
	}
	v := verdict{}
	for i, st := range states[:len(hs)] {
		st.advance(sb, hour)
		r, at := l.check(st)
		if r == reasonNone {
			continue
		}
		if r > v.reason {
			v.reason, v.key = r, i
		}
		v.retryAt = max(v.retryAt, at)
	}
	if v.reason != reasonNone {
		return v
	}
	for _, st := range states[:len(hs)] {
		st.count()
	}
	return v
}

// lock locks the shards of hs in ascending order (each once) and records
// them in order; it returns how many it locked.
func (l *limiter) lock(hs []uint64, order *[maxKeys]uint8) int {
	n := 0
	for _, h := range hs {
		s := uint8(h >> 58)
		j := n
		for j > 0 && order[j-1] > s {
			j--
		}
		if j > 0 && order[j-1] == s {
			continue
		}
		copy(order[j+1:n+1], order[j:n])
		order[j] = s
		n++
	}
	for _, s := range order[:n] {
		l.shards[s].mu.Lock()
	}
	return n
}

func (l *limiter) unlock(order *[maxKeys]uint8, n int) {
	for _, s := range order[:n] {
		l.shards[s].mu.Unlock()
	}
}

// check says whether st has room for one more event and, if not, when it
// will (unix nanoseconds). st must have been advanced to the current buckets.
func (l *limiter) check(st *keyState) (reason, int64) {
	if st.dayTotal+1 > l.perDay {
		j := bucketsToFree(st.day[:], st.dayLast, st.dayTotal+1-l.perDay)
		return reasonPerDay, int64(st.dayLast+j) * hourNs
	}
	if st.secTotal+1 > l.perSec {
		j := bucketsToFree(st.sec[:], st.secLast, st.secTotal+1-l.perSec)
		return reasonPerSecond, l.epoch + int64(st.secLast+j)*secBucketNs
	}
	return reasonNone, 0
}

// sweep expires what is out of the windows at now: keys with nothing left in
// their daily window are forgotten, idle keys with a small daily count move
// to the compact cold map, and maps and chunks that emptied out are rebuilt so
// their memory is released. It returns the number of keys still tracked.
func (l *limiter) sweep(now int64) int {
	sb, hour := l.buckets(now)
	total := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		s.sweep(sb, hour, l.demoteMax)
		total += s.hot.n + len(s.cold)
		s.mu.Unlock()
	}
	return total
}

// shrinkMin is the map size under which a shard never bothers rebuilding.
const shrinkMin = 1024

func (s *shard) sweep(sb, hour, demoteMax uint32) {
	s.hot.sweep(func(st *keyState) bool {
		st.advance(sb, hour)
		switch {
		case st.dayTotal == 0:
			return false
		case st.secTotal == 0 && st.dayTotal <= demoteMax:
			s.cold[st.hash] = uint64(st.newestDayHour())<<32 | uint64(st.dayTotal)
			return false
		}
		return true
	})
	for h, c := range s.cold {
		if int32(hour-uint32(c>>32)) >= daySlots {
			delete(s.cold, h)
		}
	}
	s.peakCold = max(s.peakCold, len(s.cold))
	if s.hot.peak > shrinkMin && s.hot.n < s.hot.peak/4 {
		s.hot.compact()
	}
	if s.peakCold > shrinkMin && len(s.cold) < s.peakCold/4 {
		cold := make(map[uint64]uint64, len(s.cold))
		for h, c := range s.cold {
			cold[h] = c
		}
		s.cold, s.peakCold = cold, len(cold)
	}
}
