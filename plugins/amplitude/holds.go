package amplitude

import (
	"sync"
	"time"
)

// holds remembers the devices and users Amplitude throttled and until when
// their events wait, across all in-flight batches, so that a batch does not
// send events of an id another batch was just throttled for.
type holds struct {
	mu    sync.Mutex
	until map[string]time.Time // id key -> not before
}

func newHolds() *holds {
	return &holds{until: map[string]time.Time{}}
}

// sweepAbove is the number of holds above which hold forgets expired ones.
const sweepAbove = 1024

// hold makes the id keys wait until t (never shortening a longer hold).
func (h *holds) hold(keys []string, now, t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.until) > sweepAbove {
		for k, u := range h.until {
			if !u.After(now) {
				delete(h.until, k)
			}
		}
	}
	for _, k := range keys {
		if t.After(h.until[k]) {
			h.until[k] = t
		}
	}
}

// heldUntil returns the latest hold of any of keys that is still running at
// now. Expired holds are forgotten, which keeps the map as small as the set
// of currently throttled ids.
func (h *holds) heldUntil(keys []string, now time.Time) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var latest time.Time
	for _, k := range keys {
		t, ok := h.until[k]
		if !ok {
			continue
		}
		if !t.After(now) {
			delete(h.until, k)
			continue
		}
		if t.After(latest) {
			latest = t
		}
	}
	return latest, !latest.IsZero()
}
