package bench

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
)

// Options select what Run measures.
type Options struct {
	// DataDir holds generated data; files are reused between runs.
	DataDir string
	// Datasets are the streams to run on.
	Datasets []Dataset
	// Groups, when not empty, restricts the run to these scenario groups
	// (for instance the scaling runs measure only "end to end").
	Groups []string
	// Sides, when not empty, restricts the run to these sides (Ours,
	// Plain).
	Sides []string
	// Env are extra environment variables of every child (NAME=value),
	// such as GOMEMLIMIT=128MiB; they are shown in the report.
	Env []string
	// Threads is pipeline.threads of every run; 0 means one per CPU.
	Threads int
	// Repeat is how many times each scenario runs (0 means once). Runs go
	// in rounds, every scenario once per round, so that a burst of load from
	// elsewhere on the machine hits both sides alike; each row is the run
	// with the median wall time.
	Repeat int
	// Timeout bounds each child run.
	Timeout time.Duration
	// ProfileDir, when set, receives a pprof CPU profile per run, named
	// after the dataset and scenario.
	ProfileDir string
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
}

// Row is the outcome of one scenario on one dataset.
type Row struct {
	Dataset  Dataset
	Scenario Scenario
	// Env are the extra environment variables of the run.
	Env    string
	Result Result
	// Skipped, when not empty, says why the scenario did not run.
	Skipped string
}

// Run measures every selected scenario on every dataset, each in its own
// child process, and returns one row per scenario and dataset. A scenario
// whose components are not available is skipped, not failed.
func Run(o Options) ([]Row, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			return nil, err
		}
	}
	var blobl string
	if b, err := os.ReadFile(filepath.Join(root, BloblangPath)); err == nil {
		blobl = string(b)
	}
	var rows []Row
	for _, d := range o.Datasets {
		currents, err := EnsureData(o.DataDir, d)
		if err != nil {
			return rows, err
		}
		inputs := map[string][]string{InputCurrents: {currents}}
		var runs []Row // the rows to measure, in order
		for _, s := range Scenarios() {
			if !selected(o.Groups, s.Group) || !selected(o.Sides, s.Side) {
				continue
			}
			row := Row{Dataset: d, Scenario: s, Env: strings.Join(o.Env, " ")}
			if missing := s.Missing(root); len(missing) > 0 {
				row.Skipped = "missing " + strings.Join(missing, ", ")
			} else if _, ok := inputs[s.Input]; !ok {
				paths, err := prepare(o, d, s.Input, currents)
				if err != nil {
					row.Skipped = err.Error()
				} else {
					inputs[s.Input] = paths
				}
			}
			if row.Skipped != "" {
				logf("%s %s: skipped (%s)", d, s.Name(), row.Skipped)
			}
			runs = append(runs, row)
		}
		results := make([][]Result, len(runs))
		for round := range max(o.Repeat, 1) {
			for i, row := range runs {
				if row.Skipped != "" {
					continue
				}
				s := row.Scenario
				r, err := measure(o, d, s, Params{InputPaths: inputs[s.Input], Bloblang: blobl, Threads: o.Threads})
				if err != nil {
					return rows, err
				}
				results[i] = append(results[i], r)
				logf("%s %s (run %d): %.0f events/s, %.2f CPU s/M, %.1f allocs/event, peak RSS %.0f MiB",
					d, s.Name(), round+1, r.EventsPerSec(), r.CPUPerMillion(), r.AllocsPerEvent(), r.PeakRSSMB())
			}
		}
		for i, row := range runs {
			if len(results[i]) > 0 {
				row.Result = median(results[i])
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// median returns the result with the median wall time (the slower of the
// two middle ones for an even count).
func median(rs []Result) Result {
	return medianBy(rs, func(r Result) time.Duration { return r.Wall })
}

// medianBy returns the element of rs with the median wall time (the slower
// of the two middle ones for an even count).
func medianBy[T any](rs []T, wall func(T) time.Duration) T {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b T) int { return cmp.Compare(wall(a), wall(b)) })
	return sorted[len(sorted)/2]
}

// selected reports whether v is in list, or list is empty.
func selected(list []string, v string) bool {
	if len(list) == 0 {
		return true
	}
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// measure runs s in a child process, with a fresh fake Amplitude when s
// sends to one, and checks that every event arrived exactly once.
func measure(o Options, d Dataset, s Scenario, p Params) (Result, error) {
	var srv *amplitudetest.Server
	if s.Server {
		srv = amplitudetest.NewServer(amplitudetest.Options{APIKey: APIKey})
		defer srv.Close()
		p.URL, p.BatchURL = srv.HTTPV2URL(), srv.BatchURL()
	}
	sp := Spec{Name: s.Name(), YAML: s.Config(p), Events: d.Events, Timeout: o.Timeout, Env: o.Env}
	if o.ProfileDir != "" {
		name := strings.NewReplacer(" / ", "-", " ", "_", "(", "", ")", "").Replace(s.Name())
		sp.CPUProfile = filepath.Join(o.ProfileDir, d.String()+"-"+name+".pprof")
	}
	res, err := Measure(sp)
	if err != nil {
		return res, fmt.Errorf("%s: %w", d, err)
	}
	if srv != nil {
		res.Delivered, res.Duplicates = srv.Count(), srv.Duplicates()
	}
	return res, nil
}

// prepare derives the input of kind from the Currents stream: Amplitude
// events (mapped by braze_to_amplitude), Avro files or request bodies.
func prepare(o Options, d Dataset, kind, currents string) ([]string, error) {
	switch kind {
	case InputAmplitude:
		path := filepath.Join(o.DataDir, "amplitude-"+d.String()+".jsonl")
		if _, err := os.Stat(path); err == nil {
			return []string{path}, nil
		}
		if missing := HasComponents("braze_to_amplitude"); len(missing) > 0 {
			return nil, fmt.Errorf("missing %s to prepare Amplitude events", missing[0])
		}
		tmp := path + ".tmp"
		s := Scenario{Group: "prepare", Side: Ours, Input: InputCurrents, Processors: oursMapping,
			Output: func(Params) string { return fmt.Sprintf("file:\n  path: %q\n  codec: lines", tmp) }}
		if _, err := Measure(Spec{Name: "prepare amplitude", YAML: s.Config(Params{InputPaths: []string{currents}}),
			Events: d.Events, Timeout: o.Timeout}); err != nil {
			return nil, err
		}
		return []string{path}, os.Rename(tmp, path)
	case InputAvro:
		return EnsureAvro(o.DataDir, d)
	case InputBodies:
		path, err := EnsureBodies(o.DataDir, d)
		return []string{path}, err
	}
	return nil, fmt.Errorf("unknown input %q", kind)
}
