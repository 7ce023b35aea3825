package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2/ocf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/avroscan/avroscantest"
)

const backfillFile = "currents_storage_backfill.yaml"

// writeTree writes files (relative path -> content) under dir.
func writeTree(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
	}
}

// backfillEnv is the environment of a backfill of dir into srv's Batch
// endpoint, dead letters into dlq.
func backfillEnv(t testing.TB, dir string, srv *amplitudetest.Server, dlq string) map[string]string {
	return map[string]string{
		"CURRENTS_DIR":      dir,
		"AMPLITUDE_API_KEY": "backfill-test-key",
		"AMPLITUDE_URL":     srv.BatchURL(),
		"DLQ_PATH":          dlq,
		"STATE_DIR":         filepath.Join(t.TempDir(), "state"),
		"DELETE_ON_FINISH":  "true",
		"LOG_LEVEL":         "none",
	}
}

// TestBackfillPipelineEndToEnd runs config/currents_storage_backfill.yaml
// over a Braze-like folder (a good file, a truncated one) against a loopback
// Amplitude: every identified event of the good blocks is ingested exactly
// once, events Amplitude refuses land in the dead-letter file once with
// their source, the truncated block lands there as one record (reason
// unreadable), unidentified events are dropped, the run ends by itself and
// with DELETE_ON_FINISH both files, fully handled, are deleted. Records go
// through the pipeline in batches (of up to 500 records of one block): the
// refused ones never fail their batch.
func TestBackfillPipelineEndToEnd(t *testing.T) {
	dir := t.TempDir()
	good, _, ends := avroscantest.File(t, ocf.Snappy, 400, 50)
	a := "dataexport.prod-01.S3.integration.x/event_type=users.behaviors.Purchase/date=2026-11-29-10/7/0/a.avro"
	b := "dataexport.prod-01.S3.integration.x/event_type=users.behaviors.Purchase/date=2026-11-29-11/7/0/b.avro"
	writeTree(t, dir, map[string][]byte{a: good, b: good[:ends[2]+9]}) // b: blocks 0-2 survive
	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: "backfill-test-key"})
	t.Cleanup(srv.Close)
	dlq := filepath.Join(t.TempDir(), "dlq.jsonl")
	startPipeline(t, backfillFile, backfillEnv(t, dir, srv, dlq), nil).wait(t, 2*time.Minute)

	// Both files hold the same ids: a.avro all 400 records, b.avro the 150
	// before its damage. Amplitude gets each sent id of b.avro twice (and
	// de-duplicates it), and no id more often than that.
	wantIngested, wantDuplicates, wantDLQ := 0, 0, map[string]int{}
	for i := range 400 {
		p := avroscantest.Record(i)
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
	for _, rec := range dlqFile(dlq).records(t) {
		src := rec.Get("source")
		assert.Equal(t, "users.behaviors.Purchase", rec.Get("currents_event_type").String())
		assert.True(t, strings.HasSuffix(src.Get("currents_avro_file").String(), ".avro"), src.Raw)
		if rec.Get("reason").String() == "unreadable" {
			unreadable++
			assert.True(t, strings.HasSuffix(src.Get("currents_avro_file").String(), "b.avro"))
			assert.Equal(t, "3", src.Get("currents_avro_block").String())
			assert.Equal(t, int64(3), rec.Get("event.block").Int())
			assert.Contains(t, rec.Get("error").String(), "block 3")
			continue
		}
		id := rec.Get("event.insert_id").String()
		gotDLQ[id]++
		assert.NotContains(t, []string{"retries_exhausted", "interrupted", ""}, rec.Get("reason").String())
		assert.Equal(t, fmt.Sprintf("evt-%06s", src.Get("currents_avro_record").String()), id)
	}
	assert.Equal(t, 1, unreadable, "the truncated block is dead-lettered once")
	assert.Equal(t, wantDLQ, gotDLQ)
	for _, f := range []string{a, b} {
		_, err := os.Stat(filepath.Join(dir, f))
		assert.True(t, os.IsNotExist(err), "%s: every record handled, the file is deleted", f)
	}
}

// outageBackfill writes one Avro file of n records, perBlock to a block,
// into a folder and returns the folder, the file's
// path in it, a loopback Amplitude answering only 503 for now, and the
// backfill's environment (retries for 300 ms before nacking).
func outageBackfill(t *testing.T, n, perBlock int) (string, string, *amplitudetest.Server, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	good, _, _ := avroscantest.File(t, ocf.Deflate, n, perBlock)
	f := "event_type=users.behaviors.Purchase/date=2026-11-29-10/a.avro"
	writeTree(t, dir, map[string][]byte{f: good})
	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: "backfill-test-key"})
	t.Cleanup(srv.Close)
	srv.SetFaults(1, amplitudetest.Fault503)
	env := backfillEnv(t, dir, srv, filepath.Join(t.TempDir(), "dlq.jsonl"))
	env["AMPLITUDE_RETRY_FOR"] = "300ms"
	return dir, f, srv, env
}

// TestBackfillOutageKeepsFilesAndResumes runs the backfill while Amplitude
// answers only 503: nothing is dead-lettered but what fails for its own
// reason, the run does not end, no file is deleted. Stopped and started
// again once Amplitude is back, it delivers everything, and the events
// dead-lettered in the first run are not written again (the progress file).
func TestBackfillOutageKeepsFilesAndResumes(t *testing.T) {
	dir, f, srv, env := outageBackfill(t, 200, 20)
	dlq := env["DLQ_PATH"]
	// ownReasons counts the records dead-lettered for their own reason
	// (ids too short for Amplitude, refused before sending) and fails on any
	// other.
	ownReasons := func() int {
		n := 0
		for _, rec := range dlqFile(dlq).records(t) {
			if assert.Equal(t, "missing_fields", rec.Get("reason").String(), "only events failed for their own reason are dead-lettered") {
				n++
			}
		}
		return n
	}

	p := startPipeline(t, backfillFile, env, nil)
	require.Eventually(t, func() bool { return srv.Requests() > 3 }, 30*time.Second, 10*time.Millisecond, "Amplitude is tried")
	select {
	case err := <-p.done:
		p.stopped.Store(true)
		t.Fatalf("the run ended during the outage (%v)", err)
	case <-time.After(2 * time.Second): // several retry periods (AMPLITUDE_RETRY_FOR) pass
	}
	p.stop(t, 500*time.Millisecond) // the outage goes on: no graceful end is expected
	assert.Zero(t, srv.Count())
	_, statErr := os.Stat(filepath.Join(dir, f))
	assert.NoError(t, statErr, "the file is kept")
	outageDLQ := ownReasons()

	srv.SetFaults(0)
	startPipeline(t, backfillFile, env, nil).wait(t, time.Minute)
	want := 0
	for i := range 200 {
		if p := avroscantest.Record(i); p.External != nil && *p.External != "x" {
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

// BenchmarkBackfillEndToEnd runs the shipped pipeline
// (config/currents_storage_backfill.yaml: file input with currents_avro in
// batches of 500 -> braze_to_amplitude -> amplitude, Batch endpoint) over 5
// files of 20,000 records into a loopback Amplitude, and reports events/s
// ingested, with the progress file (as shipped), without it, and record by
// record (batch_size: 1, with the progress file). Each file
// ends with up to one batching period (250 ms) spent waiting for its last,
// partial, request: a real backfill amortises it over far more events.
//
//	go test -run '^$' -bench BenchmarkBackfillEndToEnd -benchtime 1x ./tests/
func BenchmarkBackfillEndToEnd(b *testing.B) {
	const files, records = 5, 20000
	dir := b.TempDir()
	for k := range files {
		first := k * records
		data, _, _ := avroscantest.Records(b, ocf.Null, records, 250, func(i int) any { return avroscantest.Identified(first + i) })
		writeTree(b, dir, map[string][]byte{fmt.Sprintf("event_type=users.behaviors.Purchase/date=2026-11-29-%02d/null.avro", k): data})
	}
	edits := map[string]func(string) string{
		"progress_on": nil,
		"progress_off": func(s string) string {
			return strings.Replace(s, "progress_path: ${STATE_DIR:./state}/backfill.db", `progress_path: ""`, 1)
		},
		// As the pipeline shipped before it batched: one record per batch.
		"record_by_record": func(s string) string { return strings.Replace(s, "batch_size: 500", "batch_size: 1", 1) },
	}
	for _, mode := range []string{"progress_on", "progress_off", "record_by_record"} {
		b.Run(mode, func(b *testing.B) {
			srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: "backfill-test-key"})
			defer srv.Close()
			edit := edits[mode]
			b.ReportAllocs()
			for b.Loop() {
				env := backfillEnv(b, dir, srv, filepath.Join(b.TempDir(), "dlq.jsonl"))
				env["DELETE_ON_FINISH"] = "false" // a fresh progress file (STATE_DIR): every run reads everything
				strm := buildPipeline(b, backfillFile, env, nil, edit)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				require.NoError(b, strm.Run(ctx))
				cancel()
			}
			b.StopTimer()
			require.Equal(b, files*records, srv.Count(), "every event ingested")
			b.ReportMetric(float64(files*records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// TestBackfillOutageThenRecoveryInOneRun: Amplitude answers 503 until the
// output has given the first records back (nacked); the same run reads them
// again, delivers every one once Amplitude is back, and ends by itself.
func TestBackfillOutageThenRecoveryInOneRun(t *testing.T) {
	dir, f, srv, env := outageBackfill(t, 300, 30)
	env["LOG_LEVEL"] = "ERROR"

	// The real binary, to wait for its log line saying it gave records back.
	p := startProc(t, backfillFile, env, false)
	require.Eventually(t, func() bool { return strings.Contains(p.output(), "not delivered and nacked") },
		30*time.Second, 10*time.Millisecond, "the output gives records back during the outage")
	srv.SetFaults(0)
	require.Zero(t, p.wait(t, time.Minute), "the backfill ends by itself with exit code 0")

	want := 0
	for i := range 300 {
		if r := avroscantest.Record(i); r.External != nil && *r.External != "x" {
			want++
		}
	}
	assert.Equal(t, want, srv.Count(), "every record delivered in the run that saw the outage")
	_, err := os.Stat(filepath.Join(dir, f))
	assert.True(t, os.IsNotExist(err), "delivered: deleted")
}
