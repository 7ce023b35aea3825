package amplitude

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// holds remembers the devices and users Amplitude throttled or found over
// their daily quota, and until when their events wait, across all in-flight
// batches, so that a batch does not send events of an id another batch was
// just refused for.
type holds struct {
	mu    sync.Mutex
	until map[idKey]hold
	n     atomic.Int64 // len(until), read without the lock on the hot path
}

type hold struct {
	until time.Time
	quota bool // over the daily quota (until the next hourly step)
}

func newHolds() *holds {
	return &holds{until: map[idKey]hold{}}
}

// sweepAbove is the number of holds above which hold forgets expired ones.
const sweepAbove = 1024

// hold makes the id keys wait until t (never shortening a longer hold).
func (h *holds) hold(keys []idKey, now, t time.Time, quota bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.until) > sweepAbove {
		for k, u := range h.until {
			if !u.until.After(now) {
				delete(h.until, k)
			}
		}
	}
	for _, k := range keys {
		if k.id == "" {
			continue
		}
		if prev := h.until[k]; t.After(prev.until) {
			k.id = strings.Clone(k.id) // do not retain the message
			h.until[k] = hold{until: t, quota: quota || prev.quota && prev.until.After(now)}
		}
	}
	h.n.Store(int64(len(h.until)))
}

// heldUntil returns the latest hold of any of keys that is still running at
// now, and whether it is a daily-quota hold. Expired holds are forgotten,
// which keeps the map as small as the set of currently held ids.
func (h *holds) heldUntil(keys [2]idKey, now time.Time) (until time.Time, quota, held bool) {
	if h.n.Load() == 0 {
		return time.Time{}, false, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		if k.id == "" {
			continue
		}
		t, ok := h.until[k]
		if !ok {
			continue
		}
		if !t.until.After(now) {
			delete(h.until, k)
			continue
		}
		quota = quota || t.quota
		if t.until.After(until) {
			until = t.until
		}
	}
	h.n.Store(int64(len(h.until)))
	return until, quota, !until.IsZero()
}

// snapshot returns the daily-quota holds running at now (for state_cache).
func (h *holds) snapshot(now time.Time) map[idKey]time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[idKey]time.Time{}
	for k, v := range h.until {
		if v.quota && v.until.After(now) {
			out[k] = v.until
		}
	}
	return out
}

// nextHourlyStep is when a daily quota Amplitude counts in hourly steps may
// next have room: the start of the next hour.
func nextHourlyStep(now time.Time) time.Time {
	return now.Truncate(time.Hour).Add(time.Hour)
}

// silencedSet remembers the devices Amplitude reported as silenced, so that
// their later events fail without being sent. It keeps at most
// maxSilenced devices (forgetting all when full: Amplitude repeats it).
type silencedSet struct {
	mu  sync.RWMutex
	ids map[string]struct{}
	n   atomic.Int64
}

const maxSilenced = 100_000

func (s *silencedSet) add(ids []string) {
	if len(ids) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil || len(s.ids)+len(ids) > maxSilenced {
		s.ids = map[string]struct{}{}
	}
	for _, id := range ids {
		s.ids[id] = struct{}{}
	}
	s.n.Store(int64(len(s.ids)))
}

func (s *silencedSet) has(device string) bool {
	if device == "" || s.n.Load() == 0 {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.ids[device]
	return ok
}

// waiters counts, per id, the events of all writes waiting for the id's
// budget, so that beyond wakeTogether an event waits for its turn instead
// of waking, with every other event of the id, at the one instant the pacer
// next has room (one event gets it; with hundreds waiting in as many
// writes, the others wake for nothing, 27 times a second). Ids are the
// pacer's hashes of the event's device_id, or of its user_id when it has
// none: a hot user with varied devices still wakes together, which costs
// CPU only.
type waiters struct {
	shards [64]waiterShard
}

type waiterShard struct {
	mu sync.Mutex
	n  map[uint64]int32
	// writes counts, per id, the writes holding a claim (see claim).
	writes map[uint64]int32
	// turns is, per id with deferred events, the turn (unix ns) given to
	// the latest of them (see deferTurn).
	turns map[uint64]int64
}

// maxTurns is how many ids' deferred turns a shard keeps before it forgets
// the past ones.
const maxTurns = 1024

// add adds d to the count of the id whose hash is h and returns the new
// count.
func (w *waiters) add(h uint64, d int32) int32 {
	s := &w.shards[h>>58]
	s.mu.Lock()
	defer s.mu.Unlock()
	return addCount(&s.n, h, d)
}

// deferTurn returns the turn (unix ns) of a deferred event of the id whose
// hash is h, at now: when the id's waiting events will have been sent at
// one per interval ns, or one interval after the turn of the id's previous
// deferred event if that is later. Deferred events then come back one by
// one at the id's rate, as its budget can take them, instead of all of them
// at every back-off (a hot device's backlog beyond the writes it may hold
// is redelivered about once, not once per back-off step). A turn is an
// estimate, as for waiting events: an event that comes back and finds no
// room waits, or is deferred again, behind the others.
func (w *waiters) deferTurn(h uint64, now, interval int64) int64 {
	s := &w.shards[h>>58]
	s.mu.Lock()
	defer s.mu.Unlock()
	turn := now + int64(s.n[h]+1)*interval
	if last, ok := s.turns[h]; ok && last+interval > turn {
		turn = last + interval
	}
	if len(s.turns) >= maxTurns {
		for id, last := range s.turns { // forget the turns that are past
			if last < now {
				delete(s.turns, id)
			}
		}
	}
	if s.turns == nil || len(s.turns) >= maxTurns {
		s.turns = map[uint64]int64{}
	}
	s.turns[h] = turn
	return turn
}

// claim counts one more write holding waiting events of the id whose hash is
// h, unless limit writes already do (false). Each write claims an id once,
// at its first event of the id that must wait, and releases it when it ends:
// so one hot id's backlog holds at most limit writes, and the others stay
// free for every other id (see pacing_id_share).
func (w *waiters) claim(h uint64, limit int32) bool {
	s := &w.shards[h>>58]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writes[h] >= limit {
		return false
	}
	addCount(&s.writes, h, 1)
	return true
}

// release gives back a write's claim on the id whose hash is h.
func (w *waiters) release(h uint64) {
	s := &w.shards[h>>58]
	s.mu.Lock()
	defer s.mu.Unlock()
	addCount(&s.writes, h, -1)
}

// addCount adds d to (*m)[h], making the map when it has none yet and
// deleting the key at zero or below, and returns the new count (0 then).
func addCount(m *map[uint64]int32, h uint64, d int32) int32 {
	if *m == nil {
		*m = map[uint64]int32{}
	}
	n := (*m)[h] + d
	if n <= 0 {
		delete(*m, h)
		return 0
	}
	(*m)[h] = n
	return n
}
