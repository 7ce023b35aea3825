package amplitude

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/batchtest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/ratelimited"
)

const testKey = "test-api-key-0123456789"

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newTestOutput builds an output from YAML pointing at url, with fast
// retries unless the YAML sets its own; logs go to the returned buffer.
func newTestOutput(t *testing.T, url, extra string) (*amplitudeOutput, *syncBuffer) {
	t.Helper()
	conf := fmt.Sprintf("api_key: %s\nurl: %s\ntimeout: 2s\n", testKey, url)
	if !strings.Contains(extra, "backoff:") {
		conf += "backoff:\n  initial_interval: 5ms\n  max_interval: 50ms\n  max_elapsed_time: 20s\n"
	}
	pConf, err := amplitudeOutputSpec().ParseYAML(conf+extra, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	logger := service.NewLoggerFromSlog(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	out, err := newAmplitudeOutputFromParsed(pConf, service.MockResources(service.MockResourcesOptUseLogger(logger)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = out.Close(ctx)
	})
	return out, logs
}

// write sends raws as one batch and returns the error of each failed index.
func write(t *testing.T, ctx context.Context, out *amplitudeOutput, raws []string) map[int]error {
	t.Helper()
	batch := make(service.MessageBatch, len(raws))
	for i, r := range raws {
		batch[i] = service.NewMessage([]byte(r))
	}
	idx := batch.Index()
	return batchtest.Failures(t, idx, out.WriteBatch(ctx, batch))
}

func evt(insertID, device string) string {
	return `{"event_type":"open","insert_id":"` + insertID + `","device_id":"` + device + `","time":1700000000000}`
}

func TestOutputScenarios(t *testing.T) {
	big := `{"event_type":"open","insert_id":"big","device_id":"device-1","p":"` + strings.Repeat("x", 400) + `"}`
	cases := []struct {
		name     string
		opts     amplitudetest.Options
		extra    string
		events   []string
		failed   map[int]string // index -> event-fault or outage reason
		statuses []int          // statuses the server must have answered
		log      string         // a line the logs must hold
	}{
		{name: "all ingested", events: []string{evt("a", "device-1"), evt("b", "device-2")}, statuses: []int{200}},
		{name: "refused before sending",
			events: []string{evt("a", "device-1"), `{"device_id":"device-1"}`, `not json`, `{"event_type":"x","device_id":"null"}`, evt("b", "device-2")},
			failed: map[int]string{1: "missing_fields", 2: "invalid_event", 3: "missing_fields"}},
		{name: "short id removed, min_id_length sent", extra: "min_id_length: 3\n",
			events: []string{`{"event_type":"x","insert_id":"s","device_id":"dev","user_id":"ab"}`},
			log:    "Removed 1 user_id/device_id values Amplitude refuses from events, which were sent with their other id (last: user_id: shorter than min_id_length 3)"},
		{name: "400 names events", opts: amplitudetest.Options{SilencedDevices: []string{"muted-1"}},
			events: []string{evt("a", "device-1"), evt("m", "muted-1"), evt("b", "device-2")},
			failed: map[int]string{1: "silenced"}, statuses: []int{400, 200}},
		{name: "413 halves", opts: amplitudetest.Options{MaxEvents: 7},
			events: manyEvents(40, 10), statuses: []int{413, 200}},
		{name: "413 single event fails alone", opts: amplitudetest.Options{MaxBytes: 300},
			events: []string{evt("a", "device-1"), big, evt("b", "device-2")},
			failed: map[int]string{1: "payload_too_large"}, statuses: []int{413, 200}},
		{name: "daily quota fails", opts: amplitudetest.Options{DailyQuota: 3}, extra: "daily_quota: fail\n",
			events: []string{evt("q1", "quota-dev"), evt("q2", "quota-dev"), evt("q3", "quota-dev"), evt("q4", "quota-dev"), evt("ok", "device-2")},
			// The pacer sends the events of quota-dev in requests of at
			// most its burst (smaller than the quota): the three that fit
			// the quota go in, the fourth is refused and fails.
			failed: map[int]string{3: "daily_quota"}, statuses: []int{429, 200}},
		{name: "daily quota fails without pacing", opts: amplitudetest.Options{DailyQuota: 3}, extra: "daily_quota: fail\npacing: false\n",
			events: []string{evt("q1", "quota-dev"), evt("q2", "quota-dev"), evt("q3", "quota-dev"), evt("q4", "quota-dev"), evt("ok", "device-2")},
			failed: map[int]string{0: "daily_quota", 1: "daily_quota", 2: "daily_quota", 3: "daily_quota"}, statuses: []int{429, 200}},
		{name: "5xx retried", opts: amplitudetest.Options{FaultRate: 0.6, FaultKinds: []amplitudetest.FaultKind{amplitudetest.Fault503, amplitudetest.Fault502}, Seed: 3},
			events: manyEvents(20, 5), statuses: []int{200}},
		{name: "retries run out", opts: amplitudetest.Options{FaultRate: 1, FaultKinds: []amplitudetest.FaultKind{amplitudetest.Fault503}},
			extra:  "backoff:\n  initial_interval: 5ms\n  max_interval: 20ms\n  max_elapsed_time: 100ms\n",
			events: []string{evt("a", "device-1"), evt("b", "device-2")},
			failed: map[int]string{0: "outage:retries_exhausted", 1: "outage:retries_exhausted"}, statuses: []int{503}},
		{name: "gzip", extra: "gzip: true\n", events: manyEvents(30, 30), statuses: []int{200}},
		{name: "batch endpoint", extra: "endpoint: batch\n", events: manyEvents(30, 30), statuses: []int{200}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.APIKey = testKey
			srv := amplitudetest.NewServer(tc.opts)
			defer srv.Close()
			out, logs := newTestOutput(t, srv.HTTPV2URL(), tc.extra)
			failed := write(t, context.Background(), out, tc.events)
			if len(failed) != len(tc.failed) {
				t.Fatalf("failed %v, want %v", failed, tc.failed)
			}
			for i, reason := range tc.failed {
				if got := reasonOf(failed[i]); got != reason {
					t.Errorf("event %d: error %v (%s), want reason %s", i, failed[i], got, reason)
				}
			}
			want := len(tc.events) - len(tc.failed)
			if srv.Count() != want || srv.Duplicates() != 0 {
				t.Errorf("ingested %d (duplicates %d), want %d; statuses %v", srv.Count(), srv.Duplicates(), want, srv.StatusCounts())
			}
			for i, raw := range tc.events {
				id := gjson.Get(raw, "insert_id").Str
				if _, ok := srv.Event(id); ok == (failed[i] != nil) && id != "" {
					t.Errorf("event %d (%s): ingested %v, failed %v", i, id, ok, failed[i])
				}
			}
			for _, s := range tc.statuses {
				if srv.StatusCounts()[s] == 0 {
					t.Errorf("server never answered %d: %v", s, srv.StatusCounts())
				}
			}
			if strings.Contains(logs.String(), testKey) {
				t.Errorf("logs contain the API key")
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("logs lack %q:\n%s", tc.log, logs)
			}
		})
	}
}

// reasonOf returns the dead-letter reason of an event fault, or
// "outage:<reason>" for an outage.
func reasonOf(err error) string {
	if r, ok := deadletter.ReasonOf(err); ok {
		return string(r)
	}
	var o *OutageError
	if errors.As(err, &o) {
		return "outage:" + string(o.Reason)
	}
	return fmt.Sprintf("untyped(%v)", err)
}

func manyEvents(n, devices int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = evt(fmt.Sprintf("ins-%d", i), fmt.Sprintf("device-%d", i%devices))
	}
	return out
}

func TestOutputInvalidAPIKeyNotLeaked(t *testing.T) {
	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: "the-right-key"})
	defer srv.Close()
	out, logs := newTestOutput(t, srv.HTTPV2URL(), "backoff:\n  initial_interval: 1ms\n  max_interval: 2ms\n  max_elapsed_time: 20ms\n")
	failed := write(t, context.Background(), out, []string{evt("a", "device-1"), evt("b", "device-2")})
	if len(failed) != 2 || srv.Requests() < 2 {
		t.Fatalf("failed %v after %d requests; want both nacked after retries", failed, srv.Requests())
	}
	for _, err := range failed {
		if reasonOf(err) != "outage:retries_exhausted" || !strings.Contains(err.Error(), "Invalid API key") {
			t.Errorf("error %q: an invalid key is an outage, not the events' fault", err)
		}
		if strings.Contains(err.Error(), testKey) {
			t.Errorf("error contains the API key: %q", err)
		}
	}
	if !strings.Contains(logs.String(), "Invalid API key") || strings.Contains(logs.String(), testKey) {
		t.Errorf("logs: %s", logs)
	}
}

// TestOutputKeyRedacted checks that an answer quoting the key is redacted.
func TestOutputKeyRedacted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "<html>blocked request with api_key=%s</html>", testKey)
	}))
	defer srv.Close()
	out, logs := newTestOutput(t, srv.URL, "backoff:\n  initial_interval: 1ms\n  max_interval: 2ms\n  max_elapsed_time: 10ms\n")
	failed := write(t, context.Background(), out, []string{evt("a", "device-1")})
	if err := failed[0]; err == nil || !IsOutage(err) || strings.Contains(err.Error(), testKey) || !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(logs.String(), testKey) {
		t.Fatal("logs contain the API key")
	}
}

// TestOutputBisect isolates an event refused by a 400 that names no event.
func TestOutputBisect(t *testing.T) {
	var mu sync.Mutex
	var ingested []string
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(r.Body)
		mu.Lock()
		defer mu.Unlock()
		requests++
		if strings.Contains(buf.String(), "poison") {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"code":400,"error":"Invalid event JSON"}`))
			return
		}
		for _, e := range gjson.Get(buf.String(), "events.#.insert_id").Array() {
			ingested = append(ingested, e.Str)
		}
		_, _ = w.Write([]byte(`{"code":200}`))
	}))
	defer srv.Close()
	out, _ := newTestOutput(t, srv.URL, "")
	events := manyEvents(16, 4)
	events[11] = `{"event_type":"poison","insert_id":"p","device_id":"device-1"}`
	failed := write(t, context.Background(), out, events)
	if len(failed) != 1 || reasonOf(failed[11]) != "rejected" {
		t.Fatalf("failed %v", failed)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ingested) != 15 || requests > 10 {
		t.Fatalf("ingested %d events in %d requests", len(ingested), requests)
	}
}

// TestOutputHotDevice checks, on the fake clock, that a device Amplitude
// throttled does not delay other devices' events: in the same batch they are
// re-sent at once, and a later batch sends its cold events without even
// trying the held device; the hot events go after the hold.
func TestOutputHotDevice(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	srv := amplitudetest.NewServer(amplitudetest.Options{EPSLimit: 10, RateWindow: time.Second, Now: clk.Now})
	defer srv.Close()
	out, _ := newTestOutput(t, srv.HTTPV2URL(), "throttle_hold: 1500ms\npacing: false\nhedge_after: 0s\n")
	out.clock = clk

	batch := func(b, hot, cold int) []string {
		var evs []string
		for i := range hot {
			evs = append(evs, evt(fmt.Sprintf("hot-%d-%d", b, i), "hot-device"))
		}
		for i := range cold {
			evs = append(evs, evt(fmt.Sprintf("cold-%d-%d", b, i), fmt.Sprintf("cold-device-%d-%d", b, i)))
		}
		return evs
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Batch 0 brings the hot device to 8 of its 10 events per window.
	if failed := write(t, ctx, out, batch(0, 8, 5)); len(failed) != 0 {
		t.Fatalf("batch 0 failed %v", failed)
	}
	// Batch 1: its request gets 429 for the hot device; its cold events are
	// re-sent at once, and the write waits on the hold.
	done := make(chan map[int]error, 2)
	go func() { done <- write(t, ctx, out, batch(1, 8, 5)) }()
	if !clk.WaitForTimers(ctx, 1) {
		t.Fatal("batch 1 never waited on the hold")
	}
	// Batch 2 comes while the device is held: its hot events wait without
	// a request, its cold events go.
	requests := srv.Requests()
	go func() { done <- write(t, ctx, out, batch(2, 8, 5)) }()
	if !clk.WaitForTimers(ctx, 2) {
		t.Fatal("batch 2 never waited on the hold")
	}
	for b := range 3 {
		for i := range 5 {
			if _, ok := srv.Event(fmt.Sprintf("cold-%d-%d", b, i)); !ok {
				t.Fatalf("cold event %d of batch %d not ingested while the hot device is held", i, b)
			}
		}
	}
	if got := srv.Requests() - requests; got != 1 {
		t.Fatalf("batch 2 sent %d requests while the device was held, want 1 (its cold events only)", got)
	}
	if srv.Count() != 8+15 {
		t.Fatalf("ingested %d before the hold ended, want 23", srv.Count())
	}
	// Move the clock hold by hold (the second batch's hot events may be
	// throttled once more, as the first batch's fill the window again).
	awaitWrites(t, ctx, clk, done, 2)
	if srv.Count() != 39 || srv.Duplicates() != 0 {
		t.Fatalf("ingested %d (duplicates %d), want 39", srv.Count(), srv.Duplicates())
	}
}

// newPacedOutput is a paced output without hedging on a fake clock, in
// front of a strict fake Amplitude on the same clock.
func newPacedOutput(t *testing.T) (*amplitudeOutput, *clock.Fake, *amplitudetest.Server) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	srv := amplitudetest.NewServer(amplitudetest.Options{Now: clk.Now})
	t.Cleanup(srv.Close)
	out, _ := newTestOutput(t, srv.HTTPV2URL(), "hedge_after: 0s\n")
	out.clock = clk
	return out, clk, srv
}

// TestOutputInterrupted checks, on the fake clock, that a write cancelled
// while events wait for their device's budget nacks those (interrupted) and
// has delivered the others.
func TestOutputInterrupted(t *testing.T) {
	out, clk, srv := newPacedOutput(t)
	burst := burstOf(out.pacer)
	events := []string{evt("cold", "device-2")}
	for i := range burst + 2 {
		events = append(events, evt(fmt.Sprint("hot-", i), "device-1"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan map[int]error, 1)
	go func() { done <- write(t, ctx, out, events) }()
	wait, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	if !clk.WaitForTimers(wait, 1) {
		t.Fatal("the write never waited for device-1's budget")
	}
	cancel()
	failed := <-done
	if len(failed) != 2 {
		t.Fatalf("failed %v, want the 2 events of device-1 beyond its burst of %d", failed, burst)
	}
	for i := 1 + burst; i < len(events); i++ {
		if reasonOf(failed[i]) != "outage:interrupted" {
			t.Errorf("event %d: %v, want interrupted", i, failed[i])
		}
	}
	if srv.Count() != 1+burst {
		t.Fatalf("ingested %d, want the cold event and device-1's burst (%d)", srv.Count(), 1+burst)
	}
}

// TestOutputConfig checks the constructor's validation table and what a
// valid configuration selects.
func TestOutputConfig(t *testing.T) {
	cases := []struct {
		name, conf, err string
		check           func(*amplitudeOutput) bool
	}{
		{name: "no key", conf: "api_key: \"\"\n", err: "api_key must be set"},
		{name: "relative url", conf: "api_key: k\nurl: /relative\n", err: "url must be an absolute http"},
		{name: "min_id_length", conf: "api_key: k\nmin_id_length: 0\n", err: "min_id_length must be at least 1"},
		{name: "timeout", conf: "api_key: k\ntimeout: 0s\n", err: "timeout must be positive"},
		{name: "throttle_hold", conf: "api_key: k\nthrottle_hold: -1s\n", err: "throttle_hold must not be negative"},
		{name: "hedge_after", conf: "api_key: k\nhedge_after: -1s\n", err: "hedge_after must not be negative"},
		{name: "headroom high", conf: "api_key: k\npacing_headroom: 0.6\n", err: "pacing_headroom must be within [0, 0.5]"},
		{name: "headroom negative", conf: "api_key: k\npacing_headroom: -0.1\n", err: "pacing_headroom must be within [0, 0.5]"},
		{name: "id share zero", conf: "api_key: k\npacing_id_share: 0\n", err: "pacing_id_share must be within (0, 1]"},
		{name: "id share high", conf: "api_key: k\npacing_id_share: 1.5\n", err: "pacing_id_share must be within (0, 1]"},
		{name: "id share all", conf: "api_key: k\npacing_id_share: 1\n", check: func(o *amplitudeOutput) bool { return o.idWrites == 0 }},
		{name: "id share quarter", conf: "api_key: k\npacing_id_share: 0.25\n", check: func(o *amplitudeOutput) bool { return o.idWrites == 16 }},
		{name: "id share small", conf: "api_key: k\nmax_in_flight: 3\npacing_id_share: 0.1\n", check: func(o *amplitudeOutput) bool { return o.idWrites == 1 }},
		{name: "region", conf: "api_key: k\nregion: asia\n", err: "region must be \"us\" or \"eu\""},
		{name: "endpoint", conf: "api_key: k\nendpoint: v3\n", err: "endpoint \"http_v2\" or \"batch\", g"},
		{name: "daily_quota", conf: "api_key: k\ndaily_quota: drop\n", err: "drop"},
		{name: "eu batch", conf: "api_key: k\nregion: eu\nendpoint: batch\n", check: func(o *amplitudeOutput) bool {
			return o.url == "https://api.eu.amplitude.com/batch" && o.hold == 15*time.Second && o.builder.maxBytes == maxBytesBatchRequest &&
				o.pacer != nil && o.pacer.interval == int64(time.Second/900) && o.hedgeAfter == 2*time.Second && !o.quotaFails && o.deadLetter == nil
		}},
		{name: "defaults", conf: "api_key: k\n", check: func(o *amplitudeOutput) bool {
			return o.url == "https://api2.amplitude.com/2/httpapi" && o.hold == 30*time.Second && o.pacer != nil && o.state.cache == "" && o.idWrites == 0
		}},
		{name: "pacing off, fail quota", conf: "api_key: k\npacing: false\ndaily_quota: fail\nhedge_after: 0s\n", check: func(o *amplitudeOutput) bool {
			return o.pacer == nil && o.quotaFails && o.hedgeAfter == 0
		}},
		{name: "dead letter", conf: "api_key: k\ndead_letter:\n  drop: {}\n", check: func(o *amplitudeOutput) bool { return o.deadLetter != nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pConf, err := amplitudeOutputSpec().ParseYAML(tc.conf, nil)
			var out *amplitudeOutput
			if err == nil {
				out, err = newAmplitudeOutputFromParsed(pConf, service.MockResources())
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !tc.check(out) {
				t.Fatalf("out %+v err %v", out, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = out.Close(ctx)
		})
	}
}

// A device Amplitude keeps throttling does not hold a write slot forever:
// once the back-off's max_elapsed_time has passed, its events are given back
// (retries_exhausted) and the other devices' events are delivered.
func TestOutputGivesUpOnEndlessThrottle(t *testing.T) {
	var ingested sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := new(bytes.Buffer)
		_, _ = body.ReadFrom(r.Body)
		events := gjson.GetBytes(body.Bytes(), "events").Array()
		var throttled []string
		for i, e := range events {
			if e.Get("device_id").String() == "hot-device" {
				throttled = append(throttled, fmt.Sprint(i))
			}
		}
		if len(throttled) > 0 {
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintf(w, `{"code":429,"error":"Too many requests for some devices and users","eps_threshold":30,`+
				`"throttled_devices":{"hot-device":31},"throttled_users":{},"throttled_events":[%s]}`, strings.Join(throttled, ","))
			return
		}
		for _, e := range events {
			ingested.Store(e.Get("insert_id").String(), true)
		}
		fmt.Fprintf(w, `{"code":200,"events_ingested":%d,"payload_size_bytes":%d,"server_upload_time":1}`, len(events), body.Len())
	}))
	defer srv.Close()
	out, _ := newTestOutput(t, srv.URL, "throttle_hold: 50ms\npacing: false\nhedge_after: 0s\nbackoff:\n  initial_interval: 5ms\n  max_interval: 50ms\n  max_elapsed_time: 300ms\n")
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	out.clock = clk

	// Without the give-up, the write would wait for the hot device for as
	// long as the test drives the clock.
	failed := writeOnFakeClock(t, clk, out, []string{evt("h1", "hot-device"), evt("c1", "cold-device"), evt("h2", "hot-device")}, time.Minute)
	if len(failed) != 2 || failed[0] == nil || failed[2] == nil {
		t.Fatalf("want the two hot-device events failed, got %v", failed)
	}
	for _, i := range []int{0, 2} {
		if reasonOf(failed[i]) != "outage:throttled" {
			t.Errorf("event %d: %v, want a throttled outage", i, failed[i])
		}
	}
	if _, ok := ingested.Load("c1"); !ok {
		t.Error("the cold device's event was not delivered")
	}
}

// writeOnFakeClock runs write while moving clk to each timer the output
// waits on, and fails the test when the write needs more than limit of fake
// time.
func writeOnFakeClock(t *testing.T, clk *clock.Fake, out *amplitudeOutput, raws []string, limit time.Duration) map[int]error {
	t.Helper()
	done := make(chan map[int]error, 1)
	go func() { done <- write(t, context.Background(), out, raws) }()
	end := clk.Now().Add(limit)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		select {
		case failed := <-done:
			return failed
		default:
		}
		if next := advanceToNextTimer(ctx, clk); next.After(end) {
			t.Fatalf("the write still waits after %v of fake time", limit)
		}
		if ctx.Err() != nil {
			t.Fatal("the write did not end")
		}
	}
}

// awaitWrites moves clk timer by timer until n writes have reported on done,
// and fails the test when one failed an event or ctx ends first.
func awaitWrites(t *testing.T, ctx context.Context, clk *clock.Fake, done <-chan map[int]error, n int) {
	t.Helper()
	for n > 0 {
		select {
		case failed := <-done:
			if len(failed) != 0 {
				t.Fatalf("a write failed %v", failed)
			}
			n--
			continue
		default:
		}
		advanceToNextTimer(ctx, clk)
		if ctx.Err() != nil {
			t.Fatal("the writes did not end")
		}
	}
}

// advanceToNextTimer waits briefly for the code under test to arm a timer on
// clk and moves clk to the earliest one; it returns the new time.
func advanceToNextTimer(ctx context.Context, clk *clock.Fake) time.Time {
	wait, stop := context.WithTimeout(ctx, 10*time.Millisecond)
	clk.WaitForTimers(wait, 1)
	stop()
	if next, ok := clk.NextDeadline(); ok {
		clk.Set(next)
	}
	return clk.Now()
}

// TestOutputQuotaHoldEndsWithBackoff: with daily_quota: hold and no write
// deadline, events of an id over its quota wait until the back-off's
// max_elapsed_time at most (not until the next hourly step), then are
// nacked; the next write holds them without a request (remembered).
func TestOutputQuotaHoldEndsWithBackoff(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 1, 10, 5, 0, 0, time.UTC))
	srv := amplitudetest.NewServer(amplitudetest.Options{DailyQuota: 1, Now: clk.Now})
	defer srv.Close()
	out, _ := newTestOutput(t, srv.HTTPV2URL(), "hedge_after: 0s\nbackoff:\n  initial_interval: 5ms\n  max_interval: 50ms\n  max_elapsed_time: 1m\n")
	out.clock = clk
	events := []string{evt("q1", "quota-dev"), evt("q2", "quota-dev"), evt("ok", "device-2")}
	failed := writeOnFakeClock(t, clk, out, events, 2*time.Minute)
	// Over the quota of 1, at least q2 is refused; a pacer burst of two or
	// more sends q1 with it, and Amplitude refuses both. Each refused event
	// is nacked as throttled, the others are in Amplitude.
	if failed[1] == nil || failed[2] != nil || srv.Count()+len(failed) != len(events) {
		t.Fatalf("failed %v (ingested %d), want q2 nacked and the others ingested or nacked", failed, srv.Count())
	}
	for i, err := range failed {
		if reasonOf(err) != "outage:throttled" {
			t.Fatalf("event %d: %v, want nacked as throttled", i, err)
		}
	}
	if _, ok := srv.Event("ok"); !ok {
		t.Fatal("the other device's event was not delivered")
	}
	requests := srv.Requests()
	failed = writeOnFakeClock(t, clk, out, []string{evt("q3", "quota-dev")}, 2*time.Minute)
	if len(failed) != 1 || srv.Requests() != requests {
		t.Fatalf("failed %v after %d more requests, want q3 held without a request", failed, srv.Requests()-requests)
	}
}

// TestOutputPacedHotDeviceInItsWrite: in one write, a hot device's events
// beyond its budget wait while the cold devices' events of the same write
// are all sent at once; the write returns only when the hot events are in
// Amplitude too (its messages are the only queue: backpressure, nothing
// dropped), at the paced rate and with no 429.
func TestOutputPacedHotDeviceInItsWrite(t *testing.T) {
	out, clk, srv := newPacedOutput(t)
	const hot, cold = 60, 20
	var events []string
	for i := range hot {
		events = append(events, evt(fmt.Sprint("hot-", i), "hot-device"))
		if i < cold {
			events = append(events, evt(fmt.Sprint("cold-", i), fmt.Sprint("cold-device-", i)))
		}
	}
	start := clk.Now()
	done := make(chan map[int]error, 1)
	go func() { done <- write(t, context.Background(), out, events) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !clk.WaitForTimers(ctx, 1) {
		t.Fatal("the write never waited for the hot device's budget")
	}
	for i := range cold {
		if _, ok := srv.Event(fmt.Sprint("cold-", i)); !ok {
			t.Fatalf("cold event %d waits behind the hot device", i)
		}
	}
	if got, burst := srv.Count()-cold, burstOf(out.pacer); got != burst {
		t.Fatalf("%d hot events sent before the first wait, want its burst %d", got, burst)
	}
	for {
		select {
		case failed := <-done:
			if len(failed) != 0 {
				t.Fatalf("failed %v", failed)
			}
			if srv.Count() != hot+cold || srv.StatusCounts()[429] != 0 {
				t.Fatalf("ingested %d of %d, statuses %v", srv.Count(), hot+cold, srv.StatusCounts())
			}
			// The pacer's rate: the k-th event goes at k intervals less the
			// tolerance at the earliest.
			if took, want := clk.Now().Sub(start), time.Duration(int64(hot-1)*out.pacer.interval-out.pacer.tolerance); took < want {
				t.Fatalf("the hot device's events took %v of fake time, want at least %v", took, want)
			}
			return
		default:
		}
		if srv.Count() == hot+cold {
			continue // delivered: the write is returning
		}
		advanceToNextTimer(ctx, clk)
		if ctx.Err() != nil {
			t.Fatal("the write did not end")
		}
	}
}

// TestOutputHotIDShare: with max_in_flight 4 and pacing_id_share 0.5, the
// waiting events of a hot device hold at most 2 writes; a third write's hot
// events that would wait are nacked at once (deferred), so that write
// returns without waiting, its cold events delivered; the 2 writes holding
// the hot device's backlog deliver it at the paced rate, with no 429.
func TestOutputHotIDShare(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	srv := amplitudetest.NewServer(amplitudetest.Options{Now: clk.Now})
	t.Cleanup(srv.Close)
	out, logs := newTestOutput(t, srv.HTTPV2URL(), "hedge_after: 0s\nmax_in_flight: 4\npacing_id_share: 0.5\n")
	out.clock = clk
	burst := burstOf(out.pacer)
	batch := func(b, hot int) []string {
		evs := []string{evt(fmt.Sprint("cold-", b), fmt.Sprint("cold-device-", b))}
		for i := range hot {
			evs = append(evs, evt(fmt.Sprintf("hot-%d-%d", b, i), "hot-device"))
		}
		return evs
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan map[int]error, 2)
	go func() { done <- write(t, ctx, out, batch(0, burst+3)) }()
	if !clk.WaitForTimers(ctx, 1) {
		t.Fatal("write 0 never waited for the hot device's budget")
	}
	go func() { done <- write(t, ctx, out, batch(1, 3)) }()
	if !clk.WaitForTimers(ctx, 2) {
		t.Fatal("write 1 never waited for the hot device's budget")
	}
	// Write 2 finds the hot device holding its 2 writes: it does not wait.
	failed := write(t, ctx, out, batch(2, 3))
	if len(failed) != 3 {
		t.Fatalf("write 2 failed %v, want its 3 hot events deferred", failed)
	}
	for i := 1; i <= 3; i++ {
		if reasonOf(failed[i]) != "outage:deferred" {
			t.Errorf("write 2 event %d: %v, want deferred", i, failed[i])
		}
	}
	if _, ok := srv.Event("cold-2"); !ok {
		t.Error("write 2's cold event was not delivered")
	}
	awaitWrites(t, ctx, clk, done, 2)
	if want := 3 + burst + 3 + 3; srv.Count() != want || srv.StatusCounts()[429] != 0 || srv.Duplicates() != 0 {
		t.Fatalf("ingested %d of %d, statuses %v, duplicates %d", srv.Count(), want, srv.StatusCounts(), srv.Duplicates())
	}
	// Claims are given back: a new write may hold the hot device again.
	if failed := writeOnFakeClock(t, clk, out, batch(3, burst+2), time.Minute); len(failed) != 0 {
		t.Fatalf("write 3 failed %v after the others ended", failed)
	}
	if !strings.Contains(logs.String(), "3 events nacked for redelivery") {
		t.Errorf("no warning for the deferred events: %s", logs.String())
	}
}

// Only the nacks that are about the ids' rate tell an answering input
// (braze_currents_http) to say 429 instead of 502.
func TestOutageRateLimited(t *testing.T) {
	for reason, want := range map[OutageReason]bool{
		OutageDeferred: true, OutageThrottled: true,
		OutageRetriesExhausted: false, OutageInterrupted: false, OutageAbandoned: false,
	} {
		err := fmt.Errorf("write: %w", newOutage(reason, 0, "detail"))
		if got := ratelimited.Is(err); got != want {
			t.Errorf("%s: rate limited %v, want %v", reason, got, want)
		}
	}
}
