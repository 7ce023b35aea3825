package currents

import (
	"bytes"
	"errors"

	"github.com/tidwall/gjson"
)

// eventsKey is the key of a request body's event list, as it appears in the
// raw JSON.
var eventsKey = []byte(`"events"`)

// SplitEvents recognises a Currents HTTP request body, {"events": [...]},
// and returns its events as sub-slices of body (no copy), each valid JSON
// (the whole body is validated, so Mapper.AppendValidEvent may map them
// without validating them again). isBody is false,
// with no error, when body is not such an envelope (a single event); an
// envelope that is not valid JSON or whose "events" holds a non-object
// returns an error.
func SplitEvents(body []byte) (events [][]byte, isBody bool, err error) {
	if !bytes.Contains(body, eventsKey) {
		// The common case, a single event: one fast byte scan instead of two
		// gjson lookups through the whole event.
		return nil, false, nil
	}
	root := gjson.Parse(bytesToString(body))
	if !root.IsObject() {
		return nil, false, nil
	}
	list := root.Get("events")
	if !list.IsArray() || root.Get("event_type").Exists() {
		return nil, false, nil
	}
	if !gjson.ValidBytes(body) {
		return nil, true, errors.New("request body is not valid JSON")
	}
	list.ForEach(func(_, v gjson.Result) bool {
		if !v.IsObject() {
			err = errors.New(`every item of "events" must be a JSON object, got ` + typeName(v))
			return false
		}
		if end := v.Index + len(v.Raw); v.Index > 0 && end <= len(body) && string(body[v.Index:end]) == v.Raw {
			events = append(events, body[v.Index:end:end])
		} else {
			events = append(events, []byte(v.Raw))
		}
		return true
	})
	if err != nil {
		return nil, true, err
	}
	return events, true, nil
}
