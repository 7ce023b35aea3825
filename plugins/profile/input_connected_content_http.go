package profile

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
	"github.com/opencurrents/currents-amplitude/plugins/internal/logthrottle"
	"github.com/opencurrents/currents-amplitude/plugins/internal/secrettoken"
	"github.com/opencurrents/currents-amplitude/plugins/internal/speclint"
)

const (
	ccFieldAddress     = "address"
	ccFieldPath        = "path"
	ccFieldToken       = "token"
	ccFieldTimeout     = "timeout"
	ccFieldMaxInFlight = "max_in_flight"
	ccFieldCertFile    = "cert_file"
	ccFieldKeyFile     = "key_file"

	// ackGrace is how long after the message's deadline the request still
	// waits for the pipeline's answer (the processor answers at the deadline;
	// the pipeline and output take microseconds more).
	ackGrace = 250 * time.Millisecond
	// maxQueryBytes bounds the query string turned into a message.
	maxQueryBytes = 8 << 10
)

func connectedContentHTTPSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		LintRule(speclint.Rule(speclint.Required(ccFieldToken, "the token Braze presents"))).
		Categories("Network").
		Summary("An HTTP endpoint for Braze Connected Content: `GET <path>?user_id=...` becomes one message whose pipeline answer (via `sync_response`) is the response body.").
		Description(`
Each authenticated request becomes one message: a JSON object of the query parameters (first value of each), e.g. `+"`{\"user_id\":\"u1\",\"rec_id\":\"s234ssg\"}`"+`, whose context carries a deadline `+"`timeout`"+` from its arrival. The pipeline (normally one `+"`amplitude_profile`"+` processor) replaces it with the answer and the `+"`sync_response`"+` output hands it back:

| Situation | Status |
|---|---|
| answered | 200, `+"`Content-Type: application/json`"+`, header `+"`X-Profile-Source`"+` (metadata `+"`amplitude_profile_source`"+`) |
| missing or wrong token | 401 (before the pipeline) |
| not GET or HEAD | 405; other paths: 404 |
| query longer than 8 KiB, or the pipeline flagged the message (e.g. neither `+"`user_id`"+` nor `+"`device_id`"+`) | 400 with `+"`{\"error\":...}`"+` |
| `+"`max_in_flight`"+` requests already waiting | 429 with Retry-After: 1 |
| no answer 250 ms after the deadline, or the pipeline nacked the message | 503 (Braze retries with `+"`:retry`"+`) |
| shutting down | 503 |

The token is this endpoint's own, never the Amplitude key: Braze sends it as `+"`Authorization: Bearer <token>`"+` (Connected Content `+"`:headers`"+`) or as the password of HTTP Basic auth (a Connected Content credential, `+"`:basic_auth <name>`"+`), so it stays out of templates and out of Braze's request logs, which keep the full URL.

Why not Benthos' `+"`http_server`"+` input with `+"`sync_response`"+`? It cannot refuse a wrong token before the pipeline runs, it gives the message no deadline (the processor then falls back to its own `+"`timeout`"+`), it answers a request the pipeline did not answer in time with 408, and when the client accepts gzip it compresses every answer with a new gzip writer, which made it more than ten times slower in the side-by-side benchmark of docs/profiles.md (about 1,800 cache hits per second against 13,000 to 24,000 for this input on two shared cores; without gzip it comes close, 9,000 to 16,500).

Metrics: `+"`connected_content_requests_total`"+` (label `+"`status`"+`), timer `+"`connected_content_request_seconds`"+`, gauge `+"`connected_content_requests_pending`"+`.`).
		Fields(
			service.NewStringField(ccFieldAddress).
				Description("Address to listen on.").
				Default("0.0.0.0:8080").Example(":8443"),
			service.NewStringField(ccFieldPath).
				Description("Path of the endpoint.").
				Default("/profiles").Example("/v1/profiles"),
			service.NewStringField(ccFieldToken).Secret().
				Description("The token Braze must present (Bearer, or the Basic auth password). Required: make it long and random; it is not the Amplitude key.").
				Example("${PROFILES_TOKEN}"),
			service.NewDurationField(ccFieldTimeout).
				Description("Deadline of each message, from its arrival. Braze waits at most 2 s for a Connected Content answer; keep a margin for the network.").
				Default("1500ms").Example("1s"),
			service.NewIntField(ccFieldMaxInFlight).
				Description("Most requests waiting for their answer at once; more get 429 at once.").
				Default(4096).Example(1024),
			service.NewStringField(ccFieldCertFile).
				Description("Certificate file to serve HTTPS directly (Braze calls only ports 80 and 443). Empty: plain HTTP behind a TLS proxy.").
				Default("").Example("/etc/tls/tls.crt"),
			service.NewStringField(ccFieldKeyFile).
				Description("Key file of `cert_file`.").
				Default("").Example("/etc/tls/tls.key"),
		)
}

func init() {
	service.MustRegisterInput("connected_content_http", connectedContentHTTPSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.Input, error) {
			return newCCInputFromParsed(conf, mgr)
		})
}

// ccRequest is one request waiting for the pipeline.
type ccRequest struct {
	msg  *service.Message
	done chan error
}

// ccInput is the connected_content_http input.
type ccInput struct {
	address, path     string
	token             secrettoken.Token
	timeout           time.Duration
	certFile, keyFile string
	slots             chan struct{}
	log               *service.Logger
	clock             clock.Clock

	requests *service.MetricCounter
	latency  *service.MetricTimer
	pending  *service.MetricGauge
	waiting  atomic.Int64

	// unauthorized and badRequest log refused requests, once per period.
	unauthorized, badRequest logthrottle.Warner

	reqs     chan *ccRequest
	closing  chan struct{}
	closeOne sync.Once
	srv      *http.Server
	ln       net.Listener
}

func newCCInputFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*ccInput, error) {
	str := func(n string) string { s, _ := conf.FieldString(n); return s }
	token := str(ccFieldToken)
	if token == "" {
		return nil, errors.New("connected_content_http: token is empty: the endpoint must not be open to anyone")
	}
	timeout, _ := conf.FieldDuration(ccFieldTimeout)
	maxInFlight, _ := conf.FieldInt(ccFieldMaxInFlight)
	if timeout <= 0 || maxInFlight < 1 {
		return nil, errors.New("connected_content_http: timeout and max_in_flight must be positive")
	}
	if (str(ccFieldCertFile) == "") != (str(ccFieldKeyFile) == "") {
		return nil, errors.New("connected_content_http: set both cert_file and key_file, or neither")
	}
	m := mgr.Metrics()
	in := &ccInput{
		address: str(ccFieldAddress), path: str(ccFieldPath), token: secrettoken.New(token),
		timeout: timeout, certFile: str(ccFieldCertFile), keyFile: str(ccFieldKeyFile),
		slots: make(chan struct{}, maxInFlight), log: mgr.Logger(), clock: clock.System,
		requests: m.NewCounter("connected_content_requests_total", "status"),
		latency:  m.NewTimer("connected_content_request_seconds"),
		pending:  m.NewGauge("connected_content_requests_pending"),
		reqs:     make(chan *ccRequest), closing: make(chan struct{}),
	}
	return in, nil
}

// Connect starts listening (once).
func (in *ccInput) Connect(context.Context) error {
	if in.srv != nil {
		return nil
	}
	ln, err := net.Listen("tcp", in.address)
	if err != nil {
		return err
	}
	in.ln = ln
	in.srv = &http.Server{Handler: in, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 4 * maxQueryBytes}
	go func() {
		var err error
		if in.certFile != "" {
			err = in.srv.ServeTLS(ln, in.certFile, in.keyFile)
		} else {
			err = in.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			in.log.Errorf("connected_content_http: server stopped: %v", err)
		}
	}()
	return nil
}

// Addr returns the listening address (tests listen on port 0).
func (in *ccInput) Addr() string {
	if in.ln == nil {
		return ""
	}
	return in.ln.Addr().String()
}

// Read returns the next request's message; its ack answers the request.
func (in *ccInput) Read(ctx context.Context) (*service.Message, service.AckFunc, error) {
	select {
	case r := <-in.reqs:
		return r.msg, func(_ context.Context, err error) error {
			r.done <- err // buffered: never blocks, even when the request gave up
			return nil
		}, nil
	case <-in.closing:
		return nil, nil, service.ErrEndOfInput
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// authorized checks the Bearer token or the Basic password in constant time.
func (in *ccInput) authorized(r *http.Request) bool {
	var got string
	if s, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = s
	} else if _, pw, ok := r.BasicAuth(); ok {
		got = pw
	} else {
		return false
	}
	return in.token.Matches(got)
}

// ServeHTTP answers one request.
func (in *ccInput) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := in.clock.Now()
	status := in.handle(w, r)
	in.requests.Incr(1, strconv.Itoa(status))
	in.latency.Timing(in.clock.Now().Sub(start).Nanoseconds())
}

var (
	errBodyUnauthorized = []byte(`{"error":"unauthorized"}`)
	errBodyBusy         = []byte(`{"error":"too many requests in flight"}`)
	errBodyUnavailable  = []byte(`{"error":"no answer in time"}`)
	errBodyClosing      = []byte(`{"error":"shutting down"}`)
	errBodyLongQuery    = []byte(`{"error":"query too long"}`)
)

func writeJSON(w http.ResponseWriter, status int, body []byte) int {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

func (in *ccInput) handle(w http.ResponseWriter, r *http.Request) int {
	if r.URL.Path != in.path {
		return writeJSON(w, http.StatusNotFound, []byte(`{"error":"not found"}`))
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return writeJSON(w, http.StatusMethodNotAllowed, []byte(`{"error":"method not allowed"}`))
	}
	if !in.authorized(r) {
		in.unauthorized.Warn(in.log, in.clock.Now().UnixNano(), "connected_content_http: %d requests refused (401): missing or wrong token (check the Connected Content credential)")
		w.Header().Set("WWW-Authenticate", `Bearer realm="profiles"`)
		return writeJSON(w, http.StatusUnauthorized, errBodyUnauthorized)
	}
	if len(r.URL.RawQuery) > maxQueryBytes {
		in.badRequest.Warn(in.log, in.clock.Now().UnixNano(), "connected_content_http: %d requests refused (400); last: query longer than 8 KiB")
		return writeJSON(w, http.StatusBadRequest, errBodyLongQuery)
	}
	select {
	case in.slots <- struct{}{}:
		defer func() { <-in.slots }()
	default:
		w.Header().Set("Retry-After", "1")
		return writeJSON(w, http.StatusTooManyRequests, errBodyBusy)
	}
	in.pending.Set(in.waiting.Add(1))
	defer func() { in.pending.Set(in.waiting.Add(-1)) }()

	ctx, cancel := context.WithTimeout(r.Context(), in.timeout)
	defer cancel()
	msg, store := service.NewMessage(queryJSON(r)).WithContext(ctx).WithSyncResponseStore()
	req := &ccRequest{msg: msg, done: make(chan error, 1)}
	wait := in.clock.NewTimer(in.timeout + ackGrace)
	defer wait.Stop()
	select {
	case in.reqs <- req:
	case <-in.closing:
		return writeJSON(w, http.StatusServiceUnavailable, errBodyClosing)
	case <-wait.C():
		return writeJSON(w, http.StatusServiceUnavailable, errBodyUnavailable)
	}
	select {
	case err := <-req.done:
		if err != nil {
			return writeJSON(w, http.StatusServiceUnavailable, errBodyUnavailable)
		}
	case <-wait.C():
		return writeJSON(w, http.StatusServiceUnavailable, errBodyUnavailable)
	}
	m := firstAnswer(store)
	if m == nil {
		// The pipeline dropped the message: nothing to say about this user.
		return writeJSON(w, http.StatusOK, []byte(`{}`))
	}
	if err := m.GetError(); err != nil {
		in.badRequest.Warn(in.log, in.clock.Now().UnixNano(), "connected_content_http: %d requests refused (400); last: %v", err)
		return writeJSON(w, http.StatusBadRequest, append(jsonw.AppendString([]byte(`{"error":`), err.Error()), '}'))
	}
	body, err := m.AsBytes()
	if err != nil {
		return writeJSON(w, http.StatusInternalServerError, []byte(`{"error":"unreadable answer"}`))
	}
	if src, ok := m.MetaGetMut(MetaSource); ok {
		if s, ok := src.(string); ok {
			w.Header()["X-Profile-Source"] = []string{s}
		}
	}
	return writeJSON(w, http.StatusOK, body)
}

// firstAnswer returns the first message the pipeline answered with, or nil.
func firstAnswer(store *service.SyncResponseStore) *service.Message {
	for _, b := range store.Read() {
		if len(b) > 0 {
			return b[0]
		}
	}
	return nil
}

// queryJSON turns the query parameters into a JSON object (first value of
// each).
func queryJSON(r *http.Request) []byte {
	q := r.URL.Query()
	b := make([]byte, 0, 16+len(r.URL.RawQuery))
	b = append(b, '{')
	for k, v := range q {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = jsonw.AppendKey(b, k)
		b = jsonw.AppendString(b, v[0])
	}
	return append(b, '}')
}

// Close stops taking requests and the server.
func (in *ccInput) Close(ctx context.Context) error {
	in.closeOne.Do(func() { close(in.closing) })
	if in.srv == nil {
		return nil
	}
	return in.srv.Shutdown(ctx)
}
