package ratelimit

import (
	"context"
	"testing"
	"time"

	// The resource builder needs the core tracer ("none").
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/metricstest"
)

func TestMetrics(t *testing.T) {
	tests := []struct {
		mode string
		want map[string]int64
	}{
		{"reject", map[string]int64{
			"device_rate_limit_passed_total": 3, "device_rate_limit_rejected_total{reason=per_second}": 2,
			"device_rate_limit_keys_tracked": 4,
		}},
		{"drop", map[string]int64{
			"device_rate_limit_passed_total": 3, "device_rate_limit_dropped_total{reason=per_second}": 2,
			"device_rate_limit_keys_tracked": 4,
		}},
		{"delay", map[string]int64{
			"device_rate_limit_passed_total": 5, "device_rate_limit_delayed_total": 2,
			"device_rate_limit_keys_tracked": 6,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			res, rec := metricstest.Resources(t)
			clk := newFakeClock()
			autoAdvance(t, clk)
			conf, err := deviceRateLimitSpec().ParseYAML("per_second: 2\non_limit: "+tt.mode, nil)
			require.NoError(t, err)
			p, err := newDeviceRateLimitFromParsed(conf, res, clk)
			require.NoError(t, err)
			defer p.Close(context.Background())
			process(t, p, event("hot", "a"), event("hot", "b"), event("hot", "c"), event("hot", "d"), event("cold", ""))
			p.maintain(context.Background())
			for k, v := range tt.want {
				assert.Equal(t, v, rec.Get(k), k)
			}
			if tt.mode == "delay" {
				assert.GreaterOrEqual(t, rec.Get("device_rate_limit_delay_seconds"), 2*int64(time.Second),
					"two events waited about a second each")
			}
		})
	}
}

// TestCacheReadOncePerBatch: a key's stored counts are read at its first
// message in a batch only, as when the messages are taken one by one (the
// first take makes the key known): a corrupt entry shared by three messages
// is one cache error, and every message still passes.
func TestCacheReadOncePerBatch(t *testing.T) {
	rec := metricstest.New(t)
	rb := service.NewResourceBuilder()
	require.NoError(t, rb.SetMetricsYAML(rec.YAML()))
	require.NoError(t, rb.AddCacheYAML("label: counts\nmemory: {}"))
	res, closeFn, err := rb.Build()
	require.NoError(t, err)
	t.Cleanup(func() { _ = closeFn(context.Background()) })
	p := corruptCountsProc(t, res)
	out := process(t, p, event("d", ""), event("d", ""), event("e", ""), event("d", ""))
	require.Len(t, out, 4)
	for i, m := range out {
		assert.NoError(t, m.GetError(), "message %d", i)
	}
	assert.Equal(t, int64(1), rec.Get("device_rate_limit_cache_errors_total"))
	assert.Equal(t, int64(4), rec.Get("device_rate_limit_passed_total"))
}
