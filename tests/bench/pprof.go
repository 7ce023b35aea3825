package bench

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/pprof/profile"
)

// Shares of a CPU profile by owner, generated from the pprof file rather
// than counted by hand: every sample goes to exactly one share.
//
//   - GC: background marking (a runtime.gcBgMarkWorker frame);
//   - JSON: the first non-runtime frame from the leaf is gjson or one of our
//     JSON packages (jsonPackages), whoever called it;
//   - ours, Benthos: the first frame from the leaf that belongs to this
//     module or to Benthos (so Benthos' message calls from our code count as
//     Benthos, and our code run by Benthos as ours);
//   - the rest: net/http, syscalls, the scheduler.
//
// Alloc is not a share of its own: the samples under runtime.mallocgc,
// whoever they count for.
type Shares struct {
	GC, JSON, Ours, Benthos, Rest, Alloc float64
}

// ProfileShares reads CPU profiles (pprof protobuf, gzip-compressed as
// runtime/pprof writes them) and returns their merged shares.
func ProfileShares(paths ...string) (Shares, error) {
	var sum [6]int64 // GC, JSON, Ours, Benthos, Rest, Alloc
	var total int64
	for _, path := range paths {
		p, err := readProfile(path)
		if err != nil {
			return Shares{}, fmt.Errorf("%s: %w", path, err)
		}
		for _, s := range p.Sample {
			if len(s.Value) == 0 {
				continue
			}
			value := s.Value[len(s.Value)-1] // CPU nanoseconds
			total += value
			stack := frames(s)
			sum[classify(stack)] += value
			for _, f := range stack {
				if f == "runtime.mallocgc" {
					sum[5] += value
					break
				}
			}
		}
	}
	if total == 0 {
		return Shares{}, errors.New("no samples")
	}
	f := func(i int) float64 { return float64(sum[i]) / float64(total) }
	return Shares{GC: f(0), JSON: f(1), Ours: f(2), Benthos: f(3), Rest: f(4), Alloc: f(5)}, nil
}

const (
	modulePrefix  = "github.com/opencurrents/currents-amplitude/"
	benthosPrefix = "github.com/redpanda-data/benthos/"
)

// classify returns the share index of a stack (leaf first).
func classify(frames []string) int {
	for _, f := range frames {
		if strings.HasPrefix(f, "runtime.gcBgMarkWorker") {
			return 0
		}
	}
	for _, f := range frames {
		if strings.HasPrefix(f, "runtime.") || strings.HasPrefix(f, "internal/runtime/") || strings.HasPrefix(f, "_") || !strings.Contains(f, ".") {
			continue // the runtime, and the race detector's C frames (__tsan_read, racecall)
		}
		if strings.HasPrefix(f, "github.com/tidwall/") || isJSONPackage(f) {
			return 1
		}
		break
	}
	for _, f := range frames {
		switch {
		case strings.HasPrefix(f, modulePrefix) && !strings.HasPrefix(f, modulePrefix+"tests/"):
			return 2
		case strings.HasPrefix(f, benthosPrefix):
			return 3
		}
	}
	return 4
}

// SharesMarkdown renders the shares of each named profile set as a table.
func SharesMarkdown(names []string, shares []Shares) string {
	var b strings.Builder
	b.WriteString("| scenario | our code | JSON (gjson, jsonscan, jsonvalid, jsonw, jsonlimit) | Benthos core | GC (background) | net/http, syscalls, runtime | allocation (inside the others) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	pc := func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
	for i, s := range shares {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", names[i], pc(s.Ours), pc(s.JSON), pc(s.Benthos), pc(s.GC), pc(s.Rest), pc(s.Alloc))
	}
	return b.String()
}

// readProfile parses a CPU profile with pprof's own reader.
func readProfile(path string) (*profile.Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return profile.Parse(f)
}

// frames returns the function names of a sample's stack, leaf first
// (inlined functions before the function they were inlined into).
func frames(s *profile.Sample) []string {
	var out []string
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function != nil {
				out = append(out, line.Function.Name)
			}
		}
	}
	return out
}

// jsonPackages are this module's JSON packages, counted as JSON.
var jsonPackages = []string{"jsonw", "jsonlimit", "jsonscan", "jsonvalid"}

// isJSONPackage reports whether frame f is in one of jsonPackages.
func isJSONPackage(f string) bool {
	for _, p := range jsonPackages {
		if strings.HasPrefix(f, modulePrefix+"plugins/internal/"+p+".") {
			return true
		}
	}
	return false
}
