package amplitude

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/metricstest"
)

// TestOutputMetrics checks the metrics of a write, on the fake clock: the
// throttle hold (1.1 s) outlasts the fake server's window (1 s), so the held
// events fit when they are re-sent.
func TestOutputMetrics(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	res, capture := metricstest.Resources(t)
	srv := amplitudetest.NewServer(amplitudetest.Options{
		APIKey: testKey, EPSLimit: 5, RateWindow: time.Second, SilencedDevices: []string{"muted-device"},
		FaultRate: 0.3, FaultKinds: []amplitudetest.FaultKind{amplitudetest.Fault503}, Seed: 7, Now: clk.Now,
	})
	defer srv.Close()
	// Bring hot-device to 3 of its 5 events per second: the write's three
	// more are throttled once and held.
	ans, err := http.Post(srv.HTTPV2URL(), "application/json", strings.NewReader(
		`{"api_key":"`+testKey+`","events":[`+evt("pre-1", "hot-device")+","+evt("pre-2", "hot-device")+","+evt("pre-3", "hot-device")+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = ans.Body.Close()
	for ans.StatusCode != http.StatusOK { // an injected 503
		if ans, err = http.Post(srv.HTTPV2URL(), "application/json", strings.NewReader(
			`{"api_key":"`+testKey+`","events":[`+evt("pre-1", "hot-device")+","+evt("pre-2", "hot-device")+","+evt("pre-3", "hot-device")+`]}`)); err != nil {
			t.Fatal(err)
		}
		_ = ans.Body.Close()
	}
	batch := []string{evt("m", "muted-device"), `{"event_type":"x","user_id":"no"}`,
		`{"event_type":"x","insert_id":"short-user","user_id":"42","device_id":"device-42"}`,
		`{"event_type":"x","insert_id":"null-device","user_id":"user-42","device_id":"null"}`}
	for i := range 3 {
		batch = append(batch, evt(fmt.Sprintf("hot-%d", i), "hot-device"), evt(fmt.Sprintf("c-%d", i), fmt.Sprintf("cold-%d", i)))
	}
	conf, err := amplitudeOutputSpec().ParseYAML(fmt.Sprintf(`
api_key: %s
url: %s
throttle_hold: 1100ms
pacing: false
hedge_after: 0s
backoff: { initial_interval: 5ms, max_interval: 20ms, max_elapsed_time: 0s }
`, testKey, srv.HTTPV2URL()), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := newAmplitudeOutputFromParsed(conf, res)
	if err != nil {
		t.Fatal(err)
	}
	out.clock = clk
	t.Cleanup(func() { _ = out.Close(context.Background()) })
	if failed := writeOnFakeClock(t, clk, out, batch, time.Minute); len(failed) != 2 || failed[0] == nil || failed[1] == nil {
		t.Fatalf("failed %v, want the silenced event and the one without ids", failed)
	}

	want := map[string]int64{
		"amplitude_events_ingested_total":                      8,
		"amplitude_ids_removed_total{field=user_id}":           1,
		"amplitude_ids_removed_total{field=device_id}":         1,
		"amplitude_events_failed_total{reason=silenced}":       1,
		"amplitude_events_failed_total{reason=missing_fields}": 1,
		"amplitude_events_throttled_total":                     3,
	}
	for k, v := range want {
		if got := capture.Get(k); got != v {
			t.Errorf("%s = %d, want %d", k, got, v)
		}
	}
	var requests int64
	for _, k := range capture.Keys() {
		if strings.HasPrefix(k, "amplitude_requests_total{") {
			requests += capture.Get(k)
		}
		if strings.Contains(k, testKey) {
			t.Errorf("metric %s contains the API key", k)
		}
	}
	for _, k := range []string{"amplitude_requests_total{status=200}", "amplitude_requests_total{status=400}", "amplitude_requests_total{status=429}"} {
		if capture.Get(k) == 0 {
			t.Errorf("%s = 0", k)
		}
	}
	if lat := capture.Count("amplitude_request_seconds"); lat != requests || requests == 0 {
		t.Errorf("%d latencies for %d requests", lat, requests)
	}
	if sent := capture.Get("amplitude_events_sent_total"); sent < 6+3+2 {
		t.Errorf("amplitude_events_sent = %d", sent)
	}
	if got, faults := capture.Get("amplitude_events_retried_total"), capture.Get("amplitude_requests_total{status=503}"); (got > 0) != (faults > 0) {
		t.Errorf("amplitude_events_retried = %d after %d 503s", got, faults)
	}
}
