package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if IsChild() {
		os.Exit(ChildMain())
	}
	os.Exit(m.Run())
}

// TestHarness runs every scenario on a small stream, each in its own child
// process, so that the harness cannot rot: configs must build, streams must
// end, and both end-to-end sides must deliver every event exactly once.
func TestHarness(t *testing.T) {
	d := Dataset{Events: 1000, Devices: 5000, Seed: 1}
	rows, err := Run(Options{DataDir: t.TempDir(), Datasets: []Dataset{d}, Timeout: 2 * time.Minute, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(Scenarios()) {
		t.Fatalf("%d rows, want one per scenario (%d)", len(rows), len(Scenarios()))
	}
	for _, r := range rows {
		if r.Skipped != "" {
			t.Logf("%s skipped: %s", r.Scenario.Name(), r.Skipped)
			continue
		}
		res := r.Result
		if res.Events != d.Events || res.Wall <= 0 || res.CPU <= 0 || res.PeakRSS <= 0 || res.Mallocs == 0 {
			t.Errorf("%s: implausible measurement %+v", r.Scenario.Name(), res)
		}
		if r.Scenario.Server && (res.Delivered != d.Events || res.Duplicates != 0) {
			t.Errorf("%s: server ingested %d distinct events (%d duplicates), want %d exactly once",
				r.Scenario.Name(), res.Delivered, res.Duplicates, d.Events)
		}
	}
	t.Log(Markdown(rows))
}

// TestReport is the full measurement behind BENCHMARKS.md; run.sh runs it.
// It is skipped unless CURRENTS_BENCH_FULL=1. CURRENTS_BENCH_EVENTS,
// CURRENTS_BENCH_DEVICES (comma-separated), CURRENTS_BENCH_SCALE_EVENTS and
// CURRENTS_BENCH_DATA, CURRENTS_BENCH_THREADS (pipeline.threads) and
// CURRENTS_BENCH_REPEAT (runs per scenario on the main stream, default 3)
// override the defaults; the tables are written to
// CURRENTS_BENCH_OUT (default: the test log only), CPU profiles to
// CURRENTS_BENCH_PROFILES when set. CURRENTS_BENCH_MEMLIMIT sets the
// GOMEMLIMIT of the extra run on the largest population ("off" skips it).
func TestReport(t *testing.T) {
	if os.Getenv("CURRENTS_BENCH_FULL") != "1" {
		t.Skip("set CURRENTS_BENCH_FULL=1 (or use tests/bench/run.sh) for the full measurement")
	}
	if raceEnabled {
		t.Fatal("the race detector distorts every figure: run without -race")
	}
	events := envInt(t, "CURRENTS_BENCH_EVENTS", 100000)
	devices := envInts(t, "CURRENTS_BENCH_DEVICES", []int{10000, 100000, 1000000})
	scaleEvents := 1000000
	if v := os.Getenv("CURRENTS_BENCH_SCALE_EVENTS"); v != "0" {
		scaleEvents = envInt(t, "CURRENTS_BENCH_SCALE_EVENTS", scaleEvents)
	}
	dataDir := os.Getenv("CURRENTS_BENCH_DATA")
	if dataDir == "" {
		dataDir = os.TempDir() + "/currents-amplitude-bench"
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := Options{DataDir: dataDir, Timeout: 30 * time.Minute, Logf: t.Logf,
		ProfileDir: os.Getenv("CURRENTS_BENCH_PROFILES")}
	if os.Getenv("CURRENTS_BENCH_THREADS") != "" {
		opts.Threads = envInt(t, "CURRENTS_BENCH_THREADS", 0)
	}

	// Every scenario (or those of CURRENTS_BENCH_GROUPS) on the main stream,
	// in rounds; each row is the median run.
	opts.Datasets = []Dataset{{Events: events, Devices: devices[0], Seed: 1}}
	repeat := envInt(t, "CURRENTS_BENCH_REPEAT", 3)
	opts.Repeat = repeat
	if g := os.Getenv("CURRENTS_BENCH_GROUPS"); g != "" {
		opts.Groups = strings.Split(g, ",")
	}
	rows, err := Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("CURRENTS_BENCH_SCALE_EVENTS") == "0" {
		t.Log("\n" + Markdown(rows))
		return
	}
	// Scaling: our end-to-end and limiter runs over growing populations (the
	// plain pipeline keeps no per-device state; CURRENTS_BENCH_SCALE_PLAIN=1
	// measures it too).
	opts.Groups, opts.Repeat = []string{"end to end", "limiter"}, 1
	if os.Getenv("CURRENTS_BENCH_SCALE_PLAIN") != "1" {
		opts.Sides = []string{Ours}
	}
	opts.Datasets = nil
	for _, n := range devices {
		opts.Datasets = append(opts.Datasets, Dataset{Events: max(scaleEvents, events), Devices: n, Seed: 1})
	}
	scale, err := Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	// The largest population again, with the Go runtime held to a soft
	// memory limit (CURRENTS_BENCH_MEMLIMIT, default 128MiB; "off" skips).
	if limit := os.Getenv("CURRENTS_BENCH_MEMLIMIT"); limit != "off" {
		if limit == "" {
			limit = "128MiB"
		}
		opts.Datasets = opts.Datasets[len(opts.Datasets)-1:]
		opts.Env = []string{"GOMEMLIMIT=" + limit}
		limited, err := Run(opts)
		if err != nil {
			t.Fatal(err)
		}
		scale = append(scale, limited...)
	}
	md := fmt.Sprintf("## Main stream\n\nEach row is the run with the median wall time of %d, run in rounds "+
		"(every scenario once per round).\n", repeat) + Markdown(rows) + "\n## Scaling\n\n" + Scaling(scale) + "\n### Scaling, full figures\n" + Markdown(scale)
	if out := os.Getenv("CURRENTS_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Log("\n" + md)
}

func envInt(t *testing.T, name string, def int) int {
	return envInts(t, name, []int{def})[0]
}

func envInts(t *testing.T, name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			t.Fatalf("%s: %q is not a positive integer list", name, v)
		}
		out = append(out, n)
	}
	return out
}

// TestLiveHarness runs every live-path scenario briefly, each in its own
// child process, so that the live benchmark cannot rot: configs must build,
// posts must be answered, and every posted event must reach the fake
// Amplitude.
func TestLiveHarness(t *testing.T) {
	rows, err := RunLive(LiveOptions{Dataset: Dataset{Events: 2000, Devices: 1000, Seed: 1}, DataDir: t.TempDir(),
		Posts: 40, Warmup: 16, Rounds: 1, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Skipped != "" {
			t.Logf("%s skipped: %s", r.Scenario.Name, r.Skipped)
			continue
		}
		res := r.Result
		if res.Events != 40*InputBatch || res.Wall <= 0 || res.P99 <= 0 {
			t.Errorf("%s: implausible measurement %+v", r.Scenario.Name, res)
		}
		if res.Delivered != res.Sent {
			t.Errorf("%s: the fake Amplitude received %d events, %d were posted", r.Scenario.Name, res.Delivered, res.Sent)
		}
		// 1,000 devices posted as fast as they go: the output's pacer holds
		// events of busy ids, and the harness reads how many from the child.
		if r.Scenario.Name == LiveScenarios()[1].Name && res.Paced <= 0 {
			t.Errorf("%s: %d events paced, want some (the count is read from the child's metrics)", r.Scenario.Name, res.Paced)
		}
	}
	t.Log("\n" + LiveMarkdown(rows))
}

// TestLiveReport is the live-path measurement (docs/benchmarks-live.md),
// skipped unless CURRENTS_BENCH_LIVE=1: CURRENTS_BENCH_LIVE_POSTS measured
// posts per run (default 1,000 of 100 events), CURRENTS_BENCH_REPEAT rounds
// (default 3), CURRENTS_BENCH_THREADS, CURRENTS_BENCH_PROFILES,
// CURRENTS_BENCH_DATA as for TestReport, CURRENTS_BENCH_LIVE_DEVICES (default
// 1,000,000: few ids send twice within the output's pacing interval, see
// docs/benchmarks-live.md); the table goes to CURRENTS_BENCH_OUT when set.
func TestLiveReport(t *testing.T) {
	if os.Getenv("CURRENTS_BENCH_LIVE") != "1" {
		t.Skip("set CURRENTS_BENCH_LIVE=1 for the live-path measurement")
	}
	if raceEnabled {
		t.Fatal("the race detector distorts every figure: run without -race")
	}
	dataDir := os.Getenv("CURRENTS_BENCH_DATA")
	if dataDir == "" {
		dataDir = os.TempDir() + "/currents-amplitude-bench"
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// 100,000 devices: at 100,000 events/s no id sends more than Amplitude's
	// 30 events/s, so the output's pacing never has to hold an event (with
	// 10,000 devices the busiest users cap the run near 30,000 events/s).
	o := LiveOptions{Dataset: Dataset{Events: 100000, Devices: envInt(t, "CURRENTS_BENCH_LIVE_DEVICES", 1000000), Seed: 1}, DataDir: dataDir,
		Posts: envInt(t, "CURRENTS_BENCH_LIVE_POSTS", 1000), Warmup: 100, Rounds: envInt(t, "CURRENTS_BENCH_REPEAT", 3),
		ProfileDir: os.Getenv("CURRENTS_BENCH_PROFILES"), Logf: t.Logf}
	if os.Getenv("CURRENTS_BENCH_THREADS") != "" {
		o.Threads = envInt(t, "CURRENTS_BENCH_THREADS", 16)
	}
	rows, err := RunLive(o)
	if err != nil {
		t.Fatal(err)
	}
	md := LiveMarkdown(rows)
	if out := os.Getenv("CURRENTS_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Log("\n" + md)
}
