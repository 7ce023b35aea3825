package tests

// Fault-suite cases of the pipelines helper store is reworking (backfill,
// scheduled cohorts, cohort webhook). While that work is pending they are
// skipped by pendingOnStore (faults_test.go), the one place to edit.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/currentsgen"
)

// backfillTarget: Avro files under CURRENTS_DIR -> currents_avro ->
// amplitude (Batch API), DELETE_ON_FINISH=true. Each phase writes its
// records as new files and runs the backfill to its end; a watcher checks
// that no file disappears before each of its records is in Amplitude (or
// dead-lettered).
type backfillTarget struct {
	amp *amplitudetest.Server
	px  *faultProxy
	env map[string]string
	dir string
	gen *currentsgen.Generator
	dlq dlqFile

	mu         sync.Mutex
	phase      int
	files      map[string][]string // path -> ids of its records
	deleted    map[string]bool
	violations []string
}

func (*backfillTarget) oneShot() {}

func faultBackfill(t *testing.T) {
	scale := faultScale()
	amp, px := faultAmplitude(t, 24)
	dir := t.TempDir()
	env := amplitudeEnv(px, amplitudetest.PathBatch)
	env["CURRENTS_DIR"] = dir
	env["DELETE_ON_FINISH"] = "true"
	env["DLQ_PATH"] = t.TempDir() + "/dlq.jsonl"
	env["HTTP_ADDRESS"] = freeAddr(t)
	cfg := currentsgen.Config{Seed: 34, Devices: scale.events}
	tgt := &backfillTarget{amp: amp, px: px, env: env, dir: dir, gen: currentsgen.New(cfg), dlq: dlqFile(env["DLQ_PATH"]),
		files: map[string][]string{}, deleted: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go tgt.watch(ctx)
	// The same stream as the files: record i of recs is event i of gen.
	runFaultMatrix(t, tgt, faultRecords(34, scale.events, scale.invalidEvery), false)
	tgt.mu.Lock()
	defer tgt.mu.Unlock()
	for f := range tgt.files {
		assert.True(t, tgt.deleted[f], "file %s delivered but never deleted", f)
	}
}

func (b *backfillTarget) start(t *testing.T) *proc {
	return startProc(t, "currents_storage_backfill.yaml", b.env, false)
}

// feed writes the chunk's events as Avro files, one per event type, in a
// folder of the phase.
func (b *backfillTarget) feed(_ context.Context, _ *testing.T, recs []record) error {
	b.mu.Lock()
	b.phase++
	sub := filepath.Join(b.dir, fmt.Sprintf("phase-%d", b.phase))
	b.mu.Unlock()
	byType := map[string][]string{}
	for _, r := range recs {
		byType[r.event.Type] = append(byType[r.event.Type], r.id)
	}
	paths, err := currentsgen.WriteAvro(sub, b.gen, len(recs), currentsgen.AvroOptions{BlockLength: 20})
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range paths {
		for typ, ids := range byType {
			if strings.Contains(p, "event_type="+typ+string(filepath.Separator)) {
				b.files[p] = ids
			}
		}
	}
	return nil
}

// watch notices deleted files and checks, at that moment, that each of
// their records (all valid) is in Amplitude.
func (b *backfillTarget) watch(ctx context.Context) {
	for ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		b.mu.Lock()
		for f, ids := range b.files {
			if b.deleted[f] {
				continue
			}
			if _, err := os.Stat(f); !os.IsNotExist(err) {
				continue
			}
			b.deleted[f] = true
			for _, id := range ids { // all valid: Amplitude is the only place for them
				if _, ok := b.amp.Event(id); !ok {
					b.violations = append(b.violations, f+": "+id)
				}
			}
		}
		b.mu.Unlock()
	}
}

func (b *backfillTarget) checkAcked(t *testing.T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	assert.Empty(t, b.violations, "files deleted before their records were delivered")
}

func (b *backfillTarget) delivered(id string) bool { _, ok := b.amp.Event(id); return ok }
func (b *backfillTarget) refused(string) bool      { return false }
func (b *backfillTarget) deadLetters() deadLetters { return b.dlq }
func (b *backfillTarget) proxies() []faultInjector { return []faultInjector{b.px} }
func (b *backfillTarget) deliveredTotal() int      { return b.amp.Count() }

// finish waits for the backfill to end by itself.
func (b *backfillTarget) finish(t *testing.T, p *proc) {
	require.Zero(t, p.wait(t, faultScale().settle), "the backfill ends by itself with exit code 0")
}

// faultCohorts and faultCohortWebhook are not written yet: their pipelines
// get their endpoint variables (AMPLITUDE_API_URL, BRAZE_REST_URL) and
// their delivery contract on branch store.
func faultCohorts(t *testing.T) {
	t.Fatal("not written: " + pendingOnStore["cohorts"])
}

func faultCohortWebhook(t *testing.T) {
	t.Fatal("not written: " + pendingOnStore["cohort_webhook"])
}
