package reconcile

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/export"
	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

var (
	winStart = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	winEnd   = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
)

func ms(t time.Time) int64 { return t.UnixMilli() }

type side struct {
	id, typ string
	t       time.Time
}

func TestReconcilerClassifies(t *testing.T) {
	const open, click = "[Appboy] Email Open", "[Appboy] Email Click"
	edge := time.Date(2026, 1, 1, 10, 59, 59, 999e6, time.UTC) // last ms of hour 10
	next := time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC)       // first ms of hour 11
	cases := []struct {
		name       string
		expected   []side
		present    []side
		wantTotals Totals
		wantRows   map[string][4]int64 // "hour type" -> expected, present, missing, extra
		wantBodies []string
	}{
		{
			name:       "all present",
			expected:   []side{{"a", open, edge}, {"b", open, next}},
			present:    []side{{"b", open, next}, {"a", open, edge}},
			wantTotals: Totals{Counts: Counts{Expected: 2, Present: 2}},
			wantRows:   map[string][4]int64{"10 " + open: {1, 1, 0, 0}, "11 " + open: {1, 1, 0, 0}},
		},
		{
			name:       "missing at the hour edge, extra",
			expected:   []side{{"a", open, edge}, {"b", open, next}},
			present:    []side{{"a", open, edge}, {"x", click, next}},
			wantTotals: Totals{Counts: Counts{Expected: 2, Present: 1, Missing: 1, Extra: 1}},
			wantRows:   map[string][4]int64{"10 " + open: {1, 1, 0, 0}, "11 " + open: {1, 0, 1, 0}, "11 " + click: {0, 0, 0, 1}},
			wantBodies: []string{"b"},
		},
		{
			name:       "duplicates on both sides",
			expected:   []side{{"a", open, edge}, {"a", open, edge}, {"b", open, edge}},
			present:    []side{{"a", open, edge}, {"a", open, edge}, {"a", open, edge}, {"x", open, edge}, {"x", open, edge}},
			wantTotals: Totals{Counts: Counts{Expected: 2, Present: 1, Missing: 1, Extra: 1, CurrentsDuplicates: 1, AmplitudeDuplicates: 3}},
			wantRows:   map[string][4]int64{"10 " + open: {2, 1, 1, 1}},
			wantBodies: []string{"b"},
		},
		{
			name: "window bounds: start included, end excluded",
			expected: []side{{"in", open, winStart}, {"before", open, winStart.Add(-time.Millisecond)},
				{"last", open, winEnd.Add(-time.Millisecond)}, {"after", open, winEnd}},
			present:    []side{{"in", open, winStart}, {"late", open, winEnd}, {"before", open, winStart.Add(-time.Millisecond)}},
			wantTotals: Totals{Counts: Counts{Expected: 2, Present: 1, Missing: 1}, CurrentsOutsideWindow: 2, AmplitudeOutsideWindow: 2},
			wantRows:   map[string][4]int64{"10 " + open: {1, 1, 0, 0}, "11 " + open: {1, 0, 1, 0}},
			wantBodies: []string{"last"},
		},
		{
			name:       "event type differs",
			expected:   []side{{"a", open, edge}},
			present:    []side{{"a", click, edge}},
			wantTotals: Totals{Counts: Counts{Expected: 1, Present: 1, TypeMismatch: 1}},
			wantRows:   map[string][4]int64{"10 " + open: {1, 1, 0, 0}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(Options{Start: winStart, End: winEnd, Dir: t.TempDir(), KeepBodies: true})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for _, e := range tc.expected {
				if err := r.AddExpected(export.Event{InsertID: e.id, EventType: e.typ, Time: ms(e.t)}, []byte(`{"insert_id":"`+e.id+`"}`)); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range tc.present {
				if err := r.AddPresent(export.Event{InsertID: p.id, EventType: p.typ, Time: ms(p.t)}); err != nil {
					t.Fatal(err)
				}
			}
			var missing bytes.Buffer
			rep, err := r.Finish(&missing)
			if err != nil {
				t.Fatal(err)
			}
			got := rep.Totals
			got.CurrentsEvents, got.AmplitudeEvents = 0, 0
			if got != tc.wantTotals {
				t.Errorf("totals\n got %+v\nwant %+v", got, tc.wantTotals)
			}
			rows := map[string][4]int64{}
			for _, row := range rep.Rows {
				rows[fmt.Sprintf("%d %s", time.Unix(row.Hour, 0).UTC().Hour(), row.EventType)] = [4]int64{row.Expected, row.Present, row.Missing, row.Extra}
			}
			if fmt.Sprint(rows) != fmt.Sprint(tc.wantRows) {
				t.Errorf("rows\n got %v\nwant %v", rows, tc.wantRows)
			}
			var bodies []string
			for _, l := range strings.Split(strings.TrimSpace(missing.String()), "\n") {
				if l != "" {
					bodies = append(bodies, strings.TrimSuffix(strings.TrimPrefix(l, `{"insert_id":"`), `"}`))
				}
			}
			if fmt.Sprint(bodies) != fmt.Sprint(tc.wantBodies) {
				t.Errorf("missing events %v, want %v", bodies, tc.wantBodies)
			}
		})
	}
}

// TestReconcilerSpillsAndMerges forces hundreds of runs (more than one merge
// pass) and checks that nothing is lost or double counted.
func TestReconcilerSpillsAndMerges(t *testing.T) {
	r, err := New(Options{Start: winStart, End: winEnd, Dir: t.TempDir(), MemoryLimit: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const n = 20000
	for i := range n {
		ev := export.Event{InsertID: fmt.Sprintf("id-%07d", (i*7919)%n), EventType: "T", Time: ms(winStart) + int64(i)}
		if err := r.AddExpected(ev, nil); err != nil {
			t.Fatal(err)
		}
		if i%10 != 0 { // every tenth is missing
			if err := r.AddPresent(ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.AddPresent(export.Event{InsertID: "zz-extra", EventType: "T", Time: ms(winStart)}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Finish(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Runs <= maxFanIn {
		t.Fatalf("only %d runs: the test must exercise a multi-pass merge", rep.Runs)
	}
	want := Totals{Counts: Counts{Expected: n, Present: n - n/10, Missing: n / 10, Extra: 1}, CurrentsEvents: n, AmplitudeEvents: n - n/10 + 1}
	if rep.Totals != want {
		t.Errorf("totals\n got %+v\nwant %+v", rep.Totals, want)
	}
}

func TestReportJSONAndSummary(t *testing.T) {
	r, err := New(Options{Start: winStart, End: winEnd, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_ = r.AddExpected(export.Event{InsertID: "a", EventType: `Quote " type`, Time: ms(winStart)}, nil)
	r.NotSent(winStart.Unix(), "users.messages.email.Open", false)
	r.NotSent(winStart.Unix(), "users.messages.email.Open", true)
	r.Incomplete("amplitude: upload hours 20260101T11-20260101T11 incomplete")
	rep, err := r.Finish(nil)
	if err != nil {
		t.Fatal(err)
	}
	js := string(rep.AppendJSON(nil))
	for _, want := range []string{
		`"window":{"start":"2026-01-01T10:00:00Z","end":"2026-01-01T12:00:00Z"}`,
		`"complete":false`,
		`"missing":1`,
		`{"hour":"2026-01-01T10:00:00Z","event_type":"Quote \" type","expected":1,"present":0,"missing":1`,
		`"not_sent":[{"hour":"2026-01-01T10:00:00Z","currents_event_type":"users.messages.email.Open","dropped":1,"rejected":1}]`,
	} {
		if !strings.Contains(js, want) {
			t.Errorf("report lacks %s:\n%s", want, js)
		}
	}
	var sum strings.Builder
	if err := rep.WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"RESULT: INCOMPLETE", "upload hours 20260101T11", "Missing:               1", "2026-01-01T10:00:00Z", `Quote " type`} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}
}

func TestHourOf(t *testing.T) {
	for _, tc := range []struct{ ms, want int64 }{{0, 0}, {3_599_999, 0}, {3_600_000, 3600}, {-1, -3600}, {-3_600_000, -3600}} {
		if got := hourOf(tc.ms); got != tc.want {
			t.Errorf("hourOf(%d) = %d, want %d", tc.ms, got, tc.want)
		}
	}
}

// TestReconcilerProgress checks that progress is reported while reading and
// merging, at most once per interval of the injected clock.
func TestReconcilerProgress(t *testing.T) {
	fc := clock.NewFake(winStart)
	var lines []string
	r, err := New(Options{Start: winStart, End: winEnd, Dir: t.TempDir(), MemoryLimit: 64 << 10, Clock: fc,
		ProgressInterval: time.Minute, Progress: func(s string) { lines = append(lines, s) }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	add := func(from, to int) {
		for i := from; i < to; i++ {
			ev := export.Event{InsertID: fmt.Sprintf("id-%06d", i), EventType: "T", Time: ms(winStart)}
			if err := r.AddExpected(ev, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(0, 10000)
	if len(lines) != 0 {
		t.Fatalf("progress before the interval: %q", lines)
	}
	fc.Advance(time.Minute)
	add(10000, 20000)
	if len(lines) != 1 || !strings.Contains(lines[0], "read 12288 Currents events") {
		t.Fatalf("progress %q, want one line after the interval", lines)
	}
	for i := range 70000 {
		_ = r.AddPresent(export.Event{InsertID: fmt.Sprintf("id-%06d", i), EventType: "T", Time: ms(winStart)})
	}
	fc.Advance(time.Minute)
	if _, err := r.Finish(nil); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || !strings.Contains(lines[1], "merged 65536 of 90000 records") {
		t.Fatalf("progress %q, want a merge line", lines)
	}
}
