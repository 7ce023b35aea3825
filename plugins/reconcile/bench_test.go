package reconcile

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/currentsgen"
	"github.com/opencurrents/currents-amplitude/plugins/export"
	"github.com/opencurrents/currents-amplitude/plugins/internal/proctime"
)

// synthetic feeds n Currents events of currentsgen (ids, types and times of
// a realistic stream, one day) as fn's expected and present sides: 1% of the
// events are missing from Amplitude, 0.5% duplicated there, and 0.5% extra
// events are added.
func synthetic(n int, expected func(export.Event) error, present func(export.Event) error) error {
	cfg := currentsgen.Config{Seed: 42, Devices: 1_000_000, StartTime: winStart.Unix(), EventsPerSecond: n/72000 + 1}
	names := map[string]string{}
	for _, side := range [2]bool{true, false} {
		g := currentsgen.New(cfg)
		for i := range n {
			e := g.Next()
			typ, ok := names[e.Type]
			if !ok {
				typ = "[Appboy] " + e.Type
				names[e.Type] = typ
			}
			ev := export.Event{InsertID: e.ID, EventType: typ, Time: e.Time * 1000}
			if side {
				if err := expected(ev); err != nil {
					return err
				}
				continue
			}
			switch i % 200 {
			case 0, 1: // missing
				continue
			case 2: // duplicated in Amplitude
				if err := present(ev); err != nil {
					return err
				}
			case 3: // and an extra one
				if err := present(export.Event{InsertID: "extra-" + strconv.Itoa(i), EventType: typ, Time: ev.Time}); err != nil {
					return err
				}
			}
			if err := present(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

func reconcileSynthetic(tb testing.TB, n, memory int) *Report {
	r, err := New(Options{Start: winStart, End: winStart.Add(24 * time.Hour), Dir: tb.TempDir(), MemoryLimit: memory})
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	if err := synthetic(n, func(ev export.Event) error { return r.AddExpected(ev, nil) }, r.AddPresent); err != nil {
		tb.Fatal(err)
	}
	rep, err := r.Finish(nil)
	if err != nil {
		tb.Fatal(err)
	}
	if rep.Totals.Expected != int64(n) || rep.Totals.Missing != int64(n/100) || rep.Totals.Extra != int64(n/200) {
		tb.Fatalf("totals %+v", rep.Totals)
	}
	return rep
}

// BenchmarkReconcile reconciles 100,000 events per operation with the
// external sort (16 MiB of buffer: several runs), and, side by side, the
// plain alternative of holding every expected id in a map.
func BenchmarkReconcile(b *testing.B) {
	const n = 100_000
	b.Run("spill", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			reconcileSynthetic(b, n, 16<<20)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mapReconcile(b, n)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("generate_only", func(b *testing.B) {
		for b.Loop() {
			_ = synthetic(n, func(export.Event) error { return nil }, func(export.Event) error { return nil })
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// mapReconcile is the in-memory alternative: every expected id in a map.
func mapReconcile(tb testing.TB, n int) {
	type info struct {
		typ     string
		time    int64
		present int32
	}
	expected := map[string]*info{}
	var extra int
	err := synthetic(n, func(ev export.Event) error {
		expected[ev.InsertID] = &info{typ: ev.EventType, time: ev.Time}
		return nil
	}, func(ev export.Event) error {
		if e := expected[ev.InsertID]; e != nil {
			e.present++
		} else {
			extra++
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	missing := 0
	for _, e := range expected {
		if e.present == 0 {
			missing++
		}
	}
	if missing != n/100 || extra != n/200 {
		tb.Fatalf("missing %d extra %d", missing, extra)
	}
}

// TestReconcileScale measures one large run: set RECONCILE_SCALE_EVENTS
// (e.g. 10000000) and RECONCILE_SCALE_MODE (spill or map), one mode per
// process, since the figure is the process's peak RSS; with spill,
// RECONCILE_SCALE_MEMORY_MB is the sort memory (default 256):
//
//	RECONCILE_SCALE_EVENTS=10000000 RECONCILE_SCALE_MODE=spill go test -run TestReconcileScale -v ./plugins/reconcile/
func TestReconcileScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RECONCILE_SCALE_EVENTS"))
	if n <= 0 {
		t.Skip("set RECONCILE_SCALE_EVENTS to run the scale measurement")
	}
	mode := os.Getenv("RECONCILE_SCALE_MODE")
	start := time.Now()
	switch mode {
	case "map":
		mapReconcile(t, n)
	default:
		mode = "spill"
		mb, _ := strconv.Atoi(os.Getenv("RECONCILE_SCALE_MEMORY_MB"))
		if mb <= 0 {
			mb = 256
		}
		rep := reconcileSynthetic(t, n, mb<<20)
		t.Logf("runs %d, spilled %d MiB", rep.Runs, rep.SpilledBytes>>20)
	}
	elapsed := time.Since(start)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("mode %s: %d events per side in %s: %.0f events/s; peak RSS %d MiB; CPU %.1fs; GC cycles %d",
		mode, n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), proctime.PeakRSS()>>20,
		proctime.CPU().Seconds(), ms.NumGC)
}
