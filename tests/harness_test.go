package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
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
	stream := buildPipeline(t, file, env, mux, nil)
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipeline{stream: stream, cancelRun: cancel, done: make(chan error, 1)}
	go func() { p.done <- stream.Run(ctx) }()
	t.Cleanup(func() { p.stop(t, 30*time.Second) })
	return p
}

// buildPipeline builds config/<file> as startPipeline runs it, its text
// passed through edit first when edit is not nil.
func buildPipeline(t testing.TB, file string, env map[string]string, mux *http.ServeMux, edit func(string) string) *service.Stream {
	t.Helper()
	yaml, err := os.ReadFile("../config/" + file)
	require.NoError(t, err)
	if edit != nil {
		yaml = []byte(edit(string(yaml)))
	}
	if _, ok := env["STATE_DIR"]; !ok {
		// One state folder per instance, as in production.
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		env["STATE_DIR"] = t.TempDir()
	}
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
	return stream
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

// faultMode is what a faultProxy does to the requests it gets.
type faultMode int32

const (
	// modePass forwards every request.
	modePass faultMode = iota
	// modeFaulty fails 30% of the requests, each with one of: 503 (JSON),
	// 502 (HTML), a bare 429, a dropped connection, or a 500 after the
	// request was forwarded (delivered, but the client cannot know).
	modeFaulty
	// modeOutage answers 503 to everything: an outage that can end.
	modeOutage
	// modeForbidden answers 403 with an HTML page, as a misconfigured proxy
	// or WAF does.
	modeForbidden
)

// faultRate is the share of requests modeFaulty fails.
const faultRate = 0.3

func (m faultMode) String() string {
	return [...]string{"pass", "30% faults", "outage (503)", "403 proxy"}[m]
}

// faultProxy stands in front of a fake server (Amplitude, Braze) and fails
// requests according to its mode, which a test switches at any time.
type faultProxy struct {
	mode  atomic.Int32
	proxy *httputil.ReverseProxy
	URL   string

	mu     sync.Mutex
	rng    *rand.Rand
	counts map[string]int // answers by kind
}

func newFaultProxy(t testing.TB, target string, seed uint64) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := &faultProxy{
		proxy:  httputil.NewSingleHostReverseProxy(u),
		rng:    rand.New(rand.NewPCG(seed, seed+1)),
		counts: map[string]int{},
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *faultProxy) set(m faultMode) { p.mode.Store(int32(m)) }

// Counts returns the answers given, by kind ("forwarded", "503", ...).
func (p *faultProxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.counts)
}

func (p *faultProxy) count(kind string) {
	p.mu.Lock()
	p.counts[kind]++
	p.mu.Unlock()
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := "forwarded"
	switch faultMode(p.mode.Load()) {
	case modeOutage:
		kind = "503"
	case modeForbidden:
		kind = "403"
	case modeFaulty:
		p.mu.Lock()
		if p.rng.Float64() < faultRate {
			kind = [...]string{"503", "502", "429", "drop", "500 after forwarding"}[p.rng.IntN(5)]
		}
		p.mu.Unlock()
	}
	p.count(kind)
	switch kind {
	case "forwarded":
		p.proxy.ServeHTTP(w, r)
	case "503", "429":
		status, _ := strconv.Atoi(kind)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `{"code":%d,"error":"%s"}`, status, http.StatusText(status))
	case "502", "403":
		status, _ := strconv.Atoi(kind)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>", status, http.StatusText(status))
	case "drop":
		_, _ = io.Copy(io.Discard, r.Body)
		panic(http.ErrAbortHandler)
	case "500 after forwarding":
		rec := httptest.NewRecorder()
		p.proxy.ServeHTTP(rec, r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"code":500,"error":"Internal server error"}`)
	}
}
