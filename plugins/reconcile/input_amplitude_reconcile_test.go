package reconcile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/export/exporttest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/metricstest"
	_ "github.com/opencurrents/currents-amplitude/plugins/reconcile"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// currentsEvent is one Currents event in the HTTP connector shape; the user's
// time zone is Braze's profile field: it must not move the event's hour.
func currentsEvent(typ, id string, at time.Time, extID, deviceID, tz string) string {
	user := fmt.Sprintf(`"user_id":"65f1c2a9b8e7d6c5b4a39281","timezone":%q`, tz)
	if extID != "" {
		user += fmt.Sprintf(`,"external_user_id":%q`, extID)
	}
	if deviceID != "" {
		user += fmt.Sprintf(`,"device_id":%q`, deviceID)
	}
	props := `{"app_id":"a1","campaign_name":"Weekly"}`
	if typ == "users.behaviors.CustomEvent" {
		props = `{"app_id":"a1","name":"level_up","custom_properties":{"level":7}}`
	}
	return fmt.Sprintf(`{"event_type":%q,"id":%q,"time":%d,"user":{%s},"properties":%s}`, typ, id, at.Unix(), user, props)
}

const (
	open   = "users.messages.email.Open"
	custom = "users.behaviors.CustomEvent"
)

func TestAmplitudeReconcileStream(t *testing.T) {
	dir := t.TempDir()
	edge := t0.Add(time.Hour - time.Second) // 00:59:59Z, 13:59:59 in Kiritimati (+14)
	lines := []string{
		currentsEvent(open, "e1", t0, "usr_00001", "", "Pacific/Kiritimati"),
		currentsEvent(open, "e1", t0, "usr_00001", "", "Pacific/Kiritimati"), // Currents duplicate
		currentsEvent(open, "e2", edge, "usr_00002", "", "America/Los_Angeles"),
		currentsEvent(custom, "e3", t0.Add(time.Hour), "", "dev-00003", "Asia/Tokyo"),
		currentsEvent(open, "e5", t0.Add(10*time.Minute), "", "", "Europe/Paris"),                   // unidentified: dropped
		currentsEvent("users.UserDeleteRequest", "e6", t0.Add(11*time.Minute), "usr_00006", "", ""), // excluded by default
		currentsEvent(open, "e7", t0.Add(2*time.Hour), "usr_00007", "", "Europe/Paris"),             // after the window
		`{"events":[` + currentsEvent(open, "e8a", edge, "usr_00008", "", "") + "," + currentsEvent(open, "e8b", t0.Add(time.Hour), "usr_00009", "", "") + `]}`,
		`{"id":"e9","time":"soon"}`, // rejected by the mapping
	}
	if err := os.WriteFile(filepath.Join(dir, "currents.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := exporttest.NewServer(exporttest.Options{APIKey: "key-123456", SecretKey: "secret-abcdef"})
	defer srv.Close()
	srv.Add(
		exporttest.Event{InsertID: "e1", EventType: "[Appboy] Email Open", UserID: "usr_00001", Time: t0, Uploaded: t0.Add(time.Minute)},
		exporttest.Event{InsertID: "e1", EventType: "[Appboy] Email Open", UserID: "usr_00001", Time: t0, Uploaded: t0.Add(time.Hour)}, // Amplitude duplicate
		// e2 (the last second of hour 0) is missing.
		exporttest.Event{InsertID: "e3", EventType: "[Appboy] [Custom Event] level_up", DeviceID: "dev-00003", Time: t0.Add(time.Hour), Uploaded: t0.Add(150 * time.Minute)}, // within the upload lag
		exporttest.Event{InsertID: "e8a", EventType: "[Appboy] Email Open", UserID: "usr_00008", Time: edge, Uploaded: t0.Add(time.Hour)},
		exporttest.Event{InsertID: "x1", EventType: "[Appboy] Email Click", UserID: "usr_00099", Time: t0.Add(time.Hour + time.Minute)}, // extra
		exporttest.Event{InsertID: "e7", EventType: "[Appboy] Email Open", UserID: "usr_00007", Time: t0.Add(2 * time.Hour)},            // outside the window
		exporttest.Event{Raw: []byte(`{"$insert_id":"broken","library":"Braze"}`), Time: t0},
		// The project's own SDK events: not reconciled.
		exporttest.Event{InsertID: "sdk-1", EventType: "Page Viewed", DeviceID: "web-00001", Library: "amplitude-ts/2.11.0", Time: t0.Add(5 * time.Minute)},
		exporttest.Event{Raw: []byte(`{"$insert_id":null,"event_type":"Page Viewed","library":"amplitude-ts/2.11.0","client_event_time":"2026-01-01 00:06:00.000000"}`), Time: t0},
	)
	yaml := fmt.Sprintf(`
amplitude_reconcile:
  start: "2026-01-01T01:00:00+01:00"
  end: 2026-01-01T02
  currents:
    file:
      paths: [ %[1]s/currents.jsonl ]
      scanner: { lines: {} }
  amplitude:
    amplitude_export:
      api_key: key-123456
      secret_key: secret-abcdef
      url: %[2]s
      start: 2026-01-01T00
      end: 2026-01-01T02
      upload_lag: 1h
  spill_dir: %[1]s
  memory_mb: 1
  report_path: %[1]s/report.json
  summary_path: %[1]s/summary.txt
  emit_missing: true
`, dir, srv.URL)
	var mu sync.Mutex
	var missing []string
	b := service.NewStreamBuilder()
	if err := b.SetLoggerYAML("level: off"); err != nil {
		t.Fatal(err)
	}
	metrics := metricstest.New(t)
	if err := b.SetMetricsYAML(metrics.YAML()); err != nil {
		t.Fatal(err)
	}
	if err := b.AddInputYAML(yaml); err != nil {
		t.Fatal(err)
	}
	if err := b.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		raw, _ := m.AsBytes()
		if v, _ := m.MetaGet("reconcile_missing"); v != "true" {
			t.Errorf("emitted event lacks reconcile_missing: %s", raw)
		}
		mu.Lock()
		missing = append(missing, gjson.GetBytes(raw, "insert_id").String()+" "+gjson.GetBytes(raw, "event_type").String())
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stream, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := stream.Run(ctx); err != nil {
		t.Fatal(err)
	}

	slices.Sort(missing)
	if want := []string{"e2 [Appboy] Email Open", "e8b [Appboy] Email Open"}; !slices.Equal(missing, want) {
		t.Errorf("missing events %q, want %q", missing, want)
	}
	rep, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := gjson.ParseBytes(rep)
	for path, want := range map[string]any{
		"window.start":                    "2026-01-01T00:00:00Z",
		"window.end":                      "2026-01-01T02:00:00Z",
		"complete":                        true,
		"totals.expected":                 int64(5), // e1 e2 e3 e8a e8b
		"totals.present":                  int64(3),
		"totals.missing":                  int64(2),
		"totals.extra":                    int64(1),
		"totals.currents_duplicates":      int64(1),
		"totals.amplitude_duplicates":     int64(1),
		"totals.not_sent_dropped":         int64(2), // e5 unidentified, e6 excluded
		"totals.not_sent_rejected":        int64(1), // e9
		"totals.currents_outside_window":  int64(1), // e7
		"totals.amplitude_outside_window": int64(1),
		"totals.amplitude_unreadable":     int64(1),
		"totals.amplitude_other_library":  int64(2),
		`hours.#(hour=="2026-01-01T00:00:00Z")#|#(event_type=="[Appboy] Email Open").missing`:              int64(1),
		`hours.#(hour=="2026-01-01T00:00:00Z")#|#(event_type=="[Appboy] Email Open").present`:              int64(2),
		`hours.#(hour=="2026-01-01T01:00:00Z")#|#(event_type=="[Appboy] Email Open").missing`:              int64(1),
		`hours.#(hour=="2026-01-01T01:00:00Z")#|#(event_type=="[Appboy] Email Click").extra`:               int64(1),
		`hours.#(hour=="2026-01-01T01:00:00Z")#|#(event_type=="[Appboy] [Custom Event] level_up").present`: int64(1),
		`not_sent.#(currents_event_type=="users.UserDeleteRequest").dropped`:                               int64(1),
	} {
		v := r.Get(path)
		var got any = v.Value()
		if f, ok := got.(float64); ok {
			got = int64(f)
		}
		if got != want {
			t.Errorf("report %s = %v, want %v\n%s", path, got, want, rep)
		}
	}
	for key, want := range map[string]int64{
		"reconcile_expected_total": 5, "reconcile_present_total": 3, "reconcile_missing_total": 2, "reconcile_extra_total": 1,
	} {
		if got := metrics.Get(key); got != want {
			t.Errorf("%s = %d, want %d", key, got, want)
		}
	}
	sum, err := os.ReadFile(filepath.Join(dir, "summary.txt"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("summary:\n%s", sum)
	for _, want := range []string{"RESULT: MISSING: 2 of 5 expected events", "Unexpected extra:      1", "[Appboy] Email Open"} {
		if !strings.Contains(string(sum), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "reconcile-*"))
	if len(left) != 0 {
		t.Errorf("spill files left behind: %v", left)
	}
}
