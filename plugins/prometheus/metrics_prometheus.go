package prometheus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/push"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
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
	pmFieldPushURL            = "push_url"
	pmFieldPushInterval       = "push_interval"
	pmFieldPushJobName        = "push_job_name"
	pmFieldPushBasicAuth      = "push_basic_auth"
	pmFieldUsername           = "username"
	pmFieldPassword           = "password"
	pmFieldFileOutputPath     = "file_output_path"
)

// pushTimeout bounds one push to the Push Gateway.
const pushTimeout = 30 * time.Second

func prometheusMetricsSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		Summary("Serves metrics in the Prometheus text format at `/metrics` (and `/stats`) of the service-wide HTTP server.").
		Description(`
Every Benthos metric becomes a Prometheus metric of the same name, with its labels (`+"`label`, `path`"+` and the
component's own). Names and label names are made valid for Prometheus by replacing other characters with `+"`_`"+`.

- Counters (`+"`output_sent`, `amplitude_events_sent`"+`, ...) are Prometheus counters.
- Gauges are gauges.
- Timings are histograms in seconds (`+"`use_histogram_timing: true`"+`, this distribution's default; Redpanda
  Connect's is `+"`false`"+`), named with the suffix `+"`_seconds`"+`: Benthos' `+"`*_ns`"+` timers become `+"`*_seconds`"+`
  (for example `+"`output_latency_seconds`"+`), timers already named `+"`*_seconds`"+` keep their name, others gain the
  suffix. Histograms aggregate across instances. With `+"`use_histogram_timing: false`"+` timings are summaries under
  their own name with the quantiles of `+"`summary_quantiles_objectives`"+`, in nanoseconds as in Redpanda Connect, except
  timers named `+"`*_seconds`"+`, observed in seconds.

With `+"`push_url`"+` the metrics are also pushed to a Prometheus Push Gateway, every `+"`push_interval`"+` when set and
once more on shutdown (for short-lived instances). With `+"`file_output_path`"+` they are written to that file, in the
text format, on shutdown.

The HTTP server listens on `+"`http.address`"+` (default `+"`0.0.0.0:4195`"+`). A metric name registered twice
with different label names or types keeps its first definition; the other registration is logged and not exported.`).
		Fields(
			service.NewBoolField(pmFieldUseHistogramTiming).
				Description("Whether timings are exported as histograms in seconds rather than summaries. Default true, unlike Redpanda Connect (false), so that every latency is a histogram in seconds.").
				Default(true).
				Example(false),
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
			service.NewStringField(pmFieldPushURL).
				Description("The URL of a Prometheus Push Gateway to push metrics to, without the `/metrics/job/...` path. Empty: no push.").
				Default("").
				Example("http://pushgateway:9091").
				Advanced(),
			service.NewStringField(pmFieldPushInterval).
				Description("How often metrics are pushed to `push_url`, as a duration; empty means only once, on shutdown.").
				Default("").
				Example("15s").
				Advanced(),
			service.NewStringField(pmFieldPushJobName).
				Description("The job name of the pushed metrics.").
				Default("benthos_push").
				Example("currents-backfill").
				Advanced(),
			service.NewObjectField(pmFieldPushBasicAuth,
				service.NewStringField(pmFieldUsername).
					Description("The user name.").
					Default("").
					Example("${PUSHGATEWAY_USER}"),
				service.NewStringField(pmFieldPassword).
					Description("The password.").
					Default("").
					Example("${PUSHGATEWAY_PASSWORD}").
					Secret(),
			).
				Description("HTTP basic authentication for the Push Gateway, used when both are set.").
				Advanced(),
			service.NewStringField(pmFieldFileOutputPath).
				Description("A file to write every metric to, in the Prometheus text format, on shutdown. Empty: none.").
				Default("").
				Example("/var/lib/currents/metrics.prom").
				Advanced(),
		).
		Example("Prometheus with histograms", "Serves `/metrics` on port 4195 with latency histograms.", `
http:
  address: 0.0.0.0:4195
metrics:
  prometheus:
    add_go_metrics: true
`).
		Example("Push Gateway", "Pushes every 15s and on shutdown, for a short-lived backfill.", `
metrics:
  prometheus:
    push_url: "${PUSHGATEWAY_URL:http://localhost:9091}"
    push_interval: 15s
    push_job_name: currents-backfill
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

	clk      clock.Clock
	pusher   *push.Pusher
	pushURL  string
	interval time.Duration
	file     string
	// stopPush ends the periodic push; pushDone is closed once it returned.
	stopPush  context.CancelFunc
	pushDone  chan struct{}
	closeOnce sync.Once
}

// registered is a metric vector with the definition it was created with.
type registered struct {
	kind   string
	labels []string
	vec    any
}

func newExporterFromParsed(conf *service.ParsedConfig, log *service.Logger) (*Exporter, error) {
	return newExporter(conf, log, clock.System, http.DefaultClient)
}

// newExporter builds the exporter with the clock of its periodic push and
// the HTTP client that pushes.
func newExporter(conf *service.ParsedConfig, log *service.Logger, clk clock.Clock, hc push.HTTPDoer) (*Exporter, error) {
	e := &Exporter{
		reg:        prometheus.NewRegistry(),
		log:        log,
		metrics:    map[string]registered{},
		objectives: map[float64]float64{},
		clk:        clock.OrSystem(clk),
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
	if err := e.parsePush(conf, hc); err != nil {
		return nil, err
	}
	if e.file, err = conf.FieldString(pmFieldFileOutputPath); err != nil {
		return nil, err
	}
	e.handler = promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{}).ServeHTTP
	if e.pusher != nil && e.interval > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		e.stopPush, e.pushDone = cancel, make(chan struct{})
		go e.pushEvery(ctx)
	}
	return e, nil
}

// parsePush reads the Push Gateway fields.
func (e *Exporter) parsePush(conf *service.ParsedConfig, hc push.HTTPDoer) error {
	strs := map[string]string{}
	for _, f := range []string{pmFieldPushURL, pmFieldPushInterval, pmFieldPushJobName} {
		s, err := conf.FieldString(f)
		if err != nil {
			return err
		}
		strs[f] = s
	}
	user, err := conf.FieldString(pmFieldPushBasicAuth, pmFieldUsername)
	if err != nil {
		return err
	}
	pass, err := conf.FieldString(pmFieldPushBasicAuth, pmFieldPassword)
	if err != nil {
		return err
	}
	if strs[pmFieldPushURL] == "" {
		if strs[pmFieldPushInterval] != "" {
			return errors.New("field push_interval: needs push_url")
		}
		return nil
	}
	u, err := url.Parse(strs[pmFieldPushURL])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("field push_url: not an http(s) URL with a host")
	}
	if strs[pmFieldPushJobName] == "" {
		return errors.New("field push_job_name: must not be empty")
	}
	if s := strs[pmFieldPushInterval]; s != "" {
		if e.interval, err = time.ParseDuration(s); err != nil || e.interval <= 0 {
			return fmt.Errorf("field push_interval: %q is not a positive duration", s)
		}
	}
	e.pushURL = u.Redacted() // no password from the URL in logs
	e.pusher = push.New(strs[pmFieldPushURL], strs[pmFieldPushJobName]).Gatherer(e.reg).Client(hc)
	if user != "" && pass != "" {
		e.pusher = e.pusher.BasicAuth(user, pass)
	}
	return nil
}

// pushEvery pushes every interval until ctx ends.
func (e *Exporter) pushEvery(ctx context.Context) {
	defer close(e.pushDone)
	for clock.Sleep(ctx, e.clk, e.interval) == nil {
		e.pushOnce(ctx)
	}
}

// pushOnce pushes the registry, logging a failure (the next push retries).
func (e *Exporter) pushOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	err := e.pusher.PushContext(ctx)
	if err != nil && e.log != nil {
		e.log.Errorf("Failed to push metrics to %s: %v", e.pushURL, err)
	}
	return err
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

// NewTimerCtor returns a constructor of timings of the given name:
// histograms in seconds, or summaries (see the spec for names and units).
func (e *Exporter) NewTimerCtor(name string, labelKeys ...string) service.MetricsExporterTimerCtor {
	name = sanitize(name)
	kind, scale := "summary", 1.0
	if strings.HasSuffix(name, "_seconds") {
		scale = 1e-9
	}
	if e.useHistogram {
		kind, scale = "histogram", 1e-9
		name = histogramName(name)
	}
	vec, ok := e.vector(kind, name, labelKeys, func(n string, l []string) prometheus.Collector {
		if e.useHistogram {
			return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: n, Help: "Benthos timing " + n + " (seconds)", Buckets: e.buckets}, l)
		}
		unit := "nanoseconds"
		if scale != 1 {
			unit = "seconds"
		}
		return prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: n, Help: "Benthos timing " + n + " (" + unit + ")", Objectives: e.objectives}, l)
	})
	return withLabels(vec, ok, func(o prometheus.Observer) service.MetricsExporterTimer { return timer{o: o, scale: scale} })
}

// histogramName names a timing histogram: `_ns` becomes `_seconds`, a
// `_seconds` name stays, any other gains the suffix.
func histogramName(name string) string {
	if strings.HasSuffix(name, "_seconds") {
		return name
	}
	return strings.TrimSuffix(name, "_ns") + "_seconds"
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

// Close stops the periodic push, pushes one last time and writes
// file_output_path, when configured. Later calls do nothing.
func (e *Exporter) Close(ctx context.Context) error {
	var errs []error
	e.closeOnce.Do(func() {
		if e.stopPush != nil {
			e.stopPush()
			<-e.pushDone
		}
		if e.pusher != nil {
			if err := e.pushOnce(ctx); err != nil {
				errs = append(errs, fmt.Errorf("push metrics: %w", err))
			}
		}
		if e.file != "" {
			if err := prometheus.WriteToTextfile(e.file, e.reg); err != nil {
				errs = append(errs, fmt.Errorf("write metrics to %s: %w", e.file, err))
			}
		}
	})
	return errors.Join(errs...)
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
