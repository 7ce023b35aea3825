package proctime

import (
	"runtime"
	"testing"
	"time"
)

// TestCPU: CPU time grows with work done, and a process has some peak
// resident memory, on the platforms that report them.
func TestCPU(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("not measured here")
	}
	start := CPU()
	x := 0
	for range 10_000 { // a few seconds of work at the most
		if CPU()-start >= 20*time.Millisecond {
			break
		}
		for i := range 1_000_000 {
			x ^= i
		}
	}
	_ = x
	if used := CPU() - start; used < 20*time.Millisecond {
		t.Fatalf("CPU time grew by %v over the loop", used)
	}
	if PeakRSS() <= 0 {
		t.Fatalf("peak RSS %d", PeakRSS())
	}
}
