package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidwall/gjson"
)

// The live-path benchmark: Braze-like HTTP posts of InputBatch events, sent
// by Concurrency clients at once to a pipeline in a child process, which
// relays them to a fast Go fake Amplitude in this process. The floor is the
// same transport without processing (core http_server → http_client); the
// live pipelines are ours. Every component is configured through YAML with
// its required fields only, so that the scenarios follow the components as
// they change.

// LiveScenario is one pipeline of the live-path benchmark.
type LiveScenario struct {
	// Name labels the scenario; LiveFloor is the reference.
	Name string
	// Needs lists the components it uses; it is skipped while one is
	// missing.
	Needs []string
	// Config returns the stream config: the input listens on addr and path,
	// the output posts to url.
	Config func(p LiveParams) string
	// Env, when set, returns extra environment variables of the child (the
	// shipped pipeline takes its addresses from them).
	Env func(p LiveParams) []string
}

// LiveParams are what a live scenario's config is built from.
type LiveParams struct {
	Addr, Path, URL string
	// Threads is pipeline.threads.
	Threads int
	// Dir is a folder of the run's own (dead-letter files).
	Dir string
}

// ShippedLivePipeline is the live pipeline shipped in config/, measured as
// it is, with its addresses set through its environment variables.
const ShippedLivePipeline = "config/currents_http_to_amplitude.yaml"

// LiveFloor names the relay scenario every other is compared with.
const LiveFloor = "relay floor (http_server → http_client)"

// LiveScenarios lists the live-path scenarios, the floor first.
func LiveScenarios() []LiveScenario {
	header := func(p LiveParams) string {
		return fmt.Sprintf("http:\n  enabled: false\nlogger:\n  level: WARN\nmetrics:\n  %s: {}\n", countersExporter)
	}
	ours := func(processors string) func(p LiveParams) string {
		return func(p LiveParams) string {
			return header(p) + fmt.Sprintf(`input:
  braze_currents_http:
    address: %q
    path: %q
pipeline:
  threads: %d
  processors:
%s
output:
  amplitude:
    api_key: %q
    url: %q
`, p.Addr, p.Path, p.Threads, indent(processors, 4), APIKey, p.URL)
		}
	}
	return []LiveScenario{
		{Name: LiveFloor, Config: func(p LiveParams) string {
			return header(p) + fmt.Sprintf(`input:
  http_server:
    address: %q
    path: %q
    allowed_verbs: [ POST ]
pipeline:
  threads: %d
  processors: []
output:
  http_client:
    url: %q
    verb: POST
    headers:
      Content-Type: application/json
    max_in_flight: %d
`, p.Addr, p.Path, p.Threads, p.URL, LiveConcurrency)
		}},
		{Name: "live (braze_currents_http → braze_to_amplitude → amplitude)",
			Needs:  []string{"braze_to_amplitude", "amplitude"},
			Config: ours("- braze_to_amplitude: {}")},
		{Name: "live, shipped pipeline (" + ShippedLivePipeline + ")",
			Needs: []string{"braze_to_amplitude", "amplitude"},
			Config: func(LiveParams) string {
				root, err := RepoRoot()
				if err != nil {
					return "# " + err.Error()
				}
				b, err := os.ReadFile(filepath.Join(root, ShippedLivePipeline))
				if err != nil {
					return "# " + err.Error()
				}
				return string(b)
			},
			Env: func(p LiveParams) []string {
				return []string{"CURRENTS_HTTP_ADDRESS=" + p.Addr, "CURRENTS_HTTP_PATH=" + p.Path, "AMPLITUDE_URL=" + p.URL,
					"AMPLITUDE_API_KEY=" + APIKey, "DLQ_PATH=" + filepath.Join(p.Dir, "dlq.jsonl"), "HTTP_ADDRESS=127.0.0.1:0",
					"LOG_LEVEL=WARN", "PIPELINE_THREADS=" + strconv.Itoa(p.Threads)}
			}},
	}
}

// File names the scenario in file names: its first word, and "shipped"
// for the shipped pipeline.
func (s LiveScenario) File() string {
	if s.Env != nil {
		return "shipped"
	}
	return strings.Fields(s.Name)[0]
}

// LiveConcurrency is the number of posts in flight at once, as Braze's HTTP
// connector may have them.
const LiveConcurrency = 16

// LiveOptions select what RunLive measures.
type LiveOptions struct {
	// Dataset is the stream the posts are cut from (InputBatch events
	// each, cycled when Posts needs more).
	Dataset Dataset
	// DataDir holds generated data.
	DataDir string
	// Posts is the number of measured posts per run, after Warmup posts.
	Posts, Warmup int
	// Rounds is how many times each scenario runs; runs go in rounds
	// (every scenario once per round), each row is the median run.
	Rounds int
	// Threads is pipeline.threads (0: 16, as the shipped pipelines).
	Threads int
	// ProfileDir, when set, receives one pprof CPU profile per run.
	ProfileDir string
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
}

// LiveResult is one run of a live scenario.
type LiveResult struct {
	// Events and Posts are what was measured (warm-up excluded).
	Events, Posts int
	// Wall is the time from the first measured post to the last answer.
	Wall time.Duration
	// CPU is the child's user plus system time over the same interval.
	CPU time.Duration
	// P50 and P99 are the latencies of the posts' answers (the pipeline
	// answers once the events are delivered).
	P50, P99 time.Duration
	// Delivered is the number of events the fake Amplitude received over
	// the whole run, warm-up included; Sent the number posted.
	Delivered, Sent int64
	// Paced is the number of times the amplitude output made an event wait
	// for its id's budget (amplitude_events_paced_total) over the whole run,
	// warm-up included; -1 when the scenario's metrics do not tell (the
	// floor has no such output, the shipped pipeline exports to
	// Prometheus). A paced event holds its post's answer back, so a run
	// with many measures Amplitude's budgets rather than the path.
	Paced int64
}

// pacedCounter is the amplitude output's count of events that waited for
// their id's budget.
const pacedCounter = "amplitude_events_paced_total"

// EventsPerSec is the run's throughput.
func (r LiveResult) EventsPerSec() float64 { return float64(r.Events) / r.Wall.Seconds() }

// CPUPerEvent is the child's CPU time per event, in microseconds.
func (r LiveResult) CPUPerEvent() float64 {
	return float64(r.CPU.Nanoseconds()) / 1e3 / float64(r.Events)
}

// LiveRow is the outcome of one live scenario.
type LiveRow struct {
	Scenario LiveScenario
	Result   LiveResult
	Skipped  string
	// Shares are the CPU shares of the scenario's profiles, all rounds
	// merged (nil without LiveOptions.ProfileDir).
	Shares *Shares
}

// RunLive measures every live scenario in interleaved rounds.
func RunLive(o LiveOptions) ([]LiveRow, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			return nil, err
		}
	}
	bodies, err := liveBodies(o.DataDir, o.Dataset)
	if err != nil {
		return nil, err
	}
	rows := make([]LiveRow, 0, len(LiveScenarios()))
	for _, s := range LiveScenarios() {
		row := LiveRow{Scenario: s}
		if missing := HasComponents(s.Needs...); len(missing) > 0 {
			row.Skipped = "missing " + strings.Join(missing, ", ")
		}
		rows = append(rows, row)
	}
	results := make([][]LiveResult, len(rows))
	for round := range max(o.Rounds, 1) {
		for i, row := range rows {
			if row.Skipped != "" {
				continue
			}
			r, err := measureLive(o, row.Scenario, bodies, round)
			if err != nil {
				return rows, err
			}
			logf("live %s (run %d): %.0f events/s, %.2f µs CPU/event, p99 %v, delivered %d of %d",
				row.Scenario.Name, round+1, r.EventsPerSec(), r.CPUPerEvent(), r.P99, r.Delivered, r.Sent)
			results[i] = append(results[i], r)
		}
	}
	for i := range rows {
		if len(results[i]) > 0 {
			rows[i].Result = medianBy(results[i], func(r LiveResult) time.Duration { return r.Wall })
		}
		if o.ProfileDir != "" && rows[i].Skipped == "" {
			files, _ := filepath.Glob(filepath.Join(o.ProfileDir, "live-"+rows[i].Scenario.File()+"-round*.pprof"))
			sh, err := ProfileShares(files...)
			if err != nil {
				return rows, fmt.Errorf("%s: profile shares: %w", rows[i].Scenario.Name, err)
			}
			rows[i].Shares = &sh
		}
	}
	return rows, nil
}

// liveBodies returns the dataset as request bodies of InputBatch events.
func liveBodies(dir string, d Dataset) ([][]byte, error) {
	path, err := EnsureBodies(dir, d)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")), nil
}

// measureLive runs scenario s once in a child process.
func measureLive(o LiveOptions, s LiveScenario, bodies [][]byte, round int) (LiveResult, error) {
	fake, err := newFastAmplitude()
	if err != nil {
		return LiveResult{}, err
	}
	defer fake.Close()
	addr, err := freeAddr()
	if err != nil {
		return LiveResult{}, err
	}
	threads := o.Threads
	if threads == 0 {
		threads = 16
	}
	dir, err := os.MkdirTemp("", "currents-live-")
	if err != nil {
		return LiveResult{}, err
	}
	defer os.RemoveAll(dir)
	p := LiveParams{Addr: addr, Path: "/currents", URL: fake.URL(), Threads: threads, Dir: dir}
	sp := Spec{Name: s.Name, YAML: s.Config(p), Timeout: 10 * time.Minute, UntilSignal: true}
	if s.Env != nil {
		sp.Env = s.Env(p)
	}
	if o.ProfileDir != "" {
		sp.CPUProfile = filepath.Join(o.ProfileDir, fmt.Sprintf("live-%s-round%d.pprof", s.File(), round+1))
	}
	cmd, resPath, output, cleanup, err := childCommand(sp)
	if err != nil {
		return LiveResult{}, err
	}
	defer cleanup()
	if err := cmd.Start(); err != nil {
		return LiveResult{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			return fmt.Errorf("%s: child did not stop", s.Name)
		}
	}
	defer func() { _ = stop() }()
	fail := func(err error) (LiveResult, error) {
		_ = stop()
		return LiveResult{}, fmt.Errorf("%s: %w\n%s", s.Name, err, output.String())
	}

	url := "http://" + addr + p.Path
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConnsPerHost: LiveConcurrency, MaxConnsPerHost: LiveConcurrency, DisableCompression: true}}
	defer client.CloseIdleConnections()
	if err := waitListening(addr, done); err != nil {
		return fail(err)
	}
	next := 0 // the next body to post
	var sent int64
	var mu sync.Mutex // guards next and sent
	run := func(posts int) ([]time.Duration, int, error) {
		lat := make([]time.Duration, 0, posts)
		events := 0
		var firstErr error
		var wg sync.WaitGroup
		var left atomic.Int64
		left.Store(int64(posts))
		for range LiveConcurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for left.Add(-1) >= 0 {
					mu.Lock()
					b := bodies[next%len(bodies)]
					next++
					mu.Unlock()
					start := time.Now()
					resp, err := client.Post(url, "application/json", bytes.NewReader(b))
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						_ = resp.Body.Close()
						if resp.StatusCode/100 != 2 {
							err = fmt.Errorf("post answered %s", resp.Status)
						}
					}
					d, n := time.Since(start), int(gjson.GetBytes(b, "events.#").Int())
					mu.Lock()
					if err != nil && firstErr == nil {
						firstErr = err
					}
					if err == nil {
						lat = append(lat, d)
						events += n
						sent += int64(n)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return lat, events, firstErr
	}
	// One post alone proves the pipeline answers, then the warm-up.
	if _, _, err := run(1); err != nil {
		return fail(err)
	}
	if _, _, err := run(o.Warmup); err != nil {
		return fail(err)
	}
	cpu0, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return fail(err)
	}
	start := time.Now()
	lat, events, err := run(o.Posts)
	wall := time.Since(start)
	if err != nil {
		return fail(err)
	}
	cpu1, err := procCPU(cmd.Process.Pid)
	if err != nil {
		return fail(err)
	}
	if err := stop(); err != nil {
		return LiveResult{}, fmt.Errorf("%s: %w\n%s", s.Name, err, output.String())
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
	return LiveResult{Events: events, Posts: len(lat), Wall: wall, CPU: cpu1 - cpu0, P50: q(0.50), P99: q(0.99),
		Delivered: fake.events.Load(), Sent: sent, Paced: pacedEvents(resPath, s)}, nil
}

// pacedEvents reads the child's count of paced events from its result, or
// returns -1 when it has none: a scenario without the amplitude output, or
// whose metrics go elsewhere than the harness' exporter.
func pacedEvents(resPath string, s LiveScenario) int64 {
	if s.Env != nil || !slices.Contains(s.Needs, "amplitude") {
		return -1 // the shipped pipeline's own metrics exporter; no output of ours
	}
	raw, err := os.ReadFile(resPath)
	if err != nil {
		return -1
	}
	var res Result
	if json.Unmarshal(raw, &res) != nil {
		return -1
	}
	return res.Counters[pacedCounter] // absent: none paced
}

// waitListening waits until addr accepts connections, or the child exits.
func waitListening(addr string, exited <-chan error) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("child exited before listening: %v", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			return c.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s after a minute", addr)
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// clockTicks is the unit of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const clockTicks = 100

// procCPU returns the user plus system CPU time of process pid.
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces), from field 3:
	// utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(raw, ')')
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(u+s) * time.Second / clockTicks, nil
}

// fastAmplitude is an Amplitude HTTP V2 stand-in that costs as little as
// possible: it counts the events of each request and answers 200 with
// Amplitude's success body. It checks nothing else (amplitudetest does that).
type fastAmplitude struct {
	srv    *http.Server
	ln     net.Listener
	events atomic.Int64
	bufs   sync.Pool
}

func newFastAmplitude() (*fastAmplitude, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fastAmplitude{ln: ln}
	f.bufs.New = func() any { return new(bytes.Buffer) }
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// URL is the server's HTTP V2 endpoint.
func (f *fastAmplitude) URL() string { return "http://" + f.ln.Addr().String() + "/2/httpapi" }

func (f *fastAmplitude) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := f.bufs.Get().(*bytes.Buffer)
	defer f.bufs.Put(buf)
	buf.Reset()
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	if _, err := buf.ReadFrom(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n := gjson.GetBytes(buf.Bytes(), "events.#").Int()
	f.events.Add(n)
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"code":200,"events_ingested":%d,"payload_size_bytes":%d,"server_upload_time":%d}`,
		n, buf.Len(), time.Now().UnixMilli())
}

// Close stops the server.
func (f *fastAmplitude) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
}

// LiveMarkdown renders live rows as a table, with ratios to the floor.
func LiveMarkdown(rows []LiveRow) string {
	var b strings.Builder
	b.WriteString("| scenario | events/s | CPU µs/event | p50 ack | p99 ack | events/s ÷ floor | CPU/event ÷ floor | delivered/sent | paced (waits) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var floor LiveResult
	for _, r := range rows {
		if r.Scenario.Name == LiveFloor && r.Skipped == "" {
			floor = r.Result
		}
	}
	for _, r := range rows {
		if r.Skipped != "" {
			fmt.Fprintf(&b, "| %s | skipped: %s ||||||||\n", r.Scenario.Name, r.Skipped)
			continue
		}
		res := r.Result
		ratio, cpuRatio := "", ""
		if floor.Events > 0 {
			ratio = fmt.Sprintf("%.0f%%", 100*res.EventsPerSec()/floor.EventsPerSec())
			cpuRatio = fmt.Sprintf("×%.1f", res.CPUPerEvent()/floor.CPUPerEvent())
		}
		paced := "—"
		if res.Paced >= 0 {
			paced = thousands(int(res.Paced))
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f | %.1f ms | %.1f ms | %s | %s | %d/%d | %s |\n", r.Scenario.Name,
			thousands(int(res.EventsPerSec())), res.CPUPerEvent(), ms(res.P50), ms(res.P99), ratio, cpuRatio, res.Delivered, res.Sent, paced)
	}
	var names []string
	var shares []Shares
	for _, r := range rows {
		if r.Shares != nil {
			names, shares = append(names, r.Scenario.Name), append(shares, *r.Shares)
		}
	}
	if len(shares) > 0 {
		b.WriteString("\nCPU profile shares (every sample counted once, all rounds and the warm-up merged; see bench.Shares):\n\n")
		b.WriteString(SharesMarkdown(names, shares))
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
