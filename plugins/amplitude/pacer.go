package amplitude

import (
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/idtable"
)

// pacer keeps, per device_id and per user_id, the budget Amplitude enforces
// for the chosen endpoint, and is charged for every event just before it is
// sent (first sends, retries, re-sends after a 413 split or a bisection, and
// hedges), so that what Amplitude counts at arrival stays within its limits.
// The same slot of an id holds its arrival guard's state (arrivals.go), so
// that charging an event is one lookup and one lock per id for both.
//
// The rate is a GCRA (generic cell rate algorithm, as in RFC 2698 meters): one
// theoretical arrival time per id, advanced by 1/rate for each event; an event
// conforms while that time is no more than burst events ahead of now. With
// rate = limit×(1-headroom) and burst = limit×window×headroom/2 (at least
// two events when there is headroom, the rate then lowered to keep the
// bound: budgetRate), no window of the endpoint's length holds more than
// limit×window×(1-headroom/2) events as sent: the other half of the headroom
// is slack for arrivals that bunch on the network, so that Amplitude, which
// counts where requests arrive, still sees at most limit×window events in
// any window when sends are delayed by up to (limit×window - burst)/rate -
// window (HTTP V2 with the default headroom 0.1: 26.5 events/s, bursts of
// 2, at most 28 events sent in any second, arrivals may bunch by 57 ms;
// TestPacerBurstSlack). Longer delays are the guard's.
//
// The daily quota (500,000 events per rolling 24 hours, counted by Amplitude
// in hourly steps) is counted per id in the current hour; an id that sends
// more than quota/500 events (1000) in an hour gets a 24-hour ring of hourly
// counts (earlier hours assumed at that threshold, which over-counts by at
// most 23/500 of the quota, 4.6%), so that only busy ids pay for it. The
// hour's count of an id that is forgotten within the hour (below) is kept
// by its shard's hourSketch, an upper bound in a fixed 64 KiB, from which
// the id starts again if it comes back in that hour.
//
// The table: per shard (64, by the hash's top bits, each with its own lock),
// an idtable (plugins/internal/idtable: open addressing, linear probing,
// outside the Go heap on Linux, on huge pages once a shard's table reaches
// 2 MiB) keyed by a seeded 64-bit hash of the id (ids themselves are not
// stored: no string copy, no pointer for the collector to scan), of 32-byte
// slots on HTTP V2 (the guard's counts in bytes: its limit is 30) and 48-byte
// ones on Batch (16-bit counts: 30,000). A slot's value packs the
// theoretical arrival time in nanoseconds relative to the shard's epoch and
// the hour's count relative to the epoch's hour (see pace), then the guard's
// state (guardState); the epoch moves forward every 4.9 hours of the shard's
// time, clamping the arrival times that fall behind it, which changes no
// decision (they are long past). Ids whose budget is full again, whose guard
// has nothing in flight or answered within its window and that have no daily
// ring (or one with nothing in the last 24 hours) are idle: a lookup that
// passes one reuses its slot, and a table at 3/4 load drops them in place
// (then grows if it is still over half full, or shrinks under an eighth),
// their hour's counts written to the sketch. The table therefore holds the
// ids that sent within about the last window (HTTP V2: 1.1 s; Batch: 33 s)
// and the busy ids, not every id of the hour. A
// charge locks its ids' shards, then loads both slots before reading either,
// so that the two cache misses of a table larger than the caches overlap; it
// allocates nothing. The send path calls prefetch on its batch first, which
// overlaps the misses of all its events and, in tables larger than the
// caches, keeps in each event the slots where its ids were found (event.sd
// and su): the charge reads those slots without walking the probes again,
// and the answer's pass loads their lines directly.
//
// Memory: 32 bytes per slot on HTTP V2 at a load between 1/2 and 3/4, so 43
// to 64 bytes per tracked id whatever the id's length (48-byte slots, 64 to
// 96 bytes, on Batch; measured by BenchmarkPacerMemory;
// docs/amplitude-delivery.md), outside the heap, so not doubled by the
// collector; 104 bytes more for an id with a daily ring (kept in a slice
// of its shard, reused once the id is forgotten); and the sketches, 4 MiB
// outside the heap as the tables, once ids are forgotten within their hour.
type pacer struct {
	interval  int64 // ns per event (1/rate); 0: no rate
	tolerance int64 // ns: how far ahead of now the arrival time may run
	daily     uint32
	track     uint32 // hourly count above which an id gets a daily ring
	// limit is the guard's events per window and id (0: no guard), counted
	// per bucket ns (a tenth of the window).
	limit  uint32
	bucket int64
	// narrow holds the guard's counts in bytes when the limit fits them,
	// else wide in 16-bit words (concrete types, not an interface: a call
	// through one would move prefetch's array of hashes to the heap).
	narrow *paceTables[uint8]
	wide   *paceTables[uint16]
}

const (
	pacerShards = 64
	// minSlots is the smallest table of a shard.
	minSlots = 64
	// epochEvery is how far now may run ahead of a shard's epoch before the
	// epoch moves to now - epochLag. The pace of an id keeps its arrival
	// time in tatBits bits from the epoch: at most epochEvery + epochLag +
	// the tolerance and an interval ahead of it, well within 2^46 ns; and
	// its hour at most 7 after the epoch's. An id whose arrival time is more
	// than epochLag behind now (far beyond any endpoint's interval plus
	// tolerance: at most 1.7 s) is treated exactly as one whose arrival time
	// is the epoch.
	epochEvery = 1 << 44 // ns, 4.9 hours
	epochLag   = 1 << 42 // ns, 1.2 hours
)

type paceTables[C guardCount] struct {
	shards [pacerShards]pacerShard[C]
}

type pacerShard[C guardCount] struct {
	mu    sync.Mutex
	table idtable.Table[idState[C]]
	epoch epoch
	rings []dayRing
	free  []uint32 // indexes of unused rings
	hours hourSketch
}

// idState is one id's slot value: its budget and its guard's state.
type idState[C guardCount] struct {
	pace  pace
	guard guardState[C]
}

// pace is one id's budget, packed in 64 bits: the theoretical arrival time
// (ns after the shard's epoch; 0: at or before it) in the low tatBits bits,
// then either the hour (unix hours after the epoch's hour) and the events
// counted in it, or, with ringBit, the index of the id's daily ring in its
// shard (at most maxRings).
type pace uint64

const (
	tatBits    = 46 // 19.5 hours
	tatMax     = 1<<tatBits - 1
	hourShift  = tatBits
	hourBits   = 3
	countShift = hourShift + hourBits
	countBits  = 63 - countShift // 14: counts up to 16,383
	countMax   = 1<<countBits - 1
	ringBit    = 1 << 63
	// maxRings is the number of daily rings a shard can index: 131,072, 8.4
	// million in all, for ids sending over 1000 events an hour (2.3 million
	// events/s at the least). Beyond them, a busy id is counted in its
	// hour only, which can under-count its day: Amplitude's answer (429,
	// over the daily quota) then holds it until the next hourly step.
	maxRings = 1 << (hourBits + countBits)
)

// state is a pace unpacked against its shard's epoch.
type state struct {
	tat   int64  // theoretical arrival time, unix ns
	hour  int32  // the hour (unix hours) count is for
	count uint32 // events charged in hour, or the index of the id's ring
	ring  bool
}

// epoch is what a shard's paces are relative to.
type epoch struct {
	ns   int64 // unix ns from which arrival times are counted
	hour int32 // the unix hour of ns, from which hours are counted
}

func epochAt(ns int64) epoch {
	return epoch{ns, int32(floorDiv(ns, int64(time.Hour)))}
}

func (e epoch) unpack(v pace) state {
	if v&ringBit != 0 {
		return state{tat: e.ns + int64(v&tatMax), count: uint32(v >> hourShift & (maxRings - 1)), ring: true}
	}
	return state{
		tat:   e.ns + int64(v&tatMax),
		hour:  e.hour + int32(v>>hourShift&(1<<hourBits-1)),
		count: uint32(v>>countShift) & countMax,
	}
}

// pack packs st against the shard's epoch. An arrival time before the epoch
// is stored as the epoch, and a count of an hour before the epoch's hour,
// which is not the current one, as no count: neither changes a decision. A
// clock that steps back past the epoch stores later times than it gives,
// which errs on the strict side.
func (e epoch) pack(st state) pace {
	v := pace(min(max(st.tat-e.ns, 0), tatMax))
	if st.ring {
		return v | ringBit | pace(st.count)<<hourShift
	}
	if h := st.hour - e.hour; st.count > 0 && h >= 0 {
		v |= pace(min(h, 1<<hourBits-1))<<hourShift | pace(min(st.count, countMax))<<countShift
	}
	return v
}

// rebase moves the shard's epoch to n - epochLag, repacking every slot.
func (s *pacerShard[C]) rebase(n int64) {
	old, e := s.epoch, epochAt(n-epochLag)
	s.table.Retain(func(sl *idtable.Slot[idState[C]]) bool {
		sl.Val.pace = e.pack(old.unpack(sl.Val.pace))
		return true
	}, func(int) int { return s.table.Size() })
	s.epoch = e
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// dayRing holds the hourly counts of the last 24 hours of a busy id.
type dayRing struct {
	counts [24]uint32
	hour   int32  // the latest hour written
	sum    uint32 // of counts
}

// endpointBudgets are Amplitude's per-id limits: events per second, the
// window they are measured over, and the daily quota
// (https://amplitude.com/docs/apis/analytics/http-v2#upload-limit,
// https://amplitude.com/docs/apis/analytics/batch-event-upload#upload-limit).
var endpointBudgets = map[string]struct {
	eps    float64
	window time.Duration
	daily  uint32
}{
	endpointHTTPV2: {30, time.Second, 500_000},
	endpointBatch:  {1000, 30 * time.Second, 500_000},
}

// newPacer returns the pacer of an endpoint with headroom in [0, 1), its
// arrival guard at the endpoint's limit.
func newPacer(endpoint string, headroom float64) *pacer {
	b := endpointBudgets[endpoint]
	return newPacerWith(b.eps, b.window, b.daily, headroom, uint32(b.eps*b.window.Seconds()))
}

// newPacerWith returns a pacer of eps events/s (0: no rate) over window,
// daily events a day (0: no quota), headroom in [0, 1), and an arrival guard
// of limit events per window (0: no guard).
func newPacerWith(eps float64, window time.Duration, daily uint32, headroom float64, limit uint32) *pacer {
	p := &pacer{
		daily:  daily,
		track:  min(max(1, daily/500), countMax-1),
		limit:  limit,
		bucket: int64(window) / (guardBuckets - 1),
	}
	if eps > 0 {
		rate, burst := budgetRate(eps, window, headroom)
		p.interval = int64(float64(time.Second) / rate)
		p.tolerance = int64((burst - 1) * float64(p.interval))
	}
	if limit <= math.MaxUint8 {
		p.narrow = newPaceTables[uint8]()
	} else {
		p.wide = newPaceTables[uint16]() // limits over 65,535 saturate their counts
	}
	return p
}

// minBurst is the fewest events an id may send at once when there is
// headroom: two, so that an id's second event close behind its first (a
// session start and its first event, in one request or two) does not wait
// for the rate's interval, which held its write and its request's answer
// back (on HTTP V2, with a burst of 1.5, for 18 ms).
const minBurst = 2

// budgetRate returns the GCRA rate (events/s) and burst (events) of a limit
// of eps events/s over window with headroom: the rate is eps×(1-headroom)
// and the burst limit×headroom/2 (limit = eps×window), so that no window
// holds more than limit×(1-headroom/2) events as sent. Where that burst is
// under minBurst (HTTP V2: 1.5), the burst is minBurst and the rate is
// lowered to keep the same bound (HTTP V2 with 0.1: 26.5 events/s, at most
// 28.5 in any second, as before). Without headroom: the limit's rate, one
// event at a time.
func budgetRate(eps float64, window time.Duration, headroom float64) (rate, burst float64) {
	limit := eps * window.Seconds()
	rate, burst = eps*(1-headroom), max(1, limit*headroom/2)
	if bound := limit * (1 - headroom/2); headroom > 0 && burst < minBurst && bound > 2*minBurst {
		rate, burst = (bound-minBurst)/window.Seconds(), minBurst
	}
	return rate, burst
}

func newPaceTables[C guardCount]() *paceTables[C] {
	t := &paceTables[C]{}
	for i := range t.shards {
		s := &t.shards[i]
		s.table.Resize(minSlots)
		s.epoch = epochAt(math.MinInt64 / 2) // the first charge moves it to its time
	}
	return t
}

// idSeed seeds idHash, so that an event's ids are hashed once (event.hashes)
// for the pacer, its guard and the waiting events.
var idSeed = maphash.MakeSeed()

// idHash is the 64-bit hash that stands for an id in the pacer's table: ids
// are not stored, so the table holds no pointers for the collector to scan
// and no string to chase on a lookup. Two ids share a budget only if their
// seeded hashes collide (about 1 in 2^64 per pair), which at worst paces
// both together.
func idHash(k idKey) uint64 {
	h := maphash.String(idSeed, k.id)
	if k.user {
		h = ^h*0x9e3779b97f4a7c15 + 1
	}
	if h == 0 { // 0 marks a free slot
		h = 1
	}
	return h
}

func (t *paceTables[C]) shard(h uint64) *pacerShard[C] {
	return &t.shards[h>>58] // the top 6 bits: pacerShards = 64
}

// charge takes one event of e's ids from their budgets and counts it in
// flight in their guards at now, as every send attempt must be, and returns
// true; or takes nothing and returns when to try again, and whether the
// budget (not the guard) refused it. Their budgets are asked first (the
// device's, then the user's), then their guards. A nil pacer lets
// everything through.
func (p *pacer) charge(e *event, now time.Time) (at time.Time, paced, ok bool) {
	if p == nil {
		return time.Time{}, false, true
	}
	hd, hu := e.hashes()
	jd, ju := e.hints()
	var n int64
	if p.narrow != nil {
		n, paced, ok = p.narrow.charge(p, hd, hu, jd, ju, now.UnixNano())
	} else {
		n, paced, ok = p.wide.charge(p, hd, hu, jd, ju, now.UnixNano())
	}
	if !ok {
		return time.Unix(0, n), paced, false
	}
	return time.Time{}, false, true
}

// charge charges one event of the ids hd and hu (0: none), whose slots were
// jd and ju (FindHinted's hints), at n (unix ns) or returns when to try
// again (see pacer.charge). It locks both shards and loads both slots
// before reading either, so that their cache misses overlap.
func (t *paceTables[C]) charge(p *pacer, hd, hu uint64, jd, ju uint32, n int64) (at int64, paced, ok bool) {
	var sd, su *pacerShard[C]
	var md, mu *sync.Mutex
	if hd != 0 {
		sd = t.shard(hd)
		md = &sd.mu
	}
	if hu != 0 {
		su = t.shard(hu)
		mu = &su.mu
	}
	lockPair(md, mu, hd>>58 < hu>>58)
	defer unlockPair(md, mu)
	// The hinted slots' lines are asked for (prefetch walked to them), or
	// else the home lines loaded.
	if sd != nil && !sd.table.Prefetch(jd) {
		sd.table.Touch(hd)
	}
	if su != nil && !su.table.Prefetch(ju) {
		su.table.Touch(hu)
	}
	hour, k := int32(n/int64(time.Hour)), n/p.bucket
	// The device is charged in full when both its budget and its guard
	// admit it; when its guard refuses, its refusal stands unless the user's
	// budget refuses too (the budgets answer first).
	var guardAt int64
	charged := false
	if sd != nil {
		if at, g := sd.charge(p, hd, jd, n, hour, k); at > 0 && !g {
			return at, true, false
		} else if at > 0 {
			guardAt = at
		} else {
			charged = true
		}
	}
	if su != nil {
		at, g := su.charge(p, hu, ju, n, hour, k)
		if at > 0 && (!g || guardAt == 0) {
			if charged {
				sd.refund(p, hd, n, hour, k, false)
			}
			return at, !g, false
		}
		if guardAt > 0 && at == 0 {
			su.refund(p, hu, n, hour, k, false)
		}
	}
	if guardAt > 0 {
		return guardAt, false, false
	}
	return 0, false, true
}

// charge takes one event from the budget of the id whose hash is h (its
// slot hint, for FindHinted) and counts it in flight in its guard, in
// bucket k, at n (unix ns, in hour) and returns 0; or returns the time (unix
// ns) to try again, charging nothing, and whether the guard (not the
// budget) refused it. It runs under s.mu.
func (s *pacerShard[C]) charge(p *pacer, h uint64, hint uint32, n int64, hour int32, k int64) (int64, bool) {
	if n-s.epoch.ns > epochEvery || n < s.epoch.ns {
		s.rebase(n)
	}
	sl := s.find(p, h, hint, n, hour, k, true)
	st := s.epoch.unpack(sl.Val.pace)
	tat := max(st.tat, n)
	if tat-n > p.tolerance && p.interval > 0 {
		return tat - p.tolerance, false
	}
	if p.daily > 0 {
		if used := s.used24(&st, hour); used >= p.daily {
			return int64(hour+1) * int64(time.Hour), false
		}
	}
	if p.limit > 0 {
		if at, ok := sl.Val.guard.admit(n, k, p.limit, p.bucket); !ok {
			return at, true
		}
	}
	if p.daily > 0 {
		s.add(&st, hour, p.track)
	}
	st.tat = tat + p.interval
	sl.Val.pace = s.epoch.pack(st)
	return 0, false
}

// prefetch loads the slots of the events' ids into the cache, all their
// misses at once, before charge takes the events one by one (the send path
// holds a batch of them): with tables larger than the caches, most of their
// cost is otherwise their cache misses, one event after the other.
func (p *pacer) prefetch(events []*event) {
	switch {
	case p == nil || len(events) < prefetchMin:
	case p.narrow != nil:
		p.narrow.load(p, events, false, 0)
	default:
		p.wide.load(p, events, false, 0)
	}
}

// load loads the slots of events' ids, a chunk at a time, locking the shards
// concerned (each once, in order) around the loads, so that no table is
// rebuilt under them; with answer, it then counts each chunk's events
// answered at n in their guards (pacer.answered), under the same locks: two
// lock pairs an event fewer, the locks held a few microseconds longer. (A
// flag, not a function to call: a call through one would move the array of
// hashes to the heap.) In tables larger than the caches, the slots found
// are kept in the events as hints (event.sd and su), and an answer loads
// its ids' hinted slots directly, without walking their probes.
func (t *paceTables[C]) load(p *pacer, events []*event, answer bool, n int64) {
	hour, k := int32(n/int64(time.Hour)), n/p.bucket
	var hs [2 * prefetchChunk]uint64 // a chunk's device and user hashes, in turn (0: none)
	var js [2 * prefetchChunk]uint32 // and their slot hints, in large tables
	for len(events) > 0 {
		chunk := events[:min(len(events), prefetchChunk)]
		events = events[len(chunk):]
		mask := chunkHashes(chunk, &hs)
		c := 2 * len(chunk)
		forShards(mask, func(i int) { t.shards[i].mu.Lock() })
		large := t.shards[0].table.Large() // the shards are balanced by hash
		if large {
			t.probe(chunk, hs[:c], js[:c], answer)
		} else {
			for _, h := range hs[:c] {
				if h == 0 {
					continue
				}
				s := t.shard(h)
				s.table.Touch(h)
				if !answer { // an id sending may be a fresh one
					s.hours.touch(h)
				}
			}
		}
		if answer {
			for i, h := range hs[:c] {
				hint := idtable.NoHint
				if large {
					hint = js[i]
				}
				t.shard(h).finishLocked(p, h, hint, n, hour, k)
			}
		}
		forShards(mask, func(i int) { t.shards[i].mu.Unlock() })
	}
}

// probe loads the slots of the ids hs of chunk (its events' device and
// user in turn, 0: none) in tables larger than the caches, setting js to
// their slots. Sending (not answer), their probes are walked together, up
// to idtable.Rounds lines past their homes (idtable.Load), with their lines
// of the hour sketch, and the slots found are kept in the events as hints
// (event.sd and su; idtable.NoHint in js for the others). Answering, an id
// with a hint has its slot's line loaded directly (a hint gone stale costs
// a lookup in finish), the others are walked.
// The caller holds the shards' locks.
func (t *paceTables[C]) probe(chunk []*event, hs []uint64, js []uint32, answer bool) {
	var ps [2 * prefetchChunk]idtable.Probe[idState[C]]
	n := 0
	for i, h := range hs {
		if h == 0 {
			continue
		}
		s := t.shard(h)
		if answer {
			if js[i] = chunk[i/2].hint(i%2 == 1); s.table.Prefetch(js[i]) {
				continue
			}
		}
		js[i] = idtable.NoHint
		if pr, ok := s.table.Probe(h, uint32(i)); ok {
			ps[n] = pr
			n++
		}
		if !answer { // an id sending may be a fresh one
			s.hours.touch(h)
		}
	}
	idtable.Load(ps[:n], idtable.Rounds)
	for i := range ps[:n] {
		if j, ok := ps[i].Found(); ok {
			js[ps[i].Tag()] = j
		}
	}
	if !answer {
		for i, e := range chunk {
			e.sd, e.su = js[2*i]+1, js[2*i+1]+1 // NoHint + 1 is 0: not known
		}
	}
}

// chunkHashes puts the hashes of the ids of chunk (at most prefetchChunk
// events) into hs, the device's and the user's of each event in turn (0:
// none), and returns the mask of their shards (by the top 6 bits).
func chunkHashes(chunk []*event, hs *[2 * prefetchChunk]uint64) (mask uint64) {
	for i, e := range chunk {
		hd, hu := e.hashes()
		hs[2*i], hs[2*i+1] = hd, hu
		if hd != 0 {
			mask |= 1 << (hd >> 58)
		}
		if hu != 0 {
			mask |= 1 << (hu >> 58)
		}
	}
	return mask
}

const (
	// prefetchMin is the smallest batch prefetch loads: below it, the
	// locks cost more than the misses saved.
	prefetchMin = 16
	// prefetchChunk is how many events prefetch loads under one round of
	// locks (their slots, 2 × 64 bytes each, stay well within the caches).
	prefetchChunk = 256
)

// unlockPair unlocks what lockPair locked.
func unlockPair(a, b *sync.Mutex) {
	if a != nil {
		a.Unlock()
	}
	if b != nil && b != a {
		b.Unlock()
	}
}

// lockPair locks a and b (nil: none), each once, a first when aFirst: the
// shards of a device and a user, in shard order, so that two lockers never
// wait for each other.
func lockPair(a, b *sync.Mutex, aFirst bool) {
	switch {
	case a == nil || b == nil || a == b:
		if a != nil {
			a.Lock()
		} else if b != nil {
			b.Lock()
		}
	case aFirst:
		a.Lock()
		b.Lock()
	default:
		b.Lock()
		a.Lock()
	}
}

// find returns the slot of the id whose hash is h (its slot hint, for
// FindHinted) at n (in hour and the guard's bucket k), or with insert a
// fresh one, reusing the first idle slot on the way or rebuilding a full
// table; nil when absent and not inserted. It runs under s.mu.
func (s *pacerShard[C]) find(p *pacer, h uint64, hint uint32, n int64, hour int32, k int64, insert bool) *idtable.Slot[idState[C]] {
	if j, ok := s.table.FindHinted(h, hint); ok { // most lookups: no idle checks on the way
		return s.table.At(j)
	}
	idle := p.interval + p.tolerance
	j, found, reuse := s.table.FindReusable(h, func(sl *idtable.Slot[idState[C]]) bool {
		return s.idle(sl, n, hour, k, idle)
	})
	// A fresh id's latest answered bucket is one that has left the window.
	fresh := idtable.Slot[idState[C]]{Key: h, Val: idState[C]{guard: guardState[C]{last: uint32(k - guardBuckets)}}}
	switch {
	case found:
		return s.table.At(j)
	case !insert:
		return nil
	case reuse >= 0:
		sl := s.table.At(reuse)
		s.forget(sl, hour)
		*sl = s.fresh(fresh, hour)
		return sl
	case 4*(s.table.Len()+1) > 3*s.table.Size():
		s.rebuild(n, hour, k, idle)
		return s.find(p, h, idtable.NoHint, n, hour, k, true)
	}
	sl := s.table.Fill(j, h)
	*sl = s.fresh(fresh, hour)
	return sl
}

// fresh returns sl, the slot of an id the shard does not hold, with the
// count in hour the sketch remembers for the id, if any.
func (s *pacerShard[C]) fresh(sl idtable.Slot[idState[C]], hour int32) idtable.Slot[idState[C]] {
	if c := s.hours.bound(sl.Key, hour); c > 0 {
		sl.Val.pace = s.epoch.pack(state{hour: hour, count: c})
	}
	return sl
}

// idle reports whether the id of sl may be forgotten at n: its budget is
// full again, its guard idle in bucket k and, for an id with a ring, nothing
// counted in the last 24 hours. The hour's count of an id without a ring
// goes to the shard's sketch when it is forgotten (forget), so it need not
// be kept.
func (s *pacerShard[C]) idle(sl *idtable.Slot[idState[C]], n int64, hour int32, k int64, idle int64) bool {
	st := s.epoch.unpack(sl.Val.pace)
	if st.tat+idle >= n || !sl.Val.guard.idle(k) {
		return false
	}
	return !st.ring || s.rings[st.count].hour+24 <= hour
}

// forget drops the ring of the id of sl, if any, or writes its count of the
// current hour to the shard's sketch.
func (s *pacerShard[C]) forget(sl *idtable.Slot[idState[C]], hour int32) {
	if st := s.epoch.unpack(sl.Val.pace); st.ring {
		s.free = append(s.free, st.count)
	} else {
		s.hours.record(sl.Key, hour, st.hour, st.count)
	}
}

// rebuild drops the idle ids of a full table in place, then moves the
// others into a table half full if more than half of it is still used, or
// less than an eighth (to give memory back). In between, the table stays:
// with ids forgotten a second after they send, most of a table's ids are
// idle when it fills, and a table rebuilt at every fill would cost an
// allocation (or a mapping) each time.
func (s *pacerShard[C]) rebuild(n int64, hour int32, k int64, idle int64) {
	s.table.DeleteFunc(func(sl *idtable.Slot[idState[C]]) bool {
		if s.idle(sl, n, hour, k, idle) {
			s.forget(sl, hour)
			return true
		}
		return false
	})
	live, size := s.table.Len(), s.table.Size()
	half := max(minSlots, 2*(live+1)+3) &^ 3 // a multiple of a line's slots
	if half > size || 8*live < size && half < size {
		s.table.Resize(half)
	}
}

// give gives back one event charged at now (a hedge that was not sent),
// counting it as answered now in its guards, on the safe side.
func (p *pacer) give(e *event, now time.Time) {
	if p == nil {
		return
	}
	hd, hu := e.hashes()
	if p.narrow != nil {
		p.narrow.give(p, hd, hu, now.UnixNano())
	} else {
		p.wide.give(p, hd, hu, now.UnixNano())
	}
}

func (t *paceTables[C]) give(p *pacer, hd, hu uint64, n int64) {
	hour, k := int32(n/int64(time.Hour)), n/p.bucket
	for _, h := range [2]uint64{hd, hu} {
		if h == 0 {
			continue
		}
		s := t.shard(h)
		s.mu.Lock()
		s.refund(p, h, n, hour, k, true)
		s.mu.Unlock()
	}
}

// refund gives back one event charged to the id whose hash is h, at n (in
// hour and the guard's bucket k), taking it out of flight in its guard and
// counting it as answered then when answered is true. It runs under s.mu.
func (s *pacerShard[C]) refund(p *pacer, h uint64, n int64, hour int32, k int64, answered bool) {
	sl := s.find(p, h, idtable.NoHint, n, hour, k, false)
	if sl == nil {
		return
	}
	st := s.epoch.unpack(sl.Val.pace)
	st.tat -= p.interval
	if st.ring {
		if r := &s.rings[st.count]; r.hour == hour && r.counts[hour%24] > 0 {
			r.counts[hour%24]--
			r.sum--
		}
	} else if st.hour == hour && st.count > 0 {
		st.count--
	}
	sl.Val.pace = s.epoch.pack(st)
	if p.limit > 0 {
		sl.Val.guard.finish(k, answered)
	}
}

// used24 returns the events counted for the id whose state is st in the 24
// hours ending with hour.
func (s *pacerShard[C]) used24(st *state, hour int32) uint32 {
	if !st.ring {
		if st.hour == hour {
			return st.count
		}
		return 0
	}
	r := &s.rings[st.count]
	r.advance(hour)
	return r.sum
}

// add counts one event in hour for the id whose state is st; over track
// events in an hour, the id gets a daily ring, whose earlier hours are
// assumed at track (while the shard has rings to give: maxRings).
func (s *pacerShard[C]) add(st *state, hour int32, track uint32) {
	if st.ring {
		r := &s.rings[st.count]
		r.advance(hour)
		r.counts[hour%24]++
		r.sum++
		return
	}
	if st.hour != hour {
		st.hour, st.count = hour, 0
	}
	st.count++
	if st.count <= track || len(s.free) == 0 && len(s.rings) == maxRings {
		return
	}
	r := dayRing{hour: hour, sum: 23*track + st.count}
	for i := range r.counts {
		r.counts[i] = track
	}
	r.counts[hour%24] = st.count
	var at uint32
	if n := len(s.free); n > 0 {
		at, s.free = s.free[n-1], s.free[:n-1]
		s.rings[at] = r
	} else {
		at = uint32(len(s.rings))
		s.rings = append(s.rings, r)
	}
	st.ring, st.count = true, at
}

// advance clears the hours between the latest written and hour.
func (r *dayRing) advance(hour int32) {
	for h := r.hour + 1; h <= hour && h <= r.hour+24; h++ {
		r.sum -= r.counts[h%24]
		r.counts[h%24] = 0
	}
	if hour > r.hour {
		r.hour = hour
	}
}

// tracked returns the number of ids with state.
func (p *pacer) tracked() int {
	switch {
	case p == nil:
		return 0
	case p.narrow != nil:
		return p.narrow.tracked()
	default:
		return p.wide.tracked()
	}
}

func (t *paceTables[C]) tracked() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.table.Len()
		s.mu.Unlock()
	}
	return n
}

// has reports whether the id h has state.
func (p *pacer) has(h uint64) bool {
	if p.narrow != nil {
		return p.narrow.has(h)
	}
	return p.wide.has(h)
}

func (t *paceTables[C]) has(h uint64) bool {
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.table.Find(h)
	return ok
}

// forShards calls f with the index of each shard of mask, in order.
func forShards(mask uint64, f func(int)) {
	for m := mask; m != 0; m &= m - 1 {
		f(bits.TrailingZeros64(m))
	}
}
