package amplitude

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// pacer keeps, per device_id and per user_id, the budget Amplitude enforces
// for the chosen endpoint, and is charged for every event just before it is
// sent (first sends, retries, re-sends after a 413 split or a bisection, and
// hedges), so that what Amplitude counts at arrival stays within its limits.
//
// The rate is a GCRA (generic cell rate algorithm, as in RFC 2698 meters): one
// theoretical arrival time per id, advanced by 1/rate for each event; an event
// conforms while that time is no more than burst events ahead of now. With
// rate = limit×(1-headroom) and burst = limit×window×headroom/2 (at least
// one event), no window of the endpoint's length holds more than
// limit×window×(1-headroom/2) events as sent: the other half of the headroom
// is slack for arrivals that bunch on the network, so that Amplitude, which
// counts where requests arrive, still sees at most limit×window events in
// any window when sends are delayed by up to (limit×window×headroom -
// burst)/rate (HTTP V2 with the default headroom 0.1: 27 events/s, bursts
// of 1.5, at most 28 events sent in any second, arrivals may bunch by
// 55 ms; TestPacerBurstSlack).
//
// The daily quota (500,000 events per rolling 24 hours, counted by Amplitude
// in hourly steps) is counted per id in the current hour; an id that sends
// more than quota/500 events (1000) in an hour gets a 24-hour ring of hourly
// counts (earlier hours assumed at that threshold, which over-counts by at
// most 23/500 of the quota, 4.6%), so that only busy ids pay for it.
//
// The table: per shard (64, by the hash's top bits, each with its own lock),
// an open-addressing table with linear probing of 24-byte slots keyed by a
// seeded 64-bit hash of the id (ids themselves are not stored: no string
// copy, no pointer for the collector to scan), holding the theoretical
// arrival time as int64 nanoseconds and the hour's count. Ids whose budget
// is full again and whose hour is over are idle: a lookup that passes one
// reuses its slot, and a table at 3/4 load is rebuilt without them (at half
// load, so it also shrinks). A charge is one hash and, mostly, one cache
// line; it allocates nothing.
//
// Memory: 24 bytes per slot at a load between 3/8 and 3/4, so 32 to 64 bytes
// per tracked id whatever the id's length (50 at 10^6 ids, measured by
// BenchmarkPacerMemory; docs/amplitude-delivery.md), and 104 bytes more for
// an id with a daily ring (kept in a slice of its shard, reused once the id
// is forgotten).
type pacer struct {
	interval  int64 // ns per event (1/rate)
	tolerance int64 // ns: how far ahead of now the arrival time may run
	daily     uint32
	track     uint32 // hourly count above which an id gets a daily ring
	seed      maphash.Seed
	shards    [pacerShards]pacerShard
}

const (
	pacerShards = 64
	// minSlots is the smallest table of a shard (a power of two).
	minSlots = 64
	// ringHour, as a slot's hour, says that the id's hourly counts are in
	// its shard's rings, at the index in the slot's count.
	ringHour = math.MinInt32
)

type pacerShard struct {
	mu    sync.Mutex
	slots []slot // len a power of two
	// view is slots, for touch, which reads it without the lock.
	view  atomic.Pointer[[]slot]
	used  int // slots with a key
	rings []dayRing
	free  []uint32 // indexes of unused rings
}

// slot is one id's state; key 0 is a free slot.
type slot struct {
	key   uint64 // the id's hash (never 0)
	tat   int64  // theoretical arrival time, unix ns
	hour  int32  // the hour (unix hours) count is for, or ringHour
	count uint32 // events charged in hour, or the index of the id's ring
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

// newPacer returns the pacer of an endpoint with headroom in [0, 1); nil
// when pacing is off.
func newPacer(endpoint string, headroom float64) *pacer {
	b := endpointBudgets[endpoint]
	return newPacerWith(b.eps, b.window, b.daily, headroom)
}

func newPacerWith(eps float64, window time.Duration, daily uint32, headroom float64) *pacer {
	rate := eps * (1 - headroom)
	burst := max(1, eps*window.Seconds()*headroom/2)
	p := &pacer{
		interval: int64(float64(time.Second) / rate),
		daily:    daily,
		track:    max(1, daily/500),
		seed:     maphash.MakeSeed(),
	}
	p.tolerance = int64((burst - 1) * float64(p.interval))
	for i := range p.shards {
		p.shards[i].setSlots(make([]slot, minSlots))
	}
	return p
}

// idHash is the 64-bit hash that stands for an id in the table: ids are not
// stored, so the table holds no pointers for the collector to scan and no
// string to chase on a lookup. Two ids share a budget only if their seeded
// hashes collide (about 1 in 2^64 per pair), which at worst paces both
// together.
func (p *pacer) idHash(k idKey) uint64 {
	h := maphash.String(p.seed, k.id)
	if k.user {
		h = ^h*0x9e3779b97f4a7c15 + 1
	}
	if h == 0 { // 0 marks a free slot
		h = 1
	}
	return h
}

func (p *pacer) shard(h uint64) *pacerShard {
	return &p.shards[h>>58] // the top 6 bits: pacerShards = 64
}

// take charges one event to its ids' budgets at now and returns true, or
// charges nothing and returns when it may next be sent. A nil pacer lets
// everything through.
func (p *pacer) take(e *event, now time.Time) (time.Time, bool) {
	if p == nil {
		return time.Time{}, true
	}
	n := now.UnixNano()
	var hd, hu uint64
	// Both slots are touched before either is locked, so that the two
	// cache misses of a table larger than the caches overlap (a lock is a
	// barrier that would otherwise wait for the first).
	if e.deviceID != "" {
		hd = p.idHash(deviceKey(e.deviceID))
		p.shard(hd).touch(hd)
	}
	if e.userID != "" {
		hu = p.idHash(userKey(e.userID))
		p.shard(hu).touch(hu)
	}
	if hd != 0 {
		if dev := p.charge(hd, n); dev > 0 {
			return time.Unix(0, dev), false
		}
	}
	if hu != 0 {
		if usr := p.charge(hu, n); usr > 0 {
			if hd != 0 {
				p.refund(hd, n)
			}
			return time.Unix(0, usr), false
		}
	}
	return time.Time{}, true
}

// touch loads the first slot of h's probe without the lock (atomically: the
// key is the one field written atomically), to bring it into the cache.
func (s *pacerShard) touch(h uint64) {
	if t := s.view.Load(); t != nil {
		_ = atomic.LoadUint64(&(*t)[h&uint64(len(*t)-1)].key)
	}
}

// charge takes one event from the budget of the id whose hash is h at n
// (unix ns) and returns 0, or returns the time (unix ns) it may next take
// one, taking nothing.
func (p *pacer) charge(h uint64, n int64) int64 {
	s := p.shard(h)
	hour := int32(n / int64(time.Hour))
	s.mu.Lock()
	sl := s.find(h, n, hour, p.interval+p.tolerance, true)
	tat := max(sl.tat, n)
	if tat-n > p.tolerance {
		s.mu.Unlock()
		return tat - p.tolerance
	}
	if p.daily > 0 {
		if used := s.used24(sl, hour); used >= p.daily {
			s.mu.Unlock()
			return int64(hour+1) * int64(time.Hour)
		}
		s.add(sl, hour, p.track)
	}
	sl.tat = tat + p.interval
	s.mu.Unlock()
	return 0
}

// find returns k's slot (h its hash) at n, or with insert a fresh one,
// reusing the first idle slot on the way or rebuilding a full table; nil
// when absent and not inserted. idle is how long after its arrival time an
// id's budget is full again. It runs under s.mu.
func (s *pacerShard) find(h uint64, n int64, hour int32, idle int64, insert bool) *slot {
	mask := uint64(len(s.slots) - 1)
	reuse := -1
	i := h & mask
	for {
		sl := &s.slots[i]
		if sl.key == h {
			return sl
		}
		if sl.key == 0 {
			break
		}
		if reuse < 0 && s.idle(sl, n, hour, idle) {
			reuse = int(i)
		}
		i = (i + 1) & mask
	}
	if !insert {
		return nil
	}
	if reuse >= 0 {
		sl := &s.slots[reuse]
		s.forget(sl)
		sl.tat, sl.hour, sl.count = 0, 0, 0
		atomic.StoreUint64(&sl.key, h)
		return sl
	}
	if 4*(s.used+1) > 3*len(s.slots) {
		s.rebuild(n, hour, idle)
		return s.find(h, n, hour, idle, true)
	}
	s.used++
	sl := &s.slots[i]
	atomic.StoreUint64(&sl.key, h)
	return sl
}

// idle reports whether an id's state may be forgotten at n: its budget is
// full again and nothing is counted in the current hour, or in the last 24
// hours for an id with a ring.
func (s *pacerShard) idle(sl *slot, n int64, hour int32, idle int64) bool {
	if sl.tat+idle >= n {
		return false
	}
	if sl.hour == ringHour {
		return s.rings[sl.count].hour+24 <= hour
	}
	return sl.hour != hour
}

// forget drops the ring of the id in sl, if any.
func (s *pacerShard) forget(sl *slot) {
	if sl.hour == ringHour {
		s.free = append(s.free, sl.count)
	}
}

// rebuild moves the ids that are not idle into a table at most half full.
// The old table is left as it is (touch may still read it).
func (s *pacerShard) rebuild(n int64, hour int32, idle int64) {
	live := 0
	for i := range s.slots {
		if sl := &s.slots[i]; sl.key != 0 && !s.idle(sl, n, hour, idle) {
			live++
		}
	}
	size := minSlots
	for size < 2*(live+1) {
		size *= 2
	}
	old, slots := s.slots, make([]slot, size)
	s.used = live
	mask := uint64(size - 1)
	for i := range old {
		sl := &old[i]
		if sl.key == 0 {
			continue
		}
		if s.idle(sl, n, hour, idle) {
			s.forget(sl)
			continue
		}
		j := sl.key & mask
		for slots[j].key != 0 {
			j = (j + 1) & mask
		}
		slots[j] = *sl
	}
	s.setSlots(slots)
}

// setSlots replaces the table, once it is filled.
func (s *pacerShard) setSlots(t []slot) {
	s.slots = t
	s.view.Store(&t)
}

// give gives back one event taken at now (a hedge that was not sent).
func (p *pacer) give(e *event, now time.Time) {
	if p == nil {
		return
	}
	n := now.UnixNano()
	if e.deviceID != "" {
		p.refund(p.idHash(deviceKey(e.deviceID)), n)
	}
	if e.userID != "" {
		p.refund(p.idHash(userKey(e.userID)), n)
	}
}

// refund gives back one event charged at n to the id whose hash is h (the
// event's other id had no budget).
func (p *pacer) refund(h uint64, n int64) {
	s := p.shard(h)
	hour := int32(n / int64(time.Hour))
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.find(h, n, hour, p.interval+p.tolerance, false)
	if sl == nil {
		return
	}
	sl.tat -= p.interval
	if sl.hour == ringHour {
		if r := &s.rings[sl.count]; r.hour == hour && r.counts[hour%24] > 0 {
			r.counts[hour%24]--
			r.sum--
		}
	} else if sl.hour == hour && sl.count > 0 {
		sl.count--
	}
}

// used24 returns the events counted for sl in the 24 hours ending with
// hour.
func (s *pacerShard) used24(sl *slot, hour int32) uint32 {
	if sl.hour != ringHour {
		if sl.hour == hour {
			return sl.count
		}
		return 0
	}
	r := &s.rings[sl.count]
	r.advance(hour)
	return r.sum
}

// add counts one event for sl in hour; over track events in an hour, the id
// gets a daily ring, whose earlier hours are assumed at track.
func (s *pacerShard) add(sl *slot, hour int32, track uint32) {
	if sl.hour == ringHour {
		r := &s.rings[sl.count]
		r.advance(hour)
		r.counts[hour%24]++
		r.sum++
		return
	}
	if sl.hour != hour {
		sl.hour, sl.count = hour, 0
	}
	sl.count++
	if sl.count <= track {
		return
	}
	r := dayRing{hour: hour, sum: 23*track + sl.count}
	for i := range r.counts {
		r.counts[i] = track
	}
	r.counts[hour%24] = sl.count
	var at uint32
	if n := len(s.free); n > 0 {
		at, s.free = s.free[n-1], s.free[:n-1]
		s.rings[at] = r
	} else {
		at = uint32(len(s.rings))
		s.rings = append(s.rings, r)
	}
	sl.hour, sl.count = ringHour, at
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
	if p == nil {
		return 0
	}
	n := 0
	for i := range p.shards {
		s := &p.shards[i]
		s.mu.Lock()
		n += s.used
		s.mu.Unlock()
	}
	return n
}
