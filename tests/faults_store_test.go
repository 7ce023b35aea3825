package tests

// Fault-suite cases of the pipelines that keep durable state: the backfill,
// the scheduled cohort sync and the cohort webhook.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/cohort"
	"github.com/opencurrents/currents-amplitude/plugins/cohort/cohorttest"
	"github.com/opencurrents/currents-amplitude/plugins/currentsgen"
)

// backfillTarget: Avro files under CURRENTS_DIR -> currents_avro ->
// amplitude (Batch API), DELETE_ON_FINISH=true. Each phase writes its
// records as new files and runs the backfill to its end; a watcher checks
// that no file disappears before each of its records is in Amplitude (or
// dead-lettered).
type backfillTarget struct {
	amplitudeDest
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
	env["STATE_DIR"] = t.TempDir()
	env["DLQ_PATH"] = t.TempDir() + "/dlq.jsonl"
	env["HTTP_ADDRESS"] = freeAddr(t)
	cfg := currentsgen.Config{Seed: 34, Devices: scale.events}
	tgt := &backfillTarget{amplitudeDest: amplitudeDest{amp}, px: px, env: env, dir: dir, gen: currentsgen.New(cfg), dlq: dlqFile(env["DLQ_PATH"]),
		files: map[string][]string{}, deleted: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go tgt.watch(ctx)
	// The same stream as the files: record i of recs is event i of gen.
	runFaultMatrix(t, tgt, faultRecords(34, scale.events, scale.invalidEvery), false)
	tgt.mu.Lock()
	defer tgt.mu.Unlock()
	for f := range tgt.files {
		if tgt.deleted[f] {
			continue
		}
		// The watcher polls: a file deleted just before the last run
		// exited may not have been seen yet. Ask the disk.
		_, err := os.Stat(f)
		assert.True(t, os.IsNotExist(err), "file %s delivered but never deleted", f)
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

func (b *backfillTarget) refused(string) bool      { return false }
func (b *backfillTarget) deadLetters() deadLetters { return b.dlq }
func (b *backfillTarget) proxies() []faultInjector { return []faultInjector{b.px} }

// finish waits for the backfill to end by itself. It gets twice a phase's
// settle time: after the last record is delivered the run still deletes its
// files and syncs its progress file, and with the race detector and the rest
// of the suite on two cores that tail alone was seen to pass 40 s.
func (b *backfillTarget) finish(t *testing.T, p *proc) {
	require.Zero(t, p.wait(t, 2*faultScale().settle), "the backfill ends by itself with exit code 0")
}

// cohortTarget: Amplitude cohorts -> amplitude_cohort (schedule 1s) ->
// braze_cohort (users_track). A record is a member; each phase adds its
// members to the cohort (a new computation), and the next sync must bring
// them to Braze whatever the faults on the way (both APIs behind fault
// proxies).
type cohortTarget struct {
	brazeMembers
	amp     *cohorttest.Amplitude
	ampPx   *faultProxy
	brazePx *faultProxy
	env     map[string]string
	dlq     dlqGlob

	mu      sync.Mutex
	members []string
	version int64
}

const (
	faultCohortID   = "c1"
	faultCohortName = "Faults"
	faultRESTKey    = "braze-rest-key"
)

func faultCohorts(t *testing.T) {
	scale := faultScale()
	amp := cohorttest.NewAmplitude(t, "ak", "sk")
	braze := cohorttest.NewBraze(t, faultRESTKey, "partner-key", "client-secret")
	tgt := &cohortTarget{brazeMembers: brazeMembers{braze}, amp: amp, ampPx: newFaultProxy(t, amp.URL, 26), brazePx: newFaultProxy(t, braze.URL, 27)}
	dir := t.TempDir()
	tgt.env = map[string]string{
		"AMPLITUDE_API_URL": tgt.ampPx.URL, "AMPLITUDE_API_KEY": "ak", "AMPLITUDE_SECRET_KEY": "sk",
		"AMPLITUDE_COHORT_IDS": faultCohortID, "AMPLITUDE_COHORT_SCHEDULE": "1s",
		"BRAZE_REST_URL": tgt.brazePx.URL, "BRAZE_REST_API_KEY": faultRESTKey, "BRAZE_RETRY_FOR": retryFor.String(),
		"COHORT_STATE_DIR": dir + "/state", "DEAD_LETTER_DIR": dir + "/dead-letter", "HTTP_ADDRESS": freeAddr(t), "LOG_LEVEL": "WARN",
	}
	tgt.dlq = dlqGlob(dir + "/dead-letter/*.jsonl")
	runFaultMatrix(t, tgt, cohortMembers(scale.events/4), false)
}

func (c *cohortTarget) start(t *testing.T) *proc {
	return startProc(t, "amplitude_cohorts_to_braze.yaml", c.env, false)
}

// feed adds the members to the cohort as a new computation.
func (c *cohortTarget) feed(_ context.Context, _ *testing.T, recs []record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range recs {
		c.members = append(c.members, r.id)
	}
	c.version++
	c.amp.SetCohort(faultCohortID, cohorttest.Cohort{Name: faultCohortName, LastComputed: c.version, UserIDs: append([]string(nil), c.members...)})
	return nil
}

// cohortMembers returns n members as records.
func cohortMembers(n int) []record {
	recs := make([]record, n)
	for i := range recs {
		recs[i] = record{id: fmt.Sprintf("member-%05d", i), expect: expectDelivered}
	}
	return recs
}

// brazeMembers is the destination of the cohort pipelines: the members of
// the fault cohort in the fake Braze.
type brazeMembers struct{ braze *cohorttest.Braze }

func (b brazeMembers) inBraze() map[string]bool {
	out := map[string]bool{}
	for _, id := range b.braze.UsersWith("amplitude_cohorts", cohort.DisplayName(faultCohortName, faultCohortID)) {
		out[id] = true
	}
	return out
}

func (b brazeMembers) delivered(id string) bool  { return b.inBraze()[id] }
func (b brazeMembers) deliveredTotal() int       { return len(b.inBraze()) }
func (c *cohortTarget) refused(string) bool      { return false }
func (c *cohortTarget) deadLetters() deadLetters { return c.dlq }
func (c *cohortTarget) proxies() []faultInjector { return []faultInjector{c.ampPx, c.brazePx} }

// checkAcked: the sync state is the pipeline's own (helper store's format);
// what it owes is that a committed computation is in Braze, which the
// settling of every phase checks from the outside.
func (c *cohortTarget) checkAcked(*testing.T) {}

func (c *cohortTarget) finish(t *testing.T, p *proc) { assert.Zero(t, p.term(t, 50*time.Second)) }

// webhookTarget: Amplitude's cohort webhook -> http_server -> braze_cohort.
// A record is a member; each is posted in a webhook delivery that Amplitude
// retries until it gets 2xx, and a 2xx must mean the member is in Braze.
type webhookTarget struct {
	brazeMembers
	brazePx *faultProxy
	env     map[string]string
	dlq     dlqGlob
	url     string

	mu         sync.Mutex
	n          int
	violations []string
}

func faultCohortWebhook(t *testing.T) {
	scale := faultScale()
	braze := cohorttest.NewBraze(t, faultRESTKey, "partner-key", "client-secret")
	tgt := &webhookTarget{brazeMembers: brazeMembers{braze}, brazePx: newFaultProxy(t, braze.URL, 28)}
	dir := t.TempDir()
	addr := freeAddr(t)
	tgt.url = "http://" + addr + "/amplitude/cohorts"
	tgt.env = map[string]string{
		"WEBHOOK_ADDRESS": addr, "AMPLITUDE_WEBHOOK_TOKEN": "webhook-token",
		"BRAZE_REST_URL": tgt.brazePx.URL, "BRAZE_REST_API_KEY": faultRESTKey, "BRAZE_RETRY_FOR": retryFor.String(),
		"COHORT_STATE_DIR": dir + "/state", "DEAD_LETTER_DIR": dir + "/dead-letter", "HTTP_ADDRESS": freeAddr(t), "LOG_LEVEL": "WARN",
	}
	tgt.dlq = dlqGlob(dir + "/dead-letter/*.jsonl")
	runFaultMatrix(t, tgt, cohortMembers(scale.events/4), false)
}

func (w *webhookTarget) start(t *testing.T) *proc {
	p := startProc(t, "amplitude_cohort_webhook_to_braze.yaml", w.env, false)
	waitListening(t, w.url)
	return p
}

// feed posts the members 20 per delivery, each retried as Amplitude does
// (same message_id) until it is answered 2xx.
func (w *webhookTarget) feed(ctx context.Context, _ *testing.T, recs []record) error {
	for i := 0; i < len(recs); i += 20 {
		part := recs[i:min(i+20, len(recs))]
		w.mu.Lock()
		w.n++
		msgID := fmt.Sprintf("msg-%d", w.n)
		w.mu.Unlock()
		users := make([]string, len(part))
		for j, r := range part {
			users[j] = `{"user_id":"` + r.id + `"}`
		}
		body := `{"cohort_id":"` + faultCohortID + `","cohort_name":"` + faultCohortName + `","in_cohort":true,"message_id":"` +
			msgID + `","users":[` + strings.Join(users, ",") + `]}`
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, strings.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Amplitude-Webhook-Token", "webhook-token")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					in := w.inBraze()
					for _, r := range part {
						if !in[r.id] {
							w.mu.Lock()
							w.violations = append(w.violations, r.id)
							w.mu.Unlock()
						}
					}
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func (w *webhookTarget) checkAcked(t *testing.T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	assert.Empty(t, w.violations, "webhook deliveries answered 2xx whose members are not in Braze")
}

func (w *webhookTarget) refused(string) bool          { return false }
func (w *webhookTarget) deadLetters() deadLetters     { return w.dlq }
func (w *webhookTarget) proxies() []faultInjector     { return []faultInjector{w.brazePx} }
func (w *webhookTarget) finish(t *testing.T, p *proc) { assert.Zero(t, p.term(t, 50*time.Second)) }
