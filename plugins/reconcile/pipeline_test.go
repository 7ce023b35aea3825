package reconcile_test

import (
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	_ "github.com/opencurrents/currents-amplitude/plugins/all"
	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/currents"
	"github.com/opencurrents/currents-amplitude/plugins/currentsgen"
	"github.com/opencurrents/currents-amplitude/plugins/export"
	"github.com/opencurrents/currents-amplitude/plugins/export/exporttest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/proctime"
)

// TestShippedPipeline runs config/reconcile.yaml on Currents Avro storage
// files against the fake Export API, with every 50th event missing from
// Amplitude, and RESEND=true: the report counts them, the missing file holds
// them and the ingestion server receives exactly them.
//
// RECONCILE_PIPELINE_EVENTS sets the number of events (default 3000), to time
// the whole pipeline (Avro decoding, mapping, export download and decoding,
// sort, merge) at scale; the fake servers run in the same process.
func TestShippedPipeline(t *testing.T) {
	n := 3000
	if v, _ := strconv.Atoi(os.Getenv("RECONCILE_PIPELINE_EVENTS")); v > 0 {
		n = v
	}
	for _, format := range []string{"avro", "jsonl"} {
		t.Run(format, func(t *testing.T) { testShippedPipeline(t, format, n) })
	}
}

func testShippedPipeline(t *testing.T, format string, n int) {
	dir := t.TempDir()
	cfg := currentsgen.Config{Seed: 7, Devices: 500, StartTime: t0.Unix(), EventsPerSecond: n/3600 + 1}
	if format == "avro" {
		if _, err := currentsgen.WriteAvro(filepath.Join(dir, "currents"), currentsgen.New(cfg), n, currentsgen.AvroOptions{}); err != nil {
			t.Fatal(err)
		}
	} else {
		if err := os.MkdirAll(filepath.Join(dir, "currents", "2026-01-01"), 0o700); err != nil {
			t.Fatal(err)
		}
		// Half the events in a plain file, half in a gzipped one.
		g := currentsgen.New(cfg)
		for i, name := range []string{"part-1.jsonl", "part-2.jsonl.gz"} {
			f, err := os.Create(filepath.Join(dir, "currents", "2026-01-01", name))
			if err != nil {
				t.Fatal(err)
			}
			var w io.Writer = f
			gz := gzip.NewWriter(f)
			if i == 1 {
				w = gz
			}
			if err := g.WriteLines(w, []int{n / 2, n - n/2}[i], currentsgen.HTTP); err != nil {
				t.Fatal(err)
			}
			if i == 1 {
				err = gz.Close()
			}
			if err := errors.Join(err, f.Close()); err != nil {
				t.Fatal(err)
			}
		}
	}
	mapper, err := currents.NewMapper(currents.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	exp := exporttest.NewServer(exporttest.Options{APIKey: "key-123456", SecretKey: "secret-abcdef"})
	defer exp.Close()
	g := currentsgen.New(cfg)
	var want []string
	var buf []byte
	for i := range n {
		buf = g.Next().AppendFlat(buf[:0])
		out, res, err := mapper.AppendEvent(nil, buf, "")
		if err != nil || res.Dropped != "" {
			t.Fatalf("generated event %d not mapped: %v %s", i, err, res.Dropped)
		}
		ev, err := export.ParseEvent(out)
		if err != nil {
			t.Fatal(err)
		}
		if i%50 == 7 {
			want = append(want, ev.InsertID)
			continue
		}
		exp.Add(exporttest.Event{InsertID: ev.InsertID, EventType: ev.EventType, UserID: ev.UserID, DeviceID: ev.DeviceID,
			Time: time.UnixMilli(ev.Time), Uploaded: time.UnixMilli(ev.Time).Add(20 * time.Minute)})
	}
	slices.Sort(want)
	ingest := amplitudetest.NewServer(amplitudetest.Options{APIKey: "key-123456"})
	defer ingest.Close()

	for k, v := range map[string]string{
		"RECONCILE_START":      t0.Format(time.RFC3339),
		"RECONCILE_END":        t0.Add(2 * time.Hour).Format(time.RFC3339),
		"CURRENTS_DIR":         filepath.Join(dir, "currents"),
		"CURRENTS_FORMAT":      format,
		"AMPLITUDE_API_KEY":    "key-123456",
		"AMPLITUDE_SECRET_KEY": "secret-abcdef",
		"AMPLITUDE_API_URL":    exp.URL,
		"AMPLITUDE_URL":        ingest.BatchURL(),
		"UPLOAD_LAG":           "1h",
		"SPILL_DIR":            dir,
		"REPORT_PATH":          filepath.Join(dir, "report.json"),
		"SUMMARY_PATH":         filepath.Join(dir, "summary.txt"),
		"MISSING_PATH":         filepath.Join(dir, "missing.jsonl"),
		"RESEND":               "true",
		"LOG_LEVEL":            cmp.Or(os.Getenv("RECONCILE_PIPELINE_LOG_LEVEL"), "ERROR"),
	} {
		t.Setenv(k, v)
	}
	start, cpu0 := time.Now(), proctime.CPU()
	code, err := service.RunCLIToCode(context.Background(),
		service.CLIOptSetArgs("currents-amplitude", "run", "../../config/reconcile.yaml"))
	if err != nil || code != 0 {
		t.Fatalf("run: code %d, %v", code, err)
	}
	cpu := proctime.CPU() - cpu0
	t.Logf("%d events reconciled by config/reconcile.yaml in %s (%.0f events/s); CPU %s (%.0f events per CPU second, the fake servers included)",
		n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds(), cpu.Round(time.Millisecond), float64(n)/cpu.Seconds())
	rep, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := gjson.ParseBytes(rep)
	if r.Get("totals.expected").Int() != int64(n) || r.Get("totals.missing").Int() != int64(len(want)) ||
		r.Get("totals.present").Int() != int64(n-len(want)) || r.Get("totals.extra").Int() != 0 || !r.Get("complete").Bool() {
		t.Errorf("report totals %s, want %d expected, %d missing: %s", r.Get("totals").Raw, n, len(want), r.Get("incomplete").Raw)
	}
	lines, err := os.ReadFile(filepath.Join(dir, "missing.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
		got = append(got, gjson.Get(l, "insert_id").String())
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("missing file holds %d ids, want %d", len(got), len(want))
	}
	var sent []string
	for _, ev := range ingest.Events() {
		sent = append(sent, ev.InsertID)
	}
	slices.Sort(sent)
	if !slices.Equal(sent, want) {
		t.Errorf("re-sent %d events, want the %d missing", len(sent), len(want))
	}
}
