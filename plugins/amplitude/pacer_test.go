package amplitude

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/idtable"
)

// arrivals returns the most events that fell in any window of length w.
func maxInWindow(times []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range times {
		for times[i].Sub(times[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// TestPacerKeepsAmplitudeLimits drives the pacer on the fake clock as fast as
// it lets events through and checks the strict limit of each endpoint in
// every window, the rate it reaches, and that ids are independent.
func TestPacerKeepsAmplitudeLimits(t *testing.T) {
	cases := []struct {
		endpoint string
		headroom float64
		window   time.Duration
		limit    int // events per window
		minRate  float64
		run      time.Duration
	}{
		{endpointHTTPV2, 0.1, time.Second, 30, 26.5, 20 * time.Second},
		{endpointHTTPV2, 0, time.Second, 30, 29, 20 * time.Second},
		{endpointBatch, 0.1, 30 * time.Second, 30_000, 890, 2 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s headroom %v", tc.endpoint, tc.headroom), func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1_700_000_000, 0))
			p := pacerOnly(tc.endpoint, tc.headroom)
			hot := &event{deviceID: "hot-device", userID: "hot-user"}
			other := &event{deviceID: "other-device"}
			var sent []time.Time
			end := clk.Now().Add(tc.run)
			checked := false
			for clk.Now().Before(end) {
				if _, ok := p.take(hot, clk.Now()); ok {
					sent = append(sent, clk.Now())
					continue
				}
				if _, ok := p.take(other, clk.Now()); !checked && !ok {
					t.Fatal("an idle id was refused because another id is busy")
				}
				checked = true
				clk.Advance(time.Millisecond)
			}
			if got := maxInWindow(sent, tc.window); got > tc.limit {
				t.Fatalf("%d events in one %v window, limit %d", got, tc.window, tc.limit)
			}
			if rate := float64(len(sent)) / tc.run.Seconds(); rate < tc.minRate {
				t.Fatalf("rate %.1f/s, want at least %.1f", rate, tc.minRate)
			}
		})
	}
}

// TestPacerNextTime: a refused event is told when it may go, and it may.
func TestPacerNextTime(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	p := pacerOnly(endpointHTTPV2, 0.1)
	e := &event{deviceID: "d1"}
	for {
		at, ok := p.take(e, clk.Now())
		if ok {
			continue
		}
		if !at.After(clk.Now()) {
			t.Fatalf("refused until %v, not after now %v", at, clk.Now())
		}
		clk.Set(at)
		if _, ok := p.take(e, clk.Now()); !ok {
			t.Fatal("refused at the time it was given")
		}
		return
	}
}

// TestPacerBudgetRate: the rate and burst of each endpoint and headroom,
// and the pacer built from them: an id may send two events at once where
// there is headroom, never more per window than limit×(1-headroom/2), and
// the full rate one at a time without headroom (whose GCRA lets one event
// more than the limit into a closed window: it keeps no slack at all).
func TestPacerBudgetRate(t *testing.T) {
	for _, tc := range []struct {
		endpoint    string
		headroom    float64
		rate, burst float64
	}{
		{endpointHTTPV2, 0.1, 26.5, 2},   // 1.5 raised to 2, the rate lowered to keep 28.5
		{endpointHTTPV2, 0.05, 27.25, 2}, // 0.75 raised to 2
		{endpointHTTPV2, 0.2, 24, 3},     // the formula's burst is already over 2
		{endpointHTTPV2, 0, 30, 1},       // no headroom: the limit, one at a time
		{endpointHTTPV2, 0.5, 15, 7.5},   // the formula's burst is over 2
		{endpointBatch, 0.1, 900, 1500},  // the formula's
		{endpointBatch, 0.01, 990, 150},  // the formula's
	} {
		t.Run(fmt.Sprintf("%s/%v", tc.endpoint, tc.headroom), func(t *testing.T) {
			b := endpointBudgets[tc.endpoint]
			rate, burst := budgetRate(b.eps, b.window, tc.headroom)
			if math.Abs(rate-tc.rate) > 1e-9 || burst != tc.burst {
				t.Fatalf("rate %v, burst %v; want %v, %v", rate, burst, tc.rate, tc.burst)
			}
			limit := b.eps * b.window.Seconds()
			if bound := rate*b.window.Seconds() + burst; tc.headroom > 0 && bound > limit*(1-tc.headroom/2)+1e-9 {
				t.Fatalf("%v events a window as sent, over %v", bound, limit*(1-tc.headroom/2))
			}
			if p := pacerOnly(tc.endpoint, tc.headroom); burstOf(p) != int(burst) {
				t.Fatalf("the pacer lets %d events of a fresh id through at once, want %d", burstOf(p), int(burst))
			}
		})
	}
}

// burstOf is how many events of one fresh id the pacer lets through at one
// instant.
func burstOf(p *pacer) int { return int(p.tolerance/p.interval) + 1 }

// TestPacerUserRefundsDevice: an event whose user has no budget charges
// nothing to its device.
func TestPacerUserRefundsDevice(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	p := newPacerWith(30, time.Second, 0, 0.4, 0) // a burst of several events
	burst := burstOf(p)
	if burst < 2 {
		t.Fatalf("burst %d: the test needs a burst of at least 2", burst)
	}
	for i := range burst {
		if _, ok := p.take(&event{deviceID: fmt.Sprint("dev-", i), userID: "busy-user"}, now); !ok {
			t.Fatalf("event %d refused", i)
		}
	}
	if _, ok := p.take(&event{deviceID: "dev-x", userID: "busy-user"}, now); ok {
		t.Fatal("the busy user's event beyond its burst went through")
	}
	for range burst { // dev-x's whole burst is still there
		if _, ok := p.take(&event{deviceID: "dev-x"}, now); !ok {
			t.Fatal("dev-x was charged for an event that was not sent")
		}
	}
	if _, ok := p.take(&event{deviceID: "dev-x"}, now); ok {
		t.Fatal("dev-x went beyond its burst")
	}
}

// TestPacerBurstSlack is the property that leaves Amplitude slack: for
// random arrival patterns (clumps of events at random gaps, offered faster
// than the limit, each refused event retried at the time the pacer gives),
// no window of the endpoint's length holds more than
// limit×window×(1-headroom/2) events as sent, and none more than the limit
// where they arrive, when each send is delayed by a random share of the
// jitter the other half of the headroom absorbs; the rate still reaches 85%
// of the limit (with the default headroom, 0.1).
func TestPacerBurstSlack(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		headroom float64
		run      time.Duration
	}{
		{endpointHTTPV2, 0.1, 30 * time.Second},
		{endpointHTTPV2, 0.2, 30 * time.Second},
		{endpointHTTPV2, 0.05, 30 * time.Second},
		{endpointBatch, 0.1, 3 * time.Minute},
	} {
		b := endpointBudgets[tc.endpoint]
		limit := b.eps * b.window.Seconds() // events per window
		rate, burst := budgetRate(b.eps, b.window, tc.headroom)
		// Sends delayed by up to jitter still fit limit in every window:
		// (window+jitter)×rate + burst = limit.
		jitter := time.Duration(((limit-burst)/rate - b.window.Seconds()) * float64(time.Second))
		for seed := range int64(20) {
			t.Run(fmt.Sprintf("%s/headroom=%v/seed=%d", tc.endpoint, tc.headroom, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(seed), 13))
				clk := clock.NewFake(time.Unix(1_700_000_000, 0))
				start := clk.Now()
				p := pacerOnly(tc.endpoint, tc.headroom)
				// Arrivals: clumps of 1..3×burst events at exponential gaps,
				// twice the limit on average.
				var arrivals []time.Time
				for at := start; at.Before(start.Add(tc.run)); {
					n := 1 + rng.IntN(int(3*burst))
					for range n {
						arrivals = append(arrivals, at)
					}
					mean := float64(n) / (2 * b.eps)
					at = at.Add(time.Duration(rng.ExpFloat64() * mean * float64(time.Second)))
				}
				e := &event{deviceID: "device", userID: "user"}
				var sent []time.Time
				next := start // when the head of the queue may go
				for i := 0; i < len(arrivals) && clk.Now().Before(start.Add(tc.run)); {
					clk.Set(later(arrivals[i], next))
					at, ok := p.take(e, clk.Now())
					if !ok {
						next = at
						continue
					}
					sent = append(sent, clk.Now())
					i++
				}
				if got := maxInWindow(sent, b.window); float64(got) > limit*(1-tc.headroom/2) {
					t.Fatalf("%d events sent in one %v window, want at most %.1f (limit %.0f less half the headroom)", got, b.window, limit*(1-tc.headroom/2), limit)
				}
				arrived := make([]time.Time, len(sent))
				for i, s := range sent {
					arrived[i] = s.Add(time.Duration(rng.Int64N(int64(jitter) + 1)))
				}
				slices.SortFunc(arrived, time.Time.Compare)
				if got := maxInWindow(arrived, b.window); float64(got) > limit {
					t.Fatalf("%d events arrived in one %v window with up to %v jitter, limit %.0f", got, b.window, jitter, limit)
				}
				// At least 85% of the limit (the default headroom keeps 10%),
				// and 95% of what the headroom leaves.
				want := min(0.85, 0.95*(1-tc.headroom)) * b.eps
				if r := float64(len(sent)) / tc.run.Seconds(); r < want {
					t.Fatalf("rate %.1f/s, want at least %.1f of the limit %.0f", r, want, b.eps)
				}
			})
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TestPacerDailyQuota: an id stops at its daily quota and resumes at the
// hourly step that drops the hour 24 hours back.
func TestPacerDailyQuota(t *testing.T) {
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	p := newPacerWith(1e9, time.Second, 2500, 0, 0) // rate no object; quota 2500/24 h
	e := &event{deviceID: "busy"}
	n := 0
	for ; n < 3000; n++ {
		if _, ok := p.take(e, clk.Now()); !ok {
			break
		}
		clk.Advance(time.Millisecond)
	}
	if track := 2500 / 500; n > 2500 || n < 2500-23*track {
		t.Fatalf("%d events went in the first hour, want the quota 2500 less at most %d", n, 23*track)
	}
	at, ok := p.take(e, clk.Now())
	if ok || !at.Equal(start.Add(time.Hour)) {
		t.Fatalf("over quota: ok %v until %v, want the next hourly step", ok, at)
	}
	// The count of 10:00 stays in the rolling 24 hours until 10:00 the
	// next day (earlier hours, before tracking, are counted at
	// the tracking threshold, so some room opens at each step).
	clk.Set(start.Add(24 * time.Hour))
	if _, ok := p.take(e, clk.Now()); !ok {
		t.Fatal("still refused 24 hours later")
	}
}

// TestPacerForgetsIdleIDs: the table does not grow with ids seen once long
// ago.
func TestPacerForgetsIdleIDs(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	p := pacerOnly(endpointHTTPV2, 0.1)
	for i := range 200_000 {
		p.take(&event{deviceID: fmt.Sprint("dev-", i)}, clk.Now())
		if i%10_000 == 0 {
			clk.Advance(2 * time.Hour)
		}
	}
	if n := p.tracked(); n > 100_000 {
		t.Fatalf("%d ids tracked of 200000 seen over 40 hours", n)
	}
}

// TestPacerForgetsWithinTheHour: an id whose budget and guard are idle is
// forgotten before its hour ends (the table holds the ids active within the
// last window), and the events it was charged in the hour still count: an
// id forgotten between every event reaches its daily quota as one that is
// never forgotten does.
func TestPacerForgetsWithinTheHour(t *testing.T) {
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	// 30/s, quota 100 a day: the tracking threshold is 1 event an hour, so
	// a second event in the hour gives the id a ring whose earlier hours
	// count 1 each (23 + 2), and the quota is reached after 75 more.
	p := newPacerWith(30, time.Second, 100, 0.1, 30)
	busy := &event{deviceID: "busy"}
	hd, _ := busy.hashes()
	other, sent := 0, 0
	for ; sent < 200; sent++ {
		if _, ok := p.take(busy, clk.Now()); !ok {
			break
		}
		p.answered([]*event{busy}, clk.Now())
		clk.Advance(2 * time.Second) // its budget and its guard idle again
		// Fresh ids until the busy one's shard has forgotten it (while it
		// has no ring: then it is kept for 24 hours).
		for tries := 0; p.has(hd) && tries < 200_000 && sent < 1; tries++ {
			p.take(&event{deviceID: fmt.Sprint("other-", other)}, clk.Now())
			other++
		}
		if sent < 1 && p.has(hd) {
			t.Fatal("an idle id without a ring was not forgotten within its hour")
		}
	}
	if clk.Now().Sub(start) >= time.Hour {
		t.Fatal("the test ran past its hour")
	}
	// Forgotten after its first event, the id would start again from 0
	// without the sketch, and send one more (78).
	if sent != 100-23 {
		t.Fatalf("%d events sent in the hour, want the quota less the ring's 23 earlier hours: %d", sent, 100-23)
	}
}

// BenchmarkPacer is the cost of pacing on the send path: one charge per
// event (its device and its user) with 10^3 and 10^6 distinct ids of each
// kind tracked, hot (the same 16 ids again and again among them) and cold
// (every id in turn, their slots at random places, so each take misses the
// caches), beside no pacing (a nil pacer); "batch" is the send path's use,
// the events of a batch of 256 prefetched before they are taken one by one;
// "guarded" is that with the arrival guard too (the whole send path: each
// event charged to its budgets and its guards in one lookup per id, and the
// batch answered once charged), "guarded-single" the same without the
// prefetch ("paced" beside "batch"). The events' hashes are computed once, as the
// request builder does. Time moves so that every take is admitted: the
// benchmark measures charges, not refusals. "stream" is 10^6 ids in a
// stream of 50,000 events/s, drawn at random, from an empty table: each id
// comes back after 20 s on average, long forgotten, so the table holds the
// ids of the last second and most takes insert (the hour's count read from
// the sketch); a few ids drawn twice within their interval are refused.
func BenchmarkPacer(b *testing.B) {
	for _, ids := range []int{1_000, 1_000_000} {
		events := make([]event, ids)
		for i := range events {
			events[i] = event{deviceID: fmt.Sprintf("device-%07d", i), userID: fmt.Sprintf("user-%07d", i)}
			events[i].hd, events[i].hu = events[i].hashes()
		}
		rng := rand.New(rand.NewPCG(1, 2))
		cold := make([]int, ids) // the ids in turn: the table's accesses are random by hash
		for i := range cold {
			cold[i] = i
		}
		hotIDs := rng.Perm(ids)[:16]
		hot := hotIDs
		stream := make([]int, 1<<20) // ids drawn at random, 50,000 events/s
		for i := range stream {
			stream[i] = rng.IntN(ids)
		}
		for _, access := range []struct {
			name  string
			order []int
		}{{"hot", hot}, {"cold", cold}, {"stream", stream}} {
			if access.name == "stream" && ids < 1_000_000 {
				continue // 50,000 events/s over 1000 ids: over their budgets
			}
			for _, impl := range []string{"paced", "batch", "guarded", "guarded-single", "off"} {
				b.Run(fmt.Sprintf("ids=%d/%s/%s", ids, access.name, impl), func(b *testing.B) {
					benchPacer(b, impl, events, access.order)
				})
			}
		}
	}
}

func benchPacer(b *testing.B, impl string, events []event, order []int) {
	now := time.Unix(1_700_000_000, 0)
	var p *pacer
	guarded := impl == "guarded" || impl == "guarded-single"
	switch {
	case guarded:
		// HTTP V2's budgets and window, with the most events the guard's
		// byte counts hold: the hot ids' events in flight between answers
		// would otherwise fill its limit, and the benchmark measures
		// admissions.
		b := endpointBudgets[endpointHTTPV2]
		p = newPacerWith(b.eps, b.window, b.daily, 0.1, 255)
	case impl != "off":
		p = pacerOnly(endpointHTTPV2, 0.1)
	}
	// Each id comes back after a full interval of its budget, every id in
	// the table from the start; or, in a stream, events come at 50,000 a
	// second from an empty table (its first 2 s before the timer).
	interval := pacerOnly(endpointHTTPV2, 0.1).interval // the pacer's rate, whatever impl
	step := time.Duration(interval/int64(len(order)) + 1)
	stream := len(order) > len(events)
	if stream {
		step = 20 * time.Microsecond
		for _, j := range order[:100_000] {
			now = now.Add(step)
			p.take(&events[j], now)
			if p != nil && p.limit > 0 {
				p.answered([]*event{&events[j]}, now)
			}
		}
	} else {
		for i := range events {
			p.take(&events[i], now)
		}
		p.answered(ptrsOf(events), now)
	}
	now = now.Add(time.Second)
	const batch = 256
	var ptrs []*event // the events in order, for prefetch
	answer := make([]*event, batch)
	if impl == "batch" || impl == "guarded" {
		for _, j := range order {
			ptrs = append(ptrs, &events[j])
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		now = now.Add(step)
		j := i % len(order)
		if ptrs != nil && j%batch == 0 {
			p.prefetch(ptrs[j:min(j+batch, len(ptrs))])
		}
		if guarded && i%batch == 0 && i > 0 { // the last batch's answer
			for k := range answer {
				answer[k] = &events[order[(i-batch+k)%len(order)]]
			}
			p.answered(answer, now)
		}
		if _, ok := p.take(&events[order[j]], now); !ok && !stream {
			b.Fatal("refused") // a stream refuses the few ids drawn twice within their interval
		}
	}
}

func ptrsOf(events []event) []*event {
	ptrs := make([]*event, len(events))
	for i := range events {
		ptrs[i] = &events[i]
	}
	return ptrs
}

// TestPacerPrefetchChangesNothing: prefetching a batch's events, and
// answering them as a batch, leaves every answer as it was, with tables
// small and large enough for their probes to be walked together (idtable's
// Large: 150,000 devices tracked before), where the slots found are kept in
// the events as hints for the charges and the answers; and every few rounds
// the tables are rebuilt, moving the entries away from their hints.
func TestPacerPrefetchChangesNothing(t *testing.T) {
	for _, tracked := range []int{0, 150_000} {
		t.Run(fmt.Sprintf("tracked=%d", tracked), func(t *testing.T) {
			start := time.Unix(1_700_000_000, 0)
			p, ref := newPacer(endpointHTTPV2, 0.1), newPacer(endpointHTTPV2, 0.1)
			for i := range tracked {
				e := &event{deviceID: fmt.Sprint("old", i)}
				p.take(e, start)
				ref.take(e, start)
			}
			if large := p.narrow.shards[0].table.Large(); large != (tracked > 0) {
				t.Fatalf("%d devices tracked: Large is %v", tracked, large)
			}
			rng := rand.New(rand.NewPCG(3, 3))
			var batch, refBatch []*event
			for i := range 400 {
				e := &event{deviceID: fmt.Sprint("d", rng.IntN(50)), userID: fmt.Sprint("u", rng.IntN(30))}
				if i%7 == 0 {
					e.userID = ""
				}
				if tracked > 0 && i%3 == 0 {
					e.deviceID = fmt.Sprint("old", rng.IntN(tracked))
				}
				c := *e
				batch, refBatch = append(batch, e), append(refBatch, &c)
			}
			now, hinted := start, 0
			for round := range 20 {
				p.prefetch(batch)
				if round%5 == 4 { // entries move: the hints go stale
					p.resize()
				}
				var sent, refSent []*event
				for i, e := range batch {
					at, ok := p.take(e, now)
					refAt, refOK := ref.take(refBatch[i], now)
					if ok != refOK || !at.Equal(refAt) {
						t.Fatalf("round %d, event %d: (%v, %v) with prefetch, (%v, %v) without", round, i, ok, at, refOK, refAt)
					}
					if ok {
						sent, refSent = append(sent, e), append(refSent, refBatch[i])
					}
					if e.sd != 0 || e.su != 0 {
						hinted++
					}
				}
				now = now.Add(100 * time.Millisecond)
				if round%5 == 2 {
					p.resize()
				}
				p.answered(sent, now) // a batch: loaded first, with the hints
				for _, e := range refSent {
					ref.answered([]*event{e}, now) // one by one, no prefetch
				}
				now = now.Add(200 * time.Millisecond)
			}
			if hinted == 0 && tracked > 0 {
				t.Fatal("no event got a hint from prefetch in large tables")
			}
			if hinted > 0 && tracked == 0 {
				t.Fatal("events got hints in small tables")
			}
		})
	}
}

// resize rebuilds every table of p a little larger, moving its entries.
func (p *pacer) resize() {
	for i := range p.narrow.shards {
		tb := &p.narrow.shards[i].table
		tb.Resize(tb.Size() + 4)
	}
}

// BenchmarkPacerMemory reports the memory per tracked id (one device id per
// event, 10^6 ids): the heap's growth plus the table memory held outside
// the heap (idtable.Mapped), measured once whatever -benchtime; the loop
// charges one of them.
func BenchmarkPacerMemory(b *testing.B) {
	const ids = 1_000_000
	events := make([]event, ids)
	for i := range events {
		events[i] = event{deviceID: fmt.Sprintf("device-%07d", i)}
	}
	now := time.Unix(1_700_000_000, 0)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	mapped := idtable.Mapped()
	p := pacerOnly(endpointHTTPV2, 0.1)
	for i := range events {
		p.take(&events[i], now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	mapped = idtable.Mapped() - mapped
	perID := (float64(after.HeapAlloc) - float64(before.HeapAlloc) + float64(mapped)) / ids
	for i := 0; b.Loop(); i++ {
		now = now.Add(time.Second)
		p.take(&events[i%ids], now)
	}
	b.ReportMetric(perID, "bytes/id") // after b.Loop, which clears reported metrics
	b.ReportMetric(float64(mapped)/ids, "offheap-bytes/id")
}

// TestPacerTableKeepsLiveIDs: ids that are not idle keep their state
// through the table's growth, and any id collides with none other.
func TestPacerTableKeepsLiveIDs(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	p := pacerOnly(endpointHTTPV2, 0.1)
	burst := burstOf(p)
	const ids = 50_000
	for i := range ids {
		for range burst {
			if _, ok := p.take(&event{deviceID: fmt.Sprint("dev-", i)}, now); !ok {
				t.Fatalf("dev-%d refused within its burst", i)
			}
		}
	}
	if n := p.tracked(); n != ids {
		t.Fatalf("%d ids tracked, want %d", n, ids)
	}
	for i := range ids {
		if _, ok := p.take(&event{deviceID: fmt.Sprint("dev-", i)}, now); ok {
			t.Fatalf("dev-%d forgot its charges when the table grew", i)
		}
	}
}

// TestPacerEpochMove: when a shard's epoch moves (every 9 minutes of its
// time), the budgets of its ids are kept: an id whose epoch moved in the
// middle of its burst gets the same answers, at the same times, as the same
// id in a pacer whose epoch did not move, its hour's count included.
func TestPacerEpochMove(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	p := newPacerWith(30, time.Second, 2_000_000, 0.4, 0)
	ref := newPacerWith(30, time.Second, 2_000_000, 0.4, 0)
	// Two devices of one shard.
	a := &event{deviceID: "a"}
	var b *event
	for i := 0; b == nil; i++ {
		if id := fmt.Sprint("b-", i); p.narrow.shard(idHash(deviceKey(id))) == p.narrow.shard(idHash(deviceKey("a"))) {
			b = &event{deviceID: id}
		}
	}
	if _, ok := p.take(b, start); !ok {
		t.Fatal("b refused")
	}
	s := p.narrow.shard(idHash(deviceKey("a")))
	first := s.epoch
	// a spends its burst just before the epoch must move (in ref, its
	// epoch starts there), b's take moves it, then a goes on taking as
	// fast as it is let through for 3 minutes.
	now := time.Unix(0, first.ns+epochEvery-1)
	moved := false
	refused := 0
	for end := now.Add(3 * time.Minute); now.Before(end); {
		at, ok := p.take(a, now)
		refAt, refOK := ref.take(a, now)
		if ok != refOK || !at.Equal(refAt) {
			t.Fatalf("at %v: (%v, %v), without the epoch's move (%v, %v)", now, ok, at, refOK, refAt)
		}
		if !ok {
			refused++
			if !moved {
				if _, ok := p.take(b, now.Add(2)); !ok {
					t.Fatal("b refused")
				}
				if moved = s.epoch != first; !moved {
					t.Fatal("the epoch did not move")
				}
			}
			now = later(at, now.Add(time.Millisecond))
		}
	}
	if refused == 0 {
		t.Fatal("a was never refused: the test tests nothing")
	}
	// The hour's count (below the daily ring's threshold) moved too.
	got, want := p.state(a.deviceID, now), ref.state(a.deviceID, now)
	if got != want || got.count < 1000 {
		t.Fatalf("a's state %+v, without the epoch's move %+v", got, want)
	}
}

// state returns the state of device id, under its shard's lock.
func (p *pacer) state(id string, now time.Time) state {
	h := idHash(deviceKey(id))
	s := p.narrow.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.find(p, h, idtable.NoHint, now.UnixNano(), int32(now.Unix()/3600), now.UnixNano()/p.bucket, false)
	if sl == nil {
		return state{}
	}
	return s.epoch.unpack(sl.Val.pace)
}

// TestPacerSlotSize: an id's slot, its budget and its guard's state, is 32
// bytes with the guard's byte counts (HTTP V2) and 48 with 16-bit ones
// (Batch): the memory figures assume it.
func TestPacerSlotSize(t *testing.T) {
	if n := unsafe.Sizeof(idtable.Slot[idState[uint8]]{}); n != 32 {
		t.Fatalf("slot of %d bytes, want 32", n)
	}
	if n := unsafe.Sizeof(idtable.Slot[idState[uint16]]{}); n != 48 {
		t.Fatalf("wide slot of %d bytes, want 48", n)
	}
}

// pacerOnly returns the pacer of an endpoint without its arrival guard.
func pacerOnly(endpoint string, headroom float64) *pacer {
	b := endpointBudgets[endpoint]
	return newPacerWith(b.eps, b.window, b.daily, headroom, 0)
}

// take is charge without the pacer's reason for a refusal.
func (p *pacer) take(e *event, now time.Time) (time.Time, bool) {
	at, _, ok := p.charge(e, now)
	return at, ok
}
