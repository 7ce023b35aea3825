package bench

import (
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		frames []string // leaf first
		want   int
	}{
		{[]string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, 0},
		{[]string{"runtime.memmove", "github.com/tidwall/gjson.parseSquash", modulePrefix + "plugins/currents.(*walker).visit"}, 1},
		{[]string{modulePrefix + "plugins/internal/jsonlimit.Depth", modulePrefix + "plugins/ingest.(*x).split"}, 1},
		{[]string{modulePrefix + "plugins/internal/jsonvalid.stringEnd", modulePrefix + "plugins/internal/currentsbody.SplitChecked"}, 1},
		{[]string{"runtime.mallocgc", modulePrefix + "plugins/currents.(*Mapper).finish", benthosPrefix + "v4/internal/pipeline.(*Processor).loop"}, 2},
		{[]string{"runtime.mallocgc", benthosPrefix + "v4/public/service.NewMessage", modulePrefix + "plugins/ingest.(*x).toBatch"}, 3},
		{[]string{"syscall.Syscall6", "net/http.(*conn).serve"}, 4},
		{[]string{"runtime.mallocgc", modulePrefix + "tests/bench.(*fastAmplitude).ServeHTTP"}, 4},
	}
	for _, tc := range cases {
		if got := classify(tc.frames); got != tc.want {
			t.Errorf("classify(%v) = %d, want %d", tc.frames, got, tc.want)
		}
	}
}

// TestProfileShares reads a real CPU profile of this process spent mostly
// in gjson.
func TestProfileShares(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Skipf("no CPU profile: %v", err)
	}
	doc := `{"a":[` + strings.Repeat(`{"b":"cccccccccccccccc","d":1.5},`, 200) + `null]}`
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		if !gjson.Valid(doc) {
			t.Fatal("invalid")
		}
	}
	pprof.StopCPUProfile()
	_ = f.Close()
	s, err := ProfileShares(path)
	if err != nil {
		t.Fatal(err)
	}
	if sum := s.GC + s.JSON + s.Ours + s.Benthos + s.Rest; sum < 0.999 || sum > 1.001 {
		t.Fatalf("shares add up to %v: %+v", sum, s)
	}
	// Under the race detector most samples are its C frames, with no Go
	// stack to classify.
	if !raceEnabled && s.JSON < 0.5 {
		t.Fatalf("a profile spent validating JSON shows JSON at %.0f%%: %+v", 100*s.JSON, s)
	}
	if _, err := ProfileShares(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing profile gave shares")
	}
}
