package prometheus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redpanda-data/benthos/v4/public/service"
)

// Field names (as in Redpanda Connect's prometheus exporter).
const (
	pmFieldUseHistogramTiming = "use_histogram_timing"
	pmFieldHistogramBuckets   = "histogram_buckets"
	pmFieldSummaryQuantiles   = "summary_quantiles_objectives"
	pmFieldQuantile           = "quantile"
	pmFieldError              = "error"
	pmFieldAddProcessMetrics  = "add_process_metrics"
	pmFieldAddGoMetrics       = "add_go_metrics"
)

func prometheusMetricsSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Summary("Serves metrics in the Prometheus text format at `/metrics` (and `/stats`) of the service-wide HTTP server.").
		Description(`
Every Benthos metric becomes a Prometheus metric of the same name, with its labels (`+"`label`, `path`"+` and the
component's own). Names and label names are made valid for Prometheus by replacing other characters with `+"`_`"+`.

- Counters (`+"`output_sent`, `amplitude_events_sent`"+`, ...) are Prometheus counters.
- Gauges are gauges.
- Timings (`+"`*_ns`"+`) are summaries in nanoseconds, with the quantiles of `+"`summary_quantiles_objectives`"+`.
  With `+"`use_histogram_timing`"+` they are histograms in seconds instead, and their `+"`_ns`"+` suffix becomes
  `+"`_seconds`"+` (for example `+"`output_latency_seconds`"+`), which aggregates across instances.

The HTTP server listens on `+"`http.address`"+` (default `+"`0.0.0.0:4195`"+`). A metric name registered twice
with different label names or types keeps its first definition; the other registration is logged and not exported.`).
		Fields(
			service.NewBoolField(pmFieldUseHistogramTiming).
				Description("Whether timings are exported as histograms in seconds rather than summaries in nanoseconds.").
				Default(false).
				Example(true),
			service.NewFloatListField(pmFieldHistogramBuckets).
				Description("The upper bounds, in seconds, of the histogram buckets of timings. Empty means Prometheus' default buckets (5ms to 10s).").
				Default([]any{}).
				Example([]any{0.01, 0.05, 0.1, 0.5, 1, 5, 30}).
				Advanced(),
			service.NewObjectListField(pmFieldSummaryQuantiles,
				service.NewFloatField(pmFieldQuantile).
					Description("A quantile, between 0 and 1.").
					Example(0.99),
				service.NewFloatField(pmFieldError).
					Description("The allowed absolute error of the quantile.").
					Example(0.001),
			).
				Description("The quantiles of timing summaries and their allowed errors.").
				Default([]any{
					map[string]any{pmFieldQuantile: 0.5, pmFieldError: 0.05},
					map[string]any{pmFieldQuantile: 0.9, pmFieldError: 0.01},
					map[string]any{pmFieldQuantile: 0.99, pmFieldError: 0.001},
				}).
				Example([]any{map[string]any{pmFieldQuantile: 0.999, pmFieldError: 0.0001}}).
				Advanced(),
			service.NewBoolField(pmFieldAddProcessMetrics).
				Description("Whether to add the process metrics of the Prometheus client (CPU, memory, open files).").
				Default(false).
				Example(true),
			service.NewBoolField(pmFieldAddGoMetrics).
				Description("Whether to add the Go runtime metrics of the Prometheus client (goroutines, GC, heap).").
				Default(false).
				Example(true),
		).
		Example("Prometheus with histograms", "Serves `/metrics` on port 4195 with latency histograms.", `
http:
  address: 0.0.0.0:4195
metrics:
  prometheus:
    use_histogram_timing: true
    add_go_metrics: true
`)
}

func init() {
	service.MustRegisterMetricsExporter("prometheus", prometheusMetricsSpec(),
		func(conf *service.ParsedConfig, log *service.Logger) (service.MetricsExporter, error) {
			return newExporterFromParsed(conf, log)
		})
}

// Exporter is the prometheus metrics exporter. Benthos discovers its HTTP
// handler through the HandlerFunc method and serves it at /metrics.
type Exporter struct {
	reg          *prometheus.Registry
	handler      http.HandlerFunc
	useHistogram bool
	buckets      []float64
	objectives   map[float64]float64
	log          *service.Logger

	mu      sync.Mutex
	metrics map[string]registered
}

// registered is a metric vector with the definition it was created with.
type registered struct {
	kind   string
	labels []string
	vec    any
}

func newExporterFromParsed(conf *service.ParsedConfig, log *service.Logger) (*Exporter, error) {
	e := &Exporter{
		reg:        prometheus.NewRegistry(),
		log:        log,
		metrics:    map[string]registered{},
		objectives: map[float64]float64{},
	}
	var err error
	if e.useHistogram, err = conf.FieldBool(pmFieldUseHistogramTiming); err != nil {
		return nil, err
	}
	if e.buckets, err = conf.FieldFloatList(pmFieldHistogramBuckets); err != nil {
		return nil, err
	}
	if len(e.buckets) == 0 {
		e.buckets = prometheus.DefBuckets
	}
	if !slices.IsSorted(e.buckets) {
		return nil, errors.New("field histogram_buckets: bounds must be in increasing order")
	}
	qs, err := conf.FieldObjectList(pmFieldSummaryQuantiles)
	if err != nil {
		return nil, err
	}
	for i, q := range qs {
		quantile, err := q.FieldFloat(pmFieldQuantile)
		if err != nil {
			return nil, err
		}
		qerr, err := q.FieldFloat(pmFieldError)
		if err != nil {
			return nil, err
		}
		if quantile < 0 || quantile > 1 || qerr < 0 || qerr > 1 {
			return nil, fmt.Errorf("field summary_quantiles_objectives[%d]: quantile and error must be between 0 and 1", i)
		}
		e.objectives[quantile] = qerr
	}
	for field, c := range map[string]prometheus.Collector{
		pmFieldAddProcessMetrics: collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		pmFieldAddGoMetrics:      collectors.NewGoCollector(),
	} {
		on, err := conf.FieldBool(field)
		if err != nil {
			return nil, err
		}
		if on {
			e.reg.MustRegister(c)
		}
	}
	e.handler = promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{}).ServeHTTP
	return e, nil
}

// HandlerFunc serves the registry in the Prometheus exposition format.
func (e *Exporter) HandlerFunc() http.HandlerFunc {
	return e.handler
}

// NewCounterCtor returns a constructor of counters of the given name.
func (e *Exporter) NewCounterCtor(name string, labelKeys ...string) service.MetricsExporterCounterCtor {
	vec, ok := e.vector("counter", sanitize(name), labelKeys, func(n string, l []string) prometheus.Collector {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: n, Help: "Benthos counter " + n}, l)
	})
	return withLabels(vec, ok, func(c prometheus.Counter) service.MetricsExporterCounter { return counter{c} })
}

// NewGaugeCtor returns a constructor of gauges of the given name.
func (e *Exporter) NewGaugeCtor(name string, labelKeys ...string) service.MetricsExporterGaugeCtor {
	vec, ok := e.vector("gauge", sanitize(name), labelKeys, func(n string, l []string) prometheus.Collector {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: n, Help: "Benthos gauge " + n}, l)
	})
	return withLabels(vec, ok, func(g prometheus.Gauge) service.MetricsExporterGauge { return gauge{g} })
}

// NewTimerCtor returns a constructor of timings of the given name: summaries
// in nanoseconds, or histograms in seconds.
func (e *Exporter) NewTimerCtor(name string, labelKeys ...string) service.MetricsExporterTimerCtor {
	name = sanitize(name)
	kind, scale := "summary", 1.0
	if e.useHistogram {
		kind, scale = "histogram", 1e-9
		name = strings.TrimSuffix(name, "_ns") + "_seconds"
	}
	vec, ok := e.vector(kind, name, labelKeys, func(n string, l []string) prometheus.Collector {
		if e.useHistogram {
			return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: n, Help: "Benthos timing " + n + " (seconds)", Buckets: e.buckets}, l)
		}
		return prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: n, Help: "Benthos timing " + n + " (nanoseconds)", Objectives: e.objectives}, l)
	})
	return withLabels(vec, ok, func(o prometheus.Observer) service.MetricsExporterTimer { return timer{o: o, scale: scale} })
}

// labelled is a Prometheus metric vector yielding metrics of type M.
type labelled[M any] interface {
	GetMetricWithLabelValues(lvs ...string) (M, error)
}

// withLabels returns a constructor of the vector's metrics wrapped for
// Benthos. Unregistered vectors and bad label values yield a no-op metric.
func withLabels[M, R any](vec any, ok bool, wrap func(M) R) func(...string) R {
	return func(labelValues ...string) R {
		if ok {
			if m, err := vec.(labelled[M]).GetMetricWithLabelValues(labelValues...); err == nil {
				return wrap(m)
			}
		}
		return any(noop{}).(R)
	}
}

// vector returns the collector registered under name, creating it on first
// use. It reports false when the name is taken by a different definition.
func (e *Exporter) vector(kind, name string, labelKeys []string, create func(string, []string) prometheus.Collector) (any, bool) {
	labels := make([]string, len(labelKeys))
	for i, l := range labelKeys {
		labels[i] = sanitize(l)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.metrics[name]; ok {
		if r.kind != kind || !slices.Equal(r.labels, labels) {
			e.log.Warnf("Metric %s is already a %s with labels %v: its use as a %s with labels %v is not exported", name, r.kind, r.labels, kind, labels)
			return nil, false
		}
		return r.vec, true
	}
	c := create(name, labels)
	if err := e.reg.Register(c); err != nil {
		e.log.Warnf("Metric %s is not exported: %v", name, err)
		return nil, false
	}
	e.metrics[name] = registered{kind: kind, labels: labels, vec: c}
	return c, true
}

// Close releases nothing: the registry lives as long as the process.
func (e *Exporter) Close(context.Context) error {
	return nil
}

// sanitize turns a metric or label name into a valid Prometheus name.
func sanitize(name string) string {
	if name == "" {
		return "_"
	}
	b := []byte(name)
	for i, c := range b {
		valid := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !valid {
			b[i] = '_'
		}
	}
	return string(b)
}

type counter struct{ c prometheus.Counter }

// Incr adds n; negative increments, which Prometheus counters refuse, are
// ignored.
func (c counter) Incr(n int64) {
	if n > 0 {
		c.c.Add(float64(n))
	}
}

// IncrFloat64 adds n; negative increments are ignored.
func (c counter) IncrFloat64(n float64) {
	if n > 0 {
		c.c.Add(n)
	}
}

type gauge struct{ g prometheus.Gauge }

// Set sets the gauge.
func (g gauge) Set(v int64) { g.g.Set(float64(v)) }

// SetFloat64 sets the gauge.
func (g gauge) SetFloat64(v float64) { g.g.Set(v) }

type timer struct {
	o     prometheus.Observer
	scale float64
}

// Timing observes a duration given in nanoseconds.
func (t timer) Timing(ns int64) { t.o.Observe(float64(ns) * t.scale) }

// noop stands in for metrics that could not be registered.
type noop struct{}

func (noop) Incr(int64)          {}
func (noop) IncrFloat64(float64) {}
func (noop) Set(int64)           {}
func (noop) SetFloat64(float64)  {}
func (noop) Timing(int64)        {}
