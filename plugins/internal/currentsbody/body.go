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

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonscan"
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
	raw := unsafestr.FromBytes(body)
	if root := gjson.Parse(raw); !root.IsObject() {
		return nil, false, nil
	}
	// Validate first, then split with the fast iterator (for valid JSON);
	// invalid JSON is told apart with gjson, whose reading of it the
	// error reasons follow.
	valid := gjson.Valid(raw)
	each := jsonscan.ForEach
	if !valid {
		each = func(raw string, f func(k, v gjson.Result) bool) { gjson.Parse(raw).ForEach(f) }
	}
	list, hasType := eventsList(raw, each)
	if !list.IsArray() || hasType {
		return nil, false, nil
	}
	if !valid {
		return nil, true, errors.New("request body is not valid JSON")
	}
	i := 0
	jsonscan.ForEach(list.Raw, func(_, v gjson.Result) bool {
		if !v.IsObject() {
			err = errors.New(`item ` + strconv.Itoa(i) + ` of "events" must be a JSON object`)
			return false
		}
		start := list.Index + v.Index // offsets in list.Raw, which starts at list.Index
		if end := start + len(v.Raw); list.Index > 0 && end <= len(body) && string(body[start:end]) == v.Raw {
			events = append(events, body[start:end:end])
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

// eventsList returns the first "events" member of the object raw (as Get
// would) and whether it has an event_type member, in one pass over its
// top-level keys.
func eventsList(raw string, each func(string, func(k, v gjson.Result) bool)) (list gjson.Result, hasType bool) {
	each(raw, func(k, v gjson.Result) bool {
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
	return list, hasType
}
