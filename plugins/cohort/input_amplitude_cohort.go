package cohort

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/speclint"
	"github.com/opencurrents/currents-amplitude/plugins/store"
)

const (
	acFieldAPIKey       = "api_key"
	acFieldSecretKey    = "secret_key"
	acFieldRegion       = "region"
	acFieldURL          = "url"
	acFieldCohortIDs    = "cohort_ids"
	acFieldSchedule     = "schedule"
	acFieldStatePath    = "state_path"
	acFieldKeyPrefix    = "key_prefix"
	acFieldIDColumn     = "id_column"
	acFieldDeviceColumn = "device_id_column"
	acFieldBudget       = "monthly_download_budget"
	acFieldMaxIDs       = "max_ids_per_message"
	acFieldMaxMembers   = "max_members"
	acFieldPoll         = "poll_interval"
	acFieldJobTimeout   = "job_timeout"
	acFieldTimeout      = "timeout"
	acFieldTLS          = "tls"
)

func amplitudeCohortInputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		LintRule(speclint.Rule(speclint.Required(acFieldAPIKey, "the Amplitude project's API key"), speclint.Required(acFieldSecretKey, "the Amplitude project's secret key"))).
		Categories("Services").
		Summary("Syncs Amplitude behavioural cohorts on a schedule and emits the membership changes since the last delivered sync.").
		Description(`
On every tick of the schedule the input lists the project's cohorts (`+"`GET /api/3/cohorts`"+`), and for each selected
cohort whose `+"`lastComputed`"+` changed since the last sync it requests an export (`+"`/api/5/cohorts/request/:id`"+`),
polls the job until it completes, downloads the CSV (following the redirect to storage) and compares it with the
membership stored in the state file (`+"`state_path`"+`, a `+"`store`"+` file). It then emits the users who joined and left, as JSON messages of the shape

`+"```json"+`
{"cohort_id":"abc1","cohort_name":"Churn risk","id_type":"external_id","added":["u1"],"removed":["u9"]}
`+"```"+`

with at most `+"`max_ids_per_message`"+` ids each, ready for the `+"`braze_cohort`"+` output. The first sync of a cohort
sends every member.

== Crash safety

The downloaded membership is first written to the state file as the *pending* change set, then every message of the
delta is emitted; each acked message is recorded as delivered, and once all are, the pending membership becomes the
delivered one, in one transaction. Every write is atomic and fsynced. After a crash or a restart at any point the input
resumes the pending change set: it sends only the messages not yet recorded as delivered (the diff against the last
delivered membership is computed again and cut the same way) and downloads nothing. So no removal is ever lost and a
cohort already partly delivered is never sent whole again; at most the messages in flight at the crash are sent twice,
which Braze treats as no-ops. Nacked messages are retried; a sync that still fails keeps its pending change set for the
next tick. A state that cannot be read fails that cohort's sync with an error (it is never treated as a first sync, which
would send no removals). Cohorts are
synced one at a time, so memory is bounded by the largest cohort (about 60 bytes per member while syncing).

Every download counts against Amplitude's monthly budget (500 on Growth and Enterprise plans). The input counts its
own downloads per calendar month (UTC) in the state file, logs the count with every download, warns at 80% and stops
downloading when `+"`monthly_download_budget`"+` is reached. Unchanged cohorts cost no download.

Members without a user id are anonymous. They are skipped (and counted in `+"`amplitude_cohort_members_skipped_total`"+`) unless
`+"`device_id_column`"+` names a column of the export that holds their device id, in which case they are emitted with
`+"`id_type: device_id`"+`.

== Metadata

- amplitude_cohort_id
- amplitude_cohort_name
- amplitude_cohort_last_computed

== Metrics

- `+"`amplitude_cohort_syncs_total`"+` (label `+"`outcome`"+`: delivered, unchanged, failed)
- `+"`amplitude_cohort_downloads`"+` (gauge: downloads this month)
- `+"`amplitude_cohort_members_added_total`, `amplitude_cohort_members_removed_total`"+`
- `+"`amplitude_cohort_members_skipped_total`"+` (label `+"`reason`"+`: anonymous, invalid)
`).
		Fields(
			service.NewStringField(acFieldAPIKey).Secret().
				Description("Amplitude project API key (HTTP Basic user name).").
				Example("${AMPLITUDE_API_KEY}"),
			service.NewStringField(acFieldSecretKey).Secret().
				Description("Amplitude project secret key (HTTP Basic password).").
				Example("${AMPLITUDE_SECRET_KEY}"),
			service.NewStringEnumField(acFieldRegion, "US", "EU").
				Description("Amplitude data centre: `US` (https://amplitude.com) or `EU` (https://analytics.eu.amplitude.com).").
				Default("US").Example("EU"),
			service.NewStringField(acFieldURL).
				Description("Base URL of the Amplitude API, overriding `region` (proxies, tests).").
				Default("").Example("http://localhost:8080").Advanced(),
			service.NewStringListField(acFieldCohortIDs).
				Description("Ids of the cohorts to sync. Empty syncs every cohort of the project that is not archived; mind the download budget.").
				Default([]any{}).Example([]any{"abc1def", "xyz9uvw"}),
			service.NewStringField(acFieldSchedule).
				Description("How often to sync: `hourly`, `daily`, or a duration. The first sync runs at start-up. One cohort synced hourly can use up to 744 downloads a month, above the budget of 500; syncs of unchanged cohorts cost nothing.").
				Default("daily").Example("hourly").Example("6h"),
			service.NewStringField(acFieldStatePath).
				Description("The state file (see the `store` cache): the last delivered membership of each cohort, the pending change set and its progress, the download count. Its folder is created on start. Keep it on persistent storage: without it every restart sends every member again. One file per instance; it may be shared with `store` caches of the same process.").
				Default("./state/amplitude_cohorts.db").Example("/var/lib/currents-amplitude/state/cohorts.db"),
			service.NewStringField(acFieldKeyPrefix).
				Description("Prefix of this input's keys in the state file (`<prefix>state/<cohort_id>`, `<prefix>downloads/<YYYY-MM>`…); lets several inputs share one file.").
				Default("").Example("prod_").Advanced(),
			service.NewStringField(acFieldIDColumn).
				Description("Column of the cohort file that holds the user id (the Braze external id).").
				Default("user_id").Example("user_id"),
			service.NewStringField(acFieldDeviceColumn).
				Description("Column holding the device id of anonymous members; empty skips anonymous members.").
				Default("").Example("device_id"),
			service.NewIntField(acFieldBudget).
				Description("Cohort downloads allowed per calendar month (UTC); 0 disables the check.").
				Default(500).Example(100),
			service.NewIntField(acFieldMaxIDs).
				Description("Maximum ids per emitted message (the partner cohort API takes 1,000 per request).").
				Default(1000).Example(500).Advanced(),
			service.NewIntField(acFieldMaxMembers).
				Description("Refuse cohorts with more members than this, bounding memory (Amplitude's own maximum is 2 million).").
				Default(2000000).Example(100000).Advanced(),
			service.NewDurationField(acFieldPoll).
				Description("Interval between polls of an export job's status.").
				Default("5s").Example("10s").Advanced(),
			service.NewDurationField(acFieldJobTimeout).
				Description("Give up on one cohort's export (request, polls and download) after this long.").
				Default("30m").Example("1h").Advanced(),
			service.NewDurationField(acFieldTimeout).
				Description("Timeout of each API request other than the file download.").
				Default("60s").Example("30s").Advanced(),
			service.NewTLSToggledField(acFieldTLS),
		).
		Example("Daily sync of two cohorts", "Keeps the state in ./state/amplitude_cohorts.db.", `
input:
  amplitude_cohort:
    api_key: ${AMPLITUDE_API_KEY}
    secret_key: ${AMPLITUDE_SECRET_KEY}
    cohort_ids: [ abc1def, xyz9uvw ]
    schedule: daily
`)
}

func init() {
	service.MustRegisterBatchInput("amplitude_cohort", amplitudeCohortInputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			in, err := newAmplitudeCohortInputFromParsed(conf, mgr)
			if err != nil {
				return nil, err
			}
			return service.AutoRetryNacksBatched(in), nil
		})
}

// parseSchedule turns hourly, daily or a duration into an interval.
func parseSchedule(s string) (time.Duration, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "hourly":
		return time.Hour, nil
	case "daily":
		return 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("schedule must be hourly, daily or a positive duration, got %q", s)
	}
	return d, nil
}

// pendingBatch is a delta message waiting to be read, with its ack func.
type pendingBatch struct {
	batch service.MessageBatch
	ack   service.AckFunc
}

type amplitudeCohortInput struct {
	client     *amplitudeClient
	log        *service.Logger
	state      syncState
	cohortIDs  []string
	interval   time.Duration
	cols       csvColumns
	budget     int
	maxIDs     int
	maxMembers int
	jobTimeout time.Duration
	clock      clock.Clock

	out       chan pendingBatch
	startOnce sync.Once
	stopOnce  sync.Once
	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}
	done      chan struct{}

	mSyncs     *service.MetricCounter
	mDownloads *service.MetricGauge
	mAdded     *service.MetricCounter
	mRemoved   *service.MetricCounter
	mSkipped   *service.MetricCounter
}

func newAmplitudeCohortInputFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*amplitudeCohortInput, error) {
	str := stringFields(conf)
	apiKey, secretKey := str(acFieldAPIKey), str(acFieldSecretKey)
	if apiKey == "" || secretKey == "" {
		return nil, errors.New("api_key and secret_key are required")
	}
	base, err := baseURL(str(acFieldURL), amplitudeRegions, str(acFieldRegion))
	if err != nil {
		return nil, err
	}
	in := &amplitudeCohortInput{
		log:   mgr.Logger(),
		cols:  csvColumns{userID: str(acFieldIDColumn), deviceID: str(acFieldDeviceColumn)},
		clock: clockOf(),
		out:   make(chan pendingBatch),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if in.cols.userID == "" {
		return nil, errors.New("id_column must not be empty")
	}
	if in.cohortIDs, err = conf.FieldStringList(acFieldCohortIDs); err != nil {
		return nil, err
	}
	if in.interval, err = parseSchedule(str(acFieldSchedule)); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		dst  *int
		min  int
	}{{acFieldBudget, &in.budget, 0}, {acFieldMaxIDs, &in.maxIDs, 1}, {acFieldMaxMembers, &in.maxMembers, 1}} {
		if *f.dst, err = conf.FieldInt(f.name); err != nil {
			return nil, err
		}
		if *f.dst < f.min {
			return nil, fmt.Errorf("%s must be at least %d, got %d", f.name, f.min, *f.dst)
		}
	}
	poll, err := conf.FieldDuration(acFieldPoll)
	if err != nil {
		return nil, err
	}
	timeout, err := conf.FieldDuration(acFieldTimeout)
	if err != nil {
		return nil, err
	}
	if in.jobTimeout, err = conf.FieldDuration(acFieldJobTimeout); err != nil {
		return nil, err
	}
	transport, err := transportFromParsed(conf, acFieldTLS)
	if err != nil {
		return nil, err
	}
	in.client = &amplitudeClient{
		base:         base,
		apiKey:       apiKey,
		secretKey:    secretKey,
		http:         &http.Client{Transport: transport, Timeout: timeout},
		fileHTTP:     &http.Client{Transport: transport},
		pollInterval: poll,
		clock:        in.clock,
	}
	m := mgr.Metrics()
	in.mSyncs = m.NewCounter("amplitude_cohort_syncs_total", "outcome")
	in.mDownloads = m.NewGauge("amplitude_cohort_downloads")
	in.mAdded = m.NewCounter("amplitude_cohort_members_added_total")
	in.mRemoved = m.NewCounter("amplitude_cohort_members_removed_total")
	in.mSkipped = m.NewCounter("amplitude_cohort_members_skipped_total", "reason")
	// Opened last: nothing above can fail once the file is held.
	db, err := store.Open(str(acFieldStatePath), store.Options{Clock: in.clock})
	if err != nil {
		return nil, err
	}
	in.state = syncState{db: db, prefix: str(acFieldKeyPrefix)}
	return in, nil
}

// Connect starts the sync loop on first use.
func (in *amplitudeCohortInput) Connect(context.Context) error {
	in.startOnce.Do(func() { go in.loop() })
	return nil
}

// ReadBatch returns the next delta message.
func (in *amplitudeCohortInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	select {
	case p := <-in.out:
		return p.batch, p.ack, nil
	case <-in.done:
		return nil, nil, service.ErrEndOfInput
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// Close stops the sync loop; an unfinished sync is not committed.
func (in *amplitudeCohortInput) Close(ctx context.Context) error {
	in.stopOnce.Do(func() { close(in.stop) })
	// Never connected: mark the loop as finished so it never starts.
	in.startOnce.Do(func() { close(in.done) })
	select {
	case <-in.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	in.closeOnce.Do(func() { in.closeErr = in.state.db.Close() })
	return in.closeErr
}

func (in *amplitudeCohortInput) loop() {
	defer close(in.done)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-in.stop
		cancel()
	}()
	defer cancel()
	for {
		in.syncAll(ctx)
		if clock.Sleep(ctx, in.clock, in.interval) != nil {
			return
		}
	}
}

// syncAll syncs every selected cohort, one at a time.
func (in *amplitudeCohortInput) syncAll(ctx context.Context) {
	list, err := in.client.listCohorts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			in.mSyncs.Incr(1, "failed")
			in.log.Errorf("listing Amplitude cohorts: %v", err)
		}
		return
	}
	for _, c := range in.selectCohorts(list) {
		if ctx.Err() != nil {
			return
		}
		if err := in.syncCohort(ctx, c); err != nil && ctx.Err() == nil {
			in.mSyncs.Incr(1, "failed")
			in.log.Errorf("syncing Amplitude cohort %s (%q): %v", c.ID, c.Name, err)
		}
	}
}

func (in *amplitudeCohortInput) selectCohorts(list []cohortInfo) []cohortInfo {
	if len(in.cohortIDs) == 0 {
		var out []cohortInfo
		for _, c := range list {
			if !c.Archived {
				out = append(out, c)
			}
		}
		return out
	}
	byID := make(map[string]cohortInfo, len(list))
	for _, c := range list {
		byID[c.ID] = c
	}
	var out []cohortInfo
	for _, id := range in.cohortIDs {
		c, ok := byID[id]
		if !ok {
			in.mSyncs.Incr(1, "failed")
			in.log.Errorf("Amplitude cohort %s is not in the project's cohort list: skipped", id)
			continue
		}
		out = append(out, c)
	}
	return out
}

// countDownload checks the monthly budget and records one more download.
func (in *amplitudeCohortInput) countDownload() (int, error) {
	month := in.clock.Now().UTC().Format("2006-01")
	n, ok, err := in.state.countDownload(month, in.budget)
	if err != nil {
		return 0, fmt.Errorf("recording download count: %w", err)
	}
	in.mDownloads.Set(int64(n))
	if !ok {
		return n, fmt.Errorf("monthly download budget used up (%d of %d in %s): cohort not downloaded", n, in.budget, month)
	}
	return n, nil
}

// syncTracker counts the unacked messages of one sync and records each
// delivered one in the state file.
type syncTracker struct {
	pending atomic.Int64
	failed  atomic.Bool
	done    chan struct{}
}

func (t *syncTracker) release() {
	if t.pending.Add(-1) == 0 {
		close(t.done)
	}
}

// ackFor returns the ack func of message i.
func (in *amplitudeCohortInput) ackFor(t *syncTracker, cohortID string, i int) service.AckFunc {
	return func(_ context.Context, err error) error {
		defer t.release()
		if err != nil {
			t.failed.Store(true)
			return nil
		}
		if err := in.state.delivered(cohortID, i); err != nil {
			// Delivered but not recorded: a resumed sync sends it again
			// (a no-op for Braze). The sync itself fails so that it is
			// not committed over a state we cannot write.
			t.failed.Store(true)
			in.log.Errorf("Amplitude cohort %s: recording message %d as delivered: %v", cohortID, i, err)
		}
		return nil
	}
}

// syncCohort delivers the cohort's pending change set if a previous sync left
// one, or else downloads the cohort if it changed, records the download as
// the pending change set and delivers it; then it commits.
func (in *amplitudeCohortInput) syncCohort(ctx context.Context, c cohortInfo) error {
	st, err := in.state.load(c.ID)
	if err != nil {
		return fmt.Errorf("reading the state file %s: %w (delete the cohort's keys to sync it as new)", in.state.db.Path(), err)
	}
	target, maxIDs := st.pending, st.maxIDs
	if st.havePending {
		in.log.Infof("Amplitude cohort %s (%q): resuming the change set to lastComputed %s (no download)", c.ID, c.Name, target.lastComputed)
	} else {
		// Without a lastComputed in the list there is no way to tell: download.
		if st.haveCommitted && c.LastComputed != "" && st.committed.lastComputed == c.LastComputed {
			in.mSyncs.Incr(1, "unchanged")
			in.log.Debugf("Amplitude cohort %s unchanged since lastComputed %s", c.ID, c.LastComputed)
			return nil
		}
		n, err := in.countDownload()
		if err != nil {
			return err
		}
		logf := in.log.Infof
		if in.budget > 0 && n*5 >= in.budget*4 {
			logf = in.log.Warnf
		}
		logf("downloading Amplitude cohort %s (%q): download %d of %d this month", c.ID, c.Name, n, in.budget)
		members, err := in.download(ctx, c.ID)
		if err != nil {
			return err
		}
		encoded := encodeState(c.LastComputed, members)
		members = nil
		if err := in.state.begin(c.ID, in.maxIDs, encoded); err != nil {
			return fmt.Errorf("recording the downloaded membership: %w", err)
		}
		if target, err = decodeState(encoded); err != nil {
			return err
		}
		maxIDs = in.maxIDs
	}

	t := &syncTracker{done: make(chan struct{})}
	t.pending.Store(1)
	index, skipped := 0, 0
	ck := &chunker{cohortID: c.ID, cohortName: c.Name, max: maxIDs, flush: func(ch Change) error {
		i := index
		index++
		if isDelivered(st.delivered, i) {
			skipped++
			return nil
		}
		msg := service.NewMessage(ch.AppendJSON(nil))
		msg.MetaSetMut("amplitude_cohort_id", c.ID)
		msg.MetaSetMut("amplitude_cohort_name", c.Name)
		msg.MetaSetMut("amplitude_cohort_last_computed", target.lastComputed)
		t.pending.Add(1)
		select {
		case in.out <- pendingBatch{batch: service.MessageBatch{msg}, ack: in.ackFor(t, c.ID, i)}:
			return nil
		case <-ctx.Done():
			t.release()
			return ctx.Err()
		}
	}}
	err = diff(st.committed, target, ck.add)
	if err == nil {
		err = ck.close()
	}
	t.release()
	if err != nil {
		return err
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if t.failed.Load() {
		return errors.New("change set not fully delivered: kept as pending, the next sync resumes it")
	}
	if err := in.state.commit(c.ID); err != nil {
		return fmt.Errorf("committing membership: %w", err)
	}
	in.mSyncs.Incr(1, "delivered")
	in.mAdded.Incr(int64(ck.added))
	in.mRemoved.Incr(int64(ck.removed))
	in.log.Infof("Amplitude cohort %s (%q) synced: %d added, %d removed (%d of %d messages delivered before a restart)",
		c.ID, c.Name, ck.added, ck.removed, skipped, index)
	return nil
}

// download exports one cohort and reads its members.
func (in *amplitudeCohortInput) download(ctx context.Context, id string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, in.jobTimeout)
	defer cancel()
	reqID, err := in.client.requestCohort(ctx, id)
	if err != nil {
		return nil, err
	}
	body, err := in.client.download(ctx, reqID)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	members, st, err := readMembers(body, in.cols, in.maxMembers)
	if err != nil {
		return nil, err
	}
	if st.anonymous > 0 || st.invalid > 0 {
		in.mSkipped.Incr(int64(st.anonymous), "anonymous")
		in.mSkipped.Incr(int64(st.invalid), "invalid")
		in.log.Warnf("Amplitude cohort %s: skipped %d anonymous members (no %s) and %d ids longer than %d bytes",
			id, st.anonymous, in.cols.userID, st.invalid, maxIDLen)
	}
	return members, nil
}
