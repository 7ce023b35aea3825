package export_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/export"
	"github.com/opencurrents/currents-amplitude/plugins/export/exporttest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/metricstest"
)

var day = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func hour(h int, min int) time.Time {
	return day.Add(time.Duration(h)*time.Hour + time.Duration(min)*time.Minute)
}

// read drains an amplitude_export input built from yaml, advancing the fake
// clock whenever the input waits on it.
func read(t *testing.T, yaml string, fc *clock.Fake, res *service.Resources) (events []string, errs []string) {
	t.Helper()
	in, err := export.NewInputForTest(yaml, fc, res)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			if !fc.WaitForTimers(ctx, 1) {
				return
			}
			select {
			case <-stop:
				return
			default:
			}
			next, _ := fc.NextDeadline()
			fc.Set(next)
		}
	}()
	if err := in.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer in.Close(ctx)
	for {
		batch, ack, err := in.ReadBatch(ctx)
		if errors.Is(err, service.ErrEndOfInput) {
			return events, errs
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			if err := m.GetError(); err != nil {
				inc, _ := m.MetaGet(export.MetaIncomplete)
				reason, _, _ := deadletter.Of(m)
				errs = append(errs, fmt.Sprintf("%s|%s|%v", inc, reason, err))
				continue
			}
			b, _ := m.AsBytes()
			entry, _ := m.MetaGet(export.MetaEntry)
			events = append(events, entry+" "+string(b))
		}
		_ = ack(ctx, nil)
	}
}

func config(url, extra string) string {
	return fmt.Sprintf(`
api_key: key-123456
secret_key: secret-abcdef
url: %s
start: 2026-01-01T00
end: 2026-01-01T03
backoff: { initial_interval: 1s, max_interval: 2s, max_elapsed_time: 1m }
%s`, url, extra)
}

func newServer(t *testing.T, opts exporttest.Options) *exporttest.Server {
	opts.APIKey, opts.SecretKey = "key-123456", "secret-abcdef"
	srv := exporttest.NewServer(opts)
	t.Cleanup(srv.Close)
	return srv
}

func TestAmplitudeExportReadsEveryUploadHour(t *testing.T) {
	srv := newServer(t, exporttest.Options{RowsPerFile: 2})
	srv.Add(
		// Event at 00:59:59, uploaded at 01:00:30: exported with hour 1.
		exporttest.Event{InsertID: "a", EventType: "[Appboy] Email Open", UserID: "usr_1", Time: hour(0, 59).Add(59 * time.Second), Uploaded: hour(1, 0).Add(30 * time.Second)},
		exporttest.Event{InsertID: "b", EventType: "[Appboy] Email Open", DeviceID: "dev-1", Time: hour(1, 5)},
		exporttest.Event{InsertID: "c", EventType: "[Appboy] Email Open", UserID: "usr_2", Time: hour(1, 6)},
		exporttest.Event{InsertID: "d", EventType: "t", UserID: "usr_3", Time: hour(3, 1)}, // inside the upload lag
		exporttest.Event{Raw: []byte(`{"$insert_id":"bad","event_type":"t"}`), Time: hour(1, 7)},
		exporttest.Event{InsertID: "late", EventType: "t", UserID: "usr_4", Time: hour(5, 0)}, // past the lag: not read
	)
	fc := clock.NewFake(day.Add(48 * time.Hour))
	res, metrics := metricstest.Resources(t)
	events, errs := read(t, config(srv.URL, "upload_lag: 1h\nbatch_size: 2"), fc, res)
	want := []string{
		`123456/123456_2026-01-01_1#0.json.gz {"insert_id":"a","event_type":"[Appboy] Email Open","time":1767229199000,"user_id":"usr_1","library":"Braze"}`,
		`123456/123456_2026-01-01_1#0.json.gz {"insert_id":"b","event_type":"[Appboy] Email Open","time":1767229500000,"device_id":"dev-1","library":"Braze"}`,
		`123456/123456_2026-01-01_1#1.json.gz {"insert_id":"c","event_type":"[Appboy] Email Open","time":1767229560000,"user_id":"usr_2","library":"Braze"}`,
		`123456/123456_2026-01-01_3#0.json.gz {"insert_id":"d","event_type":"t","time":1767229260000,"user_id":"usr_3","library":"Braze"}`,
	}
	want[3] = strings.Replace(want[3], "1767229260000", fmt.Sprint(hour(3, 1).UnixMilli()), 1)
	if strings.Join(events, "\n") != strings.Join(want, "\n") {
		t.Errorf("events\n%s\nwant\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "|unreadable|") || !strings.Contains(errs[0], "neither client_event_time") {
		t.Errorf("errors %q, want the unreadable row", errs)
	}
	for key, want := range map[string]int64{
		"amplitude_export_requests_total{status=ok}":      2,
		"amplitude_export_requests_total{status=no_data}": 2,
		"amplitude_export_events_total":                   4,
		"amplitude_export_rows_failed_total":              1,
		"amplitude_export_ranges_incomplete_total":        0,
	} {
		if got := metrics.Get(key); got != want {
			t.Errorf("%s = %d, want %d (have %v)", key, got, want, metrics.Keys())
		}
	}
	if metrics.Count("amplitude_export_request_seconds") != 4 {
		t.Errorf("amplitude_export_request_seconds timed %d requests, want 4", metrics.Count("amplitude_export_request_seconds"))
	}
	wantReq := "20260101T00-20260101T00 20260101T01-20260101T01 20260101T02-20260101T02 20260101T03-20260101T03"
	if got := strings.Join(srv.Requests(), " "); got != wantReq {
		t.Errorf("requests %s, want %s", got, wantReq)
	}
}

func TestAmplitudeExportFailures(t *testing.T) {
	ev := func(id string, h int) exporttest.Event {
		return exporttest.Event{InsertID: id, EventType: "t", UserID: "usr_1", Time: hour(h, 10)}
	}
	cases := []struct {
		name     string
		faults   []int
		maxBytes int
		extra    string
		now      time.Time
		want     int // events read
		errs     []string
		requests string
	}{
		{
			name:     "429 and 503 retried",
			faults:   []int{http.StatusTooManyRequests, http.StatusServiceUnavailable},
			extra:    "hours_per_request: 3",
			want:     3,
			requests: "20260101T00-20260101T02 20260101T00-20260101T02 20260101T00-20260101T02",
		},
		{
			name:     "over the size limit: split down to single hours",
			maxBytes: 1000, // two events fit
			extra:    "hours_per_request: 3",
			want:     3,
			requests: "20260101T00-20260101T02 20260101T00-20260101T00 20260101T01-20260101T02",
		},
		{
			name:     "one hour over the size limit: incomplete",
			maxBytes: 100,
			errs: []string{
				"20260101T00-20260101T00|processing_failed|amplitude_export: upload hours 20260101T00-20260101T00 incomplete: export range too large",
				"20260101T01-20260101T01|processing_failed|", "20260101T02-20260101T02|processing_failed|",
			},
			requests: "20260101T00-20260101T00 20260101T01-20260101T01 20260101T02-20260101T02",
		},
		{
			name:     "credentials refused: incomplete, not retried",
			faults:   []int{http.StatusUnauthorized},
			extra:    "hours_per_request: 3",
			errs:     []string{"20260101T00-20260101T02|processing_failed|amplitude_export: upload hours 20260101T00-20260101T02 incomplete: credentials refused"},
			requests: "20260101T00-20260101T02",
		},
		{
			name:     "retries exhausted: incomplete",
			faults:   []int{502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502, 502},
			extra:    "hours_per_request: 3",
			errs:     []string{"20260101T00-20260101T02|processing_failed|amplitude_export: upload hours 20260101T00-20260101T02 incomplete: gave up after"},
			requests: "",
		},
		{
			name:     "hours not exportable yet: requested no further, reported",
			now:      hour(4, 30), // hour 2 (02:00-03:00) is exportable from 05:00
			want:     2,
			errs:     []string{"20260101T02-20260101T02|processing_failed|amplitude_export: upload hours 20260101T02-20260101T02 incomplete: not exportable yet"},
			requests: "20260101T00-20260101T00 20260101T01-20260101T01",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, exporttest.Options{MaxBytes: tc.maxBytes})
			srv.Add(ev("a", 0), ev("b", 1), ev("c", 2))
			srv.FailNext(tc.faults...)
			now := tc.now
			if now.IsZero() {
				now = day.Add(48 * time.Hour)
			}
			events, errs := read(t, config(srv.URL, tc.extra), clock.NewFake(now), nil)
			if len(events) != tc.want {
				t.Errorf("%d events, want %d: %q", len(events), tc.want, events)
			}
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors %q, want %q", errs, tc.errs)
			}
			for i := range errs {
				if !strings.HasPrefix(errs[i], tc.errs[i]) {
					t.Errorf("error %q, want prefix %q", errs[i], tc.errs[i])
				}
				if strings.Contains(errs[i], "secret-abcdef") || strings.Contains(errs[i], "key-123456") {
					t.Errorf("error quotes a secret: %q", errs[i])
				}
			}
			if tc.requests != "" && strings.Join(srv.Requests(), " ") != tc.requests {
				t.Errorf("requests %s, want %s", strings.Join(srv.Requests(), " "), tc.requests)
			}
		})
	}
}

func TestAmplitudeExportConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, err string }{
		{"api_key: k\nsecret_key: s\nstart: 2026-01-01T00\nend: 2026-01-01T00", "not after start"},
		{"api_key: k\nsecret_key: s\nstart: 2026-01-01T00:30:00Z\nend: 2026-01-02", "whole UTC hour"},
		{"api_key: k\nsecret_key: s\nstart: 2026-01-01\nend: 2026-01-02\nupload_lag: 90m", "whole hours"},
		{"api_key: ''\nsecret_key: s\nstart: 2026-01-01\nend: 2026-01-02", "required"},
	} {
		_, err := export.NewInputForTest(tc.yaml, clock.NewFake(day), nil)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.err)
		}
	}
}
