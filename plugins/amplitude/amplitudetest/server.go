// Package amplitudetest provides an Amplitude-compatible ingestion server on
// loopback for tests and benchmarks.
//
// The server answers POST /2/httpapi (HTTP V2) and POST /batch (Batch Event
// Upload) with the status codes and JSON bodies that Amplitude documents, and
// enforces the same limits:
//
//   - more than MaxEvents events (2000) or MaxBytes bytes (1,000,000 for HTTP
//     V2, 20,000,000 for Batch; counted on the uncompressed body, gzip
//     request bodies are accepted) -> 413 {"code":413,"error":"Payload too large"};
//   - a missing api_key -> 400 with "missing_field":"api_key"; a key other than
//     Options.APIKey -> 400 "Invalid API key: ...";
//   - a body that is not JSON -> 400 "Invalid JSON request body"; an event that
//     is not an object -> 400 "Invalid event JSON" (no index);
//   - events without event_type, without user_id and device_id, with an id
//     shorter than options.min_id_length (default 5), with an id Amplitude
//     always refuses ("null", "0", ...), with a non-integer time, or from a
//     silenced device -> 400 naming their indexes
//     (events_with_missing_fields, events_with_invalid_id_lengths,
//     events_with_invalid_fields, silenced_events);
//   - more than EPSLimit events per second for one device_id or user_id,
//     averaged over RateWindow -> 429 naming throttled_devices,
//     throttled_users and throttled_events; an id past DailyQuota -> 429 with
//     exceeded_daily_quota_devices / exceeded_daily_quota_users;
//   - with probability FaultRate, one of the FaultKinds (5xx, a bare 429, a
//     timeout, a dropped connection), some of them after the events were
//     ingested, as can happen with the real service.
//
// Rejected requests ingest nothing. Accepted events are de-duplicated by
// insert_id, as Amplitude does, and can be inspected with Count, Events,
// Event, Duplicates, Requests and StatusCounts.
//
// Typical use:
//
//	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: "test-key"})
//	defer srv.Close()
//	url := srv.HTTPV2URL() // or srv.BatchURL(); srv.URL is the base address
//	...
//	_ = srv.WaitForCount(ctx, 100)
//	if srv.Count() != 100 || srv.Duplicates() != 0 { ... }
package amplitudetest

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
)

// Request paths served by the Server.
const (
	PathHTTPV2 = "/2/httpapi"
	PathBatch  = "/batch"
)

// Amplitude's documented limits, used when the matching Options field is 0.
const (
	DefaultMaxEvents       = 2000
	DefaultMaxBytesHTTPV2  = 1_000_000
	DefaultMaxBytesBatch   = 20_000_000
	DefaultEPSLimitHTTPV2  = 30
	DefaultEPSLimitBatch   = 1000
	DefaultMinIDLength     = 5
	defaultRateWindowV2    = 10 * time.Second
	defaultRateWindowBatch = 30 * time.Second
	maxStringLength        = 1024
)

// FaultKind names one kind of injected failure.
type FaultKind int

// The injectable faults.
const (
	// Fault500 answers 500 with a JSON body after ingesting the events (the
	// request "may or may not" have been accepted).
	Fault500 FaultKind = iota
	// Fault502 answers 502 with an HTML body, ingesting nothing.
	Fault502
	// Fault503 answers 503 with a JSON body, ingesting nothing.
	Fault503
	// Fault429 answers 429 without naming any device or user (a
	// destination-wide throttle), ingesting nothing.
	Fault429
	// FaultTimeout ingests the events, then never answers: the request hangs
	// until the client gives up or the server is closed.
	FaultTimeout
	// FaultDrop reads the request, ingests it with probability 1/2, then
	// closes the connection without an answer.
	FaultDrop
	// FaultHang waits Options.HangFor (or until the client gives up), then
	// processes the request and answers as usual: a slow answer that a
	// second try could beat.
	FaultHang
	// FaultProxy403 answers 403 with an HTML page, as a proxy or WAF in
	// front of Amplitude does, ingesting nothing.
	FaultProxy403
	// FaultUnauthorized answers 401 with a JSON body (a rotated key at a
	// proxy), ingesting nothing.
	FaultUnauthorized
	// FaultHTML200 answers 200 with an HTML page (a captive portal),
	// ingesting nothing.
	FaultHTML200
)

// AllFaults lists the faults of Amplitude itself; it is the default of
// Options.FaultKinds.
var AllFaults = []FaultKind{Fault500, Fault502, Fault503, Fault429, FaultTimeout, FaultDrop}

// ProxyFaults lists the faults of what stands between a client and
// Amplitude: a proxy's 403 page, a 401, a captive portal's 200 page.
var ProxyFaults = []FaultKind{FaultProxy403, FaultUnauthorized, FaultHTML200}

// String returns the fault's name.
func (k FaultKind) String() string {
	switch k {
	case Fault500:
		return "500"
	case Fault502:
		return "502"
	case Fault503:
		return "503"
	case Fault429:
		return "429"
	case FaultTimeout:
		return "timeout"
	case FaultDrop:
		return "drop"
	case FaultHang:
		return "hang"
	case FaultProxy403:
		return "proxy_403"
	case FaultUnauthorized:
		return "401"
	case FaultHTML200:
		return "html_200"
	}
	return "fault(" + strconv.Itoa(int(k)) + ")"
}

// Options configure a Server. The zero value is a server with Amplitude's
// limits that accepts any non-empty api_key and injects no faults.
type Options struct {
	// APIKey, when set, is the only api_key accepted; other keys get
	// 400 "Invalid API key: <key>".
	APIKey string
	// EPSLimit is the events-per-second limit per device_id and per user_id,
	// averaged over RateWindow. 0 means Amplitude's (30 for HTTP V2, 1000 for
	// Batch); a negative value disables rate limiting.
	EPSLimit int
	// RateWindow is the window the rate is averaged over: an id may send
	// EPSLimit*RateWindow events per window. 0 means 10 s for HTTP V2, 30 s
	// for Batch.
	RateWindow time.Duration
	// DailyQuota is the number of events an id may have ingested before its
	// events get 429 with exceeded_daily_quota_*. 0 disables it.
	DailyQuota int
	// MaxEvents per request; 0 means 2000.
	MaxEvents int
	// MaxBytes per request (uncompressed); 0 means 1,000,000 for HTTP V2 and
	// 20,000,000 for Batch.
	MaxBytes int
	// SilencedDevices are device_ids whose events get 400 with
	// silenced_events.
	SilencedDevices []string
	// FaultRate is the probability, in [0, 1], that a request fails with one
	// of FaultKinds instead of being processed.
	FaultRate float64
	// FaultKinds to choose from (uniformly); nil means AllFaults.
	FaultKinds []FaultKind
	// Seed makes fault injection reproducible.
	Seed uint64
	// Latency is added before every answer.
	Latency time.Duration
	// HangFor is how long FaultHang waits before answering (default 12 s).
	HangFor time.Duration
	// Now is the clock for rate windows; nil means time.Now.
	Now func() time.Time
}

// Event is one ingested event.
type Event struct {
	InsertID  string
	EventType string
	UserID    string
	DeviceID  string
	// Raw is the event's JSON as received.
	Raw string
}

// Server is a running fake Amplitude. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base address, e.g. http://127.0.0.1:port; see HTTPV2URL and
	// BatchURL for the endpoints.
	URL string

	opts Options
	srv  *httptest.Server
	done chan struct{}

	mu         sync.Mutex
	cond       *sync.Cond
	rng        *rand.Rand
	events     []Event
	byInsertID map[string]int
	duplicates int
	received   int
	requests   int
	statuses   map[int]int
	faults     map[FaultKind]int
	windows    map[string]*window
	daily      map[string]int
	silenced   map[string]bool
	closeOnce  sync.Once
}

type window struct {
	start time.Time
	count int
}

// NewServer starts a Server on a loopback port. Close it when done.
func NewServer(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FaultKinds == nil {
		opts.FaultKinds = AllFaults
	}
	s := &Server{
		opts:       opts,
		done:       make(chan struct{}),
		rng:        rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		byInsertID: map[string]int{},
		statuses:   map[int]int{},
		faults:     map[FaultKind]int{},
		windows:    map[string]*window{},
		daily:      map[string]int{},
		silenced:   map[string]bool{},
	}
	s.cond = sync.NewCond(&s.mu)
	for _, d := range opts.SilencedDevices {
		s.silenced[d] = true
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	s.URL = s.srv.URL
	return s
}

// HTTPV2URL returns the address of the HTTP V2 endpoint.
func (s *Server) HTTPV2URL() string { return s.URL + PathHTTPV2 }

// BatchURL returns the address of the Batch endpoint.
func (s *Server) BatchURL() string { return s.URL + PathBatch }

// Close releases hanging requests and shuts the server down.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
}

// Count returns the number of distinct events ingested (by insert_id; events
// without insert_id each count once).
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

// Events returns a copy of the ingested events, in ingestion order.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Event returns the ingested event with the given insert_id.
func (s *Server) Event(insertID string) (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.byInsertID[insertID]
	if !ok {
		return Event{}, false
	}
	return s.events[i], true
}

// Duplicates returns how many accepted events repeated an insert_id already
// ingested (Amplitude accepts and ignores them).
func (s *Server) Duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.duplicates
}

// Received returns the number of events in all well-formed requests,
// accepted or not.
func (s *Server) Received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received
}

// Requests returns the number of requests received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// StatusCounts returns the number of answers per HTTP status. Dropped
// connections and timeouts are not answers; see FaultCounts.
func (s *Server) StatusCounts() map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.statuses)
}

// FaultCounts returns the number of faults injected per kind.
func (s *Server) FaultCounts() map[FaultKind]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.faults)
}

// WaitForCount blocks until at least n distinct events were ingested, ctx is
// done (returning its error) or the server is closed.
func (s *Server) WaitForCount(ctx context.Context, n int) error {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.events) < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case <-s.done:
			return fmt.Errorf("server closed with %d of %d events", len(s.events), n)
		default:
		}
		s.cond.Wait()
	}
	return nil
}

type endpoint struct {
	maxBytes int
	eps      int
	window   time.Duration
}

func (s *Server) endpointFor(path string) (endpoint, bool) {
	var e endpoint
	switch path {
	case PathHTTPV2:
		e = endpoint{DefaultMaxBytesHTTPV2, DefaultEPSLimitHTTPV2, defaultRateWindowV2}
	case PathBatch:
		e = endpoint{DefaultMaxBytesBatch, DefaultEPSLimitBatch, defaultRateWindowBatch}
	default:
		return e, false
	}
	if s.opts.MaxBytes > 0 {
		e.maxBytes = s.opts.MaxBytes
	}
	if s.opts.EPSLimit != 0 {
		e.eps = s.opts.EPSLimit
	}
	if s.opts.RateWindow > 0 {
		e.window = s.opts.RateWindow
	}
	return e, true
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	fault, faulty := s.pickFault()
	s.mu.Unlock()

	if s.opts.Latency > 0 {
		select {
		case <-time.After(s.opts.Latency):
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
	ep, ok := s.endpointFor(r.URL.Path)
	if !ok || r.Method != http.MethodPost {
		s.reply(w, http.StatusBadRequest, `{"code":400,"error":"Invalid request path"}`)
		return
	}
	body, tooLarge, err := readBody(r, ep.maxBytes)
	if err != nil {
		s.reply(w, http.StatusBadRequest, `{"code":400,"error":"Missing request body"}`)
		return
	}
	if tooLarge {
		s.reply(w, http.StatusRequestEntityTooLarge, `{"code":413,"error":"Payload too large"}`)
		return
	}
	if faulty {
		s.injectFault(w, r, fault, body)
		return
	}
	status, answer := s.process(body, ep)
	s.reply(w, status, answer)
}

// SetFaults changes the fault rate and kinds (nil: AllFaults) of later
// requests, for a test's phases (an outage, then recovery).
func (s *Server) SetFaults(rate float64, kinds ...FaultKind) {
	if kinds == nil {
		kinds = AllFaults
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.FaultRate = rate
	s.opts.FaultKinds = kinds
}

// pickFault decides, under s.mu, whether this request fails.
func (s *Server) pickFault() (FaultKind, bool) {
	if s.opts.FaultRate <= 0 || len(s.opts.FaultKinds) == 0 || s.rng.Float64() >= s.opts.FaultRate {
		return 0, false
	}
	k := s.opts.FaultKinds[s.rng.IntN(len(s.opts.FaultKinds))]
	s.faults[k]++
	return k, true
}

func (s *Server) injectFault(w http.ResponseWriter, r *http.Request, k FaultKind, body string) {
	ep, _ := s.endpointFor(r.URL.Path)
	switch k {
	case Fault500:
		s.process(body, ep)
		s.reply(w, http.StatusInternalServerError, `{"code":500,"error":"Internal server error"}`)
	case Fault502:
		s.replyType(w, http.StatusBadGateway, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>")
	case Fault503:
		s.reply(w, http.StatusServiceUnavailable, `{"code":503,"error":"Service unavailable"}`)
	case Fault429:
		s.reply(w, http.StatusTooManyRequests, fmt.Sprintf(`{"code":429,"error":"Too many requests for some devices and users","eps_threshold":%d}`, ep.eps))
	case FaultTimeout:
		s.process(body, ep)
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
	case FaultHang:
		hang := s.opts.HangFor
		if hang <= 0 {
			hang = 12 * time.Second
		}
		t := time.NewTimer(hang)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
		status, answer := s.process(body, ep)
		s.reply(w, status, answer)
	case FaultProxy403:
		s.replyType(w, http.StatusForbidden, "text/html", "<html><head><title>403 Forbidden</title></head><body><center><h1>403 Forbidden</h1></center><hr><center>proxy</center></body></html>")
	case FaultUnauthorized:
		s.reply(w, http.StatusUnauthorized, `{"code":401,"error":"Unauthorized"}`)
	case FaultHTML200:
		s.replyType(w, http.StatusOK, "text/html; charset=utf-8", "<!doctype html><html><body>Please sign in to the network.</body></html>")
	case FaultDrop:
		s.mu.Lock()
		ingest := s.rng.IntN(2) == 0
		s.mu.Unlock()
		if ingest {
			s.process(body, ep)
		}
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) reply(w http.ResponseWriter, status int, body string) {
	s.replyType(w, status, "application/json", body)
}

func (s *Server) replyType(w http.ResponseWriter, status int, contentType, body string) {
	s.mu.Lock()
	s.statuses[status]++
	s.mu.Unlock()
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// readBody reads the (possibly gzip-encoded) body, reporting whether its
// uncompressed size exceeds limit.
func readBody(r *http.Request, limit int) (string, bool, error) {
	var src io.Reader = r.Body
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return "", false, err
		}
		defer zr.Close()
		src = zr
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(src, int64(limit)+1))
	if err != nil {
		return "", false, err
	}
	if n > int64(limit) {
		_, _ = io.Copy(io.Discard, r.Body)
		return "", true, nil
	}
	return buf.String(), false, nil
}

// alwaysRefusedIDs are the ids Amplitude refuses whatever min_id_length is.
var alwaysRefusedIDs = map[string]bool{
	"anonymous": true, "nil": true, "none": true, "null": true, "n/a": true, "na": true,
	"undefined": true, "unknown": true, `""`: true, "00000000-0000-0000-0000-000000000000": true,
	"{}": true, "lmy47d": true, "0": true, "-1": true,
}

// indexSet collects event indexes per field, for a 400 body.
type indexSet map[string][]int

func (m indexSet) add(field string, i int) { m[field] = append(m[field], i) }

func appendIndexSet(b []byte, key string, m indexSet) []byte {
	if len(m) == 0 {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":{`...)
	first := true
	for _, f := range []string{"event_type", "user_id", "device_id", "time", "user_id_or_device_id"} {
		idx, ok := m[f]
		if !ok {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = strconv.AppendQuote(b, f)
		b = append(b, ':')
		b = appendInts(b, idx)
	}
	return append(b, '}')
}

func appendInts(b []byte, idx []int) []byte {
	b = append(b, '[')
	for i, v := range idx {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(v), 10)
	}
	return append(b, ']')
}

// parsed is one event of a request.
type parsed struct {
	Event
	time gjson.Result
}

// process validates a request body and, if it passes every check, ingests
// its events. It returns the answer.
func (s *Server) process(body string, ep endpoint) (int, string) {
	if !gjson.Valid(body) {
		return http.StatusBadRequest, `{"code":400,"error":"Invalid JSON request body"}`
	}
	top := gjson.GetMany(body, "api_key", "events", "options.min_id_length")
	key, evs, minLen := top[0], top[1], top[2]
	if key.Type != gjson.String || key.Str == "" {
		return http.StatusBadRequest, `{"code":400,"error":"Request missing required field","missing_field":"api_key"}`
	}
	if !evs.IsArray() {
		return http.StatusBadRequest, `{"code":400,"error":"Request missing required field","missing_field":"events"}`
	}
	events := make([]parsed, 0, 64)
	valid := true
	evs.ForEach(func(_, v gjson.Result) bool {
		if !v.IsObject() {
			valid = false
			return false
		}
		f := gjson.GetMany(v.Raw, "insert_id", "event_type", "user_id", "device_id", "time")
		events = append(events, parsed{
			Event: Event{InsertID: f[0].Str, EventType: f[1].Str, UserID: f[2].Str, DeviceID: f[3].Str, Raw: v.Raw},
			time:  f[4],
		})
		return true
	})
	maxEvents := s.opts.MaxEvents
	if maxEvents <= 0 {
		maxEvents = DefaultMaxEvents
	}
	if len(events) > maxEvents {
		return http.StatusRequestEntityTooLarge, `{"code":413,"error":"Payload too large"}`
	}
	if s.opts.APIKey != "" && key.Str != s.opts.APIKey {
		return http.StatusBadRequest, `{"code":400,"error":"Invalid API key: ` + jsonEscape(key.Str) + `"}`
	}
	if !valid {
		return http.StatusBadRequest, `{"code":400,"error":"Invalid event JSON"}`
	}
	s.mu.Lock()
	s.received += len(events)
	s.mu.Unlock()
	idLen := DefaultMinIDLength
	if minLen.Exists() {
		idLen = int(minLen.Int())
	}
	if status, answer, bad := s.validate(events, idLen); bad {
		return status, answer
	}
	return s.admit(events, ep, len(body))
}

func jsonEscape(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// validate returns a 400 answer naming the bad events, if any.
func (s *Server) validate(events []parsed, minIDLen int) (int, string, bool) {
	missing, invalid, idLens := indexSet{}, indexSet{}, indexSet{}
	var silencedEvents []int
	var silencedDevices []string
	for i, e := range events {
		if e.EventType == "" {
			missing.add("event_type", i)
		}
		if e.UserID == "" && e.DeviceID == "" {
			missing.add("user_id_or_device_id", i)
		}
		for _, id := range []struct{ field, v string }{{"user_id", e.UserID}, {"device_id", e.DeviceID}} {
			switch {
			case id.v == "":
			case alwaysRefusedIDs[strings.ToLower(id.v)]:
				invalid.add(id.field, i)
			case len([]rune(id.v)) < minIDLen || len(id.v) > maxStringLength:
				idLens.add(id.field, i)
			}
		}
		if e.time.Exists() && (e.time.Type != gjson.Number || strings.ContainsAny(e.time.Raw, ".eE")) {
			invalid.add("time", i)
		}
		if e.DeviceID != "" && s.silenced[e.DeviceID] {
			silencedEvents = append(silencedEvents, i)
			silencedDevices = append(silencedDevices, e.DeviceID)
		}
	}
	if len(missing)+len(invalid)+len(idLens) == 0 && len(silencedEvents) == 0 {
		return 0, "", false
	}
	b := []byte(`{"code":400`)
	switch {
	case len(missing) > 0:
		b = append(b, `,"error":"Request missing required field"`...)
	case len(idLens) > 0 && len(invalid) == 0:
		b = append(b, `,"error":"Invalid id length for user_id or device_id"`...)
	case len(invalid) > 0:
		b = append(b, `,"error":"Invalid field values on some events"`...)
	default:
		b = append(b, `,"error":"Events silenced for device_id"`...)
	}
	b = appendIndexSet(b, "events_with_missing_fields", missing)
	b = appendIndexSet(b, "events_with_invalid_fields", invalid)
	b = appendIndexSet(b, "events_with_invalid_id_lengths", idLens)
	if len(silencedEvents) > 0 {
		b = append(b, `,"silenced_devices":`...)
		b = appendStrings(b, silencedDevices)
		b = append(b, `,"silenced_events":`...)
		b = appendInts(b, silencedEvents)
	}
	return http.StatusBadRequest, string(append(b, '}')), true
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	seen := map[string]bool{}
	n := 0
	for _, v := range ss {
		if seen[v] {
			continue
		}
		seen[v] = true
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = strconv.AppendQuote(b, v)
	}
	return append(b, ']')
}

func appendCounts(b []byte, key string, m map[string]int) []byte {
	if len(m) == 0 {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":{`...)
	n := 0
	for id, c := range m {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = strconv.AppendQuote(b, id)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(c), 10)
	}
	return append(b, '}')
}

// admit applies the rate limit and the daily quota to a valid request and,
// when neither refuses it, ingests it.
func (s *Server) admit(events []parsed, ep endpoint, size int) (int, string) {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()

	// Events per id in this request.
	perID := map[string]int{}
	for _, e := range events {
		if e.DeviceID != "" {
			perID["d"+e.DeviceID]++
		}
		if e.UserID != "" {
			perID["u"+e.UserID]++
		}
	}
	throttled := map[string]int{}
	quota := map[string]int{}
	for id, n := range perID {
		if s.opts.DailyQuota > 0 && s.daily[id]+n > s.opts.DailyQuota {
			quota[id] = s.daily[id]
		}
		if ep.eps < 0 {
			continue
		}
		w := s.windows[id]
		if w == nil || now.Sub(w.start) >= ep.window {
			w = &window{start: now}
			s.windows[id] = w
		}
		allowed := int(float64(ep.eps) * ep.window.Seconds())
		if w.count+n > allowed {
			throttled[id] = int(float64(w.count+n) / ep.window.Seconds())
		}
	}
	if len(throttled)+len(quota) > 0 {
		var idx []int
		tDev, tUsr, qDev, qUsr := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
		for i, e := range events {
			hit := false
			for _, id := range [2]string{"d" + e.DeviceID, "u" + e.UserID} {
				if len(id) == 1 {
					continue
				}
				if c, ok := throttled[id]; ok {
					hit = true
					pick(tDev, tUsr, id)[id[1:]] = c
				}
				if c, ok := quota[id]; ok {
					hit = true
					pick(qDev, qUsr, id)[id[1:]] = c
				}
			}
			if hit {
				idx = append(idx, i)
			}
		}
		b := []byte(`{"code":429,"error":"Too many requests for some devices and users","eps_threshold":`)
		b = strconv.AppendInt(b, int64(ep.eps), 10)
		b = appendCounts(b, "throttled_devices", tDev)
		b = appendCounts(b, "throttled_users", tUsr)
		b = appendCounts(b, "exceeded_daily_quota_devices", qDev)
		b = appendCounts(b, "exceeded_daily_quota_users", qUsr)
		b = append(b, `,"throttled_events":`...)
		b = appendInts(b, idx)
		return http.StatusTooManyRequests, string(append(b, '}'))
	}
	for id, n := range perID {
		if w := s.windows[id]; w != nil {
			w.count += n
		}
		if s.opts.DailyQuota > 0 {
			s.daily[id] += n
		}
	}
	for _, e := range events {
		if e.InsertID != "" {
			if _, dup := s.byInsertID[e.InsertID]; dup {
				s.duplicates++
				continue
			}
			s.byInsertID[e.InsertID] = len(s.events)
		}
		s.events = append(s.events, e.Event)
	}
	s.cond.Broadcast()
	return http.StatusOK, fmt.Sprintf(`{"code":200,"events_ingested":%d,"payload_size_bytes":%d,"server_upload_time":%d}`,
		len(events), size, now.UnixMilli())
}

// pick returns the device map for a "d"-prefixed id, the user map otherwise.
func pick(dev, usr map[string]int, id string) map[string]int {
	if id[0] == 'd' {
		return dev
	}
	return usr
}
