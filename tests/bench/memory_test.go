// The sizing check reads its stream through a named pipe (syscall.Mkfifo).

//go:build unix

package bench

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/all"
)

// The sizing rule of docs/scaling-out.md ("Memory"): the memory a pipeline
// keeps per tracked id (a device id or a user id seen recently), over what
// the same pipeline keeps without per-id state. The per-id tables are held
// outside the heap on Linux (all.OffHeapBytes), where each byte costs one of
// resident memory; Go's default GC lets the heap grow to twice what is live
// before collecting, so each heap byte costs up to two.
const (
	// sizingPacedBytes is the amplitude output's pacing table (the live,
	// replay and backfill pipelines), its arrival guard's state in the same
	// slots: 32-byte slots on HTTP V2 at a load of 1/2 at the least, one
	// table (measured 42 to 44 at 10^5 devices, whole pages counted, since
	// ids are forgotten a second after they send; 57 before, and 60 and 61
	// when the guard had a table of its own).
	sizingPacedBytes = 64 + 1*sizingPageBytes
	// sizingPageBytes is what the whole pages a table's 64 shards are
	// mapped in add at 10^5 devices (4 KiB at most per shard: 3 bytes per
	// id), per table.
	sizingPageBytes = 3
	// sizingLimitedBytes adds device_rate_limit in front of the output (the
	// benchmark's end to end scenario; no shipped pipeline runs it now): a
	// 64-byte slot per key active in the last second, at a load of 1/2 at
	// the least, and a 16-byte slot at 53% at the least (31 bytes) for a
	// key idle since, whose active slot is given back once the active table
	// is a quarter full (TestLimiterMemory in plugins/ratelimit). Measured
	// 163 to 165 at 10^5 devices. (Figures of 195 to 253 before 2026-12-03
	// also counted the tables of the run before it: a table dropped without
	// Free was unmapped when collected but stayed in all.OffHeapBytes.)
	sizingLimitedBytes = sizingPacedBytes + 128 + 31 + 2*sizingPageBytes
	// sizingSketchBytes is the amplitude output's hour sketch (64 shards
	// of 64 KiB, outside the heap with the tables): the hour's counts of the
	// ids the pacer forgot within it, a fixed size whatever the ids.
	sizingSketchBytes = 4 << 20
	// sizingHeapBytes bounds the heap kept per id beside the tables
	// (measured 13 to 15 paced, 22 to 26 with device_rate_limit, whose
	// idle keys' tables are in the heap while a shard's is under 16 KiB,
	// about 6 bytes per id here): the rest of the pipeline keeps that much
	// more after a run over more ids.
	sizingHeapBytes = 32
)

// TestMemorySizing checks the sizing rule: it runs the end-to-end pipeline
// in process on a stream of 10^5 events over 10^5 devices
// (CURRENTS_BENCH_MEMORY_DEVICES for more) into a fast fake Amplitude, paced
// by the output, with and without device_rate_limit, and divides the heap
// each keeps once every event is delivered (settledHeap) over that of the
// same pipeline without pacing or limiter (which keeps no per-id state) by
// the ids the stream holds.
func TestMemorySizing(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures the heap of a 10^5-event run: not under -short or -race")
	}
	devices := 100_000
	if v := os.Getenv("CURRENTS_BENCH_MEMORY_DEVICES"); v != "" {
		var err error
		if devices, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	d := Dataset{Events: devices, Devices: devices, Seed: 1}
	dir := dataDir(t)
	unpaced := scenario(t, "end to end without limiter", Ours)
	if missing := HasComponents(unpaced.Needs...); len(missing) > 0 {
		t.Skipf("missing %v", missing)
	}
	unpaced.Output = func(p Params) string { return amplitudeOut(p) + "\n  pacing: false" }
	base, baseMapped := settledHeap(t, unpaced, dir, d)
	offHeap := runtime.GOOS == "linux" // where idtable maps the tables
	ids := trackedIDs(t, dir, d)
	for _, c := range []struct {
		group string
		limit float64
	}{
		{"end to end without limiter", sizingPacedBytes},
		{"end to end", sizingLimitedBytes},
	} {
		t.Run(c.group, func(t *testing.T) {
			s := scenario(t, c.group, Ours)
			if missing := HasComponents(s.Needs...); len(missing) > 0 {
				t.Skipf("missing %v", missing)
			}
			heap, mapped := settledHeap(t, s, dir, d)
			// The pacer's table holds the ids active within its window, so
			// at most all of the stream's (the bound checked here), and its
			// sketch a fixed size.
			tables := (float64(mapped) - float64(baseMapped) - sizingSketchBytes) / float64(ids)
			heapPerID := (float64(heap) - float64(base)) / float64(ids)
			t.Logf("%s: %d tracked ids; heap in use %.1f MiB and %.1f MiB of tables outside it (%.1f and %.1f MiB without per-id state): "+
				"%.0f bytes of tables per id (rule: at most %.0f), %.0f of heap (at most %d)",
				c.group, ids, float64(heap)/(1<<20), float64(mapped)/(1<<20), float64(base)/(1<<20), float64(baseMapped)/(1<<20),
				tables, c.limit, heapPerID, sizingHeapBytes)
			if offHeap && tables > c.limit {
				t.Errorf("%.0f bytes of tables per tracked id, over the documented %.0f", tables, c.limit)
			}
			if !offHeap && heapPerID > c.limit+sizingHeapBytes {
				t.Errorf("%.0f bytes of heap per tracked id (the tables in it), over the documented %.0f", heapPerID, c.limit+sizingHeapBytes)
			}
			if offHeap && heapPerID > sizingHeapBytes {
				t.Errorf("%.0f bytes of heap per tracked id beside the tables, over %d", heapPerID, sizingHeapBytes)
			}
		})
	}
}

// settledHeap runs s in process on d, fed through a named pipe, and returns
// the heap in use once every event reached the fake Amplitude while the
// stream still runs (its input waiting for more), after a collection, and
// the table memory held outside the heap then: what the components keep
// between events, their per-id tables included.
func settledHeap(t *testing.T, s Scenario, dir string, d Dataset) (heap, mapped uint64) {
	t.Helper()
	path, err := EnsureData(dir, d)
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "events.jsonl")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no named pipe: %v", err)
	}
	srv, err := newFastAmplitude()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	sb := service.NewStreamBuilder()
	if err := sb.SetYAML(s.Config(Params{InputPaths: []string{fifo}, URL: srv.URL()})); err != nil {
		t.Fatal(err)
	}
	strm, err := sb.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- strm.Run(ctx) }()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // once the input opened it
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := io.Copy(w, src); err != nil {
		t.Fatal(err)
	}
	for srv.events.Load() < int64(d.Events) {
		select {
		case err := <-ran:
			t.Fatalf("the stream ended with %d of %d events delivered: %v", srv.events.Load(), d.Events, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(100 * time.Millisecond) // the last acknowledgements
	// The connections the output opened hold buffers of their own, as many
	// as were in flight at the end, whatever the ids: closing them idle
	// (the output reconnects on the next request) keeps their count out of
	// the heap per id.
	srv.srv.SetKeepAlivesEnabled(false)
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	mapped = uint64(all.OffHeapBytes())
	if err := w.Close(); err != nil { // the input ends, then the stream
		t.Fatal(err)
	}
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	return m.HeapAlloc, mapped
}

// trackedIDs counts the distinct device and user ids of the dataset's
// events that Amplitude gets (the keys the tables hold).
func trackedIDs(t *testing.T, dir string, d Dataset) int {
	t.Helper()
	path, err := EnsureData(dir, d)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]struct{}{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		for _, k := range []string{"user.device_id", "user.external_user_id"} {
			if v := gjson.GetBytes(sc.Bytes(), k); v.Type == gjson.String && v.Str != "" {
				seen[k[5:6]+v.Str] = struct{}{}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return len(seen)
}
