package amplitudetest

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

func post(t *testing.T, url, body string, gz bool) (int, string, error) {
	t.Helper()
	var rd io.Reader = strings.NewReader(body)
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write([]byte(body))
		_ = zw.Close()
		rd = &buf
	}
	req, err := http.NewRequest(http.MethodPost, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	cl := &http.Client{Timeout: 2 * time.Second}
	res, err := cl.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), nil
}

func ev(insertID, device, user, eventType string) string {
	s := `{"insert_id":"` + insertID + `","event_type":"` + eventType + `"`
	if device != "" {
		s += `,"device_id":"` + device + `"`
	}
	if user != "" {
		s += `,"user_id":"` + user + `"`
	}
	return s + `,"time":1700000000000}`
}

func req(key string, events ...string) string {
	return `{"api_key":"` + key + `","events":[` + strings.Join(events, ",") + `]}`
}

func manyEvents(n int, device string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = ev(fmt.Sprintf("id-%d", i), device, "", "e")
	}
	return out
}

func TestServerAnswers(t *testing.T) {
	big := strings.Repeat("x", 900)
	bigEvents := make([]string, 1200)
	for i := range bigEvents {
		bigEvents[i] = `{"insert_id":"b` + fmt.Sprint(i) + `","event_type":"e","device_id":"device-1","event_properties":{"p":"` + big + `"}}`
	}
	cases := []struct {
		name     string
		path     string
		body     string
		gzip     bool
		status   int
		want     map[string]string // gjson path -> raw JSON value
		ingested int
	}{
		{name: "ok", path: PathHTTPV2, body: req("k", ev("a1", "device-1", "", "open"), ev("a2", "", "user-12", "open")),
			status: 200, want: map[string]string{"code": "200", "events_ingested": "2"}, ingested: 2},
		{name: "ok gzip", path: PathBatch, body: req("k", ev("a1", "device-1", "", "open")), gzip: true,
			status: 200, ingested: 1},
		{name: "missing api key", path: PathHTTPV2, body: `{"events":[]}`,
			status: 400, want: map[string]string{"missing_field": `"api_key"`}},
		{name: "wrong api key", path: PathHTTPV2, body: req("nope", ev("a1", "device-1", "", "open")),
			status: 400, want: map[string]string{"error": `"Invalid API key: nope"`}},
		{name: "not json", path: PathHTTPV2, body: `{"api_key":`,
			status: 400, want: map[string]string{"error": `"Invalid JSON request body"`}},
		{name: "event not object", path: PathHTTPV2, body: req("k", ev("a1", "device-1", "", "open"), `"str"`),
			status: 400, want: map[string]string{"error": `"Invalid event JSON"`}},
		{name: "bad path", path: "/nope", body: req("k"), status: 400},
		{name: "invalid fields", path: PathHTTPV2,
			body: req("k", ev("a1", "device-1", "", "open"), ev("a2", "device-1", "", ""), ev("a3", "dev", "user-123", "x"),
				ev("a4", "", "", "x"), ev("a5", "null", "", "x"), `{"insert_id":"a6","event_type":"x","device_id":"device-1","time":"2024"}`),
			status: 400, want: map[string]string{
				"events_with_missing_fields.event_type":           "[1]",
				"events_with_missing_fields.user_id_or_device_id": "[3]",
				"events_with_invalid_id_lengths.device_id":        "[2]",
				"events_with_invalid_fields.device_id":            "[4]",
				"events_with_invalid_fields.time":                 "[5]",
			}},
		{name: "min_id_length option", path: PathHTTPV2,
			body:   `{"api_key":"k","events":[` + ev("a1", "dev", "", "x") + `],"options":{"min_id_length":3}}`,
			status: 200, ingested: 1},
		{name: "too many events", path: PathHTTPV2, body: req("k", manyEvents(2001, "device-1")...),
			status: 413, want: map[string]string{"error": `"Payload too large"`}},
		{name: "too many bytes v2", path: PathHTTPV2, body: req("k", bigEvents...), status: 413},
		{name: "big is fine for batch", path: PathBatch, body: req("k", bigEvents...), status: 200, ingested: 1200},
		{name: "over eps" /* 301 events in the one-second window */, path: PathHTTPV2, body: req("k", append(manyEvents(301, "hot-device"), ev("c1", "cold-device", "", "x"))...),
			status: 429, want: map[string]string{"throttled_devices.hot-device": "301", "eps_threshold": "30", "throttled_events.#": "301"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := NewServer(Options{APIKey: "k", Now: func() time.Time { return time.Unix(1000, 0) }})
			defer srv.Close()
			status, body, err := post(t, srv.URL+tc.path, tc.body, tc.gzip)
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status {
				t.Fatalf("status %d, want %d; body %s", status, tc.status, body)
			}
			if !gjson.Valid(body) || gjson.Get(body, "code").Int() != int64(status) {
				t.Fatalf("body %s lacks code %d", body, status)
			}
			for path, raw := range tc.want {
				if got := gjson.Get(body, path).Raw; got != raw {
					t.Errorf("%s = %s, want %s (body %s)", path, got, raw, body)
				}
			}
			if srv.Count() != tc.ingested {
				t.Errorf("ingested %d, want %d", srv.Count(), tc.ingested)
			}
			if srv.StatusCounts()[status] != 1 || srv.Requests() != 1 {
				t.Errorf("counts %v requests %d", srv.StatusCounts(), srv.Requests())
			}
		})
	}
}

func TestServerDedupAndWindows(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := NewServer(Options{EPSLimit: 2, RateWindow: time.Second, DailyQuota: 3, Now: clock})
	defer srv.Close()
	url := srv.HTTPV2URL()
	send := func(events ...string) (int, string) {
		status, body, err := post(t, url, req("any", events...), false)
		if err != nil {
			t.Fatal(err)
		}
		return status, body
	}
	if s, b := send(ev("x1", "device-1", "", "e"), ev("x2", "device-1", "", "e")); s != 200 {
		t.Fatalf("%d %s", s, b)
	}
	// Third event in the same window: throttled, the other device's event is
	// not listed.
	s, b := send(ev("x3", "device-1", "", "e"), ev("y1", "device-2", "", "e"))
	if s != 429 || gjson.Get(b, "throttled_events").Raw != "[0]" || gjson.Get(b, "throttled_devices.device-1").Int() != 3 {
		t.Fatalf("%d %s", s, b)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	// Duplicate accepted but not ingested twice.
	if s, b := send(ev("x2", "device-1", "", "e"), ev("y1", "device-2", "", "e")); s != 200 {
		t.Fatalf("%d %s", s, b)
	}
	if srv.Count() != 3 || srv.Duplicates() != 1 {
		t.Fatalf("count %d dups %d", srv.Count(), srv.Duplicates())
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	// device-1 has 3 events ingested: over the daily quota of 3.
	s, b = send(ev("x9", "device-1", "", "e"))
	if s != 429 || gjson.Get(b, "exceeded_daily_quota_devices.device-1").Int() != 3 || gjson.Get(b, "throttled_events").Raw != "[0]" {
		t.Fatalf("%d %s", s, b)
	}
	if e, ok := srv.Event("y1"); !ok || e.DeviceID != "device-2" || !gjson.Valid(e.Raw) {
		t.Fatalf("lookup %+v %v", e, ok)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := srv.WaitForCount(ctx, 4); err == nil {
		t.Fatal("WaitForCount returned without the events")
	}
	if err := srv.WaitForCount(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
}

func TestServerSilenced(t *testing.T) {
	srv := NewServer(Options{SilencedDevices: []string{"muted-device"}})
	defer srv.Close()
	s, b, err := post(t, srv.HTTPV2URL(), req("k", ev("a", "device-1", "", "e"), ev("b", "muted-device", "", "e")), false)
	if err != nil || s != 400 || gjson.Get(b, "silenced_events").Raw != "[1]" || gjson.Get(b, "silenced_devices.0").Str != "muted-device" {
		t.Fatalf("%d %s %v", s, b, err)
	}
}

func TestServerFaults(t *testing.T) {
	for _, k := range append(append([]FaultKind{FaultHang}, AllFaults...), ProxyFaults...) {
		t.Run(k.String(), func(t *testing.T) {
			srv := NewServer(Options{FaultRate: 1, FaultKinds: []FaultKind{k}, Seed: 1, HangFor: 10 * time.Millisecond})
			defer srv.Close()
			cl := &http.Client{Timeout: 300 * time.Millisecond}
			r, err := cl.Post(srv.HTTPV2URL(), "application/json", strings.NewReader(req("k", ev("a", "device-1", "", "e"))))
			var status int
			if err == nil {
				status = r.StatusCode
				_ = r.Body.Close()
			}
			want := map[FaultKind]int{Fault500: 500, Fault502: 502, Fault503: 503, Fault429: 429,
				FaultHang: 200, FaultProxy403: 403, FaultUnauthorized: 401, FaultHTML200: 200}[k]
			if status != want || (want == 0) != (err != nil) {
				t.Fatalf("status %d err %v, want %d", status, err, want)
			}
			if srv.FaultCounts()[k] != 1 {
				t.Fatalf("fault counts %v", srv.FaultCounts())
			}
			// Only faults that ingest (500 after ingest, a hang answered
			// late, a timeout) put the event in.
			if ingests := k == Fault500 || k == FaultHang || k == FaultTimeout; ingests != (srv.Count() == 1) && k != FaultDrop {
				t.Fatalf("%s: %d events ingested", k, srv.Count())
			}
		})
	}
}

func BenchmarkServer(b *testing.B) {
	srv := NewServer(Options{EPSLimit: -1})
	defer srv.Close()
	events := make([]string, 500)
	for i := range events {
		events[i] = ev(fmt.Sprintf("id-%d", i), fmt.Sprintf("device-%d", i%50), "", "e")
	}
	body := req("k", events...)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		r, err := http.Post(srv.HTTPV2URL(), "application/json", strings.NewReader(body))
		if err != nil || r.StatusCode != 200 {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
}

// TestServerSlidingWindow: the limit holds in any window ending at an
// arrival, not in fixed windows: 30 events at 0.9 s and 30 more at 1.1 s are
// 60 in 0.2 s, refused; at 1.91 s the first 30 have left the window.
func TestServerSlidingWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(d time.Duration) { mu.Lock(); now = time.Unix(1000, 0).Add(d); mu.Unlock() }
	srv := NewServer(Options{Now: clock})
	defer srv.Close()
	for _, step := range []struct {
		at     time.Duration
		status int
	}{{900 * time.Millisecond, 200}, {1100 * time.Millisecond, 429}, {1910 * time.Millisecond, 200}} {
		set(step.at)
		status, body, err := post(t, srv.HTTPV2URL(), req("k", manyEvents(30, "dev-1")...), false)
		if err != nil || status != step.status {
			t.Fatalf("at %v: %d %s %v, want %d", step.at, status, body, err, step.status)
		}
	}
}
