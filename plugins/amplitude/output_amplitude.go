package amplitude

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/logthrottle"
	"github.com/opencurrents/currents-amplitude/plugins/internal/redact"
	"github.com/opencurrents/currents-amplitude/plugins/internal/wait"
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
)

// Values of the region and endpoint fields.
const (
	regionUS       = "us"
	regionEU       = "eu"
	endpointHTTPV2 = "http_v2"
	endpointBatch  = "batch"
)

// endpointURLs are Amplitude's ingestion URLs by region and endpoint
// (amplitude-api.md §1).
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

// reasonInterrupted labels events given back because the write was cancelled
// (shutdown) before they were delivered.
const reasonInterrupted = "interrupted"

// amplitudeOutputDescription is the long description of the amplitude output.
const amplitudeOutputDescription = "" +
	"Each message must be one Amplitude event object, such as the output of the `braze_to_amplitude` processor. " +
	"Messages are packed into requests of at most 2000 events and 1 MB (HTTP V2) or 20 MB (Batch), counted on the " +
	"uncompressed JSON.\n\n" +
	"Before sending, ids Amplitude always refuses (shorter than `min_id_length`, or a placeholder such as \"null\", " +
	"\"undefined\", \"0\", \"-1\" or an all-zero id) are removed from the event. Events left with neither `user_id` nor " +
	"`device_id`, without `event_type`, with a non-integer `time`, or that are not JSON objects fail.\n\n" +
	"Answers are handled as Amplitude documents:\n\n" +
	"- 2xx: the events are acknowledged.\n" +
	"- 400 naming events: only those messages fail, with the reason; the others are re-sent at once. 400 for the " +
	"whole request (missing field, invalid API key): every message fails. 400 or other 4xx naming no event: the " +
	"request is halved until the refused event is isolated.\n" +
	"- 413: the request is halved and re-sent; a single event still refused fails.\n" +
	"- 429: events of ids over their daily quota fail; events of throttled devices and users are held for " +
	"`throttle_hold` and re-sent, while events of other ids, in this batch and in others, keep flowing.\n" +
	"- 5xx, 408, a 429 naming nobody, timeouts and connection errors: the request is retried with exponential " +
	"back-off and jitter (`backoff`), with the same `insert_id`s so Amplitude de-duplicates. When the back-off runs " +
	"out, the remaining messages fail (`retries_exhausted`) and are nacked, never dropped.\n\n" +
	"Failed messages are reported individually, so a `fallback` output can route exactly those to a dead-letter " +
	"output. Their error, available there as `@fallback_error`, reads `amplitude (<reason>): <detail>`, with reason " +
	"one of invalid_event, missing_fields, invalid_fields, invalid_id_length, silenced, daily_quota, " +
	"payload_too_large, rejected, request_refused, retries_exhausted, interrupted. (Metadata an output sets does not " +
	"reach the next `fallback` tier: copy `@fallback_error` into `@amplitude_error` there, as in the example.) With " +
	"output-level `batching`, Benthos reports failures per upstream transaction (a message read in a batch fails " +
	"with its batch).\n\n" +
	"### Metrics\n\n" +
	"- `amplitude_events_sent`: events put in requests (re-sends included).\n" +
	"- `amplitude_events_ingested`: events acknowledged by Amplitude.\n" +
	"- `amplitude_events_failed` (label `reason`): events that failed, by reason.\n" +
	"- `amplitude_events_retried`: events re-sent after a 5xx, timeout or connection error.\n" +
	"- `amplitude_events_throttled`: events held after a 429.\n" +
	"- `amplitude_ids_removed` (label `field`: `user_id` or `device_id`): ids removed before sending because Amplitude " +
	"refuses them (the event went with its other id); a warning with the last reason is logged at most every 10 s.\n" +
	"- `amplitude_requests` (label `status`: the HTTP status, or `error`): requests sent.\n" +
	"- `amplitude_request_latency_ns`: request round trip time.\n\n" +
	"The API key is never logged, and is removed from any answer quoted in errors and logs."

func amplitudeOutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("Sends Amplitude events (one JSON object per message) to Amplitude's HTTP V2 or Batch Event Upload API, without losing any.").
		Description(amplitudeOutputDescription+service.OutputPerformanceDocs(true, true)).
		Fields(
			service.NewStringField(aoFieldAPIKey).
				Description("The Amplitude project API key (sent in the request body).").
				Example("${AMPLITUDE_API_KEY}").
				Default("").
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
				Description("A full URL that replaces the one `region` and `endpoint` select, for proxies and tests. The request limits of `endpoint` still apply.").
				Example("http://localhost:8080/2/httpapi").
				Default("").
				Advanced(),
			service.NewIntField(aoFieldMinIDLength).
				Description("The minimum length of `user_id` and `device_id`, sent to Amplitude as `options.min_id_length`; shorter ids are removed from events before sending.").
				Example(3).
				Default(5),
			service.NewBatchPolicyField(aoFieldBatching),
			service.NewOutputMaxInFlightField(),
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
				Description("How long events of a device or user Amplitude throttled (429) wait before they are re-sent. `0s` means Amplitude's recommendation: 30s for `http_v2`, 15s for `batch`.").
				Example("30s").
				Default("0s").
				Advanced(),
			service.NewBoolField(aoFieldGzip).
				Description("Compress request bodies with gzip (`Content-Encoding: gzip`). Limits still apply to the uncompressed JSON.").
				Example(true).
				Default(false),
			service.NewTLSToggledField(aoFieldTLS),
		).
		Example("Forward events with a dead-letter file",
			"Events Amplitude refuses, and events still undelivered when the back-off runs out, go to a file with the reason.",
			`
output:
  fallback:
    - amplitude:
        api_key: ${AMPLITUDE_API_KEY}
        region: us
        batching:
          count: 500
          period: 1s
    - file:
        path: ./amplitude-dlq.jsonl
        codec: lines
      processors:
        - mapping: |
            meta amplitude_error = @fallback_error
            root = this
            root._amplitude_error = @fallback_error
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
	sent, ingested, retried, throttled *service.MetricCounter
	failed                             *service.MetricCounter // label reason
	idsRemoved                         *service.MetricCounter // label field
	requests                           *service.MetricCounter // label status
	latency                            *service.MetricTimer
}

func newOutputMetrics(m *service.Metrics) outputMetrics {
	return outputMetrics{
		sent:       m.NewCounter("amplitude_events_sent"),
		ingested:   m.NewCounter("amplitude_events_ingested"),
		retried:    m.NewCounter("amplitude_events_retried"),
		throttled:  m.NewCounter("amplitude_events_throttled"),
		failed:     m.NewCounter("amplitude_events_failed", "reason"),
		idsRemoved: m.NewCounter("amplitude_ids_removed", "field"),
		requests:   m.NewCounter("amplitude_requests", "status"),
		latency:    m.NewTimer("amplitude_request_latency_ns"),
	}
}

// amplitudeOutput is the amplitude BatchOutput.
type amplitudeOutput struct {
	url      string
	builder  *requestBuilder
	client   *http.Client
	timeout  time.Duration
	backoff  backoff.ExponentialBackOff // template, copied per batch
	hold     time.Duration
	gzip     bool
	holds    *holds
	redactor redact.Redactor
	log      *service.Logger
	metrics  outputMetrics
	// removedWarn reports ids removed before sending.
	removedWarn logthrottle.Warner
	bufs        sync.Pool // *[]byte request bodies
}

func newAmplitudeOutputFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*amplitudeOutput, error) {
	apiKey, err := conf.FieldString(aoFieldAPIKey)
	if err != nil {
		return nil, err
	}
	if apiKey == "" {
		return nil, errors.New("api_key must be set")
	}
	region, err := conf.FieldString(aoFieldRegion)
	if err != nil {
		return nil, err
	}
	endpoint, err := conf.FieldString(aoFieldEndpoint)
	if err != nil {
		return nil, err
	}
	target, ok := endpointURLs[region][endpoint]
	if !ok {
		return nil, fmt.Errorf("region must be %q or %q and endpoint %q or %q, got region %q and endpoint %q",
			regionUS, regionEU, endpointHTTPV2, endpointBatch, region, endpoint)
	}
	override, err := conf.FieldString(aoFieldURL)
	if err != nil {
		return nil, err
	}
	if override != "" {
		u, err := url.Parse(override)
		if err != nil {
			return nil, fmt.Errorf("url must be an absolute http or https URL: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("url must be an absolute http or https URL, got %q", u.Redacted())
		}
		target = override
	}
	minIDLength, err := conf.FieldInt(aoFieldMinIDLength)
	if err != nil {
		return nil, err
	}
	if minIDLength < 1 {
		return nil, fmt.Errorf("min_id_length must be at least 1, got %d", minIDLength)
	}
	timeout, err := conf.FieldDuration(aoFieldTimeout)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("timeout must be positive, got %v", timeout)
	}
	bo, err := conf.FieldBackOff(aoFieldBackoff)
	if err != nil {
		return nil, err
	}
	hold, err := conf.FieldDuration(aoFieldThrottleHold)
	if err != nil {
		return nil, err
	}
	if hold < 0 {
		return nil, fmt.Errorf("throttle_hold must not be negative, got %v", hold)
	}
	if hold == 0 {
		hold = defaultThrottleHold[endpoint]
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
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = max(maxInFlight, 2)
	if tlsOn {
		transport.TLSClientConfig = tlsConf
	}
	maxBytes := maxBytesHTTPV2Request
	if endpoint == endpointBatch {
		maxBytes = maxBytesBatchRequest
	}
	return &amplitudeOutput{
		url:      target,
		builder:  newRequestBuilder(apiKey, minIDLength, maxEventsPerRequest, maxBytes),
		client:   &http.Client{Transport: transport},
		timeout:  timeout,
		backoff:  *bo,
		hold:     hold,
		gzip:     gz,
		holds:    newHolds(),
		redactor: redact.New(apiKey),
		log:      mgr.Logger(),
		metrics:  newOutputMetrics(mgr.Metrics()),
	}, nil
}

// idRemoved counts and reports an id removed from an event before sending
// (the event goes with its other id). why is "<field>: <reason>".
func (o *amplitudeOutput) idRemoved(why string) {
	field, _, _ := strings.Cut(why, ":")
	o.metrics.idsRemoved.Incr(1, field)
	o.removedWarn.Warn(o.log, time.Now().UnixNano(),
		"Removed %d user_id/device_id values Amplitude refuses from events, which were sent with their other id (last: %s)", why)
}

// Connect does nothing: requests open connections as needed.
func (o *amplitudeOutput) Connect(context.Context) error { return nil }

// Close releases idle connections.
func (o *amplitudeOutput) Close(context.Context) error {
	o.client.CloseIdleConnections()
	return nil
}

// WriteBatch delivers a batch and reports the messages that failed, each with
// its reason, in a *service.BatchError.
func (o *amplitudeOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	d := &delivery{o: o, errs: map[int]error{}}
	store := make([]event, len(batch))
	ready := make([]*event, 0, len(batch))
	for i, msg := range batch {
		raw, err := msg.AsBytes()
		if err != nil {
			d.fail(i, newEventError(reasonInvalidEvent, "message has no readable body"))
			continue
		}
		if eerr := o.builder.prepare(&store[i], i, raw); eerr != nil {
			d.fail(i, eerr)
			continue
		}
		if ev := &store[i]; ev.removed != "" {
			o.idRemoved(ev.removed)
		}
		ready = append(ready, &store[i])
	}
	d.run(ctx, ready)
	if len(d.errs) == 0 {
		return nil
	}
	idx := make([]int, 0, len(d.errs))
	for i := range d.errs {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	first := d.errs[idx[0]]
	o.log.Warnf("%d of %d events not delivered to Amplitude; first: %v", len(idx), len(batch), first)
	berr := service.NewBatchError(batch, fmt.Errorf("%d of %d events not delivered to Amplitude, first: %w", len(idx), len(batch), first))
	for _, i := range idx {
		berr.Failed(i, d.errs[i])
	}
	return berr
}

// redact removes the API key from text quoted from an answer or an error.
func (o *amplitudeOutput) redact(s string) string {
	return o.redactor.String(s)
}

// send posts one request and classifies the answer.
func (o *amplitudeOutput) send(ctx context.Context, events []*event) outcome {
	bufp, _ := o.bufs.Get().(*[]byte)
	if bufp == nil {
		bufp = new([]byte)
	}
	defer o.bufs.Put(bufp)
	*bufp = o.builder.build((*bufp)[:0], events)
	body := *bufp
	if o.gzip {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		_, _ = zw.Write(body)
		_ = zw.Close()
		body = zb.Bytes()
	}
	rctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, o.url, bytes.NewReader(body))
	if err != nil {
		return outcome{verdict: verdictFatal, message: "cannot build request: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "*/*")
	if o.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	o.metrics.sent.Incr(int64(len(events)))
	start := time.Now()
	res, err := o.client.Do(req)
	if err != nil {
		o.metrics.latency.Timing(time.Since(start).Nanoseconds())
		o.metrics.requests.Incr(1, "error")
		return outcome{verdict: verdictRetry, message: "request failed: " + err.Error()}
	}
	answer, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	_ = res.Body.Close()
	o.metrics.latency.Timing(time.Since(start).Nanoseconds())
	o.metrics.requests.Incr(1, strconv.Itoa(res.StatusCode))
	if err != nil {
		return outcome{verdict: verdictRetry, status: res.StatusCode, message: "reading the answer failed: " + err.Error()}
	}
	return classify(res.StatusCode, answer, len(events))
}

// heldEvent is an event waiting for a throttle hold to end.
type heldEvent struct {
	ev    *event
	until time.Time
}

// delivery is the state of one WriteBatch: requests to send, events held
// after a 429, and the errors of failed messages.
type delivery struct {
	o     *amplitudeOutput
	errs  map[int]error
	queue [][]*event
	held  []heldEvent
	bo    backoff.ExponentialBackOff
	// giveUp is when events still held by a throttle fail instead of being
	// held again: the back-off's maximum elapsed time after the write began
	// (zero: never).
	giveUp time.Time
}

func (d *delivery) fail(index int, err *eventError) {
	d.errs[index] = err
	d.o.metrics.failed.Incr(1, err.reason)
}

func (d *delivery) failAll(events []*event, err *eventError) {
	for _, e := range events {
		d.fail(e.index, err)
	}
}

// holdEvent parks an event until t.
func (d *delivery) holdEvent(e *event, t time.Time) {
	d.held = append(d.held, heldEvent{ev: e, until: t})
}

// withoutHeld returns the events whose ids are not currently held, parking
// the others.
func (d *delivery) withoutHeld(events []*event) []*event {
	now := time.Now()
	out := events[:0:0]
	for _, e := range events {
		if t, held := d.o.holds.heldUntil(e.idKeys(), now); held {
			d.holdEvent(e, t)
			continue
		}
		out = append(out, e)
	}
	return out
}

// pushFront queues requests to be sent before the others.
func (d *delivery) pushFront(reqs ...[]*event) {
	d.queue = append(reqs, d.queue...)
}

// run sends events until each is delivered or failed, or ctx ends.
func (d *delivery) run(ctx context.Context, events []*event) {
	d.bo = d.o.backoff
	d.bo.Reset()
	if d.bo.MaxElapsedTime > 0 {
		d.giveUp = time.Now().Add(d.bo.MaxElapsedTime)
	}
	d.queue = d.o.builder.split(d.withoutHeld(events))
	for len(d.queue) > 0 || len(d.held) > 0 {
		if len(d.queue) == 0 {
			if !d.waitForHeld(ctx) {
				return
			}
			continue
		}
		req := d.queue[0]
		d.queue = d.queue[1:]
		// Ids throttled since this request was formed wait too.
		if req = d.withoutHeld(req); len(req) == 0 {
			continue
		}
		out := d.o.send(ctx, req)
		if out.verdict != verdictRetry {
			d.bo.Reset()
		}
		if !d.handle(ctx, req, out) {
			return
		}
	}
}

// handle acts on the outcome of a request; false means ctx ended and every
// event left was failed.
func (d *delivery) handle(ctx context.Context, req []*event, out outcome) bool {
	o := d.o
	msg := o.redact(out.message)
	switch out.verdict {
	case verdictOK:
		o.metrics.ingested.Incr(int64(len(req)))
	case verdictPartial:
		o.log.Debugf("Amplitude refused %d of %d events (%d): %s", len(out.failed), len(req), out.status, msg)
		rest := make([]*event, 0, len(req))
		for i, e := range req {
			if err, bad := out.failed[i]; bad {
				d.fail(e.index, err)
				continue
			}
			rest = append(rest, e)
		}
		if len(rest) > 0 {
			d.pushFront(rest)
		}
	case verdictFatal:
		o.log.Errorf("Amplitude refused a request of %d events (%d): %s", len(req), out.status, msg)
		d.failAll(req, newEventError(reasonRequest, fmt.Sprintf("Amplitude refused the request (%d): %s", out.status, msg)))
	case verdictSplit, verdictBisect:
		if len(req) == 1 {
			reason := reasonRejected
			if out.verdict == verdictSplit {
				reason = reasonTooLarge
			}
			d.fail(req[0].index, newEventError(reason, fmt.Sprintf("Amplitude refused the event (%d): %s", out.status, msg)))
			return true
		}
		o.log.Debugf("Amplitude refused a request of %d events (%d): %s; halving it", len(req), out.status, msg)
		half := len(req) / 2
		d.pushFront(req[:half:half], req[half:])
	case verdictThrottled:
		if !d.throttled(req, out) {
			// The 429 names none of these events: a throttle of the
			// destination, to back off from.
			return d.retry(ctx, req, out.status, msg)
		}
	case verdictRetry:
		return d.retry(ctx, req, out.status, msg)
	}
	return true
}

// retry queues req again after a back-off, or fails it when the back-off ran
// out; false means ctx ended and every event left was failed.
func (d *delivery) retry(ctx context.Context, req []*event, status int, msg string) bool {
	o := d.o
	pause := d.bo.NextBackOff()
	if pause == backoff.Stop {
		o.log.Errorf("Giving up on %d events after retries; last answer (%d): %s", len(req), status, msg)
		d.failAll(req, newEventError(reasonRetriesExhausted, fmt.Sprintf("gave up after retries, last answer (%d): %s", status, msg)))
		return true
	}
	o.log.Warnf("Request of %d events failed (%d): %s; retrying in %v", len(req), status, msg, pause.Round(time.Millisecond))
	d.pushFront(req)
	if err := wait.Sleep(ctx, pause); err != nil {
		d.interrupt(err)
		return false
	}
	o.metrics.retried.Incr(int64(len(req)))
	return true
}

// throttled handles a 429 naming events or ids: events of ids over their daily
// quota fail, events of throttled ids are held, the others are re-sent now.
// It returns false, doing nothing, when the answer names none of the events.
func (d *delivery) throttled(req []*event, out outcome) bool {
	now := time.Now()
	until := now.Add(d.o.hold)
	// Ids of named events are throttled even when the body lists no id.
	for _, i := range out.throttled {
		keys := req[i].idKeys()
		if !anyIn(keys, out.quotaIDs) {
			for _, k := range keys {
				out.throttledIDs[k] = true
			}
		}
	}
	throttledKeys := make([]string, 0, len(out.throttledIDs))
	for k := range out.throttledIDs {
		throttledKeys = append(throttledKeys, k)
	}
	d.o.holds.hold(throttledKeys, now, until)
	if !slices.ContainsFunc(req, func(e *event) bool {
		keys := e.idKeys()
		return anyIn(keys, out.quotaIDs) || anyIn(keys, out.throttledIDs)
	}) {
		return false
	}
	rest := make([]*event, 0, len(req))
	var held int
	for _, e := range req {
		keys := e.idKeys()
		switch {
		case anyIn(keys, out.quotaIDs):
			d.fail(e.index, newEventError(reasonDailyQuota, "the event's device or user is over Amplitude's daily quota"))
		case anyIn(keys, out.throttledIDs):
			d.holdEvent(e, until)
			held++
		default:
			rest = append(rest, e)
		}
	}
	d.o.metrics.throttled.Incr(int64(held))
	d.o.log.Debugf("Amplitude throttled %d devices/users: holding %d events for %v, re-sending %d", len(throttledKeys), held, d.o.hold, len(rest))
	if len(rest) > 0 {
		d.pushFront(rest)
	}
	return true
}

func anyIn(keys []string, set map[string]bool) bool {
	for _, k := range keys {
		if set[k] {
			return true
		}
	}
	return false
}

// waitForHeld sleeps until the earliest hold ends and queues the events whose
// hold ended; false means ctx ended and every event left was failed.
func (d *delivery) waitForHeld(ctx context.Context) bool {
	earliest := d.held[0].until
	for _, h := range d.held[1:] {
		if h.until.Before(earliest) {
			earliest = h.until
		}
	}
	if !d.giveUp.IsZero() && time.Now().After(d.giveUp) {
		// Still throttled after being held and re-sent for longer than
		// failures are retried: give the events back (nack) rather than
		// hold a write slot indefinitely.
		e := newEventError(reasonRetriesExhausted, fmt.Sprintf("still throttled by Amplitude after %v", d.bo.MaxElapsedTime))
		for _, h := range d.held {
			d.fail(h.ev.index, e)
		}
		d.held = nil
		return true
	}
	if err := wait.Sleep(ctx, time.Until(earliest)); err != nil {
		d.interrupt(err)
		return false
	}
	now := time.Now()
	var due []*event
	kept := d.held[:0]
	for _, h := range d.held {
		if h.until.After(now) {
			kept = append(kept, h)
			continue
		}
		due = append(due, h.ev)
	}
	d.held = kept
	sort.Slice(due, func(i, j int) bool { return due[i].index < due[j].index })
	d.queue = append(d.queue, d.o.builder.split(d.withoutHeld(due))...)
	return true
}

// interrupt fails every event not yet delivered because ctx ended.
func (d *delivery) interrupt(err error) {
	e := newEventError(reasonInterrupted, "delivery interrupted: "+err.Error())
	for _, req := range d.queue {
		d.failAll(req, e)
	}
	for _, h := range d.held {
		d.fail(h.ev.index, e)
	}
	d.queue, d.held = nil, nil
}
