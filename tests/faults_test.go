package tests

// The fault suite: every shipped pipeline of config/ run as the real binary
// against loopback fakes, through one fault matrix, with one invariant.
// See docs/fault-suite.md.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/ingest/ingesttest"
)

// faultSize is the run's scale: FAULT_SUITE=long runs the long mode
// (tests/faults.sh), anything else the short one that go test runs.
type faultSize struct {
	long bool
	// events per pipeline (of which about 1 in invalidEvery is invalid)
	events       int
	invalidEvery int
	// settle is how long a phase may take to deliver what was fed.
	settle time.Duration
}

func faultScale() faultSize {
	if os.Getenv("FAULT_SUITE") == "long" {
		return faultSize{long: true, events: 60000, invalidEvery: 97, settle: 15 * time.Minute}
	}
	return faultSize{events: 2400, invalidEvery: 37, settle: 40 * time.Second}
}

// retryFor is AMPLITUDE_RETRY_FOR in the suite; the outage phase lasts
// longer (outageFor), so that retries are exhausted and messages nacked.
const (
	retryFor  = 1 * time.Second
	outageFor = 3 * time.Second
	// forbiddenFor is how long the 403 proxy phase lasts.
	forbiddenFor = 2 * time.Second
)

// ---------------------------------------------------------------------
// The real binary.

var (
	buildOnce sync.Once
	binPath   string
	errBuild  error
)

// faultBinary builds the distribution once per test run and returns its
// path.
func faultBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "currents-amplitude-faults-")
		if err != nil {
			errBuild = err
			return
		}
		binPath = filepath.Join(dir, "currents-amplitude")
		out, err := exec.Command("go", "build", "-o", binPath, "..").CombinedOutput()
		if err != nil {
			errBuild = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, errBuild)
	return binPath
}

// proc is one run of the binary on a pipeline.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	logs   string // the file holding its output
	exited chan struct{}
	code   int
}

// startProc runs `currents-amplitude run config/<config>` with env as its
// whole environment (plus PATH and HOME); with stdin its standard input is
// a pipe the test writes to. The process is killed at the end of the test,
// and its output logged when the test failed.
func startProc(t *testing.T, config string, env map[string]string, stdin bool) *proc {
	t.Helper()
	cmd := exec.Command(faultBinary(t), "run", filepath.Join("..", "config", config))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs, err := os.CreateTemp(t.TempDir(), "output-*.log")
	require.NoError(t, err)
	defer logs.Close() // the process has its own descriptor
	p := &proc{name: config, cmd: cmd, logs: logs.Name(), exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = logs, logs
	if stdin {
		w, err := cmd.StdinPipe()
		require.NoError(t, err)
		p.stdin = w
	}
	require.NoError(t, cmd.Start())
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		case err != nil:
			p.code = -1
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() || os.Getenv("FAULT_SUITE_LOGS") != "" {
			out := p.output()
			t.Logf("output of %s (pid %d, last 6 KiB):\n%s", config, cmd.Process.Pid, out[max(0, len(out)-6<<10):])
		}
	})
	return p
}

// output returns what the process wrote so far.
func (p *proc) output() string {
	b, _ := os.ReadFile(p.logs)
	return string(b)
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// term sends SIGTERM and returns the exit code, or fails the test when the
// process does not exit within timeout.
func (p *proc) term(t *testing.T, timeout time.Duration) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(t, timeout)
}

// wait waits for the process to exit by itself and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.name, timeout)
		return 0
	}
}

// ---------------------------------------------------------------------
// Records: the valid events and the invalid ones mixed in.

// expectation is what must become of a record.
type expectation int

const (
	// expectDelivered: in Amplitude (or in the Kafka topic), exactly once.
	expectDelivered expectation = iota
	// expectDeadLetter: in the dead-letter output with the record's reason,
	// never in Amplitude.
	expectDeadLetter
	// expectRefused: refused to Braze with 400 (Braze splits the request
	// and drops the event alone), never delivered nor dead-lettered.
	expectRefused
	// expectSkipped: not an event (an empty line): nowhere.
	expectSkipped
)

// record is one record of a source.
type record struct {
	id     string
	raw    []byte
	expect expectation
	reason string // the dead-letter reason for expectDeadLetter
	event  ingesttest.Event
}

// invalidKind builds one kind of invalid record; n numbers it.
type invalidKind func(n int) record

// unmappableEvent lacks its time: the mapper fails it (unmappable).
func unmappableEvent(n int) record {
	id := "bad-" + strconv.Itoa(n)
	return record{id: id, expect: expectDeadLetter, reason: "unmappable",
		raw: []byte(`{"event_type":"users.messages.email.Open","id":"` + id + `","user":{"external_user_id":"usr_bad_` + strconv.Itoa(n) + `"},"properties":{}}`)}
}

// deepEvent nests JSON 70 levels deep in its properties; exp says what the
// pipeline makes of it (400 at the HTTP door, too_large elsewhere).
func deepEvent(exp expectation) invalidKind {
	return func(n int) record {
		id := "deep-" + strconv.Itoa(n)
		return record{id: id, expect: exp, reason: "too_large",
			raw: []byte(`{"event_type":"users.messages.email.Open","id":"` + id + `","time":1767225600,"user":{"external_user_id":"usr_deep_` +
				strconv.Itoa(n) + `"},"properties":{"p":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}`)}
	}
}

// faultRecords returns n records: generated valid events with one invalid
// record (of the kinds, in turn) every invalidEvery.
func faultRecords(seed uint64, n, invalidEvery int, kinds ...invalidKind) []record {
	events := ingesttest.Generate(ingesttest.GenConfig{Seed: seed, Devices: n}, n)
	out := make([]record, 0, n+n/invalidEvery)
	for i, ev := range events {
		if len(kinds) > 0 && i%invalidEvery == invalidEvery/2 {
			out = append(out, kinds[(i/invalidEvery)%len(kinds)](i))
		}
		out = append(out, record{id: ev.ID, raw: ev.Raw, expect: expectDelivered, event: ev})
	}
	return out
}

// ---------------------------------------------------------------------
// Where records end up.

// dlqIDPattern finds the id of an invalid record in a dead-letter event
// that is not an object (a line that is not JSON, the kept prefix of a line
// too long).
var dlqIDPattern = regexp.MustCompile(`(bad|deep|long|junk)-[0-9]+`)

// dlqKey identifies the record a dead-letter record is about.
func dlqKey(rec gjson.Result) string {
	ev := rec.Get("event")
	if ev.IsObject() {
		if id := ev.Get("id").String(); id != "" {
			return id
		}
		if id := ev.Get("insert_id").String(); id != "" {
			return id
		}
	}
	return dlqIDPattern.FindString(ev.String())
}

// deadLetters is a dead-letter destination as the suite reads it.
type deadLetters interface {
	// records returns every dead-letter record written so far.
	records(t *testing.T) []gjson.Result
}

// readFileQuiet reads a file that may not exist yet.
func readFileQuiet(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// dlqFile reads a dead-letter JSON-lines file.
type dlqFile string

func (f dlqFile) records(t *testing.T) []gjson.Result {
	var out []gjson.Result
	for _, l := range readLines(t, string(f)) {
		require.True(t, gjson.Valid(l), "dead-letter line is not JSON: %.200s", l)
		out = append(out, gjson.Parse(l))
	}
	return out
}

// dlqGlob reads every dead-letter JSON-lines file matching a pattern (the
// cohort pipelines write one file per day).
type dlqGlob string

func (g dlqGlob) records(t *testing.T) []gjson.Result {
	files, err := filepath.Glob(string(g))
	require.NoError(t, err)
	var out []gjson.Result
	for _, f := range files {
		out = append(out, dlqFile(f).records(t)...)
	}
	return out
}

// deadLettered returns the reasons written per record key.
func deadLettered(t *testing.T, d deadLetters) map[string][]string {
	out := map[string][]string{}
	for _, r := range d.records(t) {
		k := dlqKey(r)
		out[k] = append(out[k], r.Get("reason").String())
	}
	return out
}

// ---------------------------------------------------------------------
// The matrix.

// faultInjector fails what a pipeline sends according to a faultMode.
type faultInjector interface {
	set(faultMode)
	Counts() map[string]int
}

// faultTarget is one pipeline under the fault matrix.
type faultTarget interface {
	// start starts (or restarts) the pipeline.
	start(t *testing.T) *proc
	// feed hands records to the pipeline's source and returns once the
	// source is done with them (HTTP: each request answered 2xx or its
	// events dropped after 400; Kafka: produced; replay: written).
	feed(ctx context.Context, t *testing.T, recs []record) error
	// delivered reports whether a valid record reached its destination.
	delivered(id string) bool
	// deliveredTotal is the number of distinct records at the destination.
	deliveredTotal() int
	// refused reports whether a record was refused at the door (400).
	refused(id string) bool
	// deadLetters is the pipeline's dead-letter output.
	deadLetters() deadLetters
	// checkAcked fails the test if the source considers done (acked,
	// committed, deleted) a record that is neither delivered nor
	// dead-lettered; it is called after every phase and right after a
	// kill -9.
	checkAcked(t *testing.T)
	// proxies are the fault injectors in front of what the pipeline
	// delivers to (HTTP proxies, a Kafka broker's produce handler).
	proxies() []faultInjector
	// finish ends the run: SIGTERM, or the end of the input.
	finish(t *testing.T, p *proc)
}

// oneShotTarget is a target whose pipeline ends by itself once its input
// is done and whose input is fixed at start (files): each phase feeds its
// records first and then runs the pipeline to its end (finish), with the
// phase's faults and actions applied meanwhile.
type oneShotTarget interface {
	faultTarget
	oneShot()
}

// phase is one step of the matrix: a mode set on the proxies for hold (or
// the whole phase), or an action on the process mid-stream.
type phase struct {
	name   string
	mode   faultMode
	hold   time.Duration
	action string // "kill" or "term"
}

// theMatrix is the one fault matrix every pipeline goes through, with
// invalid records mixed into every phase.
var theMatrix = []phase{
	{name: "30% faults", mode: modeFaulty},
	{name: "outage longer than the retry time, then recovery", mode: modeOutage, hold: outageFor},
	{name: "kill -9 mid-stream and restart", action: "kill"},
	{name: "SIGTERM mid-stream and restart", action: "term"},
	{name: "403 proxy phase", mode: modeForbidden, hold: forbiddenFor},
	{name: "recovery", mode: modePass},
}

// matrixRun is the outcome of a run, for the invariant.
type matrixRun struct {
	fedIn    map[string]int // record id -> phase it was fed in
	restarts []int          // phases in which the process was restarted
	killed   int            // the phase of the kill -9 (-1: none)
}

// runFaultMatrix feeds recs to tgt in len(theMatrix) chunks, one per phase,
// waits for each chunk to settle, then checks the invariant.
// rereadsAll says a restart makes the source hand everything again (the
// replay reads its input from the start), so dead letters may be written
// again once per later restart; otherwise only the records in flight at the
// kill -9 may be.
func runFaultMatrix(t *testing.T, tgt faultTarget, recs []record, rereadsAll bool) {
	scale := faultScale()
	run := matrixRun{fedIn: map[string]int{}, killed: -1}
	var p *proc
	if _, ok := tgt.(oneShotTarget); !ok {
		p = tgt.start(t)
	}
	start := time.Now()
	for i, ph := range theMatrix {
		chunk := recs[i*len(recs)/len(theMatrix) : (i+1)*len(recs)/len(theMatrix)]
		for _, r := range chunk {
			run.fedIn[r.id] = i
		}
		phaseStart := time.Now()
		for _, px := range tgt.proxies() {
			px.set(ph.mode)
		}
		ctx, cancel := context.WithTimeout(context.Background(), scale.settle)
		fed := make(chan error, 1)
		_, oneShot := tgt.(oneShotTarget)
		if oneShot {
			fed <- tgt.feed(ctx, t, chunk)
			p = tgt.start(t)
		} else {
			go func() { fed <- tgt.feed(ctx, t, chunk) }()
		}
		if ph.hold > 0 {
			time.Sleep(ph.hold)
			for _, px := range tgt.proxies() {
				px.set(modePass)
			}
		}
		if ph.action != "" {
			// Mid-stream: once part of the chunk is through.
			waitFor(t, scale.settle, func() bool { return progress(tgt, chunk) >= len(chunk)/3 }, func() string { return "progress before " + ph.action })
			if ph.action == "kill" {
				p.kill()
				run.killed = i
				tgt.checkAcked(t)
			} else {
				assert.Zero(t, p.term(t, 50*time.Second), "SIGTERM: a graceful stop exits 0")
				tgt.checkAcked(t)
			}
			run.restarts = append(run.restarts, i)
			p = tgt.start(t)
		}
		require.NoError(t, <-fed, "phase %q: feeding", ph.name)
		cancel()
		fedAfter := time.Since(phaseStart)
		settle := scale.settle
		if oneShot {
			tgt.finish(t, p)
			tgt.checkAcked(t)
			settle = 2 * time.Second // it ended: what is not there will not come
		}
		var missing []string
		waitFor(t, settle, func() bool {
			missing = unsettled(t, tgt, recs[:(i+1)*len(recs)/len(theMatrix)])
			return len(missing) == 0
		}, func() string {
			return fmt.Sprintf("phase %q: every record fed settled (not yet: %v)", ph.name, missing)
		})
		tgt.checkAcked(t)
		t.Logf("phase %-50q %5d records fed in %v, settled in %v", ph.name, len(chunk),
			fedAfter.Round(10*time.Millisecond), time.Since(phaseStart).Round(10*time.Millisecond))
		if t.Failed() {
			return
		}
	}
	if _, ok := tgt.(oneShotTarget); !ok {
		tgt.finish(t, p)
	}
	t.Logf("%d records through %d phases in %v", len(recs), len(theMatrix), time.Since(start).Round(10*time.Millisecond))
	for _, px := range tgt.proxies() {
		t.Logf("proxy answers: %v", px.Counts())
	}
	checkInvariant(t, tgt, recs, run, rereadsAll)
}

// progress counts the records of chunk that settled.
func progress(tgt faultTarget, chunk []record) int {
	n := 0
	for _, r := range chunk {
		if r.expect == expectDelivered && tgt.delivered(r.id) {
			n++
		}
	}
	return n
}

// unsettled returns (up to 5 of) the records that have not reached their
// destination yet.
func unsettled(t *testing.T, tgt faultTarget, recs []record) []string {
	var dl map[string][]string
	var out []string
	for _, r := range recs {
		ok := true
		switch r.expect {
		case expectDelivered:
			ok = tgt.delivered(r.id)
		case expectRefused:
			ok = tgt.refused(r.id)
		case expectDeadLetter:
			if dl == nil {
				dl = deadLettered(t, tgt.deadLetters())
			}
			ok = len(dl[r.id]) > 0
		}
		if !ok {
			if dl == nil {
				dl = deadLettered(t, tgt.deadLetters())
			}
			if reasons := dl[r.id]; r.expect == expectDelivered && len(reasons) > 0 {
				out = append(out, r.id+" (dead-lettered: "+strings.Join(reasons, ",")+")")
			} else {
				out = append(out, r.id)
			}
			if len(out) == 5 {
				break
			}
		}
	}
	return out
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkInvariant: every valid record delivered, exactly the invalid ones
// dead-lettered with their reason (once; again only where a restart made
// the source hand them again), nothing else anywhere.
func checkInvariant(t *testing.T, tgt faultTarget, recs []record, run matrixRun, rereadsAll bool) {
	t.Helper()
	dl := deadLettered(t, tgt.deadLetters())
	want := map[string]record{}
	delivered, deadLetteredN, refused, dups := 0, 0, 0, 0
	for _, r := range recs {
		want[r.id] = r
		switch r.expect {
		case expectDelivered:
			if assert.True(t, tgt.delivered(r.id), "valid record %s not delivered", r.id) {
				delivered++
			}
			assert.Empty(t, dl[r.id], "valid record %s dead-lettered", r.id)
		case expectDeadLetter:
			got := dl[r.id]
			allowed := 1
			for _, ph := range run.restarts {
				if (rereadsAll && ph >= run.fedIn[r.id]) || (!rereadsAll && ph == run.killed && ph == run.fedIn[r.id]) {
					allowed++
				}
			}
			if assert.NotEmpty(t, got, "invalid record %s (%s) not dead-lettered", r.id, r.reason) {
				deadLetteredN++
			}
			assert.LessOrEqual(t, len(got), allowed, "invalid record %s dead-lettered %d times", r.id, len(got))
			dups += max(0, len(got)-1)
			for _, reason := range got {
				assert.Equal(t, r.reason, reason, "reason of %s", r.id)
			}
			assert.False(t, tgt.delivered(r.id), "invalid record %s delivered", r.id)
		case expectRefused:
			if assert.True(t, tgt.refused(r.id), "record %s not refused", r.id) {
				refused++
			}
			assert.Empty(t, dl[r.id], "refused record %s dead-lettered", r.id)
			assert.False(t, tgt.delivered(r.id), "refused record %s delivered", r.id)
		}
	}
	assert.Equal(t, delivered, tgt.deliveredTotal(), "the destination holds exactly the valid records (once each by id)")
	var strays []string
	for k := range dl {
		if _, ok := want[k]; !ok {
			strays = append(strays, k)
		}
	}
	sort.Strings(strays)
	assert.Empty(t, strays, "dead-letter records of no invalid record")
	t.Logf("invariant: %d delivered, %d dead-lettered (%d written again after a restart), %d refused with 400",
		delivered, deadLetteredN, dups, refused)
}
