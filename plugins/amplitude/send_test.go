package amplitude

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/metricstest"
)

// TestHedgeChargedToBudget: a hedge whose events have no budget left
// charges nothing and says when it may be sent, and a sent one is charged.
func TestHedgeChargedToBudget(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	o := &amplitudeOutput{pacer: newPacerWith(30, time.Second, 0, 0.4, 0), clock: clock.NewFake(now)}
	burst := burstOf(o.pacer)
	if burst < 2 {
		t.Fatalf("burst %d: the test needs a burst of at least 2", burst)
	}
	evs := make([]*event, burst-1)
	for i := range evs {
		evs[i] = &event{deviceID: "d1"}
	}
	if _, ok := o.chargeHedge(evs); !ok {
		t.Fatal("a hedge within the budget was refused")
	}
	// One event of d1 is left: a hedge of two is refused and gives the
	// first back.
	two := []*event{{deviceID: "d1"}, {deviceID: "d1"}}
	at, ok := o.chargeHedge(two)
	if ok {
		t.Fatalf("a hedge beyond the budget (%d events of d1 at once) was allowed", burst+1)
	}
	if !at.After(now) {
		t.Errorf("a refused hedge may be sent at %v, not after now (%v)", at, now)
	}
	if _, ok := o.chargeHedge(two[:1]); !ok {
		t.Fatal("the refused hedge kept its charge")
	}
	if _, ok := o.chargeHedge(two[:1]); ok {
		t.Fatal("the budget was charged for fewer events than sent")
	}
}

// hedgeRig is an output hedging after 3 s on a fake clock, in front of a
// server whose every request waits for the test to answer it (or hangs
// until the test ends), so that each step of a hedged request is driven
// from the test.
type hedgeRig struct {
	t        *testing.T
	ctx      context.Context
	out      *amplitudeOutput
	clk      *clock.Fake
	metrics  *metricstest.Recorder
	arrivals chan chan string
	done     chan map[int]error
	t0       time.Time
}

const rigHedgeAfter = 3 * time.Second

func newHedgeRig(t *testing.T, extra string) *hedgeRig {
	r := &hedgeRig{t: t, arrivals: make(chan chan string, 8), done: make(chan map[int]error, 1)}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		answer := make(chan string, 1)
		r.arrivals <- answer
		select {
		case status := <-answer:
			code, _ := strconv.Atoi(status)
			w.WriteHeader(code)
			_, _ = w.Write([]byte(`{"code":` + status + `,"events_ingested":1}`))
		case <-req.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	r.out, _ = newTestOutput(t, srv.URL, "hedge_after: 3s\n"+extra)
	res, capture := metricstest.Resources(t)
	r.out.metrics, r.metrics = newOutputMetrics(res.Metrics()), capture
	r.out.timeout = time.Minute // hangs outlast the test
	r.t0 = time.Unix(1_700_000_000, 0)
	r.clk = clock.NewFake(r.t0)
	r.out.clock = r.clk
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	r.ctx = ctx
	return r
}

// start writes one event of device-1 in the background.
func (r *hedgeRig) start() {
	go func() { r.done <- write(r.t, context.Background(), r.out, []string{evt("a", "device-1")}) }()
}

// arrive returns the answer channel of the next request ("200", "503";
// nothing sent: it hangs).
func (r *hedgeRig) arrive() chan<- string {
	r.t.Helper()
	select {
	case a := <-r.arrivals:
		return a
	case <-r.ctx.Done():
		r.t.Fatal("no request arrived")
		return nil
	}
}

// next waits until the output's earliest timer is one ok accepts, and
// moves the clock to it. The output re-arms its timers after an answer it
// reads in real time, hence the polling.
func (r *hedgeRig) next(ok func(at time.Duration) bool) time.Duration {
	r.t.Helper()
	for r.ctx.Err() == nil {
		if at, pending := r.clk.NextDeadline(); pending && ok(at.Sub(r.t0)) {
			r.clk.Set(at)
			return at.Sub(r.t0)
		}
		time.Sleep(time.Millisecond)
	}
	r.t.Fatal("the output never armed the timer expected")
	return 0
}

// finish waits for the write and checks it succeeded with the requests and
// metrics expected.
func (r *hedgeRig) finish(hedges, wins int64) {
	r.t.Helper()
	select {
	case failed := <-r.done:
		if len(failed) != 0 {
			r.t.Fatalf("failed: %v", failed)
		}
	case <-r.ctx.Done():
		r.t.Fatal("the write did not end")
	}
	if n := len(r.arrivals); n != 0 {
		r.t.Errorf("%d requests more than expected", n)
	}
	if got := r.metrics.Get("amplitude_hedges_total"); got != hedges {
		r.t.Errorf("amplitude_hedges_total = %d, want %d", got, hedges)
	}
	if got := r.metrics.Get("amplitude_hedge_wins_total"); got != wins {
		r.t.Errorf("amplitude_hedge_wins_total = %d, want %d", got, wins)
	}
}

func at(d time.Duration) func(time.Duration) bool {
	return func(got time.Duration) bool { return got == d }
}

// TestHedgeSchedule drives hedged requests step by step on the fake clock;
// the hangs never end (the request timeout is a minute), so the write ends
// only through the attempt expected: a copy after hedge_after; another after
// a back-off (at most the back-off's 50 ms) when the copy failed while the
// first still hangs; another after twice hedge_after when the copy hangs
// too; the first attempt's answer when it comes before the copy's.
func TestHedgeSchedule(t *testing.T) {
	for _, tc := range []struct {
		name         string
		steps        func(r *hedgeRig)
		hedges, wins int64
	}{
		{"a copy beats a hang", func(r *hedgeRig) {
			r.arrive()
			r.next(at(rigHedgeAfter))
			r.arrive() <- "200"
		}, 1, 1},
		{"a copy after the copy's 503", func(r *hedgeRig) {
			r.arrive()
			r.next(at(rigHedgeAfter))
			r.arrive() <- "503"
			r.next(func(d time.Duration) bool { return d > rigHedgeAfter && d <= rigHedgeAfter+50*time.Millisecond })
			r.arrive() <- "200"
		}, 2, 1},
		{"a third attempt when the copy hangs too", func(r *hedgeRig) {
			r.arrive()
			r.next(at(rigHedgeAfter))
			r.arrive()
			r.next(at(3 * rigHedgeAfter))
			r.arrive() <- "200"
		}, 2, 1},
		{"the first answer wins", func(r *hedgeRig) {
			first := r.arrive()
			r.next(at(rigHedgeAfter))
			r.arrive()
			first <- "200"
		}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newHedgeRig(t, "pacing: false\n")
			r.start()
			tc.steps(r)
			r.finish(tc.hedges, tc.wins)
		})
	}
}

// TestHedgeWaitsForBudget: a copy due while its device has no budget is not
// dropped (the request hangs for good) nor sent over the budget: it is sent
// when the pacer allows, and ends the write.
func TestHedgeWaitsForBudget(t *testing.T) {
	r := newHedgeRig(t, "")
	r.start()
	r.arrive()
	// Spend device-1's budget at the moment the copy is due.
	due := r.t0.Add(rigHedgeAfter)
	var free time.Time
	for e := (&event{deviceID: "device-1"}); ; {
		at, ok := r.out.pacer.take(e, due)
		if !ok {
			free = at
			break
		}
	}
	r.next(at(rigHedgeAfter))
	if got := r.next(func(time.Duration) bool { return true }); got != free.Sub(r.t0) {
		t.Errorf("the copy was due again after %v, want %v (when the pacer allows)", got, free.Sub(r.t0))
	}
	r.arrive() <- "200"
	r.finish(1, 1)
}
