package avroscan

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

func TestReporterCadenceAndSummary(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	var mu sync.Mutex
	var lines []string
	logf := func(f string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(f, args...))
	}
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), lines...)
	}
	r := startReporter(logf, clk, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	require.True(t, clk.WaitForTimers(ctx, 1))
	clk.Advance(30 * time.Second)
	require.True(t, clk.WaitForTimers(ctx, 1))
	assert.Empty(t, got(), "nothing read yet: quiet")

	r.records(3000)
	r.file()
	clk.Advance(30 * time.Second)
	require.True(t, clk.WaitForTimers(ctx, 1))
	assert.Equal(t, []string{"currents_avro progress: 1 files and 3000 events delivered or dead-lettered, 50 events/s"}, got())

	r.records(600)
	clk.Advance(10 * time.Second)
	r.stop()
	assert.Equal(t, "currents_avro summary: 1 files and 3600 events delivered or dead-lettered in 1m10s (51 events/s)", got()[len(got())-1])
}
