package tests

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/ingest/ingesttest"
)

// TestE2EReplayProgress runs the replay pipeline (the real binary) on a small
// file holding one unreadable line and one event of an unknown type: while it
// runs it logs progress lines at the configured cadence, and its summary
// counts the delivered events apart from the dead-lettered and the dropped
// one, by reason.
func TestE2EReplayProgress(t *testing.T) {
	// A slow Amplitude keeps the run going for a few progress intervals.
	amp := amplitudetest.NewServer(amplitudetest.Options{APIKey: "e2e-amplitude-key", Latency: 300 * time.Millisecond})
	t.Cleanup(amp.Close)

	const n = 300
	events := ingesttest.Generate(ingesttest.GenConfig{Seed: 3, Devices: 100}, n)
	dir, path := replayFile(t, events, map[int]string{
		10: "{\"event_type\": \"users.messages.email.Open\", truncated",
		20: `{"event_type":"users.messages.pigeon.Send","id":"pigeon-1","time":1700000000,"user":{"external_user_id":"u-1"},"properties":{}}`,
	})

	p := startProc(t, "currents_replay_to_amplitude.yaml", map[string]string{
		"AMPLITUDE_API_KEY":       "e2e-amplitude-key",
		"AMPLITUDE_URL":           amp.BatchURL(),
		"REPLAY_PATHS":            path,
		"REPLAY_BATCH_SIZE":       "50",
		"AMPLITUDE_MAX_IN_FLIGHT": "1",
		"DLQ_PATH":                filepath.Join(dir, "dlq.jsonl"),
		"PROGRESS_LOG_INTERVAL":   "200ms",
		"PROGRESS_TOTAL":          "301",
		"LOG_LEVEL":               "INFO",
	}, false)
	require.Zero(t, p.wait(t, 2*time.Minute), "the replay exits 0")
	out := p.output()
	require.Equal(t, n, amp.Count(), "every valid event delivered")

	progressLine := regexp.MustCompile(`progress: \d+ of 301 events done \(\d+\.\d%\), \d+ events/s`)
	assert.GreaterOrEqual(t, len(progressLine.FindAllString(out, -1)), 2, "progress lines while the run goes on:\n%s", out)
	var summary string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "progress: finished in") {
			summary = l
		}
	}
	require.NotEmpty(t, summary, "a summary at the end:\n%s", out)
	for _, want := range []string{
		"301 events done from 1 files",
		"300 delivered",
		"1 dead-lettered (unreadable=1)",
		"dropped: unknown_event=1",
		"given back: none",
	} {
		assert.Contains(t, summary, want)
	}
	assert.Len(t, readLines(t, filepath.Join(dir, "dlq.jsonl")), 1)
}
