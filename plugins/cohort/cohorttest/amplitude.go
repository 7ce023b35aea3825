// Package cohorttest provides loopback fakes of Amplitude's Behavioral Cohorts
// API and of Braze's /users/track and partner cohort endpoints, for tests of
// the cohort plugins.
package cohorttest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Cohort is one cohort of the fake Amplitude project.
type Cohort struct {
	Name         string
	LastComputed int64
	Archived     bool
	// UserIDs are the members; an empty string is an anonymous member.
	UserIDs []string
	// DeviceIDs, when set, is parallel to UserIDs and adds a device_id column.
	DeviceIDs []string
}

// Amplitude is a fake of Amplitude's cohort export API: the list, the async
// export job (202 while in progress), the file endpoint redirecting (302) to a
// storage URL serving a CSV with a header row. It checks HTTP Basic auth.
type Amplitude struct {
	*httptest.Server
	APIKey, SecretKey string
	// PollsBeforeDone is how many status polls answer 202 JOB INPROGRESS.
	PollsBeforeDone int
	// Fault, when set, is asked for each authenticated API request; a
	// non-zero status is answered instead of the real answer (a fault).
	Fault func(path string) int

	mu        sync.Mutex
	cohorts   map[string]Cohort
	order     []string
	jobs      map[string]*job
	requests  int
	downloads int
}

type job struct {
	cohortID string
	snapshot Cohort
	polls    int
}

// NewAmplitude starts a fake Amplitude API on loopback, closed at test end.
func NewAmplitude(t testing.TB, apiKey, secretKey string) *Amplitude {
	a := &Amplitude{APIKey: apiKey, SecretKey: secretKey, PollsBeforeDone: 1,
		cohorts: map[string]Cohort{}, jobs: map[string]*job{}}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	return a
}

// SetCohort adds or replaces a cohort.
func (a *Amplitude) SetCohort(id string, c Cohort) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.cohorts[id]; !ok {
		a.order = append(a.order, id)
	}
	a.cohorts[id] = c
}

// Requests is how many cohort exports were requested (what counts against
// Amplitude's monthly budget).
func (a *Amplitude) Requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests
}

// Downloads is how many cohort files were served.
func (a *Amplitude) Downloads() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.downloads
}

func (a *Amplitude) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/storage/") {
		a.serveFile(w, strings.TrimPrefix(r.URL.Path, "/storage/"))
		return
	}
	if u, p, ok := r.BasicAuth(); !ok || u != a.APIKey || p != a.SecretKey {
		http.Error(w, `{"error":"Invalid API key or secret key"}`, http.StatusUnauthorized)
		return
	}
	if a.Fault != nil {
		if code := a.Fault(r.URL.Path); code != 0 {
			http.Error(w, `{"error":"injected fault"}`, code)
			return
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	path := r.URL.Path
	switch {
	case path == "/api/3/cohorts":
		a.writeList(w)
	case strings.HasPrefix(path, "/api/5/cohorts/request-status/"):
		j, ok := a.jobs[strings.TrimPrefix(path, "/api/5/cohorts/request-status/")]
		if !ok {
			http.Error(w, `{"error":"unknown request"}`, http.StatusNotFound)
			return
		}
		status, code := "JOB COMPLETED", http.StatusOK
		if j.polls < a.PollsBeforeDone {
			j.polls++
			status, code = "JOB INPROGRESS", http.StatusAccepted
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"request_id":%q,"cohort_id":%q,"async_status":%q}`, path[strings.LastIndex(path, "/")+1:], j.cohortID, status)
	case strings.HasPrefix(path, "/api/5/cohorts/request/") && strings.HasSuffix(path, "/file"):
		id := strings.TrimSuffix(strings.TrimPrefix(path, "/api/5/cohorts/request/"), "/file")
		if j, ok := a.jobs[id]; !ok || j.polls < a.PollsBeforeDone {
			http.Error(w, `{"error":"job not complete"}`, http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, "/storage/"+id, http.StatusFound)
	case strings.HasPrefix(path, "/api/5/cohorts/request/"):
		id := strings.TrimPrefix(path, "/api/5/cohorts/request/")
		c, ok := a.cohorts[id]
		if !ok {
			http.Error(w, `{"error":"cohort not found"}`, http.StatusNotFound)
			return
		}
		a.requests++
		reqID := "req-" + strconv.Itoa(a.requests)
		a.jobs[reqID] = &job{cohortID: id, snapshot: c}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"request_id":%q,"cohort_id":%q}`, reqID, id)
	default:
		http.NotFound(w, r)
	}
}

func (a *Amplitude) writeList(w http.ResponseWriter) {
	type item struct {
		ID           string `json:"id"`
		Name         string `json:"name"`
		LastComputed int64  `json:"lastComputed"`
		Archived     bool   `json:"archived"`
		Size         int    `json:"size"`
	}
	list := make([]item, 0, len(a.order))
	for _, id := range a.order {
		c := a.cohorts[id]
		list = append(list, item{ID: id, Name: c.Name, LastComputed: c.LastComputed, Archived: c.Archived, Size: len(c.UserIDs)})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"cohorts": list})
}

// serveFile streams the CSV of a completed job (the pre-signed storage URL).
func (a *Amplitude) serveFile(w http.ResponseWriter, reqID string) {
	a.mu.Lock()
	j, ok := a.jobs[reqID]
	if ok {
		a.downloads++
	}
	a.mu.Unlock()
	if !ok {
		http.Error(w, "NoSuchKey", http.StatusNotFound)
		return
	}
	c := j.snapshot
	w.Header().Set("Content-Type", "text/csv")
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteString(`"amplitude_id","user_id"`)
	if c.DeviceIDs != nil {
		bw.WriteString(`,"device_id"`)
	}
	bw.WriteString("\r\n")
	var line []byte
	for i, u := range c.UserIDs {
		line = strconv.AppendInt(line[:0], int64(1000000+i), 10)
		line = append(line, ',')
		line = appendCSV(line, u)
		if c.DeviceIDs != nil {
			line = append(line, ',')
			line = appendCSV(line, c.DeviceIDs[i])
		}
		line = append(line, '\r', '\n')
		bw.Write(line)
	}
	bw.Flush()
}

// appendCSV appends s as an RFC 4180 quoted field.
func appendCSV(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
