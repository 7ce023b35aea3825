// Package currentsbody holds the contract between the components that carry Braze
// Currents events: the metadata key naming an event's Currents type, and the
// Currents HTTP request body ({"events": [...]}) split into its events.
//
// The ingest input (braze_currents_http), the Avro scanner (currents_avro)
// and the mapper (braze_to_amplitude) import it instead of each other, so
// that the key and the body format are defined once.
package currentsbody

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/unsafestr"
)

// MetaEventType is the metadata key holding the Currents event type, e.g.
// "users.behaviors.Purchase": set by currents_avro on every record (flat
// storage records carry no event_type field), read by braze_to_amplitude
// when an event has no event_type field, and set by it on every output.
const MetaEventType = "currents_event_type"

// eventsKey is the key of a request body's event list, as it appears in the
// raw JSON.
var eventsKey = []byte(`"events"`)

// containsEventsKey is bytes.Contains(body, eventsKey), about three times
// faster on an event: it looks for the key's 'v', of which an event holds a
// few, instead of its first byte, a quote, of which it holds a hundred.
func containsEventsKey(body []byte) bool {
	const v = 2 // index of 'v' in eventsKey
	for i := v; i+len(eventsKey)-v <= len(body); i++ {
		j := bytes.IndexByte(body[i:len(body)-(len(eventsKey)-v-1)], 'v')
		if j < 0 {
			return false
		}
		i += j
		if bytes.Equal(body[i-v:i-v+len(eventsKey)], eventsKey) {
			return true
		}
	}
	return false
}

// SplitEvents recognises a Currents HTTP request body, {"events": [...]},
// and returns its events as sub-slices of body (no copy), each valid JSON
// (the whole body is validated, so the mapper may map them without
// validating them again). isBody is false, with no error, when body is not
// such an envelope (a single event); an envelope that is not valid JSON or
// whose "events" holds a non-object returns an error.
func SplitEvents(body []byte) (events [][]byte, isBody bool, err error) {
	if !containsEventsKey(body) {
		// The common case, a single event: one fast byte scan instead of two
		// gjson lookups through the whole event.
		return nil, false, nil
	}
	root := gjson.Parse(unsafestr.FromBytes(body))
	if !root.IsObject() {
		return nil, false, nil
	}
	// One pass over the top-level keys (two Gets would scan the events
	// twice); the first "events" wins, as with Get.
	var list gjson.Result
	hasType := false
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "events":
			if !list.Exists() {
				list = v
			}
		case "event_type":
			hasType = true
		}
		return true
	})
	if !list.IsArray() || hasType {
		return nil, false, nil
	}
	if !gjson.ValidBytes(body) {
		return nil, true, errors.New("request body is not valid JSON")
	}
	i := 0
	list.ForEach(func(_, v gjson.Result) bool {
		if !v.IsObject() {
			err = errors.New(`item ` + strconv.Itoa(i) + ` of "events" must be a JSON object`)
			return false
		}
		if end := v.Index + len(v.Raw); v.Index > 0 && end <= len(body) && string(body[v.Index:end]) == v.Raw {
			events = append(events, body[v.Index:end:end])
		} else {
			events = append(events, []byte(v.Raw))
		}
		i++
		return true
	})
	if err != nil {
		return nil, true, err
	}
	return events, true, nil
}
