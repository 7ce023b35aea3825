package cohort

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/tidwall/gjson"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
	"github.com/opencurrents/currents-amplitude/plugins/internal/redact"
	"github.com/opencurrents/currents-amplitude/plugins/internal/speclint"
	"github.com/opencurrents/currents-amplitude/plugins/store"
)

const (
	bcFieldMethod         = "method"
	bcFieldCluster        = "cluster"
	bcFieldURL            = "url"
	bcFieldAPIKey         = "api_key"
	bcFieldAttribute      = "attribute"
	bcFieldExistingOnly   = "update_existing_only"
	bcFieldObjectsPerReq  = "max_objects_per_request"
	bcFieldPartnerName    = "partner_name"
	bcFieldPartnerAPIKey  = "partner_api_key"
	bcFieldClientSecret   = "client_secret"
	bcFieldIDsPerReq      = "max_ids_per_request"
	bcFieldTimeout        = "timeout"
	bcFieldBackoff        = "backoff"
	bcFieldTLS            = "tls"
	bcFieldBatching       = "batching"
	bcFieldMaxInFlight    = "max_in_flight"
	bcFieldStatePath      = "state_path"
	methodUsersTrack      = "users_track"
	methodPartnerCohort   = "partner_cohort"
	maxUsersTrackObjects  = 75
	maxPartnerIDsPerBatch = 1000
)

// brazeCohortLintRule requires the keys of the chosen method.
var brazeCohortLintRule = speclint.Rule(
	speclint.RequiredWhen(`this.method.or("`+methodUsersTrack+`") == "`+methodUsersTrack+`"`,
		bcFieldAPIKey, "a Braze REST API key with the users.track permission", "(method "+methodUsersTrack+")"),
	speclint.RequiredWhen(`this.method.or("") == "`+methodPartnerCohort+`"`,
		bcFieldPartnerAPIKey, "the Braze-issued partner API key", "(method "+methodPartnerCohort+")"),
	speclint.RequiredWhen(`this.method.or("") == "`+methodPartnerCohort+`"`,
		bcFieldClientSecret, "the workspace's Data Import Key", "(method "+methodPartnerCohort+")"),
)

func brazeCohortOutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		LintRule(brazeCohortLintRule).
		Categories("Services").
		Summary("Writes Amplitude cohort membership changes to Braze.").
		Description(`
Each message is a membership change, as emitted by the `+"`amplitude_cohort`"+` input or mapped from an Amplitude
cohort webhook:

`+"```json"+`
{"cohort_id":"abc1","cohort_name":"Churn risk","id_type":"external_id","added":["u1"],"removed":["u9"]}
`+"```"+`

Two methods:

- `+"`users_track`"+` (default, any Braze workspace): `+"`POST /users/track`"+` with a REST API key (permission
  `+"`users.track`"+`), adding or removing the value `+"`[Amplitude] <cohort_name>: <cohort_id>`"+` in the custom attribute
  array `+"`amplitude_cohorts`"+`, at most 75 attribute objects per request. Segment users with the filter
  *amplitude_cohorts includes value* `+"`[Amplitude] NAME: id`"+`. With `+"`update_existing_only`"+` (default) no user is
  created. Device ids cannot be addressed by this endpoint: such messages fail.
- `+"`partner_cohort`"+`: Braze's partner cohort import API, for holders of a Braze-issued partner key: names the cohort
  (`+"`POST /partners/<partner_name>/cohorts`"+`, on first sight and on rename), then sends `+"`cohort_changes`"+` with
  `+"`should_remove`"+`, at most 1,000 ids per request. Braze shows the cohort as `+"`[Amplitude] NAME: id`"+`.

429, 423, 5xx and network errors are retried with back-off; a 429 waits for `+"`Retry-After`"+` or `+"`X-RateLimit-Reset`"+`,
and when `+"`X-RateLimit-Remaining`"+` reaches 0 every request waits for the reset. Adding and removing are idempotent, so
a retried message is harmless.

== Failures

A change fails for a reason of its own when it is not a valid membership change (reason `+"`invalid_change`"+`), when it
holds device ids and the method is `+"`users_track`"+` (`+"`unaddressable`"+`), when Braze refuses it with a 400, 413 or 422
(`+"`refused`"+`), or when it was errored upstream (the reason given there). With `+"`dead_letter`"+` such a change is written
there once, as one JSON record, and acknowledged. Everything else is an outage and the message is nacked, so that its
input keeps it: retries exhausted, network errors, a 401, 403 or 404 (a wrong key, cluster or partner name: no
change is to blame), shutting down, or a dead-letter output that fails. Error texts carry no local file paths (a
webhook answers them in its 5xx body). Without `+"`dead_letter`"+` every failed message is reported on its own (a batch
error), so that `+"`fallback`"+`, `+"`switch`"+` or `+"`reject_errored`"+` can route it.

== Metrics

- `+"`braze_cohort_requests_total`"+` (label `+"`status`"+`: ok, failed)
- `+"`braze_cohort_retries_total`"+` (label `+"`reason`"+`: rate_limited, server_error, network)
- `+"`braze_cohort_ids_total`"+` (label `+"`action`"+`: added, removed): ids delivered
- `+"`braze_cohort_failed_messages_total`"+`: messages nacked or reported as failed
- `+"`dead_letter_events_total`"+` (labels `+"`component`"+`, `+"`reason`"+`): changes dead-lettered
- `+"`braze_cohort_object_errors_total`"+`: per-object errors reported by /users/track in a 201 response (also logged)
`+service.OutputPerformanceDocs(true, true)).
		Fields(
			service.NewStringEnumField(bcFieldMethod, methodUsersTrack, methodPartnerCohort).
				Description("How memberships are written: `users_track` (custom attribute array, REST API key) or `partner_cohort` (partner cohort import API, partner key).").
				Default(methodUsersTrack).Example(methodPartnerCohort),
			service.NewStringEnumField(bcFieldCluster, clusterNames...).
				Description("Braze cluster of the workspace, selecting the REST endpoint (US-01 → https://rest.iad-01.braze.com … EU-01 → https://rest.fra-01.braze.eu, AU-01 → https://rest.au-01.braze.com).").
				Default("US-01").Example("EU-01"),
			service.NewStringField(bcFieldURL).
				Description("REST endpoint URL, overriding `cluster`.").
				Default("").Example("https://rest.iad-05.braze.com"),
			service.NewStringField(bcFieldAPIKey).Secret().
				Description("Braze REST API key with the `users.track` permission (method `users_track`).").
				Default("").Example("${BRAZE_REST_API_KEY}"),
			service.NewStringField(bcFieldAttribute).
				Description("Custom attribute array holding the cohort names (method `users_track`).").
				Default("amplitude_cohorts").Example("amplitude_cohorts"),
			service.NewBoolField(bcFieldExistingOnly).
				Description("Send `_update_existing_only: true` so that /users/track never creates users (method `users_track`).").
				Default(true).Example(false),
			service.NewIntField(bcFieldObjectsPerReq).
				Description("Attribute objects per /users/track request, at most 75.").
				Default(maxUsersTrackObjects).Example(50).Advanced(),
			service.NewStringField(bcFieldPartnerName).
				Description("Partner path segment of the partner cohort API (`/partners/<partner_name>/…`, method `partner_cohort`).").
				Default("amplitude").Example("amplitude"),
			service.NewStringField(bcFieldPartnerAPIKey).Secret().
				Description("Braze-issued partner API key (method `partner_cohort`).").
				Default("").Example("${BRAZE_PARTNER_API_KEY}"),
			service.NewStringField(bcFieldClientSecret).Secret().
				Description("The workspace's Data Import Key (method `partner_cohort`).").
				Default("").Example("${BRAZE_DATA_IMPORT_KEY}"),
			service.NewIntField(bcFieldIDsPerReq).
				Description("Ids per cohort_changes request, at most 1,000 (method `partner_cohort`).").
				Default(maxPartnerIDsPerBatch).Example(500).Advanced(),
			service.NewDurationField(bcFieldTimeout).
				Description("Timeout of each HTTP request.").
				Default("30s").Example("10s").Advanced(),
			service.NewBackOffField(bcFieldBackoff, false, &backoff.ExponentialBackOff{
				InitialInterval: time.Second, MaxInterval: 30 * time.Second, MaxElapsedTime: 5 * time.Minute,
			}),
			service.NewTLSToggledField(bcFieldTLS),
			service.NewOutputMaxInFlightField().Default(4),
			service.NewBatchPolicyField(bcFieldBatching),
			service.NewStringField(bcFieldStatePath).
				Description("A state file (see the `store` cache) remembering the cohort names already sent to the partner API, so that a restart does not name every cohort again (method `partner_cohort`). Empty keeps them in memory. May be the file of the `amplitude_cohort` input.").
				Default("").Example("./state/amplitude_cohorts.db").Advanced(),
			deadletter.OutputField(),
			deadletter.StateField(),
		).
		Example("Custom attribute array", "Works with any Braze workspace.", `
output:
  braze_cohort:
    cluster: US-05
    api_key: ${BRAZE_REST_API_KEY}
`).
		Example("Partner cohort import", "Needs a Braze-issued partner key.", `
output:
  braze_cohort:
    method: partner_cohort
    cluster: EU-01
    partner_api_key: ${BRAZE_PARTNER_API_KEY}
    client_secret: ${BRAZE_DATA_IMPORT_KEY}
`)
}

func init() {
	service.MustRegisterBatchOutput("braze_cohort", brazeCohortOutputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (out service.BatchOutput, pol service.BatchPolicy, mif int, err error) {
			if mif, err = conf.FieldMaxInFlight(); err != nil {
				return
			}
			if pol, err = conf.FieldBatchPolicy(bcFieldBatching); err != nil {
				return
			}
			out, err = newBrazeCohortOutputFromParsed(conf, mgr)
			return
		})
}

// cohortSender writes one membership change to Braze.
type cohortSender interface {
	send(ctx context.Context, c *Change) error
}

type brazeCohortOutput struct {
	client  *brazeClient
	sender  cohortSender
	dlq     *deadletter.Writer
	db      *store.DB // partner names, or nil
	log     *service.Logger
	mReqs   *service.MetricCounter
	mIDs    *service.MetricCounter
	mFailed *service.MetricCounter
}

func newBrazeCohortOutputFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*brazeCohortOutput, error) {
	str := stringFields(conf)
	base, err := baseURL(str(bcFieldURL), brazeClusters, str(bcFieldCluster))
	if err != nil {
		return nil, err
	}
	timeout, err := conf.FieldDuration(bcFieldTimeout)
	if err != nil {
		return nil, err
	}
	boff, err := conf.FieldBackOff(bcFieldBackoff)
	if err != nil {
		return nil, err
	}
	transport, err := transportFromParsed(conf, bcFieldTLS)
	if err != nil {
		return nil, err
	}
	m := mgr.Metrics()
	o := &brazeCohortOutput{
		log:     mgr.Logger(),
		mReqs:   m.NewCounter("braze_cohort_requests_total", "status"),
		mIDs:    m.NewCounter("braze_cohort_ids_total", "action"),
		mFailed: m.NewCounter("braze_cohort_failed_messages_total"),
	}
	mRetries := m.NewCounter("braze_cohort_retries_total", "reason")
	clk := clockOf()
	o.client = &brazeClient{
		base:    base,
		http:    &http.Client{Transport: transport, Timeout: timeout},
		boff:    boff,
		clock:   clk,
		onRetry: func(reason string) { mRetries.Incr(1, reason) },
	}
	switch str(bcFieldMethod) {
	case methodPartnerCohort:
		p := &partnerSender{
			out:     o,
			partner: str(bcFieldPartnerName),
			apiKey:  str(bcFieldPartnerAPIKey),
			secret:  str(bcFieldClientSecret),
			named:   map[string]string{},
			clock:   clk,
		}
		if p.apiKey == "" || p.secret == "" {
			return nil, errors.New("method partner_cohort needs partner_api_key and client_secret")
		}
		if p.partner == "" {
			return nil, errors.New("partner_name must not be empty")
		}
		if p.idsPerReq, err = boundedInt(conf, bcFieldIDsPerReq, maxPartnerIDsPerBatch); err != nil {
			return nil, err
		}
		o.client.secrets = redact.New(p.apiKey, p.secret)
		o.sender = p
	default:
		u := &usersTrackSender{out: o, attribute: str(bcFieldAttribute)}
		o.client.bearer = str(bcFieldAPIKey)
		if o.client.bearer == "" {
			return nil, errors.New("method users_track needs api_key (a REST API key with users.track permission)")
		}
		if u.attribute == "" {
			return nil, errors.New("attribute must not be empty")
		}
		if u.existingOnly, err = conf.FieldBool(bcFieldExistingOnly); err != nil {
			return nil, err
		}
		if u.objectsPerReq, err = boundedInt(conf, bcFieldObjectsPerReq, maxUsersTrackObjects); err != nil {
			return nil, err
		}
		u.mObjErrors = m.NewCounter("braze_cohort_object_errors_total")
		o.client.secrets = redact.New(o.client.bearer)
		o.sender = u
	}
	if o.dlq, err = deadletter.FromParsed(conf, mgr, "braze_cohort"); err != nil {
		return nil, err
	}
	if path := str(bcFieldStatePath); path != "" {
		if o.db, err = store.Open(path, store.Options{Clock: clk}); err != nil {
			return nil, err
		}
		if p, ok := o.sender.(*partnerSender); ok {
			p.db = o.db
		}
	}
	return o, nil
}

func boundedInt(conf *service.ParsedConfig, name string, max int) (int, error) {
	n, err := conf.FieldInt(name)
	if err != nil {
		return 0, err
	}
	if n < 1 || n > max {
		return 0, fmt.Errorf("%s must be between 1 and %d, got %d", name, max, n)
	}
	return n, nil
}

// Connect is a no-op: requests open connections as needed.
func (o *brazeCohortOutput) Connect(context.Context) error { return nil }

// WriteBatch sends each message on its own. With a dead-letter output, the
// changes that fail for their own reason are written there and acked, and an
// outage nacks the batch; without one, failures are reported per message.
func (o *brazeCohortOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	type failure struct {
		i   int
		err error
	}
	var failed []failure
	var dead []deadletter.Entry
	for i, msg := range batch {
		err := o.writeMessage(ctx, msg)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if reason, own := deadletter.ReasonOf(err); own && o.dlq != nil {
			dead = append(dead, deadletter.Entry{Msg: msg, Reason: reason, Err: err})
			continue
		}
		o.mFailed.Incr(1)
		o.log.Errorf("braze_cohort: message %d not delivered: %v", i, err)
		if o.dlq != nil {
			// An outage: nack the whole batch, its input keeps it.
			return fmt.Errorf("braze_cohort: membership change not delivered, will be retried: %w", err)
		}
		failed = append(failed, failure{i, err})
	}
	if err := o.dlq.Write(ctx, dead); err != nil {
		o.mFailed.Incr(int64(len(dead)))
		// The child's error may name local files: log it, never return it.
		o.log.Errorf("braze_cohort: writing %d changes to the dead-letter output: %v", len(dead), err)
		return errors.New("braze_cohort: the dead-letter output failed; the changes will be retried")
	}
	if len(failed) == 0 {
		return nil
	}
	bErr := service.NewBatchError(batch, fmt.Errorf("braze_cohort: %d of %d membership changes not delivered, first: %w",
		len(failed), len(batch), failed[0].err))
	for _, f := range failed {
		bErr.Failed(f.i, f.err)
	}
	return bErr
}

// Reasons for which braze_cohort dead-letters a change.
const (
	// ReasonInvalidChange: the message is not a valid membership change.
	ReasonInvalidChange deadletter.Reason = "invalid_change"
	// ReasonUnaddressable: the change holds device ids, which users_track
	// cannot address.
	ReasonUnaddressable deadletter.Reason = "unaddressable"
	// ReasonRefused: Braze refused the change itself (400, 413, 422).
	ReasonRefused deadletter.Reason = "refused"
)

func (o *brazeCohortOutput) writeMessage(ctx context.Context, msg *service.Message) error {
	if reason, err, failed := deadletter.Of(msg); failed {
		return deadletter.Wrap(reason, err)
	}
	b, err := msg.AsBytes()
	if err != nil {
		return deadletter.Wrap(ReasonInvalidChange, err)
	}
	c, err := ParseChange(b)
	if err != nil {
		return deadletter.Wrap(ReasonInvalidChange, err)
	}
	err = o.sender.send(ctx, &c)
	var perm *errPermanent
	if errors.As(err, &perm) && perm.refusesChange() {
		return deadletter.Wrap(ReasonRefused, err)
	}
	return err
}

// post sends one request and counts it.
func (o *brazeCohortOutput) post(ctx context.Context, path string, body []byte) ([]byte, error) {
	resp, err := o.client.post(ctx, path, body)
	if err != nil {
		o.mReqs.Incr(1, "failed")
		return nil, err
	}
	o.mReqs.Incr(1, "ok")
	return resp, nil
}

// Close closes the dead-letter output and releases the state file.
func (o *brazeCohortOutput) Close(ctx context.Context) error {
	err := o.dlq.Close(ctx)
	if o.db != nil {
		err = errors.Join(err, o.db.Close())
		o.db = nil
	}
	return err
}

// DisplayName is how Braze names a synced Amplitude cohort.
func DisplayName(cohortName, cohortID string) string {
	return "[Amplitude] " + cohortName + ": " + cohortID
}

// usersTrackSender writes memberships into a custom attribute array.
type usersTrackSender struct {
	out           *brazeCohortOutput
	attribute     string
	existingOnly  bool
	objectsPerReq int
	mObjErrors    *service.MetricCounter
}

func (u *usersTrackSender) send(ctx context.Context, c *Change) error {
	if c.IDType == IDTypeDevice {
		return deadletter.New(ReasonUnaddressable, "users_track cannot address users by device id: use method partner_cohort or drop device ids")
	}
	value := jsonw.AppendString(nil, DisplayName(c.CohortName, c.CohortID))
	for _, part := range []struct {
		ids    []string
		op     string
		action string
	}{{c.Added, "add", "added"}, {c.Removed, "remove", "removed"}} {
		for ids := range chunks(part.ids, u.objectsPerReq) {
			body := u.request(ids, part.op, value)
			resp, err := u.out.post(ctx, "/users/track", body)
			if err != nil {
				return err
			}
			u.checkObjectErrors(c.CohortID, resp)
			u.out.mIDs.Incr(int64(len(ids)), part.action)
		}
	}
	return nil
}

// request builds {"attributes":[{"external_id":…,"<attr>":{"add":[value]}},…]}.
func (u *usersTrackSender) request(ids []string, op string, value []byte) []byte {
	size := 32
	for _, id := range ids {
		size += len(id) + len(value) + len(u.attribute) + 96
	}
	b := make([]byte, 0, size)
	b = append(b, `{"attributes":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"external_id":`...)
		b = jsonw.AppendString(b, id)
		if u.existingOnly {
			b = append(b, `,"_update_existing_only":true`...)
		}
		b = append(b, ',')
		b = jsonw.AppendKey(b, u.attribute)
		b = append(b, `{"`...)
		b = append(b, op...)
		b = append(b, `":[`...)
		b = append(b, value...)
		b = append(b, "]}}"...)
	}
	return append(b, "]}"...)
}

// checkObjectErrors logs the per-object errors of a successful /users/track
// answer ({"message":"success","errors":[…]}): those objects were not applied.
func (u *usersTrackSender) checkObjectErrors(cohortID string, resp []byte) {
	errs := gjson.GetBytes(resp, "errors")
	if !errs.IsArray() {
		return
	}
	if n := len(errs.Array()); n > 0 {
		u.mObjErrors.Incr(int64(n))
		u.out.log.Warnf("braze_cohort: /users/track rejected %d objects of cohort %s: %s", n, cohortID, snippet([]byte(errs.Raw)))
	}
}

// chunks yields consecutive slices of at most n elements.
func chunks(ids []string, n int) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		for len(ids) > 0 {
			k := min(n, len(ids))
			if !yield(ids[:k]) {
				return
			}
			ids = ids[k:]
		}
	}
}

// partnerSender writes memberships through the partner cohort import API.
type partnerSender struct {
	out       *brazeCohortOutput
	partner   string
	apiKey    string
	secret    string
	idsPerReq int
	clock     clock.Clock
	db        *store.DB // remembers named cohorts across restarts, or nil

	mu    sync.Mutex
	named map[string]string // cohort id -> name already sent to Braze
}

func (p *partnerSender) send(ctx context.Context, c *Change) error {
	if err := p.ensureNamed(ctx, c); err != nil {
		return err
	}
	key := "user_ids"
	if c.IDType == IDTypeDevice {
		key = "device_ids"
	}
	added, removed := c.Added, c.Removed
	for len(added)+len(removed) > 0 {
		na := min(len(added), p.idsPerReq)
		nr := min(len(removed), p.idsPerReq-na)
		b := p.auth(c.CohortID)
		b = append(b, `,"cohort_changes":[`...)
		if na > 0 {
			b = appendChanges(b, key, added[:na], false)
		}
		if nr > 0 {
			if na > 0 {
				b = append(b, ',')
			}
			b = appendChanges(b, key, removed[:nr], true)
		}
		b = append(b, "]}"...)
		if _, err := p.out.post(ctx, "/partners/"+p.partner+"/cohorts/users", b); err != nil {
			return err
		}
		p.out.mIDs.Incr(int64(na), "added")
		p.out.mIDs.Incr(int64(nr), "removed")
		added, removed = added[na:], removed[nr:]
	}
	return nil
}

// auth starts a request body with the credentials and the cohort id.
func (p *partnerSender) auth(cohortID string) []byte {
	b := append([]byte(nil), `{"partner_api_key":`...)
	b = jsonw.AppendString(b, p.apiKey)
	b = append(b, `,"client_secret":`...)
	b = jsonw.AppendString(b, p.secret)
	b = append(b, `,"cohort_id":`...)
	return jsonw.AppendString(b, cohortID)
}

func appendChanges(b []byte, key string, ids []string, remove bool) []byte {
	b = append(b, '{')
	b = appendIDs(b, key, ids)
	if remove {
		b = append(b, `,"should_remove":true`...)
	}
	return append(b, '}')
}

// ensureNamed creates the cohort in Braze, or renames it, when this process
// has not yet sent its current name.
func (p *partnerSender) ensureNamed(ctx context.Context, c *Change) error {
	p.mu.Lock()
	name, known := p.named[c.CohortID]
	p.mu.Unlock()
	if !known && p.db != nil {
		_ = p.db.View(func(tx *store.Tx) error {
			v, ok := tx.Get(stateNS, "partner_name/"+c.CohortID)
			name, known = string(v), ok
			return nil
		})
	}
	if known && name == c.CohortName {
		return nil
	}
	b := p.auth(c.CohortID)
	b = append(b, `,"name":`...)
	b = jsonw.AppendString(b, c.CohortName)
	b = append(b, `,"created_at":`...)
	b = jsonw.AppendString(b, p.clock.Now().UTC().Format(time.RFC3339))
	b = append(b, '}')
	if _, err := p.out.post(ctx, "/partners/"+p.partner+"/cohorts", b); err != nil {
		return fmt.Errorf("naming cohort %s: %w", c.CohortID, err)
	}
	if p.db != nil {
		if err := p.db.Update(func(tx *store.Tx) error {
			return tx.Put(stateNS, "partner_name/"+c.CohortID, []byte(c.CohortName), 0)
		}); err != nil {
			// Named but not remembered: the next process names it again.
			p.out.log.Warnf("braze_cohort: remembering the name of cohort %s: %v", c.CohortID, err)
		}
	}
	p.mu.Lock()
	p.named[c.CohortID] = c.CohortName
	p.mu.Unlock()
	return nil
}
