package ratelimit

import (
	"math/bits"
	"sync"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/idtable"
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

// keyState is the full ("hot") state of one key: a ring of per-second bucket
// counts, and the daily count. 56 bytes, 64 with its slot's key (one cache
// line), no pointers.
//
// The daily count is compact while it is at most limiter.demoteMax (a 64th of
// per_day): all of it is counted in hour dayLast, so it expires no earlier
// than it really would. Past that, the key gets an hourly ring (hotTable.ring)
// holding the compact count in one bucket and every later event in its own
// hour. Only the events counted while compact can be held longer than their
// 24 hours, so the limit errs on the strict side by at most demoteMax events,
// and only the few keys with large daily counts pay for a ring.
type keyState struct {
	hash     uint64 // the key
	secLast  uint32 // index of the newest 100 ms bucket, relative to limiter.epoch
	secTotal uint32
	dayLast  uint32 // unix hour of the newest hourly bucket (compact: of all the count)
	dayTotal uint32
	ring     uint32 // number of the key's hourly ring in hotTable.rings + 1; 0 while compact
	sec      [secSlots]uint16
}

// advance moves the windows of st forward to the bucket sb and the hour,
// expiring what falls out of them. A clock that steps back never moves them
// back: events are then counted in the newest bucket, which only errs on the
// strict side.
func (t *hotTable) advance(st *keyState, sb, hour uint32) {
	advanceRing(st.sec[:], &st.secLast, &st.secTotal, sb)
	if r := t.ring(st); r != nil {
		advanceRing(r[:], &st.dayLast, &st.dayTotal, hour)
		return
	}
	if d := int32(hour - st.dayLast); st.dayTotal == 0 || d >= daySlots {
		st.dayLast, st.dayTotal = hour, 0
	}
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
		j := *last % n // one division, not one per bucket
		for range d {
			if j++; j == n {
				j = 0
			}
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

// count adds one event at hour to the newest buckets of st, which must have
// been advanced to it. Once its compact daily count has reached demoteMax,
// st gets a ring, which keeps that count in its hour.
func (t *hotTable) count(st *keyState, hour, demoteMax uint32) {
	st.sec[st.secLast%secSlots]++
	st.secTotal++
	r := t.ring(st)
	if r == nil {
		if st.dayTotal < demoteMax {
			if int32(hour-st.dayLast) > 0 {
				st.dayLast = hour
			}
			st.dayTotal++
			return
		}
		r = t.spread(st)
		advanceRing(r[:], &st.dayLast, &st.dayTotal, hour)
	}
	r[st.dayLast%daySlots]++
	st.dayTotal++
}

// newestDayHour is the hour of the newest non-empty daily bucket of st, whose
// ring is r (dayLast when compact or empty).
func (st *keyState) newestDayHour(r *dayRing) uint32 {
	if r == nil {
		return st.dayLast
	}
	for i := uint32(0); i < daySlots; i++ {
		if r[(st.dayLast-i)%daySlots] != 0 {
			return st.dayLast - i
		}
	}
	return st.dayLast
}

// shard is one lock's worth of keys. Keys are 64-bit hashes (see
// deviceRateLimit.extract); a collision makes two keys share a limit, which errs on
// the strict side and has a probability around 3e-8 with a million keys.
type shard struct {
	mu sync.Mutex
	// hot holds the full state of the keys seen in the last seconds.
	hot hotTable
	// cold holds idle keys with a small daily count (see packCold): all of
	// it is treated as having happened in its newest hour, so it expires no
	// earlier than it really would.
	cold coldTable
	// coldHour is the hour in which cold was last scanned for expired
	// counts: they expire on the hour, so one scan per hour is enough.
	coldHour uint32
	_        [60]byte // 192 bytes: shards do not share cache lines
}

// limiter is the keyed sliding-window limiter: every key may count at most
// perSec events in any one second and perDay in any 24 hours. It is safe for
// concurrent use; the clock is always passed in (unix nanoseconds).
type limiter struct {
	perSec, perDay uint32
	// demoteMax is the largest daily count kept compact, as one count dated
	// to its newest hour, by a hot key or in the cold table: it bounds how
	// much the compression over-counts.
	demoteMax uint32
	epoch     int64
	shards    [numShards]shard
}

// newLimiter returns a limiter; epoch is the current time (unix nanoseconds),
// from which per-second buckets are numbered.
func newLimiter(perSec, perDay uint32, epoch int64) *limiter {
	return &limiter{perSec: perSec, perDay: perDay, demoteMax: min(max(perDay/64, 1), coldMaxCount), epoch: epoch}
}

// buckets maps a time to its per-second bucket and unix hour.
func (l *limiter) buckets(now int64) (sb, hour uint32) {
	rel := max(now-l.epoch, 0)
	return uint32(rel / secBucketNs), uint32(now / hourNs)
}

func (l *limiter) shardOf(h uint64) *shard {
	return &l.shards[h>>58]
}

// state returns the state of key h, whose slot was hint (idtable's
// FindHinted), creating it (or promoting it from the cold table). The
// caller holds s.mu; the state stays at its address until the next sweep or
// the next insert beyond what s.hot.reserve made room for.
func (s *shard) state(h uint64, hint uint32, sb, hour uint32) *keyState {
	if st := s.hot.getHinted(h, hint); st != nil {
		return st
	}
	st := s.hot.insert(h)
	st.secLast, st.dayLast = sb, hour
	if v, ok := s.cold.take(h); ok {
		st.dayLast, st.dayTotal = unpackCold(v, hour)
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
	return l.takeLocked(sb, hour, hs, nil, true)
}

// takeLocked is take at the buckets sb and hour, with the shards of hs
// locked, hints (nil, or one per key) the slots where prefetch found the
// keys; with touch, it first loads the slots of all the keys, so that
// their misses overlap (takeBatch has loaded them already when it
// prefetched).
func (l *limiter) takeLocked(sb, hour uint32, hs []uint64, hints []uint32, touch bool) verdict {
	// Room first, so that no insert moves a state taken before it; then
	// (with touch) every key's slots are loaded before any is read, so that
	// the cache misses of tables larger than the caches overlap.
	for _, h := range hs {
		s := l.shardOf(h)
		s.hot.reserve(len(hs))
	}
	if touch {
		for _, h := range hs {
			s := l.shardOf(h)
			s.hot.touch(h)
			s.cold.touch(h)
		}
	}
	var states [maxKeys]*keyState
	var tables [maxKeys]*hotTable
	for i, h := range hs {
		s := l.shardOf(h)
		hint := idtable.NoHint
		if hints != nil {
			hint = hints[i]
		}
		states[i], tables[i] = s.state(h, hint, sb, hour), &s.hot
	}
	v := verdict{}
	for i, st := range states[:len(hs)] {
		tables[i].advance(st, sb, hour)
		r, at := l.check(st, tables[i].ring(st))
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
	for i, st := range states[:len(hs)] {
		tables[i].count(st, hour, l.demoteMax)
	}
	return v
}

// takeBatch takes the messages of a batch at now, in order, as take would
// one after the other, and sets vs[i] to the verdict of keys[i]; messages
// with n < 0 are not limited (their verdict is left as it is). It works in
// chunks of batchChunk messages, each under one round of locks (the shards
// concerned, each once, in order): first it loads the slots of all their
// keys into the cache, all their misses at once (with tables larger than the
// caches, most of a take's cost is otherwise its keys' cache misses, one
// message after the other), then it takes them. vs must be as long as keys.
func (l *limiter) takeBatch(now int64, keys []msgKeys, vs []verdict) {
	sb, hour := l.buckets(now)
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), batchChunk)]
		var mask uint64
		for i := range chunk {
			for _, h := range chunk[i].hs[:max(chunk[i].n, 0)] {
				mask |= 1 << (h >> 58)
			}
		}
		for m := mask; m != 0; m &= m - 1 {
			l.shards[bits.TrailingZeros64(m)].mu.Lock()
		}
		loaded := len(chunk) >= prefetchMin
		hinted := loaded && l.prefetch(chunk)
		for i := range chunk {
			if k := &chunk[i]; k.n >= 0 {
				var hints []uint32
				if hinted {
					hints = k.slots[:k.n]
				}
				vs[i] = l.takeLocked(sb, hour, k.hs[:k.n], hints, !loaded)
			}
		}
		for m := mask; m != 0; m &= m - 1 {
			l.shards[bits.TrailingZeros64(m)].mu.Unlock()
		}
		keys, vs = keys[len(chunk):], vs[len(chunk):]
	}
}

// prefetch loads the slots where the keys of a chunk's messages start
// their probes into the cache, all of them at once, or, in tables larger
// than the caches, the whole of their probes (probe), setting the messages'
// slots to where it found their keys (idtable.NoHint for the others) and
// returning true, so that the takes need not walk those probes again. The
// caller holds the locks of their shards.
func (l *limiter) prefetch(chunk []msgKeys) bool {
	if !l.shards[0].hot.tab.Large() { // the shards are balanced by hash
		for i := range chunk {
			for _, h := range chunk[i].hs[:max(chunk[i].n, 0)] {
				s := l.shardOf(h)
				s.hot.touch(h)
				s.cold.touch(h)
			}
		}
		return false
	}
	l.probe(chunk)
	return true
}

// probe is prefetch for tables larger than the caches: the keys' probes
// are walked together, up to idtable.Rounds lines past their homes
// (idtable.Load), and the slots found go into the messages' slots.
func (l *limiter) probe(chunk []msgKeys) {
	var ps [2 * batchChunk]idtable.Probe[keyState] // two keys a message, as a rule
	n := 0
	for i := range chunk {
		k := &chunk[i]
		for j, h := range k.hs[:max(k.n, 0)] {
			k.slots[j] = idtable.NoHint
			s := l.shardOf(h)
			if p, ok := s.hot.tab.Probe(h, uint32(i*maxKeys+j)); ok {
				if n == len(ps) {
					loadProbes(ps[:], chunk)
					n = 0
				}
				ps[n] = p
				n++
			}
			s.cold.touch(h)
		}
	}
	loadProbes(ps[:n], chunk)
}

// loadProbes walks ps, the probes of chunk's keys (tagged message ×
// maxKeys + key), and sets the slots of the keys found.
func loadProbes(ps []idtable.Probe[keyState], chunk []msgKeys) {
	idtable.Load(ps, idtable.Rounds)
	for i := range ps {
		if j, ok := ps[i].Found(); ok {
			t := ps[i].Tag()
			chunk[t/maxKeys].slots[t%maxKeys] = j
		}
	}
}

const (
	// prefetchMin is the smallest chunk takeBatch prefetches: below it,
	// loading the slots twice costs more than the overlapped misses save.
	prefetchMin = 16
	// batchChunk is how many messages takeBatch takes under one round of
	// locks (their slots stay well within the caches, and other threads
	// wait for the locks no longer than that many takes).
	batchChunk = 128
)

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

// check says whether st, whose ring is r, has room for one more event and,
// if not, when it will (unix nanoseconds). st must have been advanced to the
// current buckets.
func (l *limiter) check(st *keyState, r *dayRing) (reason, int64) {
	if st.dayTotal+1 > l.perDay {
		j := uint32(daySlots) // a compact count expires all at once
		if r != nil {
			j = bucketsToFree(r[:], st.dayLast, st.dayTotal+1-l.perDay)
		}
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
// to the cold table, active ones whose daily count became small give back
// their hourly ring, and tables that emptied out are rebuilt so their memory
// is released. It returns the number of keys still tracked.
func (l *limiter) sweep(now int64) int {
	sb, hour := l.buckets(now)
	total := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		s.sweep(sb, hour, l.demoteMax)
		total += s.hot.n + s.cold.len()
		s.mu.Unlock()
	}
	return total
}

// shrinkMin is the table size under which a shard never bothers rebuilding.
const shrinkMin = 1024

func (s *shard) sweep(sb, hour, demoteMax uint32) {
	s.hot.sweep(func(st *keyState) bool {
		s.hot.advance(st, sb, hour)
		if st.dayTotal <= demoteMax {
			s.hot.fold(st)
		}
		switch {
		case st.dayTotal == 0:
			return false
		case st.secTotal == 0 && st.dayTotal <= demoteMax:
			s.cold.put(st.hash, packCold(st.dayLast, st.dayTotal))
			return false
		}
		return true
	})
	if s.hot.peak > shrinkMin && s.hot.n < s.hot.peak/4 {
		s.hot.compact()
	}
	if hour == s.coldHour {
		return
	}
	s.coldHour = hour
	s.cold.retain(func(_ uint64, v uint32) bool {
		h, _ := unpackCold(v, hour)
		return int32(hour-h) < daySlots
	})
}
