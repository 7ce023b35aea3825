package avroscan

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamba/avro/v2/ocf"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	_ "github.com/opencurrents/currents-amplitude/plugins/amplitude"
	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	_ "github.com/opencurrents/currents-amplitude/plugins/currents"
	"github.com/opencurrents/currents-amplitude/plugins/internal/refdata"
	_ "github.com/opencurrents/currents-amplitude/plugins/ratelimit"
)

const backfillConfig = "../../config/currents_storage_backfill.yaml"

// writeTree writes files (relative path -> content) under dir.
func writeTree(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
	}
}

// buildBackfill builds the shipped backfill pipeline with env overriding
// its environment variables.
func buildBackfill(t testing.TB, env map[string]string) *service.Stream {
	t.Helper()
	return buildBackfillEdited(t, env, func(s string) string { return s })
}

// buildBackfillEdited is buildBackfill with the pipeline's text passed
// through edit first.
func buildBackfillEdited(t testing.TB, env map[string]string, edit func(string) string) *service.Stream {
	t.Helper()
	raw, err := os.ReadFile(backfillConfig)
	require.NoError(t, err)
	yaml := edit(string(raw))
	sb := service.NewStreamBuilder()
	sb.SetEnvVarLookupFunc(func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	require.NoError(t, sb.SetYAML(string(yaml)))
	strm, err := sb.Build()
	require.NoError(t, err)
	return strm
}

// dlqRecord is one dead-letter record (deadletter.Record).
type dlqRecord struct {
	Reason    string            `json:"reason"`
	Error     string            `json:"error"`
	Component string            `json:"component"`
	Type      string            `json:"currents_event_type"`
	Source    map[string]string `json:"source"`
	Event     json.RawMessage   `json:"event"`
}

func readDLQ(t *testing.T, path string) []dlqRecord {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var out []dlqRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		var rec dlqRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), sc.Text())
		out = append(out, rec)
	}
	require.NoError(t, sc.Err())
	return out
}

// TestBackfillPipelineEndToEnd runs config/currents_storage_backfill.yaml
// over a Braze-like folder (a good file, a truncated one) against a loopback
// Amplitude: every identified event of the good blocks is ingested exactly
// once, events Amplitude refuses land in the dead-letter file once with
// their source, the truncated block lands there as one record (reason
// unreadable), unidentified events are dropped, the run ends by itself and
// with DELETE_ON_FINISH both files, fully handled, are deleted.
func TestBackfillPipelineEndToEnd(t *testing.T) {
	dir := t.TempDir()
	good, _, ends := genFile(t, ocf.Snappy, 400, 50)
	a := "dataexport.prod-01.S3.integration.x/event_type=users.behaviors.Purchase/date=2026-11-29-10/7/0/a.avro"
	b := "dataexport.prod-01.S3.integration.x/event_type=users.behaviors.Purchase/date=2026-11-29-11/7/0/b.avro"
	writeTree(t, dir, map[string][]byte{a: good, b: good[:ends[2]+9]}) // b: blocks 0-2 survive
	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: "backfill-test-key"})
	defer srv.Close()
	dlq := filepath.Join(t.TempDir(), "dlq.jsonl")
	strm := buildBackfill(t, map[string]string{
		"CURRENTS_DIR":      dir,
		"AMPLITUDE_API_KEY": "backfill-test-key",
		"AMPLITUDE_URL":     srv.BatchURL(),
		"DLQ_PATH":          dlq,
		"STATE_DIR":         filepath.Join(t.TempDir(), "state"),
		"DELETE_ON_FINISH":  "true",
		"LOG_LEVEL":         "none",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, strm.Run(ctx))

	// Both files hold the same ids: a.avro all 400 records, b.avro the 150
	// before its damage. Amplitude gets each sent id of b.avro twice (and
	// de-duplicates it), and no id more often than that.
	wantIngested, wantDuplicates, wantDLQ := 0, 0, map[string]int{}
	for i := range 400 {
		p := testPurchase(i)
		copies := 1
		if i < 150 {
			copies = 2
		}
		switch {
		case p.External == nil: // unidentified: dropped by braze_to_amplitude
			_, ok := srv.Event(p.ID)
			assert.False(t, ok, "unidentified event %s was sent", p.ID)
		case *p.External == "x": // refused by Amplitude; dead-lettered once
			wantDLQ[p.ID] = 1
		default:
			wantIngested++
			wantDuplicates += copies - 1
			ev, ok := srv.Event(p.ID)
			if assert.True(t, ok, "event %s not ingested", p.ID) {
				assert.Equal(t, "[Appboy] Purchase", ev.EventType)
				assert.Equal(t, *p.External, ev.UserID)
				assert.Equal(t, int64(p.Time)*1000, gjson.Get(ev.Raw, "time").Int())
			}
		}
	}
	assert.Equal(t, wantIngested, srv.Count())
	assert.Equal(t, wantDuplicates, srv.Duplicates())

	gotDLQ, unreadable := map[string]int{}, 0
	for _, rec := range readDLQ(t, dlq) {
		assert.Equal(t, "users.behaviors.Purchase", rec.Type)
		assert.True(t, strings.HasSuffix(rec.Source["currents_avro_file"], ".avro"), rec.Source)
		if rec.Reason == "unreadable" {
			unreadable++
			assert.True(t, strings.HasSuffix(rec.Source["currents_avro_file"], "b.avro"))
			assert.Equal(t, "3", rec.Source["currents_avro_block"])
			assert.Equal(t, int64(3), gjson.GetBytes(rec.Event, "block").Int())
			assert.Contains(t, rec.Error, "block 3")
			continue
		}
		id := gjson.GetBytes(rec.Event, "insert_id").String()
		gotDLQ[id]++
		assert.NotContains(t, []string{"retries_exhausted", "interrupted", ""}, rec.Reason)
		assert.Equal(t, fmt.Sprintf("evt-%06s", rec.Source["currents_avro_record"]), id)
	}
	assert.Equal(t, 1, unreadable, "the truncated block is dead-lettered once")
	assert.Equal(t, wantDLQ, gotDLQ)
	for _, f := range []string{a, b} {
		_, err := os.Stat(filepath.Join(dir, f))
		assert.True(t, os.IsNotExist(err), "%s: every record handled, the file is deleted", f)
	}
}

// TestBackfillOutageKeepsFilesAndResumes runs the backfill while Amplitude
// answers only 503: nothing is dead-lettered, the run does not end, no file
// is deleted. Stopped and started again once Amplitude is back, it delivers
// everything, and a third run reads nothing again (the progress file).
func TestBackfillOutageKeepsFilesAndResumes(t *testing.T) {
	dir := t.TempDir()
	good, _, _ := genFile(t, ocf.Deflate, 200, 20)
	f := "event_type=users.behaviors.Purchase/date=2026-11-29-10/a.avro"
	writeTree(t, dir, map[string][]byte{f: good})
	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: "k"})
	defer srv.Close()
	srv.SetFaults(1, amplitudetest.Fault503)
	dlq := filepath.Join(t.TempDir(), "dlq.jsonl")
	env := map[string]string{
		"CURRENTS_DIR": dir, "AMPLITUDE_API_KEY": "k", "AMPLITUDE_URL": srv.BatchURL(), "DLQ_PATH": dlq,
		"STATE_DIR": filepath.Join(t.TempDir(), "state"), "DELETE_ON_FINISH": "true", "LOG_LEVEL": "none",
		"AMPLITUDE_RETRY_FOR": "300ms",
	}
	// ownReasons counts the records dead-lettered for their own reason
	// (ids too short for Amplitude, refused before sending) and fails on any
	// other.
	ownReasons := func() int {
		n := 0
		for _, rec := range readDLQ(t, dlq) {
			if assert.Equal(t, "missing_fields", rec.Reason, "only events failed for their own reason are dead-lettered") {
				n++
			}
		}
		return n
	}

	strm := buildBackfill(t, env)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- strm.Run(ctx) }()
	require.Eventually(t, func() bool { return srv.Requests() > 3 }, 30*time.Second, 10*time.Millisecond, "Amplitude is tried")
	select {
	case err := <-done:
		t.Fatalf("the run ended during the outage (%v)", err)
	case <-time.After(2 * time.Second): // several retry periods (AMPLITUDE_RETRY_FOR) pass
	}
	cancel()
	<-done
	assert.Zero(t, srv.Count())
	_, statErr := os.Stat(filepath.Join(dir, f))
	assert.NoError(t, statErr, "the file is kept")
	outageDLQ := ownReasons()

	srv.SetFaults(0)
	strm = buildBackfill(t, env)
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	require.NoError(t, strm.Run(rctx))
	want := 0
	for i := range 200 {
		if p := testPurchase(i); p.External != nil && *p.External != "x" {
			want++
		}
	}
	assert.Equal(t, want, srv.Count())
	_, statErr = os.Stat(filepath.Join(dir, f))
	assert.True(t, os.IsNotExist(statErr), "delivered: deleted")
	// The refused events were acknowledged (dead-lettered) in the first run,
	// recorded in the progress file, and not sent again by the second.
	assert.Equal(t, 20, outageDLQ, "the refused events of the first run, once each")
	assert.Equal(t, 20, ownReasons(), "and never again in the run that resumed")
}

// TestBrazeSamplesMapToAmplitude reads every real Braze sample file through
// the scanner and braze_to_amplitude: each becomes one Amplitude event named
// "[Appboy] ...", with insert_id, time and user of the record, except the
// samples with neither external_user_id nor device_id, which Braze does not
// send either (flagged here with unidentified_events: reject). Nothing is
// excluded (exclude_events: [] overrides the default exclusions).
func TestBrazeSamplesMapToAmplitude(t *testing.T) {
	avroDir := refdata.Dir(t, "avro")
	sb := service.NewStreamBuilder()
	require.NoError(t, sb.SetLoggerYAML("level: none"))
	require.NoError(t, sb.AddInputYAML(fmt.Sprintf(`
file:
  paths: [ %q ]
  scanner:
    currents_avro: {}
`, filepath.Join(avroDir, "*.avro"))))
	require.NoError(t, sb.AddProcessorYAML(`braze_to_amplitude: { unknown_events: reject, unidentified_events: reject, exclude_events: [] }`))
	var mu sync.Mutex
	out := map[string]*service.Message{}
	require.NoError(t, sb.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		mu.Lock()
		defer mu.Unlock()
		p, _ := m.MetaGetMut("path")
		out[filepath.Base(p.(string))] = m.Copy()
		return nil
	}))
	strm, err := sb.Build()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, strm.Run(ctx))

	samples := refdata.Samples(t, "avro", ".avro")
	for _, s := range samples {
		name := filepath.Base(s.Path)
		res := scan(t, "    {}", "", s.Data)
		require.NoError(t, res.err)
		rec, _ := res.msgs[0].AsBytes()
		m, ok := out[name]
		if !assert.True(t, ok, "%s: no Amplitude event", name) {
			continue
		}
		if err := m.GetError(); err != nil {
			assert.NotEqual(t, gjson.String, gjson.GetBytes(rec, "external_user_id").Type, "%s: %v", name, err)
			assert.NotEqual(t, gjson.String, gjson.GetBytes(rec, "device_id").Type, "%s: %v", name, err)
			continue
		}
		got, _ := m.AsBytes()
		assert.True(t, strings.HasPrefix(gjson.GetBytes(got, "event_type").String(), "[Appboy] "), "%s: %s", name, got)
		assert.Equal(t, gjson.GetBytes(rec, "id").String(), gjson.GetBytes(got, "insert_id").String(), name)
		if ms := gjson.GetBytes(rec, "time_ms"); ms.Exists() && ms.Type == gjson.Number {
			assert.Equal(t, ms.Int(), gjson.GetBytes(got, "time").Int(), name)
		} else {
			assert.Equal(t, gjson.GetBytes(rec, "time").Int()*1000, gjson.GetBytes(got, "time").Int(), name)
		}
		if ext := gjson.GetBytes(rec, "external_user_id"); ext.Type == gjson.String {
			assert.Equal(t, ext.String(), gjson.GetBytes(got, "user_id").String(), name)
		}
	}
	assert.Len(t, out, len(samples))
}
