package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/currentsgen"
	"github.com/opencurrents/currents-amplitude/plugins/export/exporttest"
)

// TestE2EReconcileExitStatus runs config/reconcile.yaml (the real binary) on
// a few JSON-lines Currents events against the fake Export API: when
// Amplitude refuses the keys, the run writes an incomplete report, says why
// and exits 1; when no report can be written it exits 1 too; with the right
// keys it writes a complete report and exits 0.
func TestE2EReconcileExitStatus(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	currentsDir := filepath.Join(dir, "currents")
	require.NoError(t, os.MkdirAll(currentsDir, 0o700))
	f, err := os.Create(filepath.Join(currentsDir, "events.jsonl"))
	require.NoError(t, err)
	g := currentsgen.New(currentsgen.Config{Seed: 5, Devices: 10, StartTime: t0.Unix(), EventsPerSecond: 1})
	require.NoError(t, g.WriteLines(f, 20, currentsgen.HTTP))
	// A line delivery would dead-letter, longer than a default line buffer:
	// it is counted as rejected, and the file is read on.
	_, err = f.WriteString(`{"event_type":"users.behaviors.CustomEvent","x":"` + strings.Repeat("x", 5<<20) + "\n")
	require.NoError(t, err)
	require.NoError(t, g.WriteLines(f, 1, currentsgen.HTTP))
	require.NoError(t, f.Close())

	exp := exporttest.NewServer(exporttest.Options{APIKey: "right-key", SecretKey: "right-secret"})
	t.Cleanup(exp.Close)
	run := func(apiKey, report string) (int, string) {
		p := startProc(t, "reconcile.yaml", map[string]string{
			"RECONCILE_START":      t0.Format(time.RFC3339),
			"RECONCILE_END":        t0.Add(time.Hour).Format(time.RFC3339),
			"CURRENTS_FORMAT":      "jsonl",
			"CURRENTS_DIR":         currentsDir,
			"AMPLITUDE_API_KEY":    apiKey,
			"AMPLITUDE_SECRET_KEY": "right-secret",
			"AMPLITUDE_API_URL":    exp.URL,
			"UPLOAD_LAG":           "1h",
			"SPILL_DIR":            dir,
			"REPORT_PATH":          report,
			"SUMMARY_PATH":         filepath.Join(dir, "summary.txt"),
			"MISSING_PATH":         filepath.Join(dir, "missing.jsonl"),
			"LOG_LEVEL":            "INFO",
		}, false)
		code := p.wait(t, 2*time.Minute)
		return code, p.output()
	}
	report := filepath.Join(dir, "report.json")

	// Amplitude refuses the keys: an incomplete report, and a failed run.
	code, out := run("wrong-key", report)
	assert.Equal(t, 1, code, "a run that cannot read Amplitude fails:\n%s", out)
	assert.Contains(t, out, "currents-amplitude: the run failed: amplitude_reconcile: the report is incomplete")
	assert.Contains(t, out, "credentials refused")
	assert.NotContains(t, out, "wrong-key", "the key is never logged")
	b, err := os.ReadFile(report)
	require.NoError(t, err, "the incomplete report is written")
	assert.False(t, gjson.GetBytes(b, "complete").Bool())

	// The report cannot be written: none, and a failed run.
	code, out = run("right-key", filepath.Join(dir, "no-such-folder", "report.json"))
	assert.Equal(t, 1, code, "a run without a report fails:\n%s", out)
	assert.Contains(t, out, "currents-amplitude: the run failed: amplitude_reconcile: no report written")

	code, out = run("right-key", report)
	assert.Equal(t, 0, code, "a run that reads both sides succeeds:\n%s", out)
	b, err = os.ReadFile(report)
	require.NoError(t, err)
	assert.True(t, gjson.GetBytes(b, "complete").Bool())
	assert.Equal(t, int64(21), gjson.GetBytes(b, "totals.missing").Int(), "Amplitude holds none of the 21 events")
	assert.Equal(t, int64(1), gjson.GetBytes(b, "totals.not_sent_rejected").Int(), "the unreadable line is counted:\n%s", b)
}
