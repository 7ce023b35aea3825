package tests

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/currents"
	"github.com/opencurrents/currents-amplitude/plugins/ingest/ingesttest"

	// The braze_currents_http input, until plugins/all imports it.
	_ "github.com/opencurrents/currents-amplitude/plugins/ingest"
)

// e2eToken is the Braze connector's bearer token in the end-to-end tests.
const e2eToken = "e2e-currents-token"

// pipeline is one of the shipped config/*.yaml streams, built from the real
// file with environment variables pointing at loopback servers.
type pipeline struct {
	stream    *service.Stream
	cancelRun context.CancelFunc
	done      chan error
	stopped   atomic.Bool
}

// startPipeline builds config/<file> with env as its only environment
// (unset variables take the file's defaults) and runs it until the test
// ends. Benthos' own endpoints (/metrics, /ready...) are registered on mux
// when it is not nil, and on no server otherwise, so that pipelines run side
// by side. Register the fake servers' Close with t.Cleanup before calling it,
// so that the pipeline stops first (cleanups run last-in first-out).
func startPipeline(t testing.TB, file string, env map[string]string, mux *http.ServeMux) *pipeline {
	t.Helper()
	yaml, err := os.ReadFile("../config/" + file)
	require.NoError(t, err)
	sb := service.NewStreamBuilder()
	sb.SetEnvVarLookupFunc(func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	require.NoError(t, sb.SetYAML(string(yaml)))
	if mux == nil {
		mux = http.NewServeMux()
	}
	sb.SetHTTPMux(mux)
	stream, err := sb.Build()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipeline{stream: stream, cancelRun: cancel, done: make(chan error, 1)}
	go func() { p.done <- stream.Run(ctx) }()
	t.Cleanup(func() { p.stop(t, 30*time.Second) })
	return p
}

// stop stops the stream, gracefully if it can within timeout, and returns
// once it is stopped; it is idempotent.
func (p *pipeline) stop(t testing.TB, timeout time.Duration) {
	t.Helper()
	if p.stopped.Swap(true) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := p.stream.Stop(ctx)
	if err != nil && timeout >= time.Second {
		t.Errorf("pipeline did not stop gracefully within %v: %v", timeout, err)
	}
	t.Logf("pipeline stopped in %v (err: %v)", time.Since(start), err)
	// Run only returns by itself when the input ends: release it.
	p.cancelRun()
	<-p.done
}

// wait waits for a pipeline whose input ends by itself.
func (p *pipeline) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-p.done:
		p.stopped.Store(true)
		require.NoError(t, err)
	case <-time.After(timeout):
		t.Fatalf("pipeline did not finish within %v", timeout)
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// httpEnv is the environment of currents_http_to_amplitude.yaml for a test.
func httpEnv(t *testing.T, amp *amplitudetest.Server) map[string]string {
	return map[string]string{
		"AMPLITUDE_API_KEY":     "e2e-amplitude-key",
		"AMPLITUDE_URL":         amp.HTTPV2URL(),
		"AMPLITUDE_TIMEOUT":     "2s",
		"AMPLITUDE_RETRY_FOR":   "20s",
		"BRAZE_CURRENTS_TOKEN":  e2eToken,
		"CURRENTS_HTTP_ADDRESS": freeAddr(t),
		"CURRENTS_HTTP_TIMEOUT": "30s",
		"DLQ_PATH":              t.TempDir() + "/dlq.jsonl",
		"LOG_LEVEL":             "ERROR",
	}
}

// currentsURL is the Braze-facing endpoint of a pipeline started with env.
func currentsURL(env map[string]string) string {
	return "http://" + env["CURRENTS_HTTP_ADDRESS"] + "/currents"
}

// waitListening polls url until something answers.
func waitListening(t *testing.T, url string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Post(url, "application/json", nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}, 30*time.Second, 20*time.Millisecond, "pipeline never listened on %s", url)
}

// amplitudeNames maps Currents types to their Amplitude base names.
var amplitudeNames = func() map[string]string {
	m := map[string]string{}
	for _, et := range currents.Catalogue() {
		m[et.Type] = et.Name
	}
	return m
}()

// checkMapped fails the test unless ev reached amp exactly as Braze's
// connector maps it.
func checkMapped(t *testing.T, amp *amplitudetest.Server, ev ingesttest.Event) {
	t.Helper()
	got, ok := amp.Event(ev.ID)
	if !ok {
		t.Errorf("event %s (%s) never reached Amplitude", ev.ID, ev.Type)
		return
	}
	want := "[Appboy] " + amplitudeNames[ev.Type]
	if ev.Type == currents.TypeCustomEvent {
		want = "[Appboy] [Custom Event] " + ev.CustomName
	}
	raw := gjson.Parse(got.Raw)
	for _, c := range []struct{ field, got, want string }{
		{"event_type", got.EventType, want},
		{"user_id", got.UserID, ev.ExternalUserID},
		{"device_id", got.DeviceID, ev.DeviceID},
		{"time", raw.Get("time").Raw, strconv.FormatInt(ev.Time*1000, 10)},
		{"library", raw.Get("library").String(), "Braze"},
	} {
		if c.got != c.want {
			t.Errorf("event %s (%s): %s = %q, want %q", ev.ID, ev.Type, c.field, c.got, c.want)
		}
	}
}

// readLines returns the non-empty lines of a file, or none if it is absent.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// outageProxy stands in front of a fake Amplitude and answers 503 to
// everything while down is set: a full Amplitude outage that can end.
type outageProxy struct {
	down  atomic.Bool
	proxy *httputil.ReverseProxy
	URL   string
}

func newOutageProxy(t *testing.T, target string) *outageProxy {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := &outageProxy{proxy: httputil.NewSingleHostReverseProxy(u)}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *outageProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.down.Load() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"code":503,"error":"Service Unavailable"}`))
		return
	}
	p.proxy.ServeHTTP(w, r)
}
