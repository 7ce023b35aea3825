// Package metricstest is the one recording metrics exporter of the tests:
// components built with its resources (or a stream whose metrics config is
// Recorder.YAML) record every counter, gauge and timer, and the test reads
// them back by name and labels.
package metricstest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// ExporterName is the name of the metrics exporter this package registers.
const ExporterName = "metricstest"

// Recorder keeps the metrics of the components that use it. Keys are
// `name` or `name{label=value,...}` with labels sorted by name, leaving out
// the `label` and `path` labels Benthos adds to every component's metrics.
type Recorder struct {
	id string

	mu     sync.Mutex
	values map[string]int64 // counters and timers: sums; gauges: last value
	counts map[string]int64 // timers: number of timings
}

var (
	recorders sync.Map // id -> *Recorder
	lastID    atomic.Int64
)

func init() {
	spec := service.NewConfigSpec().
		Summary("Records metrics for tests (plugins/internal/metricstest).").
		Field(service.NewStringField("id").Description("The Recorder's id."))
	service.MustRegisterMetricsExporter(ExporterName, spec,
		func(conf *service.ParsedConfig, _ *service.Logger) (service.MetricsExporter, error) {
			id, err := conf.FieldString("id")
			if err != nil {
				return nil, err
			}
			r, ok := recorders.Load(id)
			if !ok {
				return nil, fmt.Errorf("no metricstest recorder %q", id)
			}
			return exporter{r.(*Recorder)}, nil
		})
}

// New returns an empty Recorder, forgotten at the end of the test.
func New(t testing.TB) *Recorder {
	r := &Recorder{
		id:     fmt.Sprint(lastID.Add(1)),
		values: map[string]int64{},
		counts: map[string]int64{},
	}
	recorders.Store(r.id, r)
	t.Cleanup(func() { recorders.Delete(r.id) })
	return r
}

// YAML is the metrics config that routes a builder's metrics to r, for
// service.StreamBuilder.SetMetricsYAML and ResourceBuilder.SetMetricsYAML.
func (r *Recorder) YAML() string {
	return fmt.Sprintf("%s: { id: %q }", ExporterName, r.id)
}

// Resources returns resources whose metrics go to a new Recorder, for the
// constructors that take *service.Resources.
func Resources(t testing.TB) (*service.Resources, *Recorder) {
	t.Helper()
	r := New(t)
	rb := service.NewResourceBuilder()
	if err := rb.SetMetricsYAML(r.YAML()); err != nil {
		t.Fatal(err)
	}
	res, closeFn, err := rb.Build()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeFn(context.Background()) })
	return res, r
}

// Get returns the sum of a counter or of a timer's timings (nanoseconds),
// or a gauge's last value; 0 when never recorded.
func (r *Recorder) Get(key string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.values[key]
}

// Count returns how many timings a timer recorded.
func (r *Recorder) Count(key string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[key]
}

// Keys returns the keys recorded so far, sorted.
func (r *Recorder) Keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.values))
	for k := range r.values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// key builds the key of a metric from its name and label values.
func key(name string, labels, values []string) string {
	var kv []string
	for i, l := range labels {
		if l == "label" || l == "path" || i >= len(values) {
			continue
		}
		kv = append(kv, l+"="+values[i])
	}
	if len(kv) == 0 {
		return name
	}
	sort.Strings(kv)
	return name + "{" + strings.Join(kv, ",") + "}"
}

// exporter is the service.MetricsExporter view of a Recorder.
type exporter struct{ r *Recorder }

// metric is one counter, gauge or timer with its label values.
type metric struct {
	r   *Recorder
	key string
}

func (m metric) Incr(n int64) {
	m.r.mu.Lock()
	m.r.values[m.key] += n
	m.r.mu.Unlock()
}

func (m metric) Set(n int64) {
	m.r.mu.Lock()
	m.r.values[m.key] = n
	m.r.mu.Unlock()
}

func (m metric) Timing(n int64) {
	m.r.mu.Lock()
	m.r.values[m.key] += n
	m.r.counts[m.key]++
	m.r.mu.Unlock()
}

func (e exporter) NewCounterCtor(name string, labels ...string) service.MetricsExporterCounterCtor {
	return func(values ...string) service.MetricsExporterCounter { return metric{e.r, key(name, labels, values)} }
}

func (e exporter) NewTimerCtor(name string, labels ...string) service.MetricsExporterTimerCtor {
	return func(values ...string) service.MetricsExporterTimer { return metric{e.r, key(name, labels, values)} }
}

func (e exporter) NewGaugeCtor(name string, labels ...string) service.MetricsExporterGaugeCtor {
	return func(values ...string) service.MetricsExporterGauge { return metric{e.r, key(name, labels, values)} }
}

func (exporter) Close(context.Context) error { return nil }
