package cohorttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Response is a scripted answer of the Braze fake.
type Response struct {
	Status  int
	Headers map[string]string
	Body    string
}

// Braze is a fake of Braze's REST API: /users/track (Bearer REST key, at most
// 75 attribute objects, custom attribute array add/remove,
// _update_existing_only) and the partner cohort endpoints (partner key and
// client secret in the body, at most 1,000 ids per request). Every answer
// carries X-RateLimit-* headers; scripted answers (429, 5xx…) are served
// first, in order.
type Braze struct {
	*httptest.Server
	RESTKey, PartnerKey, ClientSecret string
	// Now is the clock used for X-RateLimit-Reset.
	Now func() time.Time

	mu        sync.Mutex
	script    []Response
	requests  int
	attrs     map[string]map[string]map[string]bool // attribute -> user -> values
	known     map[string]bool                       // users that exist (for _update_existing_only)
	cohorts   map[string]map[string]bool            // cohort id -> "user:<id>" / "device:<id>"
	names     map[string]string
	nameCalls int
}

// NewBraze starts a fake Braze REST API on loopback, closed at test end.
func NewBraze(t testing.TB, restKey, partnerKey, clientSecret string) *Braze {
	b := &Braze{RESTKey: restKey, PartnerKey: partnerKey, ClientSecret: clientSecret, Now: time.Now,
		attrs: map[string]map[string]map[string]bool{}, cohorts: map[string]map[string]bool{}, names: map[string]string{}}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.Close)
	return b
}

// Script queues answers served before normal processing, one per request.
func (b *Braze) Script(rs ...Response) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.script = append(b.script, rs...)
}

// KnownUsers restricts /users/track with _update_existing_only to these
// users; without a call every user is known.
func (b *Braze) KnownUsers(ids ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.known = map[string]bool{}
	for _, id := range ids {
		b.known[id] = true
	}
}

// Requests is the number of requests received, scripted ones included.
func (b *Braze) Requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests
}

// UsersWith returns, sorted, the users whose attribute array holds value.
func (b *Braze) UsersWith(attribute, value string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for u, vals := range b.attrs[attribute] {
		if vals[value] {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// CohortMembers returns, sorted, the members of a partner cohort as
// "user:<id>" or "device:<id>".
func (b *Braze) CohortMembers(cohortID string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for m, in := range b.cohorts[cohortID] {
		if in {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// CohortName returns the name given to a partner cohort and how many naming
// calls were made in total.
func (b *Braze) CohortName(cohortID string) (string, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.names[cohortID], b.nameCalls
}

func (b *Braze) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests++
	reset := b.Now().Add(3 * time.Second).Unix()
	w.Header().Set("X-RateLimit-Limit", "3000")
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-RateLimit-Remaining", "2999")
	if len(b.script) > 0 {
		s := b.script[0]
		b.script = b.script[1:]
		for k, v := range s.Headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(s.Status)
		fmt.Fprint(w, s.Body)
		return
	}
	if r.Method != http.MethodPost {
		fail(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	switch {
	case r.URL.Path == "/users/track":
		b.usersTrack(w, r)
	case strings.HasPrefix(r.URL.Path, "/partners/") && strings.HasSuffix(r.URL.Path, "/cohorts/users"):
		b.cohortUsers(w, r)
	case strings.HasPrefix(r.URL.Path, "/partners/") && strings.HasSuffix(r.URL.Path, "/cohorts"):
		b.nameCohort(w, r)
	default:
		fail(w, http.StatusNotFound, "not found")
	}
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (b *Braze) usersTrack(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+b.RESTKey {
		fail(w, http.StatusUnauthorized, "Invalid API key")
		return
	}
	var req struct {
		Attributes []map[string]json.RawMessage `json:"attributes"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "Invalid JSON: "+err.Error())
		return
	}
	if len(req.Attributes) > 75 {
		fail(w, http.StatusBadRequest, "Too many attributes objects: maximum 75 per request")
		return
	}
	var objErrors []map[string]any
	for i, obj := range req.Attributes {
		var id string
		if err := json.Unmarshal(obj["external_id"], &id); err != nil || id == "" {
			objErrors = append(objErrors, map[string]any{"type": "missing external_id", "index": i})
			continue
		}
		existingOnly := string(obj["_update_existing_only"]) == "true"
		if existingOnly && b.known != nil && !b.known[id] {
			continue // Braze silently skips unknown users
		}
		for key, raw := range obj {
			if key == "external_id" || key == "_update_existing_only" {
				continue
			}
			var op map[string][]string
			if err := json.Unmarshal(raw, &op); err != nil {
				objErrors = append(objErrors, map[string]any{"type": "bad attribute " + key, "index": i})
				continue
			}
			users := b.attrs[key]
			if users == nil {
				users = map[string]map[string]bool{}
				b.attrs[key] = users
			}
			if users[id] == nil {
				users[id] = map[string]bool{}
			}
			for _, v := range op["add"] {
				users[id][v] = true
			}
			for _, v := range op["remove"] {
				delete(users[id], v)
			}
		}
	}
	w.WriteHeader(http.StatusCreated)
	resp := map[string]any{"message": "success", "attributes_processed": len(req.Attributes)}
	if objErrors != nil {
		resp["errors"] = objErrors
	}
	_ = json.NewEncoder(w).Encode(resp)
}

type partnerAuth struct {
	PartnerAPIKey string `json:"partner_api_key"`
	ClientSecret  string `json:"client_secret"`
	CohortID      string `json:"cohort_id"`
}

func (b *Braze) checkPartner(w http.ResponseWriter, a partnerAuth) bool {
	switch {
	case a.PartnerAPIKey != b.PartnerKey:
		fail(w, http.StatusUnauthorized, "Invalid Partner API key")
	case a.ClientSecret != b.ClientSecret:
		// The real API echoes the secret here.
		fail(w, http.StatusUnauthorized, "Partner not enabled for client with client secret: "+a.ClientSecret)
	case a.CohortID == "":
		fail(w, http.StatusBadRequest, "cohort_id must be a valid string")
	default:
		return true
	}
	return false
}

func (b *Braze) nameCohort(w http.ResponseWriter, r *http.Request) {
	var req struct {
		partnerAuth
		Name      string `json:"name"`
		CreatedAt string `json:"created_at"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "Invalid JSON")
		return
	}
	if !b.checkPartner(w, req.partnerAuth) {
		return
	}
	if req.Name == "" {
		fail(w, http.StatusBadRequest, "name must be a non-empty string")
		return
	}
	if _, err := time.Parse(time.RFC3339, req.CreatedAt); err != nil {
		fail(w, http.StatusBadRequest, "created_at must be a valid time as an ISO-8601 string")
		return
	}
	b.names[req.CohortID] = req.Name
	b.nameCalls++
	w.WriteHeader(http.StatusCreated)
	fmt.Fprint(w, `{"message":"success"}`)
}

func (b *Braze) cohortUsers(w http.ResponseWriter, r *http.Request) {
	var req struct {
		partnerAuth
		Changes []struct {
			UserIDs      []string `json:"user_ids"`
			DeviceIDs    []string `json:"device_ids"`
			ShouldRemove bool     `json:"should_remove"`
		} `json:"cohort_changes"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "cohort_changes must be an array of objects each with key user_ids and/or device_ids mapping to an array of strings, or an aliases object")
		return
	}
	if !b.checkPartner(w, req.partnerAuth) {
		return
	}
	n := 0
	for _, c := range req.Changes {
		n += len(c.UserIDs) + len(c.DeviceIDs)
	}
	if n > 1000 {
		fail(w, http.StatusBadRequest, "Only 1,000 user_ids, device_ids, and aliases are allowed per request")
		return
	}
	members := b.cohorts[req.CohortID]
	if members == nil {
		members = map[string]bool{}
		b.cohorts[req.CohortID] = members
	}
	for _, c := range req.Changes {
		for _, ids := range []struct {
			prefix string
			ids    []string
		}{{"user:", c.UserIDs}, {"device:", c.DeviceIDs}} {
			for _, id := range ids.ids {
				if c.ShouldRemove {
					delete(members, ids.prefix+id)
				} else {
					members[ids.prefix+id] = true
				}
			}
		}
	}
	w.WriteHeader(http.StatusCreated)
	fmt.Fprint(w, `{"message":"success"}`)
}
