package amplitude

import (
	"context"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// TestQuotaStateSurvivesRestart: ids over their daily quota saved by one
// output are held by the next one that reads the same cache, until the
// hourly step; ids whose hold ended are not restored.
func TestQuotaStateSurvivesRestart(t *testing.T) {
	res := service.MockResources(service.MockResourcesOptAddCache("state"))
	start := time.Date(2026, 12, 1, 10, 20, 0, 0, time.UTC)
	newOut := func(clk clock.Clock) *amplitudeOutput {
		o := &amplitudeOutput{holds: newHolds(), clock: clk, log: res.Logger(), state: quotaState{mgr: res, cache: "state"}}
		if err := o.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		return o
	}
	first := newOut(clock.NewFake(start))
	first.holdThrottled(nil, outcome{quotaIDs: map[idKey]bool{userKey("usr_4821"): true, deviceKey("dev-\"q\""): true}})

	clk := clock.NewFake(start.Add(10 * time.Minute))
	second := newOut(clk)
	for _, k := range []idKey{userKey("usr_4821"), deviceKey("dev-\"q\"")} {
		until, quota, held := second.holds.heldUntil([2]idKey{k}, clk.Now())
		if !held || !quota || !until.Equal(time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)) {
			t.Errorf("%v after restart: held %v quota %v until %v", k, held, quota, until)
		}
	}
	third := newOut(clock.NewFake(start.Add(time.Hour)))
	if third.holds.n.Load() != 0 {
		t.Fatal("holds past their hourly step were restored")
	}
}
