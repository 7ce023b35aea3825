package amplitude

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
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
			p := newPacer(tc.endpoint, tc.headroom)
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
	p := newPacer(endpointHTTPV2, 0.1)
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

// TestPacerUserRefundsDevice: an event whose user has no budget charges
// nothing to its device.
func TestPacerUserRefundsDevice(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	p := newPacerWith(30, time.Second, 0, 0.1) // burst 3
	for i := range 3 {
		if _, ok := p.take(&event{deviceID: fmt.Sprint("dev-", i), userID: "busy-user"}, now); !ok {
			t.Fatalf("event %d refused", i)
		}
	}
	if _, ok := p.take(&event{deviceID: "dev-x", userID: "busy-user"}, now); ok {
		t.Fatal("the busy user's fourth event went through")
	}
	for range 3 { // dev-x's whole burst is still there
		if _, ok := p.take(&event{deviceID: "dev-x"}, now); !ok {
			t.Fatal("dev-x was charged for an event that was not sent")
		}
	}
}

// TestPacerDailyQuota: an id stops at its daily quota and resumes at the
// hourly step that drops the hour 24 hours back.
func TestPacerDailyQuota(t *testing.T) {
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	p := newPacerWith(1e9, time.Second, 2500, 0) // rate no object; quota 2500/24 h
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
	p := newPacer(endpointHTTPV2, 0.1)
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

// BenchmarkPacer is the cost of pacing on the send path: one take per event
// with 10^6 tracked ids, against no pacing (a nil pacer).
func BenchmarkPacer(b *testing.B) {
	for _, ids := range []int{10_000, 1_000_000} {
		events := make([]event, ids)
		for i := range events {
			events[i] = event{deviceID: fmt.Sprintf("device-%07d", i), userID: fmt.Sprintf("user-%07d", i)}
		}
		for _, name := range []string{"paced", "off"} {
			b.Run(fmt.Sprintf("%s/ids=%d", name, ids), func(b *testing.B) { benchPacer(b, name == "paced", events) })
		}
	}
}

func benchPacer(b *testing.B, paced bool, events []event) {
	ids := len(events)
	now := time.Unix(1_700_000_000, 0)
	{
		{
			var p *pacer
			if paced {
				p = newPacer(endpointBatch, 0.1)
				for i := range events {
					p.take(&events[i], now)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				p.take(&events[i%ids], now.Add(time.Duration(i)))
			}
		}
	}
}

// BenchmarkPacerMemory reports the heap per tracked id (device and user, so
// two entries per event).
func BenchmarkPacerMemory(b *testing.B) {
	const ids = 200_000
	now := time.Unix(1_700_000_000, 0)
	for range b.N {
		events := make([]event, ids)
		for i := range events {
			events[i] = event{deviceID: fmt.Sprintf("device-%07d", i)}
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		p := newPacer(endpointHTTPV2, 0.1)
		for i := range events {
			p.take(&events[i], now)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/ids, "bytes/id")
		runtime.KeepAlive(p)
		runtime.KeepAlive(events)
	}
}
