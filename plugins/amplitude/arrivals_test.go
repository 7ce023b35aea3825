package amplitude

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/idtable"
)

// guardSim drives one hot id (always an event waiting) through the pacer
// (when paced) and the guard for run, each request of one event arriving
// after a random delay (up to maxDelay, and now and then a long stall) and
// answered a little later. It returns the arrival times.
func guardSim(t *testing.T, seed uint64, paced bool, maxDelay time.Duration, run time.Duration) []time.Time {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 29))
	start := time.Unix(1_700_000_000, 0)
	g := newArrivalGuard(endpointHTTPV2)
	if paced {
		g = newPacer(endpointHTTPV2, 0.1)
	}
	e := &event{deviceID: "device", userID: "user"}
	type answer struct{ at time.Time }
	var pending []answer // sorted by at
	var arrived []time.Time
	now, next := start, start
	for now.Before(start.Add(run)) {
		for len(pending) > 0 && !pending[0].at.After(now) {
			g.answered([]*event{e}, pending[0].at)
			pending = pending[1:]
		}
		if !next.After(now) {
			if at, ok := g.take(e, now); !ok {
				next = at
			} else {
				delay := time.Duration(rng.Int64N(int64(maxDelay) + 1))
				if rng.IntN(20) == 0 {
					delay += time.Duration(rng.Int64N(int64(2 * time.Second)))
				}
				arrival := now.Add(delay)
				arrived = append(arrived, arrival)
				ans := answer{arrival.Add(time.Duration(rng.Int64N(int64(20*time.Millisecond) + 1)))}
				i, _ := slices.BinarySearchFunc(pending, ans, func(a, b answer) int { return a.at.Compare(b.at) })
				pending = slices.Insert(pending, i, ans)
				continue // the next event may go at the same instant
			}
		}
		// Wake at the next answer or when the pacer or the guard said.
		wake := next
		if len(pending) > 0 && pending[0].at.Before(wake) {
			wake = pending[0].at
		}
		if !wake.After(now) {
			wake = now.Add(time.Nanosecond)
		}
		now = wake
	}
	slices.SortFunc(arrived, time.Time.Compare)
	return arrived
}

// TestArrivalGuardHoldsWhateverTheDelays: however requests are delayed on
// their way (here up to 400 ms, and one in twenty stalled up to 2 s more),
// no window of Amplitude's length holds more than its limit of one id's
// events at arrival, with or without the pacer in front; and with short
// delays the guard costs little next to the pacer's own rate.
func TestArrivalGuardHoldsWhateverTheDelays(t *testing.T) {
	for _, tc := range []struct {
		paced    bool
		maxDelay time.Duration
		minRate  float64 // events/s the id must still reach
	}{
		{true, 400 * time.Millisecond, 15},
		{false, 400 * time.Millisecond, 15},
		{true, 5 * time.Millisecond, 25},
		{false, 5 * time.Millisecond, 25},
	} {
		for seed := range uint64(10) {
			t.Run(fmt.Sprintf("paced=%v/delay=%v/seed=%d", tc.paced, tc.maxDelay, seed), func(t *testing.T) {
				const run = 20 * time.Second
				arrived := guardSim(t, seed, tc.paced, tc.maxDelay, run)
				if got := maxInWindow(arrived, time.Second); got > 30 {
					t.Fatalf("%d events of one id arrived within one second, limit 30", got)
				}
				rate := float64(len(arrived)) / run.Seconds()
				t.Logf("%.1f events/s", rate)
				if rate < tc.minRate {
					t.Fatalf("%.1f events/s, want at least %v", rate, tc.minRate)
				}
			})
		}
	}
}

// TestPacerAloneBunchesWithDelays shows what the guard is for: the pacer
// alone, with the same delays, lets more than the limit arrive within one
// second.
func TestPacerAloneBunchesWithDelays(t *testing.T) {
	worst := 0
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 31))
		p := pacerOnly(endpointHTTPV2, 0.1)
		e := &event{deviceID: "device", userID: "user"}
		now := time.Unix(1_700_000_000, 0)
		var arrived []time.Time
		for range 600 {
			at, ok := p.take(e, now)
			if !ok {
				now = at
				continue
			}
			delay := time.Duration(rng.Int64N(int64(400*time.Millisecond) + 1))
			arrived = append(arrived, now.Add(delay))
		}
		slices.SortFunc(arrived, time.Time.Compare)
		worst = max(worst, maxInWindow(arrived, time.Second))
	}
	if worst <= 30 {
		t.Fatalf("the pacer alone kept every second within 30 events (worst %d): the guard's test proves nothing", worst)
	}
}

// TestArrivalGuardForgetsQuietIDs: an id with nothing in flight and nothing
// answered within the window is swept, and comes back with a full budget.
func TestArrivalGuardForgetsQuietIDs(t *testing.T) {
	g := newArrivalGuardWith(2, time.Second)
	now := time.Unix(1_700_000_000, 0)
	a := &event{deviceID: "device-a"}
	for range 2 {
		_, ok := g.take(a, now)
		require.True(t, ok, "within the limit")
	}
	at, ok := g.take(a, now)
	require.False(t, ok, "two in flight: the third waits")
	require.True(t, at.After(now), "asked to come back later")
	g.answered([]*event{a, a}, now)
	_, ok = g.take(a, now.Add(500*time.Millisecond))
	require.False(t, ok, "answered half a second ago: still in the window")
	_, ok = g.take(a, now.Add(1200*time.Millisecond))
	require.True(t, ok, "the answers left the window")
	g.answered([]*event{a}, now.Add(1200*time.Millisecond))

	// Enough other ids later, the quiet one is gone from its shard.
	later := now.Add(time.Hour)
	for i := range 20000 {
		e := &event{deviceID: fmt.Sprintf("other-%d", i)}
		_, ok := g.take(e, later)
		require.True(t, ok, "a fresh id")
		g.answered([]*event{e}, later)
	}
	assert.LessOrEqual(t, g.tracked(), 20000, "quiet ids swept")
	require.False(t, g.has(idHash(deviceKey("device-a"))), "device-a, quiet for an hour, was swept")
}

// TestArrivalGuardBoundedByActiveIDs: ids that each send once, one a
// millisecond for 100 s, leave at most the ids of the last window or so in
// the tables (about 1100 active at a time; each shard's table keeps up to
// 48 of its own before it is rebuilt without the quiet ones), not the 10^5
// seen.
func TestArrivalGuardBoundedByActiveIDs(t *testing.T) {
	g := newArrivalGuard(endpointHTTPV2)
	now := time.Unix(1_700_000_000, 0)
	one := make([]*event, 1)
	most := 0
	for i := range 100_000 {
		now = now.Add(time.Millisecond)
		one[0] = &event{deviceID: fmt.Sprint("device-", i)}
		_, ok := g.take(one[0], now)
		require.True(t, ok, "a fresh id")
		g.answered(one, now)
		if i%1000 == 0 {
			most = max(most, g.tracked())
		}
	}
	t.Logf("at most %d ids tracked", most)
	if most > 64*48+1100 {
		t.Fatalf("%d ids tracked, want those of about the last window", most)
	}
}

// TestArrivalGuardWideCounts: Batch's limit (30,000 events per 30 s) does
// not fit the bytes of HTTP V2's counts; the guard counts it in full.
func TestArrivalGuardWideCounts(t *testing.T) {
	g := newArrivalGuard(endpointBatch)
	require.EqualValues(t, 30_000, g.limit)
	now := time.Unix(1_700_000_001, 0) // at the start of a 3-second bucket
	e := &event{deviceID: "device", userID: "user"}
	for i := range 30_000 {
		_, ok := g.take(e, now)
		require.True(t, ok, "event %d within the limit", i)
		if i%2 == 0 {
			g.answered([]*event{e}, now)
		}
	}
	at, ok := g.take(e, now)
	require.False(t, ok, "30,000 in flight or answered: the next waits")
	require.Equal(t, now.Add(33*time.Second), at, "until the first answers' bucket leaves the window")
	g.answered(slices.Repeat([]*event{e}, 15_000), now.Add(time.Second)) // the same bucket
	_, ok = g.take(e, now.Add(32*time.Second))
	require.False(t, ok, "all answered within the window")
	_, ok = g.take(e, now.Add(33*time.Second))
	require.True(t, ok, "the answers' bucket left the window")
}

// BenchmarkArrivalGuardMemory reports the memory the guard keeps per id
// answered within the last window (2·10^5 ids): heap and tables outside it
// (idtable.Mapped), measured once whatever -benchtime; the loop admits and
// answers one of them a second later.
func BenchmarkArrivalGuardMemory(b *testing.B) {
	const ids = 200_000
	events := make([]*event, ids)
	for i := range events {
		events[i] = &event{deviceID: fmt.Sprintf("device-%07d", i)}
	}
	now := time.Unix(1_700_000_000, 0)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	mapped := idtable.Mapped()
	g := newArrivalGuard(endpointHTTPV2)
	for _, e := range events {
		g.take(e, now)
	}
	g.answered(events, now)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	off := float64(idtable.Mapped() - mapped)
	perID := (heap + off) / ids
	for i := 0; b.Loop(); i++ {
		now = now.Add(time.Millisecond)
		e := events[i%ids]
		g.take(e, now)
		g.answered([]*event{e}, now)
	}
	b.ReportAllocs()
	b.ReportMetric(perID, "bytes/id") // after b.Loop, which clears reported metrics
	b.ReportMetric(heap/ids, "heap-bytes/id")
}

// newArrivalGuard returns the arrival guard of an endpoint's limit, without
// its budgets.
func newArrivalGuard(endpoint string) *pacer {
	b := endpointBudgets[endpoint]
	return newArrivalGuardWith(uint32(b.eps*b.window.Seconds()), b.window)
}

// newArrivalGuardWith returns a pacer that is only an arrival guard of limit
// events per window.
func newArrivalGuardWith(limit uint32, window time.Duration) *pacer {
	return newPacerWith(0, window, 0, 0, limit)
}

// BenchmarkArrivalGuard is the guard's cost on the send path: one admission
// and one answer per event (its device and its user), with 10^3 and 10^6
// ids of each kind active (every id within the window: the worst case for
// its table), hot (16 ids again and again) and cold (every id in turn),
// beside BenchmarkPacer's figures for the same shapes.
func BenchmarkArrivalGuard(b *testing.B) {
	for _, ids := range []int{1_000, 1_000_000} {
		events := make([]*event, ids)
		for i := range events {
			events[i] = &event{deviceID: fmt.Sprintf("device-%07d", i), userID: fmt.Sprintf("user-%07d", i)}
			events[i].hd, events[i].hu = events[i].hashes() // as the request builder does
		}
		cold := make([]int, ids)
		for i := range cold {
			cold[i] = i
		}
		hot := rand.New(rand.NewPCG(1, 2)).Perm(ids)[:16]
		for _, access := range []struct {
			name  string
			order []int
		}{{"hot", hot}, {"cold", cold}} {
			b.Run(fmt.Sprintf("ids=%d/%s", ids, access.name), func(b *testing.B) {
				now := time.Unix(1_700_000_000, 0)
				g := newArrivalGuard(endpointHTTPV2)
				g.answered(nil, now)
				for _, e := range events {
					g.take(e, now)
				}
				g.answered(events, now)
				one := make([]*event, 1)
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					now = now.Add(time.Microsecond)
					one[0] = events[access.order[i%len(access.order)]]
					if _, ok := g.take(one[0], now); !ok {
						now = now.Add(time.Second) // the id's window is full: move on
						continue
					}
					g.answered(one, now)
				}
			})
		}
	}
}
