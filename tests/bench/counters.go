package bench

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// countersExporter is the name of the metrics exporter every scenario uses:
// it keeps counter totals (and timer sums, as <name>_sum) in memory, labels
// ignored, so that a run can report what its components counted (events
// delayed by the limiter, requests retried...) at the cost of an atomic add.
const countersExporter = "currents_bench_counters"

func init() {
	service.MustRegisterMetricsExporter(countersExporter,
		service.NewConfigSpec().Summary("Keeps counter totals in memory for the benchmark harness."),
		func(*service.ParsedConfig, *service.Logger) (service.MetricsExporter, error) {
			return lastCounters.reset(), nil
		})
}

// lastCounters is the exporter of the stream that ran last in this process.
var lastCounters = &counters{}

type counters struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

func (c *counters) reset() *counters {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = map[string]*atomic.Int64{}
	return c
}

func (c *counters) get(name string) *atomic.Int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[name]
	if !ok {
		v = &atomic.Int64{}
		c.m[name] = v
	}
	return v
}

// snapshot returns the non-zero totals.
func (c *counters) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int64{}
	for k, v := range c.m {
		if n := v.Load(); n != 0 {
			out[k] = n
		}
	}
	return out
}

type counter struct{ v *atomic.Int64 }

func (c counter) Incr(n int64)   { c.v.Add(n) }
func (c counter) Timing(n int64) { c.v.Add(n) }
func (c counter) Set(int64)      {}

func (c *counters) NewCounterCtor(name string, _ ...string) service.MetricsExporterCounterCtor {
	v := c.get(name)
	return func(...string) service.MetricsExporterCounter { return counter{v} }
}

func (c *counters) NewTimerCtor(name string, _ ...string) service.MetricsExporterTimerCtor {
	v := c.get(name + "_sum")
	return func(...string) service.MetricsExporterTimer { return counter{v} }
}

func (c *counters) NewGaugeCtor(string, ...string) service.MetricsExporterGaugeCtor {
	return func(...string) service.MetricsExporterGauge { return counter{&atomic.Int64{}} }
}

func (c *counters) Close(context.Context) error { return nil }

// notable lists, sorted, the counters worth a note in a report: anything
// delayed, throttled, retried, hedged, rejected, dropped, failed or in error
// (hedged and retried requests are where duplicates at Amplitude come from).
func notable(m map[string]int64) []string {
	var out []string
	for k, v := range m {
		for _, w := range []string{"delay", "throttl", "retr", "hedge", "reject", "drop", "fail", "error"} {
			if !strings.Contains(k, w) {
				continue
			}
			if name, ok := strings.CutSuffix(k, "_seconds_sum"); ok {
				out = append(out, fmt.Sprintf("%s total=%.1fs", name, float64(v)/1e9))
			} else {
				out = append(out, k+"="+thousands(int(v)))
			}
			break
		}
	}
	sort.Strings(out)
	return out
}
