package amplitude

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
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
			// The pacer sends three events of quota-dev at once (its burst),
			// which fit the quota; the fourth is refused and fails.
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

// TestOutputHotDevice checks that a throttled device does not delay other
// devices' events by more than one request round trip, in the same batch and
// in later batches, and that its own events are delivered after the hold.
func TestOutputHotDevice(t *testing.T) {
	const latency = 50 * time.Millisecond
	const hold = 1500 * time.Millisecond
	srv := amplitudetest.NewServer(amplitudetest.Options{EPSLimit: 10, RateWindow: time.Second, Latency: latency})
	defer srv.Close()
	out, _ := newTestOutput(t, srv.HTTPV2URL(), "throttle_hold: 1500ms\npacing: false\n")

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
	// Batch 0 brings the hot device to 8 of its 10 events per window. Batches
	// 1 and 2 come while that window lasts: the first request with hot events
	// gets 429 and its cold events are re-sent at once; later requests leave
	// the held device's events out.
	var wg sync.WaitGroup
	start := time.Now()
	done := make([]time.Duration, 3)
	for b := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b > 0 {
				time.Sleep(300 * time.Millisecond) // later batches, once the device is held
			}
			failed := write(t, context.Background(), out, batch(b, 8, 5))
			if len(failed) != 0 {
				t.Errorf("batch %d failed %v", b, failed)
			}
			done[b] = time.Since(start)
		}()
	}
	deadline, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for b := range 3 {
		for i := range 5 {
			id := fmt.Sprintf("cold-%d-%d", b, i)
			for {
				if _, ok := srv.Event(id); ok {
					break
				}
				if deadline.Err() != nil {
					t.Fatalf("cold event %s not ingested", id)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if elapsed := time.Since(start); elapsed > hold-300*time.Millisecond {
				t.Fatalf("cold event %s ingested after %v: waited for the hot device", id, elapsed)
			}
		}
	}
	wg.Wait()
	if srv.Count() != 39 || srv.Duplicates() != 0 {
		t.Fatalf("ingested %d (duplicates %d), want 39", srv.Count(), srv.Duplicates())
	}
	for i, d := range done[1:] {
		if d < hold {
			t.Errorf("batch %d done after %v: its hot events cannot have waited for the hold", i+1, d)
		}
	}
}

// TestOutputInterrupted checks that a cancelled write fails what is left.
func TestOutputInterrupted(t *testing.T) {
	srv := amplitudetest.NewServer(amplitudetest.Options{EPSLimit: 1, RateWindow: time.Second})
	defer srv.Close()
	out, _ := newTestOutput(t, srv.HTTPV2URL(), "throttle_hold: 1m\n")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	failed := write(t, ctx, out, []string{evt("a", "device-1"), evt("b", "device-1"), evt("c", "device-2")})
	if len(failed) != 2 || failed[2] != nil {
		t.Fatalf("failed %v", failed)
	}
	for _, err := range failed {
		if reasonOf(err) != "outage:interrupted" && reasonOf(err) != "outage:throttled" {
			t.Fatalf("error %v", err)
		}
	}
}

func TestOutputConfigErrors(t *testing.T) {
	cases := map[string]string{
		"api_key must be set":                  "region: us\n",
		"url must be an absolute http":         "api_key: k\nurl: /relative\n",
		"min_id_length must be at least 1":     "api_key: k\nmin_id_length: 0\n",
		"timeout must be positive":             "api_key: k\ntimeout: 0s\n",
		"throttle_hold must not be negative":   "api_key: k\nthrottle_hold: -1s\n",
		"region must be \"us\" or \"eu\"":      "api_key: k\nregion: asia\n",
		"endpoint \"http_v2\" or \"batch\", g": "api_key: k\nendpoint: v3\n",
	}
	for want, conf := range cases {
		t.Run(want, func(t *testing.T) {
			pConf, err := amplitudeOutputSpec().ParseYAML(conf, nil)
			if err == nil {
				_, err = newAmplitudeOutputFromParsed(pConf, service.MockResources())
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want %q", err, want)
			}
		})
	}
	pConf, err := amplitudeOutputSpec().ParseYAML("api_key: k\nregion: eu\nendpoint: batch\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := newAmplitudeOutputFromParsed(pConf, service.MockResources())
	if err != nil || out.url != "https://api.eu.amplitude.com/batch" || out.hold != 15*time.Second || out.builder.maxBytes != maxBytesBatchRequest {
		t.Fatalf("out %+v err %v", out, err)
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
	out, _ := newTestOutput(t, srv.URL, "throttle_hold: 50ms\npacing: false\nbackoff:\n  initial_interval: 5ms\n  max_interval: 50ms\n  max_elapsed_time: 300ms\n")

	// Without the give-up, the write would last until this context ends and
	// fail the events as interrupted instead.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	failed := write(t, ctx, out, []string{evt("h1", "hot-device"), evt("c1", "cold-device"), evt("h2", "hot-device")})
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
