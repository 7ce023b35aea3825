package profile

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/redact"
	"github.com/opencurrents/currents-amplitude/plugins/internal/speclint"
)

const (
	apFieldSecretKey       = "secret_key"
	apFieldAPIKey          = "api_key"
	apFieldRegion          = "region"
	apFieldURL             = "url"
	apFieldUserID          = "user_id"
	apFieldDeviceID        = "device_id"
	apFieldGetRecs         = "get_recs"
	apFieldRecID           = "rec_id"
	apFieldRecType         = "rec_type"
	apFieldGetAmpProps     = "get_amp_props"
	apFieldGetCohortIDs    = "get_cohort_ids"
	apFieldGetComputations = "get_computations"
	apFieldCompID          = "comp_id"
	apFieldMode            = "mode"
	apFieldName            = "name"
	apFieldTTL             = "ttl"
	apFieldEmptyTTL        = "empty_ttl"
	apFieldSWR             = "stale_while_revalidate"
	apFieldStaleIfError    = "stale_if_error"
	apFieldMaxEntries      = "max_entries"
	apFieldPerMinute       = "requests_per_minute"
	apFieldBurst           = "burst"
	apFieldPrewarmReserve  = "prewarm_reserve"
	apFieldTimeout         = "timeout"
	apFieldUpstreamTimeout = "upstream_timeout"
	apFieldThrottlePause   = "throttle_pause"
	apFieldDefaultAnswer   = "default_answer"

	modeServe   = "serve"
	modePrewarm = "prewarm"

	// MetaSource is the metadata key of the answer's source: cache, stale,
	// amplitude, empty or default (prewarm: fetched, fresh or failed).
	MetaSource = "amplitude_profile_source"
	// MetaReason is the metadata key of why a default or stale answer was
	// served: budget, timeout, throttled, unauthorized, upstream_error,
	// paused (absent otherwise).
	MetaReason = "amplitude_profile_reason"

	// maxIDBytes bounds a user or device id.
	maxIDBytes = 1024
)

func amplitudeProfileSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		LintRule(speclint.Rule(speclint.Required(apFieldSecretKey, "the Amplitude project's secret key"))).
		Categories("Services").
		Summary("Answers each message with the user's Amplitude profile (recommendations, user properties, cohort ids, computations) from a TTL cache in front of Amplitude's User Profile API, within a client-side share of the organisation's 600 requests per minute, serving a stale profile or a default answer when Amplitude is slow, throttled or down.").
		Description(`
Made for Braze Connected Content (see the `+"`connected_content_http`"+` input and `+"`config/connected_content_profiles.yaml`"+`): Braze calls once per recipient at send time, far more often than Amplitude's limit of 600 requests per minute for the whole organisation allows, so the profiles are served from memory and Amplitude is called only for what is missing, at a bounded rate.

Each message names a user by `+"`user_id`"+` or `+"`device_id`"+` (by default the fields of its JSON body); the processor replaces its content with the answer, shaped for Liquid: the members of Amplitude's `+"`userData`"+` at the top level with `+"`\"source\":\"amplitude\"`"+`, so that a template reads `+"`connected.recommendations[0].items`"+`, `+"`connected.amp_props.plan`"+` or `+"`connected.cohort_ids`"+`. When no profile can be served it is `+"`default_answer`"+` with `+"`\"source\":\"default\"`"+`.

### How a lookup is answered

| State of the cache | Answer | Calls Amplitude |
|---|---|---|
| fresh (younger than `+"`ttl`"+`) | the cached profile | no |
| stale (within `+"`stale_while_revalidate`"+` after `+"`ttl`"+`) | the cached profile | in the background, if the budget has a call now |
| missing or older | Amplitude's answer, if it comes before the deadline | yes, once for all identical lookups in flight |
| Amplitude slow, throttled (429), failing (5xx) or out of budget | the cached profile while younger than `+"`ttl`"+` + `+"`stale_if_error`"+`, else `+"`default_answer`"+` | - |
| Amplitude has not seen the id (`+"`User id and device id not seen before`"+`) | `+"`default_answer`"+`, cached for `+"`empty_ttl`"+` | no, until `+"`empty_ttl`"+` |

The deadline is `+"`timeout`"+` after the lookup starts, or the message's context deadline when earlier (the `+"`connected_content_http`"+` input sets it from Braze's two-second limit). A call that outlives its caller still completes (up to `+"`upstream_timeout`"+`) and fills the cache. A lookup waiting for Amplitude holds its pipeline thread: give the pipeline enough `+"`threads`"+` (256 in the shipped pipeline) that cached answers never queue behind waiting ones. The lookups of one batch run concurrently.

### Budget

No 60-second window ever holds more than `+"`requests_per_minute`"+` calls from this processor (at most `+"`burst`"+` at once, then one every 60 s/(`+"`requests_per_minute`"+` - `+"`burst`"+`)), whatever the incoming rate: a lookup that cannot get a call before its deadline is answered at once with the stale profile or the default. Amplitude's limit is per organisation and across all endpoints: leave room for this project's other Amplitude REST calls (cohort sync) and any other client, and divide it between instances when you run several. After a 429 every call pauses for `+"`throttle_pause`"+` (or Amplitude's Retry-After); after a 401 (`+"`Invalid Api-Key`"+`, `+"`Missing Api-Key in Authorization header`"+`) for one minute, with one error log line a minute: the key is wrong and needs a person.

### Prewarm

With `+"`mode: prewarm`"+` a message is not answered: the processor fetches its profile into the cache unless it is fresh there, waiting as long as needed for a call that leaves `+"`prewarm_reserve`"+` calls of the burst to live lookups, so a list of users is fetched evenly at the budget's steady rate. Give the serving and the prewarming processors the same `+"`name`"+` (and the same settings) so that they share one cache and one budget. Metadata `+"`"+MetaSource+"`"+` is `+"`fetched`"+`, `+"`fresh`"+` or `+"`failed`"+`. A list of N users takes N / (`+"`requests_per_minute`"+` - `+"`burst`"+`) minutes: start it that long before the send, with a `+"`ttl`"+` longer than prewarm plus send.

### Metadata

`+"`"+MetaSource+"`"+` (cache, stale, amplitude, empty, default) and, for a stale or default answer, `+"`"+MetaReason+"`"+` (budget, timeout, throttled, unauthorized, upstream_error, paused).

### Metrics

- `+"`amplitude_profile_answers_total`"+` (labels `+"`source`"+`, `+"`reason`"+`): every answer; the share of `+"`source=\"default\"`"+` is the share of recipients who got the default experience.
- `+"`amplitude_profile_cache_total`"+` (label `+"`decision`"+`: hit, stale_hit, miss, coalesced, evicted, evicted_expired).
- `+"`amplitude_profile_budget_total`"+` (label `+"`decision`"+`: granted, granted_prewarm, prewarm_waited, denied, paused).
- `+"`amplitude_profile_upstream_total`"+` (label `+"`outcome`"+`: ok, not_seen, unauthorized, throttled, server_error, error) and the timer `+"`amplitude_profile_upstream_seconds`"+`.
- `+"`amplitude_profile_prewarm_total`"+` (label `+"`outcome`"+`), the gauge `+"`amplitude_profile_cache_entries`"+`.

The User Profile API exists only in Amplitude's US data centre: `+"`region: EU`"+` fails at start.`).
		Fields(
			service.NewStringField(apFieldSecretKey).Secret().
				Description("The Amplitude project's secret key, sent as `Authorization: Api-Key <secret_key>` (or as the HTTP Basic password when `api_key` is set). Never put it in a Braze template.").
				Example("${AMPLITUDE_SECRET_KEY}"),
			service.NewStringField(apFieldAPIKey).Secret().
				Description("The project's API key. When set, requests use HTTP Basic `api_key:secret_key`, as Amplitude's API reference describes, instead of `Api-Key <secret_key>`.").
				Default("").Example("${AMPLITUDE_API_KEY}").Advanced(),
			service.NewStringEnumField(apFieldRegion, "US", "EU").
				Description("Amplitude data centre. The User Profile API is US-only: `EU` fails at start.").
				Default("US").Example("US"),
			service.NewStringField(apFieldURL).
				Description("Base URL of the User Profile API, overriding https://profile-api.amplitude.com (proxies, tests).").
				Default("").Example("http://127.0.0.1:8080").Advanced(),
			service.NewInterpolatedStringField(apFieldUserID).
				Description("The user id (Braze external id) to look up. A plain `${! json(\"path\") }` is read straight from the raw JSON (a missing or null field is no id); other interpolations must give an empty string for no id, e.g. `${! meta(\"user_id\").or(\"\") }`.").
				Default(`${! json("user_id") }`).Example(`${! meta("user_id").or("") }`),
			service.NewInterpolatedStringField(apFieldDeviceID).
				Description("The device id to look up when there is no user id.").
				Default(`${! json("device_id") }`).Example(`${! json("device_id") }`),
			service.NewBoolField(apFieldGetRecs).
				Description("Ask for recommendations (`get_recs=true`).").
				Default(false).Example(true),
			service.NewInterpolatedStringField(apFieldRecID).
				Description("Recommendation id(s), comma separated (`rec_id`), required with `get_recs`. May be taken from the request, e.g. `${! json(\"rec_id\") }`: each distinct value is cached on its own.").
				Default("").Example("s234ssg").Example(`${! json("rec_id") }`),
			service.NewInterpolatedStringField(apFieldRecType).
				Description("Overrides the experiment's control setting (`rec_type`): `model` or `random`.").
				Default("").Example("model"),
			service.NewBoolField(apFieldGetAmpProps).
				Description("Ask for the user properties (`get_amp_props=true`).").
				Default(false).Example(true),
			service.NewBoolField(apFieldGetCohortIDs).
				Description("Ask for the ids of the tracked cohorts the user is in (`get_cohort_ids=true`).").
				Default(false).Example(true),
			service.NewBoolField(apFieldGetComputations).
				Description("Ask for every computation of the user (`get_computations=true`).").
				Default(false).Example(true),
			service.NewInterpolatedStringField(apFieldCompID).
				Description("One computation to return (`comp_id`).").
				Default("").Example("abc123"),
			service.NewStringAnnotatedEnumField(apFieldMode, map[string]string{
				modeServe:   "Answer each message within the deadline.",
				modePrewarm: "Fetch each message's profile into the cache, pacing calls evenly; the content is left as is.",
			}).Description("What the processor does with a message.").Default(modeServe).Example(modePrewarm),
			service.NewStringField(apFieldName).
				Description("Shares one cache and budget between every `amplitude_profile` of this process with this name (e.g. a serving and a prewarming one); they must have the same settings. Empty: private to this processor.").
				Default("").Example("profiles"),
			service.NewDurationField(apFieldTTL).
				Description("How long a profile is served without asking Amplitude again.").
				Default("1h").Example("4h"),
			service.NewDurationField(apFieldEmptyTTL).
				Description("How long an id Amplitude has not seen is answered with the default without asking again.").
				Default("10m").Example("1h"),
			service.NewDurationField(apFieldSWR).
				Description("After `ttl`, how long the cached profile is still served at once while it is refreshed in the background.").
				Default("15m").Example("1h"),
			service.NewDurationField(apFieldStaleIfError).
				Description("After `ttl`, how long the cached profile is served when Amplitude fails or the budget is spent.").
				Default("24h").Example("72h"),
			service.NewIntField(apFieldMaxEntries).
				Description("Most profiles kept (about 300 bytes each plus the answer).").
				Default(1000000).Example(5000000),
			service.NewIntField(apFieldPerMinute).
				Description("Most calls to Amplitude in any 60 seconds. Amplitude's limit is 600 per minute per organisation across all endpoints: the default leaves 100 for other clients.").
				Default(500).Example(300),
			service.NewIntField(apFieldBurst).
				Description("Most calls at once (part of `requests_per_minute`).").
				Default(10).Example(20).Advanced(),
			service.NewIntField(apFieldPrewarmReserve).
				Description("Calls of the burst that prewarm leaves to live lookups.").
				Default(5).Example(2).Advanced(),
			service.NewDurationField(apFieldTimeout).
				Description("Longest a lookup waits for Amplitude before the stale or default answer (Braze waits at most 2 s for Connected Content).").
				Default("1500ms").Example("800ms"),
			service.NewDurationField(apFieldUpstreamTimeout).
				Description("Longest call to Amplitude (it fills the cache even after its caller was answered).").
				Default("10s").Example("5s").Advanced(),
			service.NewDurationField(apFieldThrottlePause).
				Description("How long calls pause after a 429, unless Amplitude's Retry-After is longer.").
				Default("10s").Example("30s").Advanced(),
			service.NewStringField(apFieldDefaultAnswer).
				Description("The default experience: a JSON object served when no profile is available (it gets `\"source\":\"default\"`; it must not have a top-level `source`). Shape it like a real answer so that templates need no special case.").
				Default(`{"recommendations":[{"items":[]}],"amp_props":{},"cohort_ids":[]}`).
				Example(`{"recommendations":[{"items":["bestsellers-1","bestsellers-2"]}]}`),
		).
		Example("Recommendations for Connected Content", "Serves one recommendation per user, from the cache.", `
input:
  connected_content_http:
    address: 0.0.0.0:8080
    token: ${PROFILES_TOKEN}
pipeline:
  processors:
    - amplitude_profile:
        secret_key: ${AMPLITUDE_SECRET_KEY}
        get_recs: true
        rec_id: ${AMPLITUDE_REC_ID}
output:
  sync_response: {}
`)
}

func init() {
	service.MustRegisterBatchProcessor("amplitude_profile", amplitudeProfileSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchProcessor, error) {
			return newProcessorFromParsed(conf, mgr, clock.System)
		})
}

// idField reads one string of a message: with gjson from the raw JSON when
// the interpolation is a plain json("path"), else by interpolating.
type idField struct {
	path   string
	interp *service.InterpolatedString
	static string
	isStat bool
}

func newIDField(conf *service.ParsedConfig, name string) (idField, error) {
	raw, _ := conf.FieldString(name)
	f := idField{}
	if p, ok := jsonPath(raw); ok {
		f.path = p
		return f, nil
	}
	if !strings.Contains(raw, "${!") {
		f.static, f.isStat = raw, true
		return f, nil
	}
	interp, err := conf.FieldInterpolatedString(name)
	if err != nil {
		return f, err
	}
	f.interp = interp
	return f, nil
}

// jsonPath returns path when raw is exactly `${! json("path") }` with a
// simple dotted path.
func jsonPath(raw string) (string, bool) {
	s, ok := strings.CutPrefix(strings.TrimSpace(raw), "${!")
	if !ok {
		return "", false
	}
	s, ok = strings.CutSuffix(s, "}")
	if !ok {
		return "", false
	}
	s = strings.TrimSpace(s)
	s, ok = strings.CutPrefix(s, `json("`)
	if !ok {
		return "", false
	}
	s, ok = strings.CutSuffix(s, `")`)
	if !ok || s == "" || strings.ContainsAny(s, `"*?#|@\ `) {
		return "", false
	}
	return s, true
}

func (f idField) get(msg *service.Message) (string, error) {
	switch {
	case f.path != "":
		b, err := msg.AsBytes()
		if err != nil {
			return "", err
		}
		r := gjson.GetBytes(b, f.path)
		if r.Type == gjson.Null {
			return "", nil
		}
		return r.String(), nil
	case f.isStat:
		return f.static, nil
	default:
		return f.interp.TryString(msg)
	}
}

// processor is the amplitude_profile processor.
type processor struct {
	eng                                      *engine
	release                                  func() (last bool)
	mode                                     string
	userID, deviceID, recID, recType, compID idField
}

func newProcessorFromParsed(conf *service.ParsedConfig, mgr *service.Resources, c clock.Clock) (*processor, error) {
	cfg, fingerprint, err := engineConfigFromParsed(conf, c)
	if err != nil {
		return nil, err
	}
	p := &processor{}
	p.mode, _ = conf.FieldString(apFieldMode)
	for name, dst := range map[string]*idField{apFieldUserID: &p.userID, apFieldDeviceID: &p.deviceID,
		apFieldRecID: &p.recID, apFieldRecType: &p.recType, apFieldCompID: &p.compID} {
		if *dst, err = newIDField(conf, name); err != nil {
			return nil, err
		}
	}
	name, _ := conf.FieldString(apFieldName)
	if p.eng, p.release, err = sharedEngine(name, fingerprint, func() *engine { return newEngine(cfg, mgr) }); err != nil {
		return nil, err
	}
	return p, nil
}

// engineConfigFromParsed reads and checks the engine's settings; the
// fingerprint identifies them (without the keys) for sharing by name.
func engineConfigFromParsed(conf *service.ParsedConfig, c clock.Clock) (engineConfig, string, error) {
	str := func(n string) string { s, _ := conf.FieldString(n); return s }
	dur := func(n string) time.Duration { d, _ := conf.FieldDuration(n); return d }
	num := func(n string) int { i, _ := conf.FieldInt(n); return i }
	flag := func(n string) bool { b, _ := conf.FieldBool(n); return b }
	if str(apFieldRegion) == "EU" {
		return engineConfig{}, "", errors.New("amplitude_profile: Amplitude's User Profile API is not available in the EU data centre (https://amplitude.com/docs/apis/analytics/user-profile); it serves US projects only")
	}
	secret := str(apFieldSecretKey)
	if secret == "" {
		return engineConfig{}, "", errors.New("amplitude_profile: secret_key is empty")
	}
	base := strings.TrimRight(str(apFieldURL), "/")
	if base == "" {
		base = profileAPIURL
	}
	cfg := engineConfig{
		client: &client{base: base, auth: authHeader(str(apFieldAPIKey), secret),
			params: params{getRecs: flag(apFieldGetRecs), getAmpProps: flag(apFieldGetAmpProps),
				getCohortIDs: flag(apFieldGetCohortIDs), getComputations: flag(apFieldGetComputations)},
			http: newHTTPClient(num(apFieldBurst))},
		clock:                clock.OrSystem(c),
		ttl:                  dur(apFieldTTL),
		emptyTTL:             dur(apFieldEmptyTTL),
		staleWhileRevalidate: dur(apFieldSWR),
		staleIfError:         dur(apFieldStaleIfError),
		timeout:              dur(apFieldTimeout),
		upstreamTimeout:      dur(apFieldUpstreamTimeout),
		perMinute:            num(apFieldPerMinute),
		burst:                num(apFieldBurst),
		prewarmKeep:          num(apFieldPrewarmReserve),
		throttlePause:        dur(apFieldThrottlePause),
		maxEntries:           num(apFieldMaxEntries),
		redact:               redact.New(secret, str(apFieldAPIKey)),
	}
	switch {
	case cfg.ttl <= 0 || cfg.timeout <= 0 || cfg.upstreamTimeout <= 0:
		return cfg, "", errors.New("amplitude_profile: ttl, timeout and upstream_timeout must be positive")
	case cfg.burst < 1 || cfg.perMinute <= cfg.burst:
		return cfg, "", fmt.Errorf("amplitude_profile: need 1 <= burst (%d) < requests_per_minute (%d)", cfg.burst, cfg.perMinute)
	case cfg.prewarmKeep < 0 || cfg.prewarmKeep >= cfg.burst:
		return cfg, "", fmt.Errorf("amplitude_profile: need 0 <= prewarm_reserve (%d) < burst (%d): lower prewarm_reserve with burst", cfg.prewarmKeep, cfg.burst)
	case cfg.maxEntries < 1:
		return cfg, "", errors.New("amplitude_profile: max_entries must be positive")
	}
	def, err := defaultBody(str(apFieldDefaultAnswer))
	if err != nil {
		return cfg, "", err
	}
	cfg.defaultBody = def
	key := sha256.Sum256([]byte(cfg.client.auth))
	fp := fmt.Sprintf("%x|%s|%+v|%v|%v|%v|%v|%v|%v|%d|%d|%d|%v|%d|%s", key, base, cfg.client.params,
		cfg.ttl, cfg.emptyTTL, cfg.staleWhileRevalidate, cfg.staleIfError, cfg.timeout, cfg.upstreamTimeout,
		cfg.perMinute, cfg.burst, cfg.prewarmKeep, cfg.throttlePause, cfg.maxEntries, def)
	return cfg, fp, nil
}

// newHTTPClient returns the client of the calls to Amplitude: connections
// kept for a whole burst, and redirects not followed (Amplitude redirects plain
// HTTP with a 301; the key must not follow it).
func newHTTPClient(burst int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(burst, 2)
	return &http.Client{Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// defaultBody checks the default answer and returns it with
// "source":"default" first.
func defaultBody(raw string) ([]byte, error) {
	raw = strings.TrimSpace(raw)
	if !gjson.Valid(raw) || !gjson.Parse(raw).IsObject() {
		return nil, errors.New("amplitude_profile: default_answer must be a JSON object")
	}
	if gjson.Get(raw, "source").Exists() {
		return nil, errors.New("amplitude_profile: default_answer must not have a top-level \"source\" (it is set to \"default\")")
	}
	rest := strings.TrimSpace(raw[1:])
	if rest != "}" {
		rest = "," + rest
	}
	return []byte(`{"source":"default"` + rest), nil
}

// registry holds the engines shared by name in this process.
var registry = struct {
	sync.Mutex
	m map[string]*sharedRef
}{m: map[string]*sharedRef{}}

type sharedRef struct {
	eng         *engine
	fingerprint string
	refs        int
}

// sharedEngine returns the engine called name (made by mk when it is the
// first) and the function releasing it, which reports whether it was the
// last user. An empty name is never shared.
func sharedEngine(name, fingerprint string, mk func() *engine) (*engine, func() (last bool), error) {
	if name == "" {
		return mk(), func() bool { return true }, nil
	}
	registry.Lock()
	defer registry.Unlock()
	r := registry.m[name]
	if r == nil {
		r = &sharedRef{eng: mk(), fingerprint: fingerprint}
		registry.m[name] = r
	} else if r.fingerprint != fingerprint {
		return nil, nil, fmt.Errorf("amplitude_profile: another amplitude_profile named %q has different settings; processors sharing a name must have the same settings (except mode and the message fields)", name)
	}
	r.refs++
	var once sync.Once
	return r.eng, func() (last bool) {
		once.Do(func() {
			registry.Lock()
			defer registry.Unlock()
			if r.refs--; r.refs == 0 {
				delete(registry.m, name)
				last = true
			}
		})
		return last
	}, nil
}

// query reads the query of a message.
func (p *processor) query(msg *service.Message) (Query, error) {
	var q Query
	var err error
	for _, f := range []struct {
		dst *string
		f   idField
	}{{&q.UserID, p.userID}, {&q.DeviceID, p.deviceID}, {&q.RecID, p.recID}, {&q.RecType, p.recType}, {&q.CompID, p.compID}} {
		if *f.dst, err = f.f.get(msg); err != nil {
			return q, fmt.Errorf("amplitude_profile: %w", err)
		}
		if len(*f.dst) > maxIDBytes {
			return q, fmt.Errorf("amplitude_profile: a field is longer than %d bytes", maxIDBytes)
		}
	}
	if q.UserID == "" && q.DeviceID == "" {
		return q, errNoID
	}
	return q, nil
}

// ProcessBatch answers (or prewarms) every message; the lookups of a batch
// run concurrently, so that a batch takes at most one timeout.
func (p *processor) ProcessBatch(ctx context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	if len(batch) == 1 {
		p.one(ctx, batch[0])
		return []service.MessageBatch{batch}, nil
	}
	var wg sync.WaitGroup
	for _, msg := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.one(ctx, msg)
		}()
	}
	wg.Wait()
	return []service.MessageBatch{batch}, nil
}

func (p *processor) one(ctx context.Context, msg *service.Message) {
	q, err := p.query(msg)
	if err != nil {
		msg.SetError(err)
		return
	}
	if p.mode == modePrewarm {
		out, err := p.eng.warm(ctx, q)
		if err != nil {
			msg.SetError(fmt.Errorf("amplitude_profile: prewarm interrupted: %w", err))
			return
		}
		msg.MetaSetMut(MetaSource, string(out))
		return
	}
	mctx := msg.Context()
	if _, ok := mctx.Deadline(); !ok {
		mctx = ctx
	}
	a := p.eng.serve(mctx, q)
	msg.SetBytes(a.body)
	msg.MetaSetMut(MetaSource, a.source)
	if a.reason != "" {
		msg.MetaSetMut(MetaReason, a.reason)
	}
}

// Close releases the shared engine; the last one waits for the calls in
// flight (bounded by upstream_timeout).
func (p *processor) Close(context.Context) error {
	if p.release() {
		p.eng.flying.Wait()
	}
	return nil
}
