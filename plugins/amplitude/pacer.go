package amplitude

import (
	"hash/maphash"
	"sync"
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
// any window when sends are delayed by up to jitterSlack (HTTP V2 with the
// default headroom 0.1: 27 events/s, bursts of 1.5, at most 28 events sent
// in any second, arrivals may bunch by 55 ms).
//
// The daily quota (500,000 events per rolling 24 hours, counted by Amplitude
// in hourly steps) is counted per id in the current hour; an id that sends
// more than quota/500 events (1000) in an hour gets a 24-hour ring of hourly
// counts (earlier hours assumed at that threshold, which over-counts by at
// most 23/500 of the quota, 4.6%), so that only busy ids pay for it.
//
// Memory: a 64-bit hash and 24 bytes of state per id in a map entry, whatever
// the id's length (measured in BenchmarkPacerMemory), and 100 bytes more for
// an id with a daily ring. Ids idle for longer than the
// window and the hour are forgotten by a sweep once the table doubles.
type pacer struct {
	interval  int64 // ns per event (1/rate)
	tolerance int64 // ns: how far ahead of now the arrival time may run
	daily     uint32
	track     uint32 // hourly count above which an id gets a daily ring
	seed      maphash.Seed
	shards    [pacerShards]pacerShard
}

const pacerShards = 64

type pacerShard struct {
	mu    sync.Mutex
	ids   map[uint64]budget // by idHash
	sweep int               // size at which idle ids are next swept
	_     [40]byte
}

// budget is one id's state.
type budget struct {
	tat   int64  // theoretical arrival time, unix ns
	hour  int32  // the hour (unix hours) count is for
	count uint32 // events charged in hour
	ring  *dayRing
}

// dayRing holds the hourly counts of the last 24 hours of a busy id.
type dayRing struct {
	counts [24]uint32
	hour   int32 // the latest hour written
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
		p.shards[i].ids = map[uint64]budget{}
		p.shards[i].sweep = 1024
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
	var dev, usr int64
	if e.deviceID != "" {
		dev = p.charge(deviceKey(e.deviceID), n)
		if dev > 0 {
			return time.Unix(0, dev), false
		}
	}
	if e.userID != "" {
		if usr = p.charge(userKey(e.userID), n); usr > 0 {
			if e.deviceID != "" {
				p.refund(deviceKey(e.deviceID), n)
			}
			return time.Unix(0, usr), false
		}
	}
	return time.Time{}, true
}

// charge takes one event from k's budget at n (unix ns) and returns 0, or
// returns the time (unix ns) it may next take one, taking nothing.
func (p *pacer) charge(k idKey, n int64) int64 {
	h := p.idHash(k)
	s := p.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.ids[h]
	if !ok && len(s.ids) >= s.sweep {
		s.sweepIdle(n, p.interval+p.tolerance)
	}
	tat := max(b.tat, n)
	if tat-n > p.tolerance {
		return tat - p.tolerance
	}
	hour := int32(n / int64(time.Hour))
	if p.daily > 0 {
		if used := b.used(hour); used >= p.daily {
			return int64(hour+1) * int64(time.Hour)
		}
		b.add(hour, p.track)
	}
	b.tat = tat + p.interval
	s.ids[h] = b
	return 0
}

// give gives back one event taken at now (a hedge that was not sent).
func (p *pacer) give(e *event, now time.Time) {
	if p == nil {
		return
	}
	n := now.UnixNano()
	if e.deviceID != "" {
		p.refund(deviceKey(e.deviceID), n)
	}
	if e.userID != "" {
		p.refund(userKey(e.userID), n)
	}
}

// refund gives back one event charged at n (the event's other id had no
// budget).
func (p *pacer) refund(k idKey, n int64) {
	h := p.idHash(k)
	s := p.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.ids[h]
	if !ok {
		return
	}
	b.tat -= p.interval
	if hour := int32(n / int64(time.Hour)); b.hour == hour && b.count > 0 {
		b.count--
		if b.ring != nil && b.ring.hour == hour && b.ring.counts[hour%24] > 0 {
			b.ring.counts[hour%24]--
		}
	}
	s.ids[h] = b
}

// used returns the events counted in the 24 hours ending with hour.
func (b *budget) used(hour int32) uint32 {
	if b.ring == nil {
		if b.hour == hour {
			return b.count
		}
		return 0
	}
	b.ring.advance(hour)
	var sum uint32
	for _, c := range b.ring.counts {
		sum += c
	}
	return sum
}

// add counts one event in hour; over track events in an hour, the id gets
// a daily ring.
func (b *budget) add(hour int32, track uint32) {
	if b.hour != hour {
		b.hour, b.count = hour, 0
	}
	b.count++
	if b.ring == nil && b.count > track {
		b.ring = &dayRing{hour: hour}
		for i := range b.ring.counts {
			b.ring.counts[i] = track
		}
		b.ring.counts[hour%24] = b.count - 1
	}
	if b.ring != nil {
		b.ring.advance(hour)
		b.ring.counts[hour%24]++
	}
}

// advance clears the hours between the latest written and hour.
func (r *dayRing) advance(hour int32) {
	for h := r.hour + 1; h <= hour && h <= r.hour+24; h++ {
		r.counts[h%24] = 0
	}
	if hour > r.hour {
		r.hour = hour
	}
}

// sweepIdle forgets ids whose budget is full again and whose daily count is
// over, and sets the next sweep size.
func (s *pacerShard) sweepIdle(n, idle int64) {
	hour := int32(n / int64(time.Hour))
	for k, b := range s.ids {
		if b.tat+idle < n && b.ring == nil && b.hour != hour {
			delete(s.ids, k)
		}
	}
	s.sweep = max(1024, 2*len(s.ids))
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
		n += len(s.ids)
		s.mu.Unlock()
	}
	return n
}
