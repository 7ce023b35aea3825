package prometheus

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

func buildExporter(t *testing.T, yaml string) *Exporter {
	t.Helper()
	conf, err := prometheusMetricsSpec().ParseYAML(yaml, nil)
	require.NoError(t, err)
	e, err := newExporterFromParsed(conf, nil)
	require.NoError(t, err)
	return e
}

func scrape(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}

func TestExporterMetricKinds(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, e *Exporter)
		want  []string
	}{
		{
			name: "counter with labels, negative ignored",
			check: func(t *testing.T, e *Exporter) {
				c := e.NewCounterCtor("amplitude_events_sent", "label", "path")
				c("amp", "root.output").Incr(3)
				c("amp", "root.output").Incr(-1)
				c("amp", "root.output").(interface{ IncrFloat64(float64) }).IncrFloat64(0.5)
			},
			want: []string{`amplitude_events_sent{label="amp",path="root.output"} 3.5`},
		},
		{
			name: "gauge",
			check: func(t *testing.T, e *Exporter) {
				e.NewGaugeCtor("device_rate_limit_keys")().Set(42)
			},
			want: []string{"device_rate_limit_keys 42"},
		},
		{
			name: "summary in nanoseconds",
			yaml: "use_histogram_timing: false",
			check: func(t *testing.T, e *Exporter) {
				e.NewTimerCtor("output_latency_ns", "label")("out").Timing(2_000_000)
			},
			want: []string{`output_latency_ns{label="out",quantile="0.99"} 2e+06`, `output_latency_ns_count{label="out"} 1`},
		},
		{
			name: "summary of a _seconds timer in seconds",
			yaml: "use_histogram_timing: false",
			check: func(t *testing.T, e *Exporter) {
				e.NewTimerCtor("amplitude_request_seconds")().Timing(2_000_000)
			},
			want: []string{`amplitude_request_seconds_sum 0.002`, "(seconds)"},
		},
		{
			name: "histogram in seconds by default, _seconds name kept",
			check: func(t *testing.T, e *Exporter) {
				e.NewTimerCtor("amplitude_request_seconds")().Timing(3_000_000_000)
				e.NewTimerCtor("plain_timer")().Timing(1_000_000_000)
			},
			want: []string{`amplitude_request_seconds_bucket{le="5"} 1`, "amplitude_request_seconds_sum 3", "plain_timer_seconds_sum 1"},
		},
		{
			name: "histogram in seconds",
			yaml: "histogram_buckets: [0.001, 0.01]",
			check: func(t *testing.T, e *Exporter) {
				e.NewTimerCtor("output_latency_ns")().Timing(2_000_000)
			},
			want: []string{`output_latency_seconds_bucket{le="0.001"} 0`, `output_latency_seconds_bucket{le="0.01"} 1`, "output_latency_seconds_sum 0.002"},
		},
		{
			name: "invalid characters sanitised",
			check: func(t *testing.T, e *Exporter) {
				e.NewCounterCtor("my.metric-name", "some-label")("v").Incr(1)
			},
			want: []string{`my_metric_name{some_label="v"} 1`},
		},
		{
			name: "conflicting definitions keep the first",
			check: func(t *testing.T, e *Exporter) {
				e.NewCounterCtor("dup", "a")("x").Incr(1)
				e.NewCounterCtor("dup", "b")("y").Incr(5)
				e.NewGaugeCtor("dup", "a")("x").Set(7)
				e.NewCounterCtor("dup", "a")("z").Incr(2)
			},
			want: []string{`dup{a="x"} 1`, `dup{a="z"} 2`},
		},
		{
			name:  "go metrics",
			yaml:  "add_go_metrics: true",
			check: func(t *testing.T, e *Exporter) {},
			want:  []string{"go_goroutines"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := buildExporter(t, tt.yaml)
			tt.check(t, e)
			body := scrape(t, e.HandlerFunc())
			for _, w := range tt.want {
				assert.Contains(t, body, w)
			}
			assert.NotContains(t, body, `b="y"`)
			require.NoError(t, e.Close(context.Background()))
		})
	}
}

func TestExporterConfigValidation(t *testing.T) {
	for yaml, want := range map[string]string{
		"histogram_buckets: [1, 0.5]":                               "increasing order",
		"summary_quantiles_objectives: [{quantile: 2, error: 0.1}]": "between 0 and 1",
		"push_interval: 10s":                                        "needs push_url",
		"push_url: 'ftp://host'":                                    "push_url",
		"push_url: 'http://u:hunter2@'":                             "push_url",
		"{push_url: 'http://gw:9091', push_interval: -1s}":          "push_interval",
		"{push_url: 'http://gw:9091', push_job_name: ''}":           "push_job_name",
	} {
		conf, err := prometheusMetricsSpec().ParseYAML(yaml, nil)
		require.NoError(t, err)
		_, err = newExporterFromParsed(conf, nil)
		assert.ErrorContains(t, err, want, yaml)
		if err != nil {
			assert.NotContains(t, err.Error(), "hunter2", "a password leaked into an error")
		}
	}
}

// TestServedOnBenthosHTTPServer runs a stream with the exporter and scrapes
// /metrics from Benthos' own HTTP server.
func TestServedOnBenthosHTTPServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	sb := service.NewStreamBuilder()
	require.NoError(t, sb.SetYAML(fmt.Sprintf(`
http:
  enabled: true
  address: %s
input:
  generate:
    interval: 5ms
    mapping: 'root = {"n": counter()}'
pipeline:
  processors:
    - metric:
        type: counter
        name: braze_events_seen
output:
  drop: {}
metrics:
  prometheus:
    use_histogram_timing: true
logger:
  level: none
`, addr)))
	s, err := sb.Build()
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, s.Stop(ctx))
		<-done
	}()

	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return strings.Contains(body, "braze_events_seen{") && strings.Contains(body, "output_latency_seconds_bucket")
	}, 30*time.Second, 50*time.Millisecond, "metrics not served: %s", body)
	assert.Contains(t, body, "# TYPE braze_events_seen counter")
	assert.Contains(t, body, "input_received{")
}

// pushGateway is a loopback Prometheus Push Gateway that records pushes.
type pushGateway struct {
	*httptest.Server
	mu     sync.Mutex
	pushes []pushed
	got    chan struct{}
}

type pushed struct {
	method, path, user, pass, body string
}

func newPushGateway(t *testing.T) *pushGateway {
	g := &pushGateway{got: make(chan struct{}, 16)}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u, p, _ := r.BasicAuth()
		g.mu.Lock()
		g.pushes = append(g.pushes, pushed{r.Method, r.URL.Path, u, p, string(b)})
		g.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		g.got <- struct{}{}
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *pushGateway) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pushes)
}

func TestPushGateway(t *testing.T) {
	gw := newPushGateway(t)
	conf, err := prometheusMetricsSpec().ParseYAML(fmt.Sprintf(`
push_url: %s
push_interval: 10s
push_job_name: backfill
push_basic_auth:
  username: pusher
  password: s3cret
`, gw.URL), nil)
	require.NoError(t, err)
	clk := clock.NewFake(time.Unix(1_767_225_600, 0))
	e, err := newExporter(conf, nil, clk, gw.Client())
	require.NoError(t, err)
	e.NewCounterCtor("braze_events_seen")().Incr(7)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Nothing is pushed before the interval elapses on the clock.
	require.True(t, clk.WaitForTimers(ctx, 1))
	assert.Zero(t, gw.count())
	clk.Advance(10 * time.Second)
	<-gw.got
	require.True(t, clk.WaitForTimers(ctx, 1))
	clk.Advance(10 * time.Second)
	<-gw.got

	// Close pushes once more and stops the periodic push.
	require.NoError(t, e.Close(context.Background()))
	<-gw.got
	require.NoError(t, e.Close(context.Background()), "a second close does nothing")
	assert.Equal(t, 3, gw.count())
	assert.Zero(t, clk.Pending(), "the periodic push still waits on the clock")
	gw.mu.Lock()
	defer gw.mu.Unlock()
	for _, p := range gw.pushes {
		assert.Equal(t, http.MethodPut, p.method)
		assert.Equal(t, "/metrics/job/backfill", p.path)
		assert.Equal(t, "pusher", p.user)
		assert.Equal(t, "s3cret", p.pass)
		assert.Contains(t, p.body, "braze_events_seen")
	}
}

func TestPushFailureIsReported(t *testing.T) {
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "full", http.StatusServiceUnavailable)
	}))
	defer gw.Close()
	conf, err := prometheusMetricsSpec().ParseYAML("push_url: "+gw.URL, nil)
	require.NoError(t, err)
	e, err := newExporter(conf, nil, clock.NewFake(time.Unix(0, 0)), gw.Client())
	require.NoError(t, err)
	assert.ErrorContains(t, e.Close(context.Background()), "push metrics")
}

func TestFileOutputOnClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.prom")
	e := buildExporter(t, "file_output_path: "+path)
	e.NewCounterCtor("amplitude_events_sent", "label")("amp").Incr(5)
	_, err := os.Stat(path)
	require.True(t, os.IsNotExist(err), "written before shutdown")
	require.NoError(t, e.Close(context.Background()))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Contains(t, string(b), `amplitude_events_sent{label="amp"} 5`)
}
