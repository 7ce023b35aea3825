package tests

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/ingest/ingesttest"
)

// replayFile writes events as JSON lines into a new folder, each line of
// after[i] right after the i-th event, and returns the folder and the file.
func replayFile(t *testing.T, events []ingesttest.Event, after map[int]string) (dir, path string) {
	t.Helper()
	var file bytes.Buffer
	for i, ev := range events {
		file.Write(ev.Raw)
		file.WriteByte('\n')
		if line, ok := after[i]; ok {
			file.WriteString(line + "\n")
		}
	}
	dir = t.TempDir()
	path = filepath.Join(dir, "backfill.jsonl")
	require.NoError(t, os.WriteFile(path, file.Bytes(), 0o600))
	return dir, path
}

// TestE2EReplay: a JSON-lines backfill file goes through the replay pipeline
// to the Batch endpoint, despite 20% faults; the one unreadable line ends in
// the dead-letter file, and the pipeline stops by itself.
func TestE2EReplay(t *testing.T) {
	amp := amplitudetest.NewServer(amplitudetest.Options{APIKey: "e2e-amplitude-key", FaultRate: 0.2, Seed: 11})
	t.Cleanup(amp.Close)

	events := ingesttest.Generate(ingesttest.GenConfig{Seed: 8, Devices: 2000}, 3000)
	dir, path := replayFile(t, events, map[int]string{1000: "{\"event_type\": \"users.messages.email.Open\", truncated"})

	env := map[string]string{
		"AMPLITUDE_API_KEY": "e2e-amplitude-key",
		"AMPLITUDE_URL":     amp.BatchURL(),
		"AMPLITUDE_TIMEOUT": "1s",
		"REPLAY_PATHS":      path,
		"DLQ_PATH":          filepath.Join(dir, "dlq.jsonl"),
		"LOG_LEVEL":         "ERROR",
	}
	startPipeline(t, "currents_replay_to_amplitude.yaml", env, nil).wait(t, 3*time.Minute)

	assert.Equal(t, len(events), amp.Count(), "every event replayed")
	for _, ev := range events {
		checkMapped(t, amp, ev)
	}
	dlq := readLines(t, env["DLQ_PATH"])
	require.Len(t, dlq, 1)
	assert.Contains(t, gjson.Get(dlq[0], "event").String(), "truncated")
	assert.Equal(t, "unreadable", gjson.Get(dlq[0], "reason").String())
	assert.Equal(t, "1002", gjson.Get(dlq[0], "source.currents_line").String(), "the record names the line")
	assert.Equal(t, path, gjson.Get(dlq[0], "source.path").String())
}

// TestE2EQuickstartDryRun: without AMPLITUDE_API_KEY the quickstart prints
// one Amplitude event per bundled sample and stops by itself.
func TestE2EQuickstartDryRun(t *testing.T) {
	t.Setenv("AMPLITUDE_API_KEY", "")
	samples := countLines(t, "../config/samples")

	stdout := captureStdout(t)
	startPipeline(t, "quickstart.yaml", map[string]string{
		"SAMPLES":   "../config/samples/*.jsonl",
		"DLQ_PATH":  filepath.Join(t.TempDir(), "dlq.jsonl"),
		"LOG_LEVEL": "NONE", // logs go to stdout too
	}, nil).wait(t, time.Minute)
	printed := stdout()

	require.Len(t, printed, samples)
	for _, line := range printed {
		ev := gjson.Parse(line)
		assert.Regexp(t, `^\[Appboy\] `, ev.Get("event_type").String())
		assert.NotEmpty(t, ev.Get("insert_id").String())
		assert.Equal(t, "Braze", ev.Get("library").String())
		assert.Positive(t, ev.Get("time").Int())
	}
}

// TestE2EQuickstartForReal: with AMPLITUDE_API_KEY set, the same samples
// reach Amplitude.
func TestE2EQuickstartForReal(t *testing.T) {
	amp := amplitudetest.NewServer(amplitudetest.Options{APIKey: "e2e-amplitude-key"})
	t.Cleanup(amp.Close)
	t.Setenv("AMPLITUDE_API_KEY", "e2e-amplitude-key")
	samples := countLines(t, "../config/samples")

	stdout := captureStdout(t)
	startPipeline(t, "quickstart.yaml", map[string]string{
		"AMPLITUDE_API_KEY": "e2e-amplitude-key",
		"AMPLITUDE_URL":     amp.HTTPV2URL(),
		"SAMPLES":           "../config/samples/*.jsonl",
		"DLQ_PATH":          filepath.Join(t.TempDir(), "dlq.jsonl"),
	}, nil).wait(t, time.Minute)

	assert.Empty(t, stdout(), "nothing printed when sending for real")
	assert.Equal(t, samples, amp.Count())
}

// countLines counts the JSON lines of the bundled samples in dir.
func countLines(t *testing.T, dir string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	n := 0
	for _, f := range files {
		n += len(readLines(t, f))
	}
	return n
}

// captureStdout redirects os.Stdout (where the stdout output writes) until
// the returned function is called; it returns the lines written.
func captureStdout(t *testing.T) func() []string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	orig := os.Stdout
	os.Stdout = w
	lines := make(chan []string, 1)
	go func() {
		var out []string
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if len(bytes.TrimSpace(sc.Bytes())) > 0 {
				out = append(out, sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, r)
		lines <- out
	}()
	restored := false
	restore := func() []string {
		if restored {
			return nil
		}
		restored = true
		os.Stdout = orig
		w.Close()
		return <-lines
	}
	t.Cleanup(func() { restore() })
	return restore
}

// TestE2EReplayLongLines replays a 4.5 MB request body
// (100 events; the live input takes bodies up to 10 MiB) among 120 lines is
// replayed whole, empty lines are skipped without a dead-letter record, and
// a line over 10 MiB becomes one dead-letter record while the rest goes on.
func TestE2EReplayLongLines(t *testing.T) {
	amp := amplitudetest.NewServer(amplitudetest.Options{APIKey: "e2e-amplitude-key"})
	t.Cleanup(amp.Close)
	events := ingesttest.Generate(ingesttest.GenConfig{Seed: 9, Devices: 500}, 219)
	pad := strings.Repeat("p", 45_000)
	var file bytes.Buffer
	for i, ev := range events[:119] {
		file.Write(ev.Raw)
		file.WriteString("\n")
		if i == 50 {
			big := make([]ingesttest.Event, 0, 100)
			for _, e := range events[119:] {
				e.Raw = append([]byte(`{"pad":"`+pad+`",`), e.Raw[1:]...)
				big = append(big, e)
			}
			body := ingesttest.Body(big)
			require.Greater(t, len(body), 4_500_000)
			file.Write(body)
			file.WriteString("\n\n   \n")
		}
		if i == 60 {
			file.WriteString(`{"id":"huge","pad":"` + strings.Repeat("h", 10<<20) + `"}` + "\n")
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "replay.jsonl")
	require.NoError(t, os.WriteFile(path, file.Bytes(), 0o600))
	env := map[string]string{
		"AMPLITUDE_API_KEY": "e2e-amplitude-key",
		"AMPLITUDE_URL":     amp.BatchURL(),
		"REPLAY_PATHS":      path,
		"DLQ_PATH":          filepath.Join(dir, "dlq.jsonl"),
		"LOG_LEVEL":         "ERROR",
	}
	startPipeline(t, "currents_replay_to_amplitude.yaml", env, nil).wait(t, 2*time.Minute)

	assert.Equal(t, len(events), amp.Count(), "every event, those of the 4.5 MB line included")
	dlq := readLines(t, env["DLQ_PATH"])
	require.Len(t, dlq, 1, "one record: the line over 10 MiB; none for the empty lines")
	assert.Equal(t, "too_large", gjson.Get(dlq[0], "reason").String())
	assert.Equal(t, "65", gjson.Get(dlq[0], "source.currents_line").String())
}

// TestE2EReplayOutageAfterTheLastLine: Amplitude is down until after the
// whole file is read and the output has given the events back (nacked):
// the real binary reads them again, delivers every one once Amplitude is
// back, and only then exits 0. With Benthos' own replay of nacks on the file
// input, the run ended at the first nack and nothing was delivered.
func TestE2EReplayOutageAfterTheLastLine(t *testing.T) {
	amp := amplitudetest.NewServer(amplitudetest.Options{APIKey: "e2e-amplitude-key"})
	t.Cleanup(amp.Close)
	amp.SetFaults(1, amplitudetest.Fault503)

	events := ingesttest.Generate(ingesttest.GenConfig{Seed: 9, Devices: 500}, 1200)
	dir, path := replayFile(t, events, nil)
	p := startProc(t, "currents_replay_to_amplitude.yaml", map[string]string{
		"AMPLITUDE_API_KEY":   "e2e-amplitude-key",
		"AMPLITUDE_URL":       amp.BatchURL(),
		"AMPLITUDE_RETRY_FOR": "1s",
		"REPLAY_PATHS":        path,
		"REPLAY_BATCH_SIZE":   "100",
		"DLQ_PATH":            filepath.Join(dir, "dlq.jsonl"),
	}, false)

	require.Eventually(t, func() bool {
		return strings.Contains(p.output(), "not delivered and nacked")
	}, time.Minute, 10*time.Millisecond, "the output gives the events back during the outage")
	assert.Zero(t, amp.Count())
	amp.SetFaults(0)

	require.Zero(t, p.wait(t, 2*time.Minute), "the replay ends by itself with exit code 0")
	assert.Equal(t, len(events), amp.Count(), "every event delivered after the outage")
}
