package amplitude

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/logthrottle"
	"github.com/opencurrents/currents-amplitude/plugins/internal/redact"
	"github.com/opencurrents/currents-amplitude/plugins/internal/speclint"
)

// Field names of the amplitude output.
const (
	aoFieldAPIKey       = "api_key"
	aoFieldRegion       = "region"
	aoFieldEndpoint     = "endpoint"
	aoFieldURL          = "url"
	aoFieldMinIDLength  = "min_id_length"
	aoFieldBatching     = "batching"
	aoFieldTimeout      = "timeout"
	aoFieldBackoff      = "backoff"
	aoFieldThrottleHold = "throttle_hold"
	aoFieldGzip         = "gzip"
	aoFieldTLS          = "tls"
	aoFieldPacing       = "pacing"
	aoFieldHeadroom     = "pacing_headroom"
	aoFieldIDShare      = "pacing_id_share"
	aoFieldDailyQuota   = "daily_quota"
	aoFieldHedgeAfter   = "hedge_after"
	aoFieldStateCache   = "state_cache"
)

// Values of the daily_quota field.
const (
	dailyQuotaHold = "hold"
	dailyQuotaFail = "fail"
)

// alertEvery is the shortest time between two error lines about an outage.
const alertEvery = 10 * time.Second

// Values of the region and endpoint fields.
const (
	regionUS       = "us"
	regionEU       = "eu"
	endpointHTTPV2 = "http_v2"
	endpointBatch  = "batch"
)

// endpointURLs are Amplitude's ingestion URLs by region and endpoint
// (https://amplitude.com/docs/apis/analytics/http-v2#regions,
// https://amplitude.com/docs/apis/analytics/batch-event-upload#regions).
var endpointURLs = map[string]map[string]string{
	regionUS: {endpointHTTPV2: "https://api2.amplitude.com/2/httpapi", endpointBatch: "https://api2.amplitude.com/batch"},
	regionEU: {endpointHTTPV2: "https://api.eu.amplitude.com/2/httpapi", endpointBatch: "https://api.eu.amplitude.com/batch"},
}

// Throttle holds Amplitude recommends per endpoint.
var defaultThrottleHold = map[string]time.Duration{
	endpointHTTPV2: 30 * time.Second,
	endpointBatch:  15 * time.Second,
}

// maxResponseBytes bounds how much of an answer is read.
const maxResponseBytes = 1 << 20

// requestWriteBuffer is the write buffer of each connection to Amplitude:
// large enough for the request of a Braze post (100 events of about 650
// bytes) and its headers, which then go out in one write. With net/http's
// default of 4 KiB the rest of every body is copied through a buffer of up to
// 32 KiB allocated per request (io.Copy from the io.LimitedReader net/http
// wraps a body of known length in); larger bodies still are.
const requestWriteBuffer = 128 << 10

// amplitudeOutputDescription is the long description of the amplitude output.
const amplitudeOutputDescription = "" +
	"Each message must be one Amplitude event object, such as the output of the `braze_to_amplitude` processor. " +
	"Messages are packed into requests of at most 2000 events and 1 MB (HTTP V2) or 20 MB (Batch), counted on the " +
	"uncompressed JSON.\n\n" +
	"Before sending, ids Amplitude always refuses (shorter than `min_id_length`, or a placeholder such as \"null\", " +
	"\"undefined\", \"0\", \"-1\" or an all-zero id) are removed from the event. Events left with neither `user_id` nor " +
	"`device_id`, without `event_type`, with a non-integer `time`, or that are not JSON objects fail. Messages that " +
	"arrive already errored (a processor such as `braze_to_amplitude` could not map them) are not sent: they fail " +
	"with their own reason.\n\n" +
	"### Pacing\n\n" +
	"With `pacing` (on by default) the output keeps, per `device_id` and per `user_id`, the budget Amplitude enforces " +
	"for the endpoint (HTTP V2: 30 events/s; Batch: 1000 events/s averaged over 30 s; both: 500,000 events per " +
	"rolling 24 hours in hourly steps), less `pacing_headroom`, and charges every send attempt to it: first sends, " +
	"retries, re-sends after a 413 split or a bisection, hedged copies. Half the headroom lowers the rate, the other " +
	"half is slack: no window of Amplitude's sees more than limit × (1 - headroom/2) events sent (HTTP V2 with the " +
	"default 0.1: 26.5 events/s with bursts of 2, so that an id's second event close behind its first does not wait; " +
	"at most 28 in any second), so that requests bunched on the network still arrive within the limit. Requests " +
	"that bunch by more than that slack (a loaded machine, a slow hop) are caught by the " +
	"arrival guard: an id may send only while fewer than its limit of events (HTTP V2: 30) are in flight or were " +
	"answered within the last window, which keeps every window of arrivals within the limit whatever the delays " +
	"(an id whose answers take a latency L sends at most limit/(window + L) per window; its state shares the id's " +
	"slot with its budget, so that charging an event is one lookup per id). A request never carries an event its id " +
	"has no budget for: " +
	"such events wait (in their write) while the events of every other id, in the same write and in others, are sent. " +
	"No events are queued beyond the writes in flight, so at most `max_in_flight` × the batch size events wait at " +
	"once; when they do, the output takes no more messages (backpressure) rather than buffer or drop. The waiting events " +
	"of one id may be bounded to `pacing_id_share` of the writes (the default, 1, " +
	"is no bound; the shipped live and Kafka pipelines set 0.25: see the field): its further events that would " +
	"have to wait are nacked at once (`deferred`) and redelivered by the input, so that one hot device's backlog " +
	"cannot stop the output from taking the messages of every other device. The budgets and the guard " +
	"take one slot per tracked id, 32 bytes on HTTP V2 and 48 on Batch, 43 to 64 and 64 to 96 bytes with the table's " +
	"fill (62 at 10^6 ids on HTTP V2), whatever the id's length, held outside the Go heap on Linux (so not " +
	"doubled by the garbage collector); an id is forgotten once its budget and guard are idle (about a second after " +
	"it last sent on HTTP V2), its count of the hour kept in a fixed 4 MiB sketch for the daily quota, so that the " +
	"table holds the ids active within the last window, not every id of the hour. A wait that would end " +
	"after the write's deadline " +
	"nacks the events at once instead (`throttled`).\n\n" +
	"### Answers\n\n" +
	"Answers are classified in one place. Only refusals that are the events' own fault fail events:\n\n" +
	"- 2xx: the events are acknowledged; a 2xx whose `events_ingested` is lower than the events sent is counted " +
	"(`amplitude_events_unconfirmed_total`) and logged.\n" +
	"- 400 naming events: only those messages fail, with the reason; the others are re-sent at once. Devices in " +
	"`silenced_devices` are remembered: their later events fail without being sent. Throttled ids and events in a " +
	"400 are held as after a 429.\n" +
	"- 400 (or another JSON 4xx) naming no event: the request is halved until the refused event is isolated; an event " +
	"refused alone twice fails (`rejected`).\n" +
	"- 413: the request is halved and re-sent; a single event still refused fails (`payload_too_large`).\n" +
	"- 429: throttled devices and users are held for `throttle_hold` (or the `Retry-After` Amplitude sends) while " +
	"events of other ids keep flowing; ids over their daily quota are remembered until the next hourly step and their " +
	"events held (`daily_quota: hold`) or failed (`daily_quota: fail`).\n" +
	"- Outages, retried with exponential back-off and jitter (`backoff`) with the same `insert_id`s so Amplitude " +
	"de-duplicates, then nacked (never dropped, never dead-lettered): 5xx, 408, a 429 naming nobody, 401, 403, 404, " +
	"an invalid or missing API key, any HTML answer (a proxy, WAF or captive portal), timeouts, connection errors. " +
	"An invalid API key therefore stops the stream (and logs an error) instead of failing every event.\n" +
	"- Withdrawn: an event whose message context ends before it is sent (`kafka_franz` cancels it when the record's " +
	"partition is revoked or the stream stops) is not sent any more, even once its budget allows: it is nacked " +
	"(reason `abandoned`, logged at debug level, no alert) and its input delivers it again.\n\n" +
	"### Failures\n\n" +
	"With a `dead_letter` output, events that fail for a reason of their own (invalid_event, missing_fields, " +
	"invalid_fields, invalid_id_length, silenced, daily_quota, payload_too_large, rejected, or the reason of a message " +
	"errored upstream) are written there once (by `insert_id`) and acknowledged; outages are nacked. If the " +
	"dead-letter write fails, the messages are nacked too.\n\n" +
	"Without it, every failed message is reported to Benthos individually (a batch error), so `fallback`, `switch` or " +
	"`reject_errored` can route them. The error of an event fault is a typed dead-letter error reading " +
	"`<reason>: <detail>`; the error of an outage reads `amplitude outage (<reason>): <detail>` with reason " +
	"retries_exhausted, interrupted, throttled, abandoned or deferred. With output-level `batching`, Benthos reports failures per upstream " +
	"transaction.\n\n" +
	"Logs: one line per failed write, with the reason and the counts: a warning for events dead-lettered or failed, an " +
	"error (at most one every 10 s) for an outage, which needs a person.\n\n" +
	"### Metrics\n\n" +
	"- `amplitude_events_sent_total`: events put in requests (re-sends included).\n" +
	"- `amplitude_events_ingested_total`: events acknowledged by Amplitude.\n" +
	"- `amplitude_events_unconfirmed_total`: events of 2xx answers beyond their `events_ingested`.\n" +
	"- `amplitude_events_failed_total` (label `reason`): events that failed for a reason of their own.\n" +
	"- `amplitude_events_nacked_total` (label `reason`): events given back to the input by an outage (or withdrawn by it: `abandoned`; or deferred by `pacing_id_share`: `deferred`).\n" +
	"- `amplitude_events_retried_total`: events re-sent after an outage-like answer.\n" +
	"- `amplitude_events_throttled_total`: events held after a 429.\n" +
	"- `amplitude_events_paced_total`: times an event waited for its id's budget.\n" +
	"- `amplitude_hedges_total`: copies of requests sent because earlier attempts had no answer (see `hedge_after`).\n" +
	"- `amplitude_hedge_wins_total`: hedged requests whose answer came from a copy rather than the first attempt.\n" +
	"- `amplitude_ids_removed_total` (label `field`: `user_id` or `device_id`): ids removed before sending because " +
	"Amplitude refuses them (the event went with its other id); a warning with the last reason is logged at most every 10 s.\n" +
	"- `amplitude_requests_total` (label `status`: the HTTP status, or `error`): requests sent.\n" +
	"- `amplitude_request_seconds`: request round trip time.\n\n" +
	"The API key is never logged, and is removed from any answer quoted in errors and logs before it is cut to length."

func amplitudeOutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		LintRule(speclint.Rule(speclint.Required(aoFieldAPIKey, "the Amplitude project's API key"))).
		Categories("Services").
		Summary("Sends Amplitude events (one JSON object per message) to Amplitude's HTTP V2 or Batch Event Upload API, within its per-device limits, without losing any.").
		Description(amplitudeOutputDescription+service.OutputPerformanceDocs(true, true)).
		Fields(
			service.NewStringField(aoFieldAPIKey).
				Description("The Amplitude project API key (sent in the request body).").
				Example("${AMPLITUDE_API_KEY}").
				Secret(),
			service.NewStringEnumField(aoFieldRegion, regionUS, regionEU).
				Description("The Amplitude data centre of the project: `us` (api2.amplitude.com) or `eu` (api.eu.amplitude.com).").
				Example(regionEU).
				Default(regionUS),
			service.NewStringEnumField(aoFieldEndpoint, endpointHTTPV2, endpointBatch).
				Description("The ingestion API: `http_v2` (/2/httpapi, 30 events/s per device, 1 MB requests) or `batch` (/batch, 1000 events/s per device, 20 MB requests; for backfills and busy devices).").
				Example(endpointBatch).
				Default(endpointHTTPV2),
			service.NewStringField(aoFieldURL).
				Description("A full URL that replaces the one `region` and `endpoint` select, for proxies and tests. The request limits and budgets of `endpoint` still apply.").
				Example("http://localhost:8080/2/httpapi").
				Default("").
				Advanced(),
			service.NewIntField(aoFieldMinIDLength).
				Description("The minimum length of `user_id` and `device_id`, sent to Amplitude as `options.min_id_length`; shorter ids are removed from events before sending.").
				Example(3).
				Default(5),
			service.NewBatchPolicyField(aoFieldBatching),
			service.NewOutputMaxInFlightField().
				Description("The maximum number of writes (batches) in flight. It also bounds the events waiting for their id's budget or a 429 hold: they wait inside their write, so at most `max_in_flight` × the batch size at once; then the output takes no more messages (backpressure). One id's waiting events hold at most `pacing_id_share` of them."),
			service.NewDurationField(aoFieldTimeout).
				Description("The time limit of one request; a request that times out is retried.").
				Example("30s").
				Default("10s"),
			service.NewBackOffField(aoFieldBackoff, true, &backoff.ExponentialBackOff{
				InitialInterval: 500 * time.Millisecond,
				MaxInterval:     30 * time.Second,
				MaxElapsedTime:  5 * time.Minute,
			}),
			service.NewDurationField(aoFieldThrottleHold).
				Description("How long events of a device or user Amplitude throttled (429) wait before they are re-sent, unless Amplitude sends `Retry-After`. `0s` means Amplitude's recommendation: 30s for `http_v2`, 15s for `batch`. Never longer than the write can wait: events whose hold would end after the write's deadline are nacked at once.").
				Example("30s").
				Default("0s").
				Advanced(),
			service.NewBoolField(aoFieldPacing).
				Description("Keep Amplitude's per-device and per-user budgets of the endpoint locally and charge every send attempt to them, so that Amplitude does not need to throttle (see Pacing). Turn off only behind a proxy that paces itself.").
				Example(false).
				Default(true),
			service.NewFloatField(aoFieldHeadroom).
				Description("The share of each budget kept unused, in [0, 0.5], so that network jitter (requests arriving closer together than they were sent) does not produce 429s: the rate is the limit × (1 - headroom) and the burst the limit's window × headroom/2, so no window holds more than limit × (1 - headroom/2) events as sent; where that burst is under 2 events (`http_v2` below 0.13), it is 2 and the rate is lowered to keep the same bound. 0.1 sends at most 26.5 events/s per device on `http_v2`, two at once, at most 28 in any second. `0` sends at the limit, one event at a time, with no slack.").
				Example(0.2).
				Default(0.1).
				Advanced(),
			service.NewFloatField(aoFieldIDShare).
				Description("The share of the `max_in_flight` writes that the waiting events of one `device_id` (or, without one, `user_id`) may hold, in (0, 1]: at least one write. An event that must wait for its id's budget while its id already holds that many writes is not waited for: it is nacked at once (reason `deferred`, no alert, a warning at most every 10 s), its error saying when its id's waiting events will have been sent at the id's rate (read by `kafka_franz`, `replay_nacks` and `braze_currents_http`'s Retry-After through a `RetryAfter()` method), and its input delivers it again later, so one hot device's backlog cannot take every write slot and stop the output from taking messages of every other device. The input must redeliver nacked messages (`kafka_franz` redelivers only the ones named, after a back-off; the HTTP input answers an error and the sender re-sends the request). `1` (the default) lets one id's backlog hold every write (backpressure): what replays and backfills want, where every id is hot, and the only safe setting behind a plain `fallback` (which would route deferred events like any failure) or an input that loses nacked messages: Benthos' own `file` input can lose a nack that comes after its last file was read (wrap it in `replay_nacks`). The shipped live and Kafka pipelines set 0.25 (16 of 64 writes).").
				Example(0.25).
				Default(1.0).
				Advanced(),
			service.NewStringEnumField(aoFieldDailyQuota, dailyQuotaHold, dailyQuotaFail).
				Description("What becomes of events of ids Amplitude reports over their daily quota: `hold` keeps them until the next hourly step (nacking them when the write cannot wait that long, so the input keeps them), `fail` fails them (`daily_quota`: dead-lettered with `dead_letter`).").
				Example(dailyQuotaFail).
				Default(dailyQuotaHold),
			service.NewDurationField(aoFieldHedgeAfter).
				Description("When a request has had no answer for this long, send a copy and take the first answer that is not a failure: a request that hangs then costs about `hedge_after`, not `timeout`. Safe because Amplitude de-duplicates by `insert_id`. While the first attempt is in flight, another copy follows after twice the previous wait when the copy hangs too, or after a back-off when a copy fails; at most 3 attempts at once. Every copy is charged to the budgets: when they have no room it waits until they do (never sent over budget, never dropped). Set it well above the normal latency; `0s` turns hedging off.").
				Example("5s").
				Default("2s").
				Advanced(),
			service.NewStringField(aoFieldStateCache).
				Description("The name of a cache resource in which the ids Amplitude reported over their daily quota are kept until their next hourly step (read at connect, written when the set changes), so that after a restart their events are held instead of re-sent. Holds ids and times only. Empty: kept in memory only.").
				Example("amplitude_state").
				Default("").
				Advanced(),
			service.NewBoolField(aoFieldGzip).
				Description("Compress request bodies with gzip (`Content-Encoding: gzip`). Limits still apply to the uncompressed JSON.").
				Example(true).
				Default(false),
			service.NewTLSToggledField(aoFieldTLS),
			deadletter.OutputField(),
			deadletter.StateField(),
		).
		Example("Forward events with a dead-letter file",
			"Events Amplitude refuses for a reason of their own go to a file, once each, with the reason; during an outage the messages are nacked and the input keeps them.",
			`
output:
  amplitude:
    api_key: ${AMPLITUDE_API_KEY}
    region: us
    batching:
      count: 500
      period: 1s
    dead_letter:
      file:
        path: ./amplitude-dlq.jsonl
        codec: lines
`)
}

func init() {
	service.MustRegisterBatchOutput("amplitude", amplitudeOutputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (out service.BatchOutput, pol service.BatchPolicy, maxInFlight int, err error) {
			if maxInFlight, err = conf.FieldMaxInFlight(); err != nil {
				return
			}
			if pol, err = conf.FieldBatchPolicy(aoFieldBatching); err != nil {
				return
			}
			out, err = newAmplitudeOutputFromParsed(conf, mgr)
			return
		})
}

// outputMetrics are the amplitude_* metrics.
type outputMetrics struct {
	sent, ingested, retried, throttled, paced, unconfirmed *service.MetricCounter
	hedges, hedgeWins                                      *service.MetricCounter
	failed                                                 *service.MetricCounter // label reason
	nacked                                                 *service.MetricCounter // label reason
	idsRemoved                                             *service.MetricCounter // label field
	requests                                               *service.MetricCounter // label status
	latency                                                *service.MetricTimer
}

func newOutputMetrics(m *service.Metrics) outputMetrics {
	return outputMetrics{
		sent:        m.NewCounter("amplitude_events_sent_total"),
		ingested:    m.NewCounter("amplitude_events_ingested_total"),
		retried:     m.NewCounter("amplitude_events_retried_total"),
		throttled:   m.NewCounter("amplitude_events_throttled_total"),
		paced:       m.NewCounter("amplitude_events_paced_total"),
		unconfirmed: m.NewCounter("amplitude_events_unconfirmed_total"),
		hedges:      m.NewCounter("amplitude_hedges_total"),
		hedgeWins:   m.NewCounter("amplitude_hedge_wins_total"),
		failed:      m.NewCounter("amplitude_events_failed_total", "reason"),
		nacked:      m.NewCounter("amplitude_events_nacked_total", "reason"),
		idsRemoved:  m.NewCounter("amplitude_ids_removed_total", "field"),
		requests:    m.NewCounter("amplitude_requests_total", "status"),
		latency:     m.NewTimer("amplitude_request_seconds"),
	}
}

// amplitudeOutput is the amplitude BatchOutput.
type amplitudeOutput struct {
	url        string
	builder    *requestBuilder
	client     *http.Client
	timeout    time.Duration
	hedgeAfter time.Duration              // 0: no hedging
	backoff    backoff.ExponentialBackOff // template, copied per batch
	hold       time.Duration
	gzip       bool
	quotaFails bool
	holds      *holds
	silenced   silencedSet
	pacer      *pacer // budgets and arrival guard (arrivals.go); nil: pacing off
	waiting    waiters
	// idWrites is how many writes the waiting events of one id may hold
	// (0: all of them); see pacing_id_share.
	idWrites   int32
	deadLetter *deadletter.Writer
	state      quotaState
	clock      clock.Clock
	redactor   redact.Redactor
	log        *service.Logger
	metrics    outputMetrics
	// removedWarn reports ids removed before sending; unconfirmedWarn 2xx
	// answers ingesting fewer events than sent; alerts outages.
	removedWarn     logthrottle.Warner
	unconfirmedWarn logthrottle.Warner
	// deferredWarn reports events deferred by pacing_id_share.
	deferredWarn logthrottle.Warner
	alerts       alerter
	bufs         sync.Pool // *[]byte request bodies
}

// outputConfig is the parsed configuration, validated by validate.
type outputConfig struct {
	apiKey, region, endpoint, url string
	stateCache, quota             string
	minIDLength                   int
	timeout, hold, hedgeAfter     time.Duration
	headroom, idShare             float64
}

// check is one rule of validate: the error when ok is false.
type check struct {
	ok  bool
	err string
}

// validate checks the configuration against a table of rules (as franz-go's
// kgo validates its limits) and returns the first broken one.
func (c *outputConfig) validate() error {
	_, known := endpointURLs[c.region][c.endpoint]
	for _, r := range []check{
		{c.apiKey != "", "api_key must be set"},
		{known, fmt.Sprintf("region must be %q or %q and endpoint %q or %q, got region %q and endpoint %q",
			regionUS, regionEU, endpointHTTPV2, endpointBatch, c.region, c.endpoint)},
		{c.minIDLength >= 1, fmt.Sprintf("min_id_length must be at least 1, got %d", c.minIDLength)},
		{c.timeout > 0, fmt.Sprintf("timeout must be positive, got %v", c.timeout)},
		{c.hold >= 0, fmt.Sprintf("throttle_hold must not be negative, got %v", c.hold)},
		{c.hedgeAfter >= 0, fmt.Sprintf("hedge_after must not be negative, got %v", c.hedgeAfter)},
		{c.quota == dailyQuotaHold || c.quota == dailyQuotaFail, fmt.Sprintf("daily_quota must be %q or %q, got %q", dailyQuotaHold, dailyQuotaFail, c.quota)},
		{c.headroom >= 0 && c.headroom <= 0.5, fmt.Sprintf("pacing_headroom must be within [0, 0.5], got %v", c.headroom)},
		{c.idShare > 0 && c.idShare <= 1, fmt.Sprintf("pacing_id_share must be within (0, 1], got %v", c.idShare)},
	} {
		if !r.ok {
			return errors.New(r.err)
		}
	}
	if c.url != "" {
		u, err := url.Parse(c.url)
		if err != nil {
			return fmt.Errorf("url must be an absolute http or https URL: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("url must be an absolute http or https URL, got %q", u.Redacted())
		}
	}
	return nil
}

func newAmplitudeOutputFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*amplitudeOutput, error) {
	var c outputConfig
	var err error
	str := func(name string, dst *string) {
		if err == nil {
			*dst, err = conf.FieldString(name)
		}
	}
	dur := func(name string, dst *time.Duration) {
		if err == nil {
			*dst, err = conf.FieldDuration(name)
		}
	}
	str(aoFieldAPIKey, &c.apiKey)
	str(aoFieldRegion, &c.region)
	str(aoFieldEndpoint, &c.endpoint)
	str(aoFieldURL, &c.url)
	str(aoFieldDailyQuota, &c.quota)
	str(aoFieldStateCache, &c.stateCache)
	dur(aoFieldTimeout, &c.timeout)
	dur(aoFieldThrottleHold, &c.hold)
	dur(aoFieldHedgeAfter, &c.hedgeAfter)
	if err == nil {
		c.minIDLength, err = conf.FieldInt(aoFieldMinIDLength)
	}
	if err == nil {
		c.headroom, err = conf.FieldFloat(aoFieldHeadroom)
	}
	if err == nil {
		c.idShare, err = conf.FieldFloat(aoFieldIDShare)
	}
	if err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	target := endpointURLs[c.region][c.endpoint]
	if c.url != "" {
		target = c.url
	}
	if c.hold == 0 {
		c.hold = defaultThrottleHold[c.endpoint]
	}
	bo, err := conf.FieldBackOff(aoFieldBackoff)
	if err != nil {
		return nil, err
	}
	pacing, err := conf.FieldBool(aoFieldPacing)
	if err != nil {
		return nil, err
	}
	gz, err := conf.FieldBool(aoFieldGzip)
	if err != nil {
		return nil, err
	}
	tlsConf, tlsOn, err := conf.FieldTLSToggled(aoFieldTLS)
	if err != nil {
		return nil, err
	}
	maxInFlight, err := conf.FieldMaxInFlight()
	if err != nil {
		return nil, err
	}
	dl, err := deadletter.FromParsed(conf, mgr, "amplitude")
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = max(maxInFlight, 2)
	transport.WriteBufferSize = requestWriteBuffer
	if tlsOn {
		transport.TLSClientConfig = tlsConf
	}
	maxBytes := maxBytesHTTPV2Request
	if c.endpoint == endpointBatch {
		maxBytes = maxBytesBatchRequest
	}
	o := &amplitudeOutput{
		url:        target,
		builder:    newRequestBuilder(c.apiKey, c.minIDLength, maxEventsPerRequest, maxBytes),
		client:     &http.Client{Transport: transport},
		timeout:    c.timeout,
		hedgeAfter: c.hedgeAfter,
		backoff:    *bo,
		hold:       c.hold,
		gzip:       gz,
		quotaFails: c.quota == dailyQuotaFail,
		holds:      newHolds(),
		deadLetter: dl,
		state:      quotaState{mgr: mgr, cache: c.stateCache},
		clock:      clock.System,
		redactor:   redact.New(c.apiKey),
		log:        mgr.Logger(),
		metrics:    newOutputMetrics(mgr.Metrics()),
	}
	if pacing {
		o.pacer = newPacer(c.endpoint, c.headroom)
		o.idWrites = idWrites(c.idShare, maxInFlight)
	}
	return o, nil
}

// idWrites is how many of maxInFlight writes the waiting events of one id
// may hold with pacing_id_share share: at least one, and 0 (no bound) when
// the share is all of them.
func idWrites(share float64, maxInFlight int) int32 {
	if share >= 1 {
		return 0
	}
	return int32(max(1, int(share*float64(maxInFlight))))
}

// Connect restores the daily-quota ids from state_cache, if set; requests
// open connections as needed.
func (o *amplitudeOutput) Connect(ctx context.Context) error {
	return o.state.load(ctx, o)
}

// Close releases idle connections and closes the dead_letter output.
func (o *amplitudeOutput) Close(ctx context.Context) error {
	o.client.CloseIdleConnections()
	return o.deadLetter.Close(ctx)
}

// holdThrottled remembers the ids a 429 (or 400) names: throttled ids until
// holdEnd, ids over their daily quota until the next hourly step. Ids of
// events named without ids are throttled too.
func (o *amplitudeOutput) holdThrottled(req []*event, out outcome) {
	now := o.clock.Now()
	throttled := make([]idKey, 0, len(out.throttledIDs)+2*len(out.throttled))
	for k := range out.throttledIDs {
		throttled = append(throttled, k)
	}
	for _, i := range out.throttled {
		if keys := req[i].idKeys(); !anyIn(keys, out.quotaIDs) {
			throttled = append(throttled, keys[:]...)
		}
	}
	o.holds.hold(throttled, now, o.holdEnd(out), false)
	if len(out.quotaIDs) > 0 {
		quota := make([]idKey, 0, len(out.quotaIDs))
		for k := range out.quotaIDs {
			quota = append(quota, k)
		}
		o.holds.hold(quota, now, nextHourlyStep(now), true)
		o.state.save(context.Background(), o)
	}
}

// holdEnd is when ids a 429 throttles may send again: after the Retry-After
// Amplitude asks for, or throttle_hold.
func (o *amplitudeOutput) holdEnd(out outcome) time.Time {
	if out.retryAfter > 0 {
		return o.clock.Now().Add(out.retryAfter)
	}
	return o.clock.Now().Add(o.hold)
}
