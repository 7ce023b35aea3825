package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	// Benthos' core components and ours, as the distribution's main.go
	// registers them.
	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	_ "github.com/opencurrents/currents-amplitude/plugins/all"
	"github.com/opencurrents/currents-amplitude/plugins/currentsgen"
	_ "github.com/opencurrents/currents-amplitude/plugins/prometheus"
)

// Environment variables that switch a test binary into child mode.
const (
	envChildSpec   = "CURRENTS_BENCH_CHILD_SPEC"
	envChildResult = "CURRENTS_BENCH_CHILD_RESULT"
)

// Spec is one measured run: a complete Benthos config that consumes Events
// events and then stops.
type Spec struct {
	// Name labels the run in errors.
	Name string `json:"name"`
	// YAML is the stream config.
	YAML string `json:"yaml"`
	// Events is the number of events the input holds.
	Events int `json:"events"`
	// Timeout bounds the run; 0 means 10 minutes.
	Timeout time.Duration `json:"timeout"`
	// CPUProfile, when set, is where the child writes a pprof CPU profile
	// of the run.
	CPUProfile string `json:"cpu_profile,omitempty"`
	// Env are extra environment variables (NAME=value) of the child, such
	// as GOMEMLIMIT.
	Env []string `json:"env,omitempty"`
	// UntilSignal marks a stream that runs until the child gets SIGTERM
	// (a server input): the stream is then stopped and the run ends
	// normally, so that its CPU profile is complete.
	UntilSignal bool `json:"until_signal,omitempty"`
}

// Result is what a child process measured while running a Spec.
type Result struct {
	// Name and Events are the Spec's.
	Name   string `json:"name"`
	Events int    `json:"events"`
	// Wall is the time from the stream's start to its end, once every
	// message was acknowledged.
	Wall time.Duration `json:"wall"`
	// CPU is user plus system time of the process over the same interval.
	CPU time.Duration `json:"cpu"`
	// Mallocs and AllocBytes are the heap allocations over the interval.
	Mallocs    uint64 `json:"mallocs"`
	AllocBytes uint64 `json:"alloc_bytes"`
	// BaseRSS is the process' resident set once the stream was built and
	// before it ran; PeakRSS its high-water mark at the end. Bytes.
	BaseRSS int64 `json:"base_rss"`
	PeakRSS int64 `json:"peak_rss"`
	// Delivered is filled in by the parent for runs that send to the fake
	// Amplitude server: distinct events it ingested.
	Delivered int `json:"delivered"`
	// Duplicates is filled in by the parent: events the server ingested
	// more than once (by insert_id).
	Duplicates int `json:"duplicates"`
	// Counters are the non-zero metric counters of the run.
	Counters map[string]int64 `json:"counters,omitempty"`
}

// EventsPerSec is the throughput of the run.
func (r Result) EventsPerSec() float64 { return float64(r.Events) / r.Wall.Seconds() }

// CPUPerMillion is the CPU time, in seconds, spent per million events.
func (r Result) CPUPerMillion() float64 { return r.CPU.Seconds() / float64(r.Events) * 1e6 }

// AllocsPerEvent is the number of heap allocations per event.
func (r Result) AllocsPerEvent() float64 { return float64(r.Mallocs) / float64(r.Events) }

// PeakRSSMB is the peak resident set in MiB.
func (r Result) PeakRSSMB() float64 { return float64(r.PeakRSS) / (1 << 20) }

// IsChild reports whether this process was started by Measure to run a
// Spec; TestMain calls ChildMain instead of the tests when it is.
func IsChild() bool { return os.Getenv(envChildSpec) != "" }

// ChildMain runs the Spec named by the environment, writes its Result and
// returns the process exit code.
func ChildMain() int {
	if err := childMain(); err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 1
	}
	return 0
}

func childMain() error {
	raw, err := os.ReadFile(os.Getenv(envChildSpec))
	if err != nil {
		return err
	}
	var sp Spec
	if err := json.Unmarshal(raw, &sp); err != nil {
		return err
	}
	res, err := runStream(sp)
	if err != nil {
		return err
	}
	out, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return os.WriteFile(os.Getenv(envChildResult), out, 0o600)
}

// runStream runs sp in this process and measures it.
func runStream(sp Spec) (Result, error) {
	sb := service.NewStreamBuilder()
	if err := sb.SetYAML(sp.YAML); err != nil {
		return Result{}, fmt.Errorf("%s: config: %w", sp.Name, err)
	}
	strm, err := sb.Build()
	if err != nil {
		return Result{}, fmt.Errorf("%s: build: %w", sp.Name, err)
	}
	timeout := sp.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if sp.UntilSignal {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGTERM)
		defer stop()
	}

	if sp.CPUProfile != "" {
		f, err := os.Create(sp.CPUProfile)
		if err != nil {
			return Result{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return Result{}, err
		}
		defer pprof.StopCPUProfile()
	}
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	baseRSS, _ := memStatus()
	cpu0 := processCPU()
	start := time.Now()
	err = strm.Run(ctx)
	wall := time.Since(start)
	cpu1 := processCPU()
	runtime.ReadMemStats(&ms1)
	_, peakRSS := memStatus()
	if sp.UntilSignal && errors.Is(err, context.Canceled) {
		err = nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("%s: run: %w", sp.Name, err)
	}
	return Result{
		Name:       sp.Name,
		Events:     sp.Events,
		Wall:       wall,
		CPU:        cpu1 - cpu0,
		Mallocs:    ms1.Mallocs - ms0.Mallocs,
		AllocBytes: ms1.TotalAlloc - ms0.TotalAlloc,
		BaseRSS:    baseRSS,
		PeakRSS:    peakRSS,
		Counters:   lastCounters.snapshot(),
	}, nil
}

// memStatus returns this process' current and peak resident set, in bytes,
// from /proc/self/status (VmRSS, VmHWM). getrusage's ru_maxrss would not do:
// Linux carries it across fork and exec, so a child would report its
// parent's peak.
func memStatus() (rss, peak int64) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name != "VmRSS" && name != "VmHWM" {
			continue
		}
		kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if name == "VmRSS" {
			rss = kib << 10
		} else {
			peak = kib << 10
		}
	}
	return rss, peak
}

// Measure runs sp in a child process (this test binary, re-executed) so
// that its CPU time and peak RSS are its own, and returns what it measured.
func Measure(sp Spec) (Result, error) {
	cmd, resPath, stderr, cleanup, err := childCommand(sp)
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("%s: child failed: %w\n%s", sp.Name, err, stderr.String())
	}
	raw, err := os.ReadFile(resPath)
	if err != nil {
		return Result{}, fmt.Errorf("%s: no result: %w\n%s", sp.Name, err, stderr.String())
	}
	var res Result
	return res, json.Unmarshal(raw, &res)
}

// childCommand prepares the child process that runs sp: the command (not
// started), where it writes its Result, its captured output, and a cleanup
// function removing its files.
func childCommand(sp Spec) (cmd *exec.Cmd, resPath string, output *bytes.Buffer, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "currents-bench-child")
	if err != nil {
		return nil, "", nil, nil, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	specPath, resPath := filepath.Join(dir, "spec.json"), filepath.Join(dir, "result.json")
	raw, err := json.Marshal(sp)
	if err == nil {
		err = os.WriteFile(specPath, raw, 0o600)
	}
	exe, exeErr := os.Executable()
	if err == nil {
		err = exeErr
	}
	if err != nil {
		cleanup()
		return nil, "", nil, nil, err
	}
	cmd = exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), sp.Env...), envChildSpec+"="+specPath, envChildResult+"="+resPath)
	output = &bytes.Buffer{}
	cmd.Stderr = &limitedBuffer{b: output, max: 64 << 10}
	cmd.Stdout = cmd.Stderr
	return cmd, resPath, output, cleanup, nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// RepoRoot returns the module root (the folder holding go.mod) above the
// working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Dataset names a generated stream of Currents events.
type Dataset struct {
	Events  int
	Devices int
	Seed    uint64
	// Skew, when above 1, concentrates events on a few hot devices.
	Skew float64
}

func (d Dataset) String() string {
	s := fmt.Sprintf("n%d-d%d-s%d", d.Events, d.Devices, d.Seed)
	if d.Skew > 1 {
		s += fmt.Sprintf("-z%g", d.Skew)
	}
	return s
}

// Generator returns the generator of the dataset's stream.
func (d Dataset) Generator() *currentsgen.Generator {
	return currentsgen.New(currentsgen.Config{Seed: d.Seed, Devices: d.Devices, Skew: d.Skew})
}

// EnsureData writes the dataset as JSON lines (HTTP connector shape) under
// dir, unless a previous run already did, and returns its path.
func EnsureData(dir string, d Dataset) (string, error) {
	path := filepath.Join(dir, "currents-"+d.String()+".jsonl")
	return path, generateFile(path, func(w *bufio.Writer) error {
		return d.Generator().WriteLines(w, d.Events, currentsgen.HTTP)
	})
}

// EnsureBodies writes the dataset as HTTP connector request bodies of
// InputBatch events, one per line, under dir, unless a previous run already
// did, and returns its path.
func EnsureBodies(dir string, d Dataset) (string, error) {
	path := filepath.Join(dir, "bodies-"+d.String()+".jsonl")
	return path, generateFile(path, func(w *bufio.Writer) error {
		g := d.Generator()
		var buf []byte
		for left := d.Events; left > 0; left -= InputBatch {
			buf = append(g.AppendBody(buf[:0], min(left, InputBatch)), '\n')
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		return nil
	})
}

// generateFile is generate for a single file written through a buffer.
func generateFile(path string, write func(w *bufio.Writer) error) error {
	return generate(path, func(tmp string) error {
		f, err := os.Create(tmp)
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		if err := write(w); err != nil {
			_ = f.Close()
			return err
		}
		if err := w.Flush(); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	})
}

// EnsureAvro writes the dataset as Avro files in the storage layout under
// dir, unless a previous run already did, and returns a glob matching them.
func EnsureAvro(dir string, d Dataset) ([]string, error) {
	path := filepath.Join(dir, "avro-"+d.String())
	glob := filepath.Join(path, "event_type=*", "date=*", "*.avro")
	return []string{glob}, generate(path, func(tmp string) error {
		_, err := currentsgen.WriteAvro(tmp, d.Generator(), d.Events, currentsgen.AvroOptions{})
		return err
	})
}

// generate calls write with a temporary path beside path, then renames it
// to path, so that an interrupted run leaves no partial data. It does
// nothing when path exists.
func generate(path string, write func(tmp string) error) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp := path + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := write(tmp); err != nil {
		return fmt.Errorf("generating %s: %w", filepath.Base(path), err)
	}
	return os.Rename(tmp, path)
}

// HasComponents reports which of the named components (processor, output or
// scanner names) are missing from the global environment.
func HasComponents(names ...string) (missing []string) {
	env := service.GlobalEnvironment()
	for _, n := range names {
		_, p := env.GetProcessorConfig(n)
		_, o := env.GetOutputConfig(n)
		_, s := env.GetScannerConfig(n)
		if !p && !o && !s {
			missing = append(missing, n)
		}
	}
	return missing
}

// indent prefixes every line of s with n spaces, to embed it in YAML.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
}
