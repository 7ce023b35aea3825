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
	"strings"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonscan"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonvalid"
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
	if !gjson.Valid(raw) {
		// Told apart with gjson, whose reading of invalid JSON the error
		// reasons follow.
		list, hasType := eventsList(raw)
		if !list.IsArray() || hasType {
			return nil, false, nil
		}
		return nil, true, errors.New("request body is not valid JSON")
	}
	return splitValid(body, raw)
}

// splitValid is SplitEvents for a valid JSON object, in one pass: the
// elements of the first "events" member, when it is an array, are read in
// its place (jsonscan.ForEachFlat), as sub-slices of body.
func splitValid(body []byte, raw string) (events [][]byte, isBody bool, err error) {
	seen, isList, hasType := false, false, false
	descend := func(key string, array bool) bool { // called for top-level members only
		if key != "events" || seen {
			return false
		}
		seen, isList = true, array
		return array
	}
	n := 0
	jsonscan.ForEachFlat(raw, descend, func(k, v gjson.Result) bool {
		if k.Type == gjson.Number { // an element of the first "events" array
			switch {
			case err != nil:
			case !v.IsObject():
				err = errors.New(`item ` + strconv.Itoa(n) + ` of "events" must be a JSON object`)
			default:
				end := v.Index + len(v.Raw)
				events = append(events, body[v.Index:end:end])
			}
			n++
			return true
		}
		switch k.Str {
		case "events":
			seen = true // a first "events" that is no array
		case "event_type":
			hasType = true
		}
		return true
	})
	if !isList || hasType {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	return events, true, nil
}

// eventsList returns the first "events" member of the object raw (as Get
// would) and whether it has an event_type member, in one pass over its
// top-level keys, with gjson (raw need not be valid).
func eventsList(raw string) (list gjson.Result, hasType bool) {
	gjson.Parse(raw).ForEach(func(k, v gjson.Result) bool {
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

// SplitChecked is the fast path of splitting the request body Braze sends,
// exactly {"events":[{...},...]} (whitespace allowed): it returns the events
// when body is that, valid JSON nested at most maxDepth levels deep, and
// false otherwise (then the caller checks and splits it the slow way, which
// says what is wrong). It never parses the body recursively: each event is
// validated, bounded (two levels below the body) and delimited in one
// iterative pass (jsonvalid.Value), and the envelope between the events is
// checked byte by byte, so a body it accepts is valid as a whole. Events are
// sub-slices of body, appended to dst (a list to reuse, or nil); on false
// the result is nil, and dst's backing array may have been written.
func SplitChecked(dst [][]byte, body []byte, maxDepth int) ([][]byte, bool) {
	raw := unsafestr.FromBytes(body)
	i := skipSpace(raw, 0)
	for _, want := range []string{"{", `"events"`, ":", "["} {
		if !strings.HasPrefix(raw[i:], want) {
			return nil, false
		}
		i = skipSpace(raw, i+len(want))
	}
	events := dst
	if i < len(raw) && raw[i] == ']' {
		i++
	} else {
		for {
			if i >= len(raw) || raw[i] != '{' {
				return nil, false
			}
			// Where the event ends, its depth and its validity, in one pass.
			end, ok := jsonvalid.Value(body, i, maxDepth-2)
			if !ok {
				return nil, false
			}
			events = append(events, body[i:end:end])
			i = skipSpace(raw, end)
			if i < len(raw) && raw[i] == ',' {
				i = skipSpace(raw, i+1)
				continue
			}
			if i < len(raw) && raw[i] == ']' {
				i++
				break
			}
			return nil, false
		}
	}
	i = skipSpace(raw, i)
	if i >= len(raw) || raw[i] != '}' || skipSpace(raw, i+1) != len(raw) {
		return nil, false
	}
	return events, true
}

// skipSpace skips JSON whitespace.
func skipSpace(raw string, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}
