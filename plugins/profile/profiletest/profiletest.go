// Package profiletest provides a loopback fake of Amplitude's User Profile API
// (GET /v1/userprofile) for tests and benchmarks of the profile plugins. It
// answers as Amplitude documents (https://amplitude.com/docs/apis/analytics/user-profile):
// 401 "Invalid Api-Key" / "Missing Api-Key in Authorization header", the
// "User id and device id not seen before" error for unknown users, 429 past
// the organisation limit of 600 requests in any 60 seconds, injectable 5xx
// faults, and a configurable latency.
package profiletest

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
)

// OrgLimit is Amplitude's documented limit: 600 requests per minute per
// organisation, across all endpoints.
const OrgLimit = 600

// Path is the endpoint's path.
const Path = "/v1/userprofile"

// NotSeenError is the body Amplitude answers for an id it does not know.
const NotSeenError = `{"error":"User id and device id not seen before"}`

// Amplitude is the fake. Set its exported fields before the first request.
type Amplitude struct {
	*httptest.Server
	// SecretKey is expected as "Authorization: Api-Key <SecretKey>", or as
	// the HTTP Basic password (with any API key as user name).
	SecretKey string
	// Limit is the most requests answered in any 60 s (OrgLimit by default);
	// past it the fake answers 429.
	Limit int
	// Latency is added before every answer (Amplitude answers "in less than
	// a second"; 0 by default).
	Latency time.Duration
	// Clock tells the time of the limit's window (clock.System by default).
	Clock clock.Clock
	// NotSeenStatus is the status of the "not seen before" answer (200).
	NotSeenStatus int

	mu     sync.Mutex
	gate   chan struct{}     // closed by Release; nil when not holding
	users  map[string]string // user or device id -> userData members (raw JSON, no braces)
	window []time.Time       // times of the requests admitted within the last minute
	seen   []time.Time       // times of every authenticated request within the last minute
	fault  int               // status to answer for the next faults requests
	faults int
	// stats
	requests, ok, notSeen, unauthorized, throttled, failed atomic.Int64
	maxInWindow                                            atomic.Int64
	ids                                                    sync.Map // id -> *atomic.Int64 (requests per id)
}

// New starts a fake User Profile API on loopback, closed when the test ends.
func New(t testing.TB, secretKey string) *Amplitude {
	a := &Amplitude{SecretKey: secretKey, Limit: OrgLimit, Clock: clock.System,
		NotSeenStatus: http.StatusOK, users: map[string]string{}}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	return a
}

// AddUser adds a user known by user id (and device id when not empty) with
// one recommendation of the given items, and the user property "plan".
func (a *Amplitude) AddUser(userID, deviceID, recID string, items ...string) {
	b := []byte(`"recommendations":[{"rec_id":`)
	b = jsonw.AppendString(b, recID)
	b = append(b, `,"child_rec_id":`...)
	b = jsonw.AppendString(b, recID)
	b = append(b, `,"items":[`...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonw.AppendString(b, it)
	}
	b = append(b, `],"is_control":false,"recommendation_source":"model_v2","last_updated":1700000000}],"user_id":`...)
	b = jsonw.AppendString(b, userID)
	b = append(b, `,"device_id":`...)
	b = jsonw.AppendString(b, deviceID)
	b = append(b, `,"amp_props":{"plan":"pro"},"cohort_ids":["c1"]`...)
	a.mu.Lock()
	defer a.mu.Unlock()
	if userID != "" {
		a.users["u:"+userID] = string(b)
	}
	if deviceID != "" {
		a.users["d:"+deviceID] = string(b)
	}
}

// Hold makes every request from now on wait until Release: tests decide
// when Amplitude answers.
func (a *Amplitude) Hold() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gate == nil {
		a.gate = make(chan struct{})
	}
}

// Release answers the held requests and stops holding.
func (a *Amplitude) Release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gate != nil {
		close(a.gate)
		a.gate = nil
	}
}

// FailNext makes the next n requests answer status (after authentication).
func (a *Amplitude) FailNext(n, status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fault, a.faults = status, n
}

// Stats are the fake's counters.
type Stats struct {
	// Requests is every request received; the others split it by answer.
	Requests, OK, NotSeen, Unauthorized, Throttled, Failed int64
	// MaxInWindow is the most authenticated requests received in any 60 s
	// (admitted or throttled).
	MaxInWindow int64
}

// Stats returns the counters so far.
func (a *Amplitude) Stats() Stats {
	return Stats{Requests: a.requests.Load(), OK: a.ok.Load(), NotSeen: a.notSeen.Load(),
		Unauthorized: a.unauthorized.Load(), Throttled: a.throttled.Load(), Failed: a.failed.Load(),
		MaxInWindow: a.maxInWindow.Load()}
}

// RequestsFor returns how many requests asked for the user or device id.
func (a *Amplitude) RequestsFor(id string) int64 {
	if v, ok := a.ids.Load(id); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (a *Amplitude) serve(w http.ResponseWriter, r *http.Request) {
	a.requests.Add(1)
	if a.Latency > 0 {
		time.Sleep(a.Latency)
	}
	a.mu.Lock()
	gate := a.gate
	a.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	if r.URL.Path != Path || r.Method != http.MethodGet {
		w.WriteHeader(http.StatusNotFound) // Amplitude: "an empty error (HTTP 404)"
		return
	}
	switch secret, ok := a.credentials(r); {
	case !ok:
		a.unauthorized.Add(1)
		http.Error(w, "Missing Api-Key in Authorization header", http.StatusUnauthorized)
		return
	case secret != a.SecretKey:
		a.unauthorized.Add(1)
		http.Error(w, "Invalid Api-Key", http.StatusUnauthorized)
		return
	}
	if !a.admit() {
		a.throttled.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"error":"Number of concurrent requests exceeds limit"}`))
		return
	}
	q := r.URL.Query()
	uid, did := q.Get("user_id"), q.Get("device_id")
	for _, id := range []string{uid, did} {
		if id != "" {
			v, _ := a.ids.LoadOrStore(id, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
	}
	a.mu.Lock()
	fault := 0
	if a.faults > 0 {
		a.faults--
		fault = a.fault
	}
	data, found := a.users["u:"+uid]
	if !found && uid == "" {
		data, found = a.users["d:"+did]
	}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case fault != 0:
		a.failed.Add(1)
		w.WriteHeader(fault)
		_, _ = w.Write([]byte(`{"error":"internal error"}`))
	case uid == "" && did == "", !found:
		a.notSeen.Add(1)
		w.WriteHeader(a.NotSeenStatus)
		_, _ = w.Write([]byte(NotSeenError))
	default:
		a.ok.Add(1)
		_, _ = w.Write([]byte(`{"userData":{` + data + `}}`))
	}
}

// credentials returns the secret key of the Authorization header: "Api-Key
// <secret>" (Braze's and Amplitude's recommendation examples) or HTTP Basic
// api_key:secret_key (Amplitude's reference page).
func (a *Amplitude) credentials(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if s, ok := strings.CutPrefix(h, "Api-Key "); ok && s != "" {
		return s, true
	}
	if s, ok := strings.CutPrefix(h, "Basic "); ok {
		raw, err := base64.StdEncoding.DecodeString(s)
		if _, secret, found := strings.Cut(string(raw), ":"); err == nil && found {
			return secret, true
		}
	}
	return "", false
}

// admit records a request in the sliding minute and reports whether it is
// within the limit.
func (a *Amplitude) admit() bool {
	now := a.Clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(trimMinute(a.seen, now), now)
	if n := int64(len(a.seen)); n > a.maxInWindow.Load() {
		a.maxInWindow.Store(n)
	}
	a.window = trimMinute(a.window, now)
	if len(a.window) >= a.Limit {
		return false
	}
	a.window = append(a.window, now)
	return true
}

// trimMinute drops the times at least a minute before now.
func trimMinute(ts []time.Time, now time.Time) []time.Time {
	cut := 0
	for cut < len(ts) && now.Sub(ts[cut]) >= time.Minute {
		cut++
	}
	return ts[cut:]
}
