package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
	"github.com/opencurrents/currents-amplitude/plugins/internal/logthrottle"
	"github.com/opencurrents/currents-amplitude/plugins/internal/ratelimited"
	"github.com/opencurrents/currents-amplitude/plugins/internal/secrettoken"
	"github.com/opencurrents/currents-amplitude/plugins/internal/trusted"
)

const (
	bchFieldAddress          = "address"
	bchFieldPath             = "path"
	bchFieldToken            = "token"
	bchFieldAcceptedVersions = "accepted_versions"
	bchFieldMaxBodyBytes     = "max_body_bytes"
	bchFieldMaxEvents        = "max_events"
	bchFieldMaxJSONDepth     = "max_json_depth"
	bchFieldMaxInFlight      = "max_in_flight"
	bchFieldTimeout          = "timeout"
	bchFieldRetryAfter       = "retry_after"
	bchFieldCertFile         = "cert_file"
	bchFieldKeyFile          = "key_file"

	// MetaVersion is the metadata key holding the request's
	// Braze-Currents-Version header ("" when absent).
	MetaVersion = "braze_currents_version"

	versionHeader = "Braze-Currents-Version"
	// requestIDHeader carries the request id in every answer, so that a
	// Braze error report can be matched with the log and dead-letter lines.
	requestIDHeader = "X-Request-Id"

	// bodyBufferSize is the initial buffer of a body of unknown length
	// (compressed or chunked): a typical request of 100 events.
	bodyBufferSize = 128 << 10
)

func brazeCurrentsHTTPSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		Categories("Network").
		Summary("Receives Braze Currents events from Braze's HTTP (\"Custom Currents\") connector and answers each request according to Braze's retry contract.").
		Description(`
Braze posts `+"`{\"events\": [...]}`"+` batches (100 events by default) with the headers `+"`Authorization: Bearer <token>`"+` and `+"`Braze-Currents-Version: 1`"+`. Each request becomes ONE message batch, one message per event holding the raw event JSON, and the HTTP response waits for that batch to be acknowledged:

| Situation | Status | What Braze does |
|---|---|---|
| every event delivered, or routed to a dead-letter output | 200 | done |
| empty body or no events (after authentication) | 200 | done |
| missing or wrong bearer token (checked even for empty bodies) | 401 | re-sends later, alerts the customer |
| malformed JSON, JSON nested deeper than `+"`max_json_depth`"+`, or not a `+"`{\"events\": [...]}`"+` object of objects | 400 | splits into single events, drops those refused again |
| body larger than `+"`max_body_bytes`"+`, or more events than `+"`max_events`"+` | 413 | splits into smaller batches |
| `+"`max_in_flight`"+` requests already waiting, or no acknowledgement within `+"`timeout`"+` | 429 (with Retry-After) | retries with backoff |
| the pipeline nacked the batch only because its devices or users are over Amplitude's rate (the `+"`amplitude`"+` output's `+"`deferred`"+` and `+"`throttled`"+` nacks) | 429 (with Retry-After) | retries with backoff |
| the pipeline nacked the batch (e.g. Amplitude unavailable and no dead-letter output took it) | 502 | retries with backoff |
| the input is shutting down | 503 | retries with backoff |
| `+"`Braze-Currents-Version`"+` not in `+"`accepted_versions`"+` | 501 | retries with backoff (nothing is lost while you upgrade) |
| unsupported Content-Encoding | 415 | retries |

Request bodies may be gzip-compressed (`+"`Content-Encoding: gzip`"+`); `+"`max_body_bytes`"+` applies to both the compressed and the decompressed size. Memory is bounded by `+"`max_in_flight`"+` × `+"`max_body_bytes`"+`: the nesting depth is counted in one pass before the body is parsed, so a body nesting JSON millions of levels deep is answered 400 at once.

Invalid UTF-8 in a body (Braze sends UTF-8; a proxy or a custom sender may not) is replaced by U+FFFD before the events are split, so the event sent on and any dead-letter copy of it hold the same valid text.

Every 429 and 5xx answer is logged at warn level with its reason, at most once per 10 s per reason with the number of such answers since the previous line.

Because Braze re-sends a whole request after a 429/5xx, some events of a re-sent request may already be in Amplitude: Amplitude de-duplicates them by `+"`insert_id`"+` (the Currents event `+"`id`"+`), so delivery is effectively exactly once.

On shutdown the input stops taking requests (503), waits for the batches already in the pipeline to be acknowledged and answers them, then closes the listener.

### Metadata

Each message carries `+"`"+MetaVersion+"`"+` (the Braze-Currents-Version header, empty when absent), `+"`"+deadletter.MetaRequestID+"`"+` (an id of the request, also sent back in the `+"`"+requestIDHeader+"`"+` answer header and written in dead-letter records), one key per URL query parameter (Braze lets you tag the source workspace with a query parameter), and `+"`currents_trusted`"+`: a mark, which only this distribution's code can make, that the event was validated here, so that `+"`braze_to_amplitude`"+` does not validate it again (a query parameter of that name is ignored).

### Metrics

`+"`braze_currents_requests_total`"+` (counter, label `+"`status`"+`: the HTTP status code), `+"`braze_currents_events_received_total`"+` (counter), `+"`braze_currents_requests_pending`"+` (gauge: requests waiting for their acknowledgement), `+"`braze_currents_request_latency_seconds`"+` (timer).`).
		Fields(
			service.NewStringField(bchFieldAddress).
				Description("The address to listen on.").
				Default("0.0.0.0:8080").
				Example("127.0.0.1:9000"),
			service.NewStringField(bchFieldPath).
				Description("The URL path Braze posts to (the connector's endpoint URL path). Query parameters are allowed and become metadata.").
				Default("/currents").
				Example("/braze/currents"),
			service.NewStringField(bchFieldToken).
				Description("The bearer token configured in the Braze connector. Every request, even an empty one, must carry `Authorization: Bearer <token>`; it is compared in constant time. Leave empty to accept unauthenticated requests (a warning is logged at start).").
				Default("").
				Example("${BRAZE_CURRENTS_TOKEN}").
				Secret(),
			service.NewStringListField(bchFieldAcceptedVersions).
				Description("Values of the `Braze-Currents-Version` header this input understands. A request without the header is accepted. A request with another version is answered 501 so that Braze keeps it and retries while you upgrade; an empty list accepts every version.").
				Default([]any{"1"}).
				Example([]any{"1", "2"}),
			service.NewIntField(bchFieldMaxBodyBytes).
				Description("The largest request body accepted, in bytes, before and after gzip decompression; larger requests get 413 and Braze splits them.").
				Default(10<<20).
				Example(1<<20),
			service.NewIntField(bchFieldMaxEvents).
				Description("The largest number of events accepted in one request; larger requests get 413 and Braze splits them.").
				Default(1000).
				Example(100),
			service.NewIntField(bchFieldMaxJSONDepth).
				Description("The deepest nesting of JSON objects and arrays accepted in a body, the `{\"events\": [{...}]}` envelope included (3 levels); deeper bodies get 400 before they are parsed.").
				Default(jsonlimit.DefaultMaxDepth).
				Example(32).
				Advanced(),
			service.NewIntField(bchFieldMaxInFlight).
				Description("How many requests may wait for their acknowledgement at once; further requests get 429 at once.").
				Default(64).
				Example(256),
			service.NewDurationField(bchFieldTimeout).
				Description("How long a request may wait for the pipeline to take and acknowledge its events before it is answered 429 (Braze retries; Amplitude de-duplicates what was delivered meanwhile).").
				Default("30s").
				Example("2m"),
			service.NewDurationField(bchFieldRetryAfter).
				Description("The Retry-After value sent with 429, 501 and 503 answers; a 429 for events over their rate that the output says will have room later (the `amplitude` output's `deferred` events) gives that later time, rounded up to a second.").
				Default("5s").
				Example("30s"),
			service.NewStringField(bchFieldCertFile).
				Description("A PEM certificate file to serve HTTPS directly; leave empty for plain HTTP behind a TLS-terminating load balancer.").
				Default("").
				Example("/etc/tls/tls.crt").
				Advanced(),
			service.NewStringField(bchFieldKeyFile).
				Description("The PEM private key file matching `cert_file`.").
				Default("").
				Example("/etc/tls/tls.key").
				Advanced(),
		).
		LintRule(`root = if (this.cert_file.or("") == "") != (this.key_file.or("") == "") { ["cert_file and key_file must be set together"] }`).
		Example("Receive Braze Currents", "Listen on port 8080 for Braze's Custom Currents connector.", `
input:
  braze_currents_http:
    address: 0.0.0.0:8080
    path: /currents
    token: ${BRAZE_CURRENTS_TOKEN}
`)
}

func init() {
	service.MustRegisterBatchInput("braze_currents_http", brazeCurrentsHTTPSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			return newBrazeCurrentsHTTPFromParsed(conf, mgr)
		})
}

// httpConfig is the parsed configuration of the braze_currents_http input.
type httpConfig struct {
	address, path      string
	token              string
	versions           []string
	maxBody, maxEvents int
	maxDepth           int
	maxInFlight        int
	timeout            time.Duration
	retryAfter         time.Duration
	certFile, keyFile  string
}

func newBrazeCurrentsHTTPFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*brazeCurrentsHTTP, error) {
	var c httpConfig
	var err error
	if c.address, err = conf.FieldString(bchFieldAddress); err != nil {
		return nil, err
	}
	if c.path, err = conf.FieldString(bchFieldPath); err != nil {
		return nil, err
	}
	if c.token, err = conf.FieldString(bchFieldToken); err != nil {
		return nil, err
	}
	if c.versions, err = conf.FieldStringList(bchFieldAcceptedVersions); err != nil {
		return nil, err
	}
	if c.maxBody, err = conf.FieldInt(bchFieldMaxBodyBytes); err != nil {
		return nil, err
	}
	if c.maxEvents, err = conf.FieldInt(bchFieldMaxEvents); err != nil {
		return nil, err
	}
	if c.maxDepth, err = conf.FieldInt(bchFieldMaxJSONDepth); err != nil {
		return nil, err
	}
	if c.maxInFlight, err = conf.FieldInt(bchFieldMaxInFlight); err != nil {
		return nil, err
	}
	if c.timeout, err = conf.FieldDuration(bchFieldTimeout); err != nil {
		return nil, err
	}
	if c.retryAfter, err = conf.FieldDuration(bchFieldRetryAfter); err != nil {
		return nil, err
	}
	if c.certFile, err = conf.FieldString(bchFieldCertFile); err != nil {
		return nil, err
	}
	if c.keyFile, err = conf.FieldString(bchFieldKeyFile); err != nil {
		return nil, err
	}
	return newBrazeCurrentsHTTP(c, mgr)
}

// brazeCurrentsHTTP is the braze_currents_http input: an HTTP server whose
// handlers hand each request's events to ReadBatch and answer once the batch
// is acknowledged.
type brazeCurrentsHTTP struct {
	conf  httpConfig
	token secrettoken.Token
	log   *service.Logger
	clock clock.Clock
	// refusals throttles the warning logged for each reason of a 429/5xx
	// answer (the reasons are a fixed set of constant strings).
	refusals sync.Map // string -> *logthrottle.Warner

	srv      *http.Server
	listener net.Listener

	requests chan *pendingRequest
	slots    chan struct{}

	drainOnce, closeOnce sync.Once
	draining             chan struct{} // closed at soft stop: refuse new requests
	closed               chan struct{} // closed by Close: answer whoever still waits

	mRequests *service.MetricCounter
	mEvents   *service.MetricCounter
	mPending  *service.MetricGauge
	mLatency  *service.MetricTimer
	pending   atomic.Int64
}

// pendingRequest is one accepted request whose events travel the pipeline.
type pendingRequest struct {
	batch service.MessageBatch
	res   chan error // buffered: the ack never blocks
}

func newBrazeCurrentsHTTP(c httpConfig, mgr *service.Resources) (*brazeCurrentsHTTP, error) {
	switch {
	case c.address == "":
		return nil, errors.New("address must not be empty")
	case !strings.HasPrefix(c.path, "/"):
		return nil, fmt.Errorf("path %q must start with /", c.path)
	case c.maxBody <= 0:
		return nil, fmt.Errorf("max_body_bytes must be positive, got %d", c.maxBody)
	case c.maxDepth < 3:
		return nil, fmt.Errorf("max_json_depth must be at least 3 (the request envelope), got %d", c.maxDepth)
	case c.maxEvents <= 0:
		return nil, fmt.Errorf("max_events must be positive, got %d", c.maxEvents)
	case c.maxInFlight <= 0:
		return nil, fmt.Errorf("max_in_flight must be positive, got %d", c.maxInFlight)
	case c.timeout <= 0:
		return nil, fmt.Errorf("timeout must be positive, got %v", c.timeout)
	case c.retryAfter < time.Second:
		return nil, fmt.Errorf("retry_after must be at least 1s, got %v", c.retryAfter)
	case (c.certFile == "") != (c.keyFile == ""):
		return nil, errors.New("cert_file and key_file must be set together")
	}
	in := &brazeCurrentsHTTP{
		conf:      c,
		token:     secrettoken.New(c.token),
		log:       mgr.Logger(),
		clock:     clock.System,
		requests:  make(chan *pendingRequest),
		slots:     make(chan struct{}, c.maxInFlight),
		draining:  make(chan struct{}),
		closed:    make(chan struct{}),
		mRequests: mgr.Metrics().NewCounter("braze_currents_requests_total", "status"),
		mEvents:   mgr.Metrics().NewCounter("braze_currents_events_received_total"),
		mPending:  mgr.Metrics().NewGauge("braze_currents_requests_pending"),
		mLatency:  mgr.Metrics().NewTimer("braze_currents_request_latency_seconds"),
	}
	if c.token == "" {
		in.log.Warn("braze_currents_http: no token configured, requests are not authenticated")
	}
	mux := http.NewServeMux()
	mux.Handle(c.path, in)
	in.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       c.timeout,
		IdleTimeout:       2 * time.Minute,
	}
	return in, nil
}

// Connect starts listening; it is idempotent.
func (in *brazeCurrentsHTTP) Connect(context.Context) error {
	if in.listener != nil {
		return nil
	}
	ln, err := net.Listen("tcp", in.conf.address)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", in.conf.address, err)
	}
	in.listener = ln
	go func() {
		var err error
		if in.conf.certFile != "" {
			err = in.srv.ServeTLS(ln, in.conf.certFile, in.conf.keyFile)
		} else {
			err = in.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			in.log.Errorf("braze_currents_http: server stopped: %v", err)
		}
	}()
	in.log.Infof("braze_currents_http: receiving Braze Currents on %s%s", ln.Addr(), in.conf.path)
	return nil
}

// Addr returns the address the input listens on, or nil before Connect.
func (in *brazeCurrentsHTTP) Addr() net.Addr {
	if in.listener == nil {
		return nil
	}
	return in.listener.Addr()
}

// ReadBatch hands the events of the next accepted request to the pipeline;
// the ack answers that request.
func (in *brazeCurrentsHTTP) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	select {
	case p := <-in.requests:
		return p.batch, func(_ context.Context, err error) error {
			select {
			case p.res <- err:
			default: // already answered: acks are delivered once
			}
			return nil
		}, nil
	case <-ctx.Done():
		// Benthos cancels ctx when the stream stops: refuse new requests
		// while the batches already taken are acknowledged.
		in.drain()
		return nil, nil, ctx.Err()
	case <-in.closed:
		return nil, nil, service.ErrEndOfInput
	}
}

func (in *brazeCurrentsHTTP) drain() {
	in.drainOnce.Do(func() { close(in.draining) })
}

// Close answers every request still waiting (503) and stops the server.
func (in *brazeCurrentsHTTP) Close(ctx context.Context) error {
	in.drain()
	in.closeOnce.Do(func() { close(in.closed) })
	if in.listener == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := in.srv.Shutdown(ctx); err != nil {
		return in.srv.Close()
	}
	return nil
}

// ServeHTTP implements the Braze Currents HTTP contract.
func (in *brazeCurrentsHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := in.clock.Now()
	id := newRequestID()
	w.Header().Set(requestIDHeader, id)
	status, msg := in.serve(w, r, id)
	if status != 0 {
		writeAnswer(w, status, msg)
	}
	if status == http.StatusTooManyRequests || status >= 500 && msg != msgNotDelivered { // ackStatus logs 502s with their cause
		in.warnRefusal(status, msg, "", id)
	}
	in.mRequests.Incr(1, strconv.Itoa(status))
	in.mLatency.Timing(in.clock.Now().Sub(start).Nanoseconds())
}

// warnRefusal logs a 429/5xx answer: Braze keeps the request and re-sends
// it. One line per reason (a constant string) per period, with the count
// since the last line and the detail of the last one.
func (in *brazeCurrentsHTTP) warnRefusal(status int, reason, detail, id string) {
	wi, ok := in.refusals.Load(reason)
	if !ok {
		wi, _ = in.refusals.LoadOrStore(reason, &logthrottle.Warner{})
	}
	if detail != "" {
		detail = ": " + detail
	}
	wi.(*logthrottle.Warner).Warn(in.log, in.clock.Now().UnixNano(),
		"braze_currents_http: answered %[1]d request(s) %[2]d (%[3]s%[4]s), Braze keeps and re-sends them (last request id %[5]s)",
		status, reason, detail, id)
}

// newRequestID returns a random 16-hex-digit request id.
func newRequestID() string {
	var b [16]byte
	return string(strconv.AppendUint(b[:0], rand.Uint64()|1<<63, 16)) // 16 digits: top bit set
}

// serve handles one request and returns the status and message to answer
// with (status 0: the client went away, nothing to write).
func (in *brazeCurrentsHTTP) serve(w http.ResponseWriter, r *http.Request, id string) (int, string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return http.StatusMethodNotAllowed, "only POST is accepted"
	}
	if !in.authorized(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="braze-currents"`)
		return http.StatusUnauthorized, "missing or invalid bearer token"
	}
	version := r.Header.Get(versionHeader)
	if !in.versionAccepted(version) {
		in.setRetryAfter(w)
		return http.StatusNotImplemented, fmt.Sprintf("unsupported Braze-Currents-Version (accepted_versions: %v)", in.conf.versions)
	}
	select {
	case <-in.draining:
		in.setRetryAfter(w)
		return http.StatusServiceUnavailable, "shutting down"
	default:
	}
	select {
	case in.slots <- struct{}{}:
		defer func() { <-in.slots }()
	default:
		in.setRetryAfter(w)
		return http.StatusTooManyRequests, "too many requests in flight"
	}

	body, status, err := in.readBody(w, r)
	if err != nil {
		return status, err.Error()
	}
	list := eventLists.Get().(*[][]byte)
	defer putEventList(list)
	events, body, err := in.split((*list)[:0], body)
	*list = events // the grown list is the one to reuse
	if err != nil {
		in.log.Debugf("braze_currents_http: malformed request: %v", err)
		return http.StatusBadRequest, err.Error()
	}
	if len(events) == 0 {
		return http.StatusOK, "no events"
	}
	if len(events) > in.conf.maxEvents {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("%d events exceed max_events %d", len(events), in.conf.maxEvents)
	}
	in.mEvents.Incr(int64(len(events)))

	p := &pendingRequest{batch: in.toBatch(body, events, version, id, r), res: make(chan error, 1)}
	in.addPending(1)
	defer in.addPending(-1)

	timer := in.clock.NewTimer(in.conf.timeout)
	defer timer.Stop()
	select {
	case in.requests <- p:
	case <-timer.C():
		in.setRetryAfter(w)
		return http.StatusTooManyRequests, "pipeline saturated"
	case <-in.draining:
		in.setRetryAfter(w)
		return http.StatusServiceUnavailable, "shutting down"
	case <-r.Context().Done():
		return 0, ""
	}
	select {
	case err := <-p.res:
		return in.ackStatus(w, err, id)
	case <-timer.C():
		in.setRetryAfter(w)
		return http.StatusTooManyRequests, "events not acknowledged in time"
	case <-r.Context().Done():
		return 0, ""
	case <-in.closed:
		select { // an ack that raced with Close wins
		case err := <-p.res:
			return in.ackStatus(w, err, id)
		default:
		}
		in.setRetryAfter(w)
		return http.StatusServiceUnavailable, "shutting down"
	}
}

// msgNotDelivered answers a request whose batch was nacked.
const msgNotDelivered = "events not delivered, retry later"

// msgRateLimited answers a request whose batch was nacked only because its
// devices or users are over Amplitude's rate limits.
const msgRateLimited = "over the rate limit, retry later"

func (in *brazeCurrentsHTTP) ackStatus(w http.ResponseWriter, err error, id string) (int, string) {
	if ratelimited.Only(err) {
		in.warnRefusal(http.StatusTooManyRequests, msgRateLimited, truncate(err.Error(), 300), id)
		in.setRetryAfterAtLeast(w, ratelimited.After(err))
		return http.StatusTooManyRequests, msgRateLimited
	}
	if err != nil {
		// The cause goes to the log only: the answer body reaches Braze's
		// error reports and must not show internals.
		in.warnRefusal(http.StatusBadGateway, msgNotDelivered, truncate(err.Error(), 300), id)
		return http.StatusBadGateway, msgNotDelivered
	}
	return http.StatusOK, "ok"
}

func (in *brazeCurrentsHTTP) addPending(d int64) {
	in.mPending.Set(in.pending.Add(d))
}

// authorized compares the bearer token in constant time; hashing both sides
// first also hides the token's length.
func (in *brazeCurrentsHTTP) authorized(header string) bool {
	if in.conf.token == "" {
		return true
	}
	const prefix = "bearer "
	if len(header) <= len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return false
	}
	return in.token.Matches(strings.TrimSpace(header[len(prefix):]))
}

func (in *brazeCurrentsHTTP) versionAccepted(v string) bool {
	if v == "" || len(in.conf.versions) == 0 {
		return true
	}
	v = strings.TrimSpace(v)
	for _, a := range in.conf.versions {
		if a == v {
			return true
		}
	}
	return false
}

func (in *brazeCurrentsHTTP) setRetryAfter(w http.ResponseWriter) { in.setRetryAfterAtLeast(w, 0) }

// setRetryAfterAtLeast sets Retry-After to retry_after or, when longer, the
// nack's hint (a hot device's deferred events: when its backlog will have
// been sent), rounded up to a second.
func (in *brazeCurrentsHTTP) setRetryAfterAtLeast(w http.ResponseWriter, hint time.Duration) {
	secs := max(in.conf.retryAfter, hint+time.Second-1) / time.Second
	w.Header().Set("Retry-After", strconv.Itoa(int(secs)))
}

// readBody reads the (possibly gzip-compressed) body within max_body_bytes,
// returning the status to answer with when it cannot.
func (in *brazeCurrentsHTTP) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	limit := int64(in.conf.maxBody)
	tooLarge := fmt.Errorf("body exceeds max_body_bytes %d", limit)
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	raw := http.MaxBytesReader(w, r.Body, limit)
	var src io.Reader = raw
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := newGzipReader(raw)
		if err != nil {
			return nil, readErrorStatus(err), fmt.Errorf("invalid gzip body: %w", err)
		}
		// Put back once the body is read: nothing keeps the reader.
		defer putGzipReader(zr)
		src = io.LimitReader(zr, limit+1) // decompressed size
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("unsupported Content-Encoding %q", enc)
	}
	// Size the buffer once: the events keep pointing into it.
	size := bodyBufferSize
	if r.ContentLength > 0 && src == io.Reader(raw) {
		size = int(r.ContentLength) + bytes.MinRead
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	if _, err := buf.ReadFrom(src); err != nil {
		if status := readErrorStatus(err); status == http.StatusRequestEntityTooLarge {
			return nil, status, tooLarge
		}
		return nil, http.StatusBadRequest, fmt.Errorf("invalid body: %w", err)
	}
	if buf.Len() > in.conf.maxBody {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	return buf.Bytes(), 0, nil
}

// gzipReaders holds idle gzip readers: each holds a decompressor of some
// 40 KiB, too much to allocate for every request of 100 events.
var gzipReaders sync.Pool // *gzip.Reader

// newGzipReader returns a gzip reader of r, from gzipReaders when one is
// idle; the caller puts it back once the body is read.
func newGzipReader(r io.Reader) (*gzip.Reader, error) {
	if zr, ok := gzipReaders.Get().(*gzip.Reader); ok {
		if err := zr.Reset(r); err != nil {
			gzipReaders.Put(zr)
			return nil, err
		}
		return zr, nil
	}
	return gzip.NewReader(r)
}

// putGzipReader returns zr to gzipReaders, pointed at nothing first, so that
// an idle reader keeps no request alive.
func putGzipReader(zr *gzip.Reader) {
	_ = zr.Reset(noBody{}) // io.EOF: no header to read, as expected
	gzipReaders.Put(zr)
}

// noBody is an empty flate.Reader (stateless, so shared by every request),
// which gzip.Reader.Reset takes without wrapping it in a new bufio.Reader.
type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }

func (noBody) ReadByte() (byte, error) { return 0, io.EOF }

// eventLists holds idle lists of a request's events (*[][]byte): a list is
// needed only until the request's batch is made (the messages and the
// trusted mark keep their own copies of the slices), so it is reused instead
// of grown from nothing for every request.
var eventLists = sync.Pool{New: func() any { return new([][]byte) }}

// maxPooledEvents bounds the lists kept in eventLists: a body of many tiny
// events (up to max_body_bytes/3 of them) must not pin its list.
const maxPooledEvents = 4096

// putEventList returns list to eventLists, emptied so that it keeps no body
// alive, unless an outsized request grew it.
func putEventList(list *[][]byte) {
	if cap(*list) > maxPooledEvents {
		return
	}
	clear((*list)[:cap(*list)])
	*list = (*list)[:0]
	eventLists.Put(list)
}

// readErrorStatus is 413 for a body cut at max_body_bytes, else 400.
func readErrorStatus(err error) int {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// split cleans, bounds and splits a body: invalid UTF-8 is replaced by
// U+FFFD, so that the events sent on and their dead-letter copies hold the
// same valid text, and JSON nested deeper than max_json_depth is refused
// before it is parsed recursively (which costs stack memory in proportion to
// the depth). It returns the body the
// events are sub-slices of; the events of Braze's exact shape are appended
// to dst.
func (in *brazeCurrentsHTTP) split(dst [][]byte, body []byte) ([][]byte, []byte, error) {
	if !utf8.Valid(body) {
		body = bytes.ToValidUTF8(body, []byte("\uFFFD")) // no bracket or quote changes
	}
	// Braze's exact shape is checked and split in one pass; anything else
	// (or anything wrong) the slow way, which says what is wrong.
	if events, ok := currentsbody.SplitChecked(dst, body, in.conf.maxDepth); ok {
		return events, body, nil
	}
	if err := jsonlimit.Check(body, in.conf.maxDepth); err != nil {
		return nil, nil, err
	}
	events, err := splitEvents(body)
	return events, body, err
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// splitEvents validates a Currents request body and returns the raw JSON of
// each event, sharing body's memory. An empty body, an empty object and a
// null "events" are no events; anything but an object whose "events" is an
// array of objects is malformed.
func splitEvents(body []byte) ([][]byte, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	// The common case, {"events": [...]}, is validated and split in one pass.
	events, isBody, err := currentsbody.SplitEvents(body)
	switch {
	case err != nil:
		return nil, err
	case isBody:
		return events, nil
	}
	if !gjson.ValidBytes(body) {
		return nil, errors.New("body is not valid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, errors.New(`body must be a JSON object {"events": [...]}`)
	}
	list := root.Get("events")
	switch {
	case !list.Exists() && len(root.Map()) == 0, list.Exists() && list.Type == gjson.Null:
		return nil, nil
	case !list.Exists():
		return nil, errors.New(`body has no "events" field`)
	case !list.IsArray():
		return nil, errors.New(`"events" must be an array`)
	}
	return nil, errors.New(`body must be {"events": [...]}, not an event`)
}

// toBatch turns the events, sub-slices of the validated body, into one
// message batch with the request metadata, and marks them validated
// (trusted.MetaKey, set last so that a query parameter of that name cannot
// replace it), so that braze_to_amplitude does not validate them again.
func (in *brazeCurrentsHTTP) toBatch(body []byte, events [][]byte, version, id string, r *http.Request) service.MessageBatch {
	query := r.URL.Query()
	batch := make(service.MessageBatch, len(events))
	var versionMeta, idMeta any = version, id // boxed once for all messages
	// An event nests two levels below the body ({"events": [...]}).
	mark := trusted.MarkSlices(body, events, in.conf.maxDepth-2)
	for i, ev := range events {
		m := service.NewMessage(ev)
		m.MetaSetMut(MetaVersion, versionMeta)
		for k, v := range query {
			if len(v) > 0 {
				m.MetaSetMut(k, v[0])
			}
		}
		m.MetaSetMut(deadletter.MetaRequestID, idMeta)
		trusted.Set(m, mark)
		batch[i] = m
	}
	return batch
}

// writeAnswer writes a small JSON body so that operators reading Braze's
// error reports see why a request was refused.
func writeAnswer(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	key := "error"
	if status < 300 {
		key = "status"
	}
	_, _ = fmt.Fprintf(w, "{%q:%q}\n", key, msg)
}
