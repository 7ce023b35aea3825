package profile

import (
	"sync"
	"time"
)

// budget is the client-side share of Amplitude's organisation limit: a
// generic cell rate algorithm that lets at most perMinute calls start in any
// 60 seconds, with bursts of at most burst calls, and that stops every call
// during a pause (after a 429 or a 401). Time comes from the caller, so that
// tests drive it with a fake clock.
type budget struct {
	mu       sync.Mutex
	interval time.Duration // one call every interval once the burst is spent
	tol      time.Duration // burst tolerance: (burst-1) intervals
	tat      time.Time     // theoretical arrival time of the next call
	pausedTo time.Time
}

// newBudget returns a budget of perMinute calls in any minute, burst of them
// at once (1 <= burst < perMinute). The steady rate is perMinute-burst per
// minute, so that a full burst followed by the steady rate still fits any
// 60-second window: burst + (perMinute-burst) = perMinute.
func newBudget(perMinute, burst int) *budget {
	iv := time.Minute / time.Duration(perMinute-burst)
	return &budget{interval: iv, tol: time.Duration(burst-1) * iv}
}

// reserve takes one call if it can start no later than by, keeping keep
// calls of the burst unused, and returns when it may start (now or later);
// ok is false (nothing taken) when it cannot start by then.
func (b *budget) reserve(now, by time.Time, keep int) (at time.Time, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tat := b.tat
	if tat.Before(now) {
		tat = now
	}
	// The call may start once tat - tol is reached; keeping calls back moves
	// that point later by one interval each.
	at = tat.Add(-b.tol + time.Duration(keep)*b.interval)
	if at.Before(now) {
		at = now
	}
	if at.Before(b.pausedTo) {
		at = b.pausedTo
	}
	if at.After(by) {
		return at, false
	}
	b.tat = tat.Add(b.interval)
	if b.tat.Before(at.Add(b.interval)) {
		b.tat = at.Add(b.interval)
	}
	return at, true
}

// pause stops every call until until (a later pause wins).
func (b *budget) pause(until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if until.After(b.pausedTo) {
		b.pausedTo = until
	}
}

// paused reports whether calls are paused at now.
func (b *budget) paused(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return now.Before(b.pausedTo)
}
