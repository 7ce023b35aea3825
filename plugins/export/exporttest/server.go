// Package exporttest provides a fake of Amplitude's Export API on loopback
// for tests and benchmarks.
//
// The server answers GET /api/2/export?start=YYYYMMDDTHH&end=YYYYMMDDTHH as
// Amplitude documents (https://amplitude.com/docs/apis/analytics/export):
// Basic auth with the API key and secret key (401 otherwise); both hours
// included and events selected by the hour they were uploaded
// (server_upload_time); the answer a zip holding, per upload hour, one or
// more gzipped JSON-lines files named <app>/<app>_<YYYY-MM-DD>_<H>#<n>.json.gz
// (RowsPerFile rows each); 404 when the range holds no event; 400 when the
// archive would exceed MaxBytes (4 GB by default). Faults can be queued with
// FailNext.
//
// Typical use:
//
//	srv := exporttest.NewServer(exporttest.Options{APIKey: "k", SecretKey: "s"})
//	defer srv.Close()
//	srv.Add(exporttest.Event{InsertID: "e1", EventType: "[Appboy] Email Open", UserID: "usr_1",
//		Time: t, Uploaded: t.Add(time.Minute)})
//	// point amplitude_export's url at srv.URL
package exporttest

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
)

// Options configure a Server.
type Options struct {
	// APIKey and SecretKey are the accepted credentials.
	APIKey, SecretKey string
	// App is the project id in file names and rows. Default 123456.
	App int
	// RowsPerFile splits an hour into several files. Default 1000.
	RowsPerFile int
	// MaxBytes is the largest archive answered; larger ranges get 400.
	// Default 4 GB.
	MaxBytes int
}

// Event is one stored event.
type Event struct {
	InsertID, EventType, UserID, DeviceID string
	// Time is the event time (client_event_time).
	Time time.Time
	// Uploaded is server_upload_time: it selects the export hour. Zero means
	// Time.
	Uploaded time.Time
	// Library is the row's library. Default "Braze".
	Library string
	// Raw, when set, is written as the row instead of one built from the
	// fields (for malformed rows).
	Raw []byte
}

// Server is the fake Export API.
type Server struct {
	*httptest.Server
	opts Options

	mu       sync.Mutex
	events   []Event
	faults   []int
	requests []string
}

// NewServer starts a Server on 127.0.0.1.
func NewServer(opts Options) *Server {
	if opts.App == 0 {
		opts.App = 123456
	}
	if opts.RowsPerFile <= 0 {
		opts.RowsPerFile = 1000
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = min(4<<30, math.MaxInt) // 4 GiB, or a 32-bit int's most
	}
	s := &Server{opts: opts}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Add stores events.
func (s *Server) Add(evs ...Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, evs...)
}

// FailNext makes the next requests fail with these statuses, in order.
func (s *Server) FailNext(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, statuses...)
}

// Requests returns the "start-end" of every request received.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/api/2/export" {
		http.NotFound(w, r)
		return
	}
	if k, sec, ok := r.BasicAuth(); !ok || k != s.opts.APIKey || sec != s.opts.SecretKey {
		http.Error(w, "Invalid API key", http.StatusUnauthorized)
		return
	}
	start, err1 := time.Parse("20060102T15", r.URL.Query().Get("start"))
	end, err2 := time.Parse("20060102T15", r.URL.Query().Get("end"))
	if err1 != nil || err2 != nil || end.Before(start) {
		http.Error(w, "Invalid start or end", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, r.URL.Query().Get("start")+"-"+r.URL.Query().Get("end"))
	if len(s.faults) > 0 {
		code := s.faults[0]
		s.faults = s.faults[1:]
		s.mu.Unlock()
		http.Error(w, http.StatusText(code), code)
		return
	}
	byHour := map[time.Time][]Event{}
	for _, ev := range s.events {
		up := ev.Uploaded
		if up.IsZero() {
			up = ev.Time
		}
		h := up.UTC().Truncate(time.Hour)
		if !h.Before(start) && !h.After(end) {
			byHour[h] = append(byHour[h], ev)
		}
	}
	s.mu.Unlock()
	if len(byHour) == 0 {
		http.Error(w, "No data", http.StatusNotFound)
		return
	}
	body, err := s.archive(byHour)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if len(body) > s.opts.MaxBytes {
		http.Error(w, "The file size of the exported data is too large. Shorten the time ranges and try again. The limit size is 4GB.", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	_, _ = w.Write(body)
}

func (s *Server) archive(byHour map[time.Time][]Event) ([]byte, error) {
	hours := make([]time.Time, 0, len(byHour))
	for h := range byHour {
		hours = append(hours, h)
	}
	sort.Slice(hours, func(i, j int) bool { return hours[i].Before(hours[j]) })
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, h := range hours {
		evs := byHour[h]
		for n := 0; n*s.opts.RowsPerFile < len(evs); n++ {
			name := fmt.Sprintf("%d/%d_%s_%d#%d.json.gz", s.opts.App, s.opts.App, h.Format("2006-01-02"), h.Hour(), n)
			fw, err := zw.Create(name)
			if err != nil {
				return nil, err
			}
			gz := gzip.NewWriter(fw)
			chunk := evs[n*s.opts.RowsPerFile : min(len(evs), (n+1)*s.opts.RowsPerFile)]
			for _, ev := range chunk {
				row := ev.Raw
				if row == nil {
					row = s.Row(ev)
				}
				if _, err := gz.Write(append(row, '\n')); err != nil {
					return nil, err
				}
			}
			if err := gz.Close(); err != nil {
				return nil, err
			}
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// rowTime formats a time as exported rows do.
func rowTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000") }

// Row returns the exported row of ev, with the fields Amplitude's schema
// lists.
func (s *Server) Row(ev Event) []byte {
	up := ev.Uploaded
	if up.IsZero() {
		up = ev.Time
	}
	b := []byte(`{"$insert_id":`)
	b = jsonw.AppendString(b, ev.InsertID)
	b = append(b, `,"app":`...)
	b = jsonw.AppendInt(b, int64(s.opts.App))
	b = append(b, `,"event_type":`...)
	b = jsonw.AppendString(b, ev.EventType)
	for _, f := range [...]struct{ k, v string }{{"user_id", ev.UserID}, {"device_id", ev.DeviceID}} {
		b = append(b, ',')
		b = jsonw.AppendKey(b, f.k)
		if f.v == "" {
			b = append(b, "null"...)
		} else {
			b = jsonw.AppendString(b, f.v)
		}
	}
	for _, f := range [...]struct {
		k string
		t time.Time
	}{{"client_event_time", ev.Time}, {"event_time", ev.Time}, {"client_upload_time", up}, {"server_upload_time", up}, {"server_received_time", up}, {"processed_time", up.Add(time.Minute)}} {
		b = append(b, ',')
		b = jsonw.AppendKey(b, f.k)
		b = jsonw.AppendString(b, rowTime(f.t))
	}
	lib := ev.Library
	if lib == "" {
		lib = "Braze"
	}
	b = append(b, `,"library":`...)
	b = jsonw.AppendString(b, lib)
	b = append(b, `,"amplitude_id":123456789,"uuid":"6a6c1f0e-0000-4000-8000-000000000000","event_properties":{"app_id":"a1"},"user_properties":{},"groups":{},"group_properties":{},"data":{},"platform":null,"os_name":null,"country":"France","session_id":-1,"sample_rate":null}`...)
	return b
}
