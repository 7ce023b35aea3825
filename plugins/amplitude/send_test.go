package amplitude

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// TestHedgeBeatsAHang: the first request hangs (until the server closes);
// after hedge_after on the fake clock a second copy is sent, answered at
// once, and the write ends without waiting for the timeout (a minute).
func TestHedgeBeatsAHang(t *testing.T) {
	var requests atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = w.Write([]byte(`{"code":200,"events_ingested":2}`))
	}))
	defer srv.Close()
	defer close(release)
	out, _ := newTestOutput(t, srv.URL, "hedge_after: 3s\n")
	out.timeout = time.Minute
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	out.clock = clk
	done := make(chan map[int]error, 1)
	go func() {
		done <- write(t, context.Background(), out, []string{evt("a", "device-1"), evt("b", "device-2")})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !clk.WaitForTimers(ctx, 1) {
		t.Fatal("the write never armed its hedge timer")
	}
	clk.Advance(3 * time.Second)
	select {
	case failed := <-done:
		if len(failed) != 0 || requests.Load() != 2 {
			t.Fatalf("failed %v after %d requests", failed, requests.Load())
		}
	case <-ctx.Done():
		t.Fatal("the hedge did not end the write")
	}
}

// TestHedgeChargedToBudget: a hedge whose events have no budget left is not
// sent (and charges nothing), and a sent one is charged.
func TestHedgeChargedToBudget(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	o := &amplitudeOutput{pacer: newPacerWith(30, time.Second, 0, 0.4), clock: clock.NewFake(now)}
	burst := burstOf(o.pacer)
	if burst < 2 {
		t.Fatalf("burst %d: the test needs a burst of at least 2", burst)
	}
	evs := make([]*event, burst-1)
	for i := range evs {
		evs[i] = &event{deviceID: "d1"}
	}
	if !o.chargeHedge(evs) {
		t.Fatal("a hedge within the budget was refused")
	}
	// One event of d1 is left: a hedge of two is refused and gives the
	// first back.
	two := []*event{{deviceID: "d1"}, {deviceID: "d1"}}
	if o.chargeHedge(two) {
		t.Fatalf("a hedge beyond the budget (%d events of d1 at once) was allowed", burst+1)
	}
	if !o.chargeHedge(two[:1]) {
		t.Fatal("the refused hedge kept its charge")
	}
	if o.chargeHedge(two[:1]) {
		t.Fatal("the budget was charged for fewer events than sent")
	}
}
