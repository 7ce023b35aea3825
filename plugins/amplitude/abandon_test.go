package amplitude

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/batchtest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// TestOutputAbandonsWithdrawnEvents: events waiting for their device's
// budget whose message context ends (a revoked Kafka partition) are nacked
// as abandoned at once, without being sent and without an alert; the events
// already sent and those of other messages are delivered.
func TestOutputAbandonsWithdrawnEvents(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	srv := amplitudetest.NewServer(amplitudetest.Options{Now: clk.Now})
	defer srv.Close()
	out, logs := newTestOutput(t, srv.HTTPV2URL(), "hedge_after: 0s\n")
	out.clock = clk

	revoked := errors.New("partition revoked")
	mctx, withdraw := context.WithCancelCause(context.Background())
	const hot = 20
	var batch service.MessageBatch
	for i := range hot {
		batch = append(batch, service.NewMessage([]byte(evt(fmt.Sprintf("hot-%d", i), "hot-device"))).WithContext(mctx))
	}
	batch = append(batch, service.NewMessage([]byte(evt("cold", "cold-device"))))
	idx := batch.Index()
	done := make(chan error, 1)
	go func() { done <- out.WriteBatch(context.Background(), batch) }()

	// The device's burst is sent; the rest waits for its budget.
	wait, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !clk.WaitForTimers(wait, 1) {
		t.Fatal("the write does not wait for the device's budget")
	}
	sent := len(srv.Events())
	if sent < 2 || sent >= hot {
		t.Fatalf("%d events sent before the wait, want the burst and the cold event", sent)
	}
	withdraw(revoked)
	var err error
	select {
	case err = <-done:
	case <-wait.Done():
		t.Fatal("the write still waits for withdrawn events")
	}
	failed := batchtest.Failures(t, idx, err)
	if len(failed) != hot+1-sent {
		t.Fatalf("%d events failed, want the %d not sent", len(failed), hot+1-sent)
	}
	for i, ferr := range failed {
		if reasonOf(ferr) != "outage:abandoned" || !strings.Contains(ferr.Error(), revoked.Error()) {
			t.Fatalf("event %d: %v, want abandoned with its cause", i, ferr)
		}
	}
	if _, ok := srv.Event("cold"); !ok {
		t.Fatal("the other message's event was not delivered")
	}
	if len(srv.Events()) != sent {
		t.Fatalf("%d events reached Amplitude after the withdrawal", len(srv.Events())-sent)
	}
	if strings.Contains(logs.String(), "level=ERROR") || strings.Contains(logs.String(), "unavailable") {
		t.Fatalf("a withdrawal raised an alert:\n%s", logs.String())
	}
}
