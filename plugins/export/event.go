package export

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
	"github.com/opencurrents/currents-amplitude/plugins/internal/unsafestr"
)

// Event holds the fields of one Amplitude event that reconciliation needs.
type Event struct {
	// InsertID is the event's insert_id ($insert_id in exported rows): the
	// Currents event id for events this project delivered.
	InsertID string
	// EventType is the Amplitude event_type.
	EventType string
	// Time is the event time in Unix milliseconds: the `time` sent to
	// Amplitude, exported as client_event_time.
	Time int64
	// UserID and DeviceID are the Amplitude ids; either may be empty.
	UserID, DeviceID string
	// Library is the sender's library field ("Braze" for events this
	// project delivers); may be empty.
	Library string
}

// MaxFieldLength bounds every string field of a decoded event (Amplitude's
// own string limit is 1024 characters).
const MaxFieldLength = 1024

// Hour formats of the Export API's start and end parameters and of the
// exported timestamps.
const (
	// QueryHourLayout is the layout of the start and end query parameters.
	QueryHourLayout = "20060102T15"
	// rowTimeLayout is the layout of exported timestamps, such as
	// "2026-11-29 13:05:12.123000"; a "T" separator and a trailing "Z" are
	// accepted too (Amplitude's S3 schema shows "2015-08-10T12:00:00.000000").
	rowTimeLayout = "2006-01-02 15:04:05.999999999"
)

// ErrNoInsertID is returned for a row without an insert id: it cannot be
// reconciled.
var ErrNoInsertID = errors.New("event has no insert_id")

// ParseEvent decodes one event in either of two shapes: an Export API row
// (with "$insert_id" and "client_event_time") or the compact record
// AppendCompact writes (and any Amplitude HTTP API event: "insert_id" and a
// "time" in milliseconds). On error, the fields decoded so far (Library
// first) are returned.
func ParseEvent(b []byte) (Event, error) {
	if !gjson.ValidBytes(b) {
		return Event{}, errors.New("not valid JSON")
	}
	// Read b in place (no copy of the whole row); stringField clones what
	// it keeps, so the Event does not alias b.
	r := gjson.Parse(unsafestr.FromBytes(b))
	if !r.IsObject() {
		return Event{}, errors.New("not a JSON object")
	}
	var ev Event
	var err error
	// The library first: a caller may skip other senders' rows even when
	// they lack fields this decoder requires.
	if ev.Library, err = stringField(r.Get("library"), "library"); err != nil {
		return ev, err
	}
	if v := r.Get(`\$insert_id`); v.Exists() {
		if ev.InsertID, err = stringField(v, "$insert_id"); err != nil {
			return ev, err
		}
		if ev.Time, err = rowTime(r); err != nil {
			return ev, err
		}
	} else {
		if ev.InsertID, err = stringField(r.Get("insert_id"), "insert_id"); err != nil {
			return ev, err
		}
		t := r.Get("time")
		if t.Type != gjson.Number {
			return ev, errors.New("time: not a number of milliseconds")
		}
		if ev.Time, err = strconv.ParseInt(t.Raw, 10, 64); err != nil {
			return ev, fmt.Errorf("time: %w", err)
		}
	}
	if ev.InsertID == "" {
		return ev, ErrNoInsertID
	}
	if ev.EventType, err = stringField(r.Get("event_type"), "event_type"); err != nil {
		return ev, err
	}
	if ev.EventType == "" {
		return ev, errors.New("event has no event_type")
	}
	if ev.UserID, err = stringField(r.Get("user_id"), "user_id"); err != nil {
		return ev, err
	}
	ev.DeviceID, err = stringField(r.Get("device_id"), "device_id")
	return ev, err
}

// stringField reads an optional string field: absent and null give "".
func stringField(v gjson.Result, name string) (string, error) {
	switch v.Type {
	case gjson.Null:
		return "", nil
	case gjson.String:
		if len(v.Str) > MaxFieldLength {
			return "", fmt.Errorf("%s: longer than %d bytes", name, MaxFieldLength)
		}
		return strings.Clone(v.Str), nil
	}
	return "", fmt.Errorf("%s: not a string", name)
}

// rowTime reads the event time of an exported row: client_event_time (the
// time the sender set), else event_time.
func rowTime(r gjson.Result) (int64, error) {
	for _, name := range [...]string{"client_event_time", "event_time"} {
		v := r.Get(name)
		if v.Type == gjson.Null {
			continue
		}
		if v.Type != gjson.String {
			return 0, fmt.Errorf("%s: not a timestamp string", name)
		}
		t, err := ParseRowTime(v.Str)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return t.UnixMilli(), nil
	}
	return 0, errors.New("row has neither client_event_time nor event_time")
}

// ParseRowTime parses an exported timestamp, always UTC:
// "2026-11-29 13:05:12.123000", "2026-11-29T13:05:12.123", optionally ending
// in "Z".
func ParseRowTime(s string) (time.Time, error) {
	if len(s) < len("2006-01-02 15:04:05") || len(s) > 40 {
		return time.Time{}, fmt.Errorf("timestamp %q: unexpected length", s)
	}
	b := []byte(strings.TrimSuffix(s, "Z"))
	if b[10] == 'T' {
		b[10] = ' '
	}
	t, err := time.Parse(rowTimeLayout, string(b))
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp %q: not of the form 2006-01-02 15:04:05.000000", s)
	}
	return t, nil
}

// AppendCompact appends ev as the compact JSON record the amplitude_export
// input emits: {"insert_id","event_type","time","user_id","device_id",
// "library"}, the last three left out when empty.
func AppendCompact(dst []byte, ev Event) []byte {
	dst = append(dst, `{"insert_id":`...)
	dst = jsonw.AppendString(dst, ev.InsertID)
	dst = append(dst, `,"event_type":`...)
	dst = jsonw.AppendString(dst, ev.EventType)
	dst = append(dst, `,"time":`...)
	dst = jsonw.AppendInt(dst, ev.Time)
	if ev.UserID != "" {
		dst = append(dst, `,"user_id":`...)
		dst = jsonw.AppendString(dst, ev.UserID)
	}
	if ev.DeviceID != "" {
		dst = append(dst, `,"device_id":`...)
		dst = jsonw.AppendString(dst, ev.DeviceID)
	}
	if ev.Library != "" {
		dst = append(dst, `,"library":`...)
		dst = jsonw.AppendString(dst, ev.Library)
	}
	return append(dst, '}')
}

// ParseHour parses a whole UTC hour given as the Export API writes it
// (20261129T13), as an RFC 3339 time in any zone (2026-11-29T14:00:00+01:00),
// as 2026-11-29T13 or as a date (2026-11-29, midnight UTC). A time that is
// not on a whole UTC hour is refused: reconciliation works on whole export
// hours.
func ParseHour(s string) (time.Time, error) {
	var t time.Time
	var err error
	for _, layout := range [...]string{QueryHourLayout, time.RFC3339Nano, "2006-01-02T15", "2006-01-02"} {
		if t, err = time.Parse(layout, s); err == nil {
			break
		}
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: expected YYYYMMDDTHH, YYYY-MM-DDTHH, a date or an RFC 3339 time", s)
	}
	t = t.UTC()
	if !t.Equal(t.Truncate(time.Hour)) {
		return time.Time{}, fmt.Errorf("time %q is not a whole UTC hour (%s)", s, t.Format(time.RFC3339Nano))
	}
	return t, nil
}
