package ratelimit

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	// The resource builder needs the core tracer ("none").
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is a metrics exporter that keeps the latest value of every
// counter (summed), gauge and timer (summed), by name and label values.
type recorder struct {
	mu     sync.Mutex
	values map[string]int64
}

type recorded struct {
	r   *recorder
	key string
	set bool
}

func (m recorded) Incr(n int64)   { m.add(n) }
func (m recorded) Timing(n int64) { m.add(n) }
func (m recorded) Set(n int64)    { m.r.mu.Lock(); m.r.values[m.key] = n; m.r.mu.Unlock() }
func (m recorded) add(n int64)    { m.r.mu.Lock(); m.r.values[m.key] += n; m.r.mu.Unlock() }

func (r *recorder) ctor(name string) func(labels ...string) recorded {
	return func(labels ...string) recorded {
		return recorded{r: r, key: strings.Join(append([]string{name}, labels...), ",")}
	}
}

func (r *recorder) NewCounterCtor(name string, _ ...string) service.MetricsExporterCounterCtor {
	c := r.ctor(name)
	return func(l ...string) service.MetricsExporterCounter { return c(l...) }
}

func (r *recorder) NewTimerCtor(name string, _ ...string) service.MetricsExporterTimerCtor {
	c := r.ctor(name)
	return func(l ...string) service.MetricsExporterTimer { return c(l...) }
}

func (r *recorder) NewGaugeCtor(name string, _ ...string) service.MetricsExporterGaugeCtor {
	c := r.ctor(name)
	return func(l ...string) service.MetricsExporterGauge { return c(l...) }
}

func (r *recorder) Close(context.Context) error { return nil }

func (r *recorder) get(key string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.values[key]
}

// lastRecorder is the recorder built by the latest resources.
var lastRecorder *recorder

func init() {
	service.MustRegisterMetricsExporter("ratelimit_test_recorder", service.NewConfigSpec(),
		func(*service.ParsedConfig, *service.Logger) (service.MetricsExporter, error) {
			lastRecorder = &recorder{values: map[string]int64{}}
			return lastRecorder, nil
		})
}

func recordingResources(t *testing.T) (*service.Resources, *recorder) {
	t.Helper()
	rb := service.NewResourceBuilder()
	require.NoError(t, rb.SetMetricsYAML(`ratelimit_test_recorder: {}`))
	res, closeFn, err := rb.Build()
	require.NoError(t, err)
	t.Cleanup(func() { _ = closeFn(context.Background()) })
	return res, lastRecorder
}

func TestMetrics(t *testing.T) {
	tests := []struct {
		mode string
		want map[string]int64
	}{
		{"reject", map[string]int64{
			"device_rate_limit_passed": 3, "device_rate_limit_rejected,per_second": 2,
			"device_rate_limit_keys_tracked": 4,
		}},
		{"drop", map[string]int64{
			"device_rate_limit_passed": 3, "device_rate_limit_dropped,per_second": 2,
			"device_rate_limit_keys_tracked": 4,
		}},
		{"delay", map[string]int64{
			"device_rate_limit_passed": 5, "device_rate_limit_delayed": 2,
			"device_rate_limit_keys_tracked": 6,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			res, rec := recordingResources(t)
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
				assert.Equal(t, v, rec.get(k), k)
			}
			if tt.mode == "delay" {
				assert.GreaterOrEqual(t, rec.get("device_rate_limit_delay_ns"), 2*int64(time.Second),
					"two events waited about a second each")
			}
		})
	}
}
