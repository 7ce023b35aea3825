package amplitude

import (
	"context"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonscan"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonvalid"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
	"github.com/opencurrents/currents-amplitude/plugins/internal/trusted"
	"github.com/opencurrents/currents-amplitude/plugins/internal/unsafestr"
)

// Amplitude's per-request limits, counted on the uncompressed JSON body: at
// most 2000 events per request, 1 MB per HTTP V2 request
// (https://amplitude.com/docs/apis/analytics/http-v2#upload-limit) and 20 MB
// per Batch request
// (https://amplitude.com/docs/apis/analytics/batch-event-upload#upload-limit).
const (
	maxEventsPerRequest   = 2000
	maxBytesHTTPV2Request = 1_000_000
	maxBytesBatchRequest  = 20_000_000
)

// refusedIDs are user_id/device_id values Amplitude always refuses with 400
// (compared in lower case).
var refusedIDs = map[string]bool{
	"anonymous": true, "nil": true, "none": true, "null": true, "n/a": true, "na": true,
	"undefined": true, "unknown": true, `""`: true, "00000000-0000-0000-0000-000000000000": true,
	"{}": true, "lmy47d": true, "0": true, "-1": true,
}

// maxRefusedIDLen is the length of the longest refusedIDs entry but the
// all-zero UUID, which the all-zero check covers.
const maxRefusedIDLen = 9

// event is one message's Amplitude event, checked and ready to send.
type event struct {
	index    int    // index of the message in the batch
	raw      []byte // the event object's JSON
	deviceID string
	userID   string
	// removed says which id was removed before sending and why, such as
	// "user_id: shorter than min_id_length 5" ("" when none was).
	removed string
	// refusals counts refusals of the event sent alone (bisection).
	refusals int
	// ctx is the message's context when it can end (nil otherwise): an
	// event whose context ended is abandoned, not sent (abandon.go).
	ctx context.Context
	// hd and hu are idHash of the device and the user, computed once when
	// the event is built (0: not computed, or no such id), so that the
	// pacer and the arrival guard hash each id once per event whatever the
	// attempts.
	hd, hu uint64
	// sd and su are the slots (plus one; 0: not known) in which the pacer's
	// prefetch last found the device and the user (idtable's FindHinted), so
	// that charging the event and counting its answer do not walk their
	// probes again, and the answer's prefetch loads the slot's line at once.
	sd, su uint32
}

// hints returns the slots in which the pacer last found e's ids (idtable's
// FindHinted hints: 0 - 1 is idtable.NoHint).
func (e *event) hints() (jd, ju uint32) { return e.sd - 1, e.su - 1 }

// hint returns the device's hint, or with user the user's.
func (e *event) hint(user bool) uint32 {
	if user {
		return e.su - 1
	}
	return e.sd - 1
}

// idKey names a device or a user, as Amplitude throttles them. Looking one
// up in a map does not allocate.
type idKey struct {
	user bool
	id   string
}

func deviceKey(id string) idKey { return idKey{id: id} }
func userKey(id string) idKey   { return idKey{user: true, id: id} }

// String returns "device <id>" or "user <id>".
func (k idKey) String() string {
	if k.user {
		return "user " + k.id
	}
	return "device " + k.id
}

// idKeys returns the throttling keys of the event's ids; a key with an empty
// id stands for an absent id.
func (e *event) idKeys() [2]idKey {
	return [2]idKey{deviceKey(e.deviceID), userKey(e.userID)}
}

// hashes returns idHash of the event's device and user (0 for an absent
// id), from the ones computed when it was built if any.
func (e *event) hashes() (hd, hu uint64) {
	hd, hu = e.hd, e.hu
	if hd == 0 && e.deviceID != "" {
		hd = idHash(deviceKey(e.deviceID))
	}
	if hu == 0 && e.userID != "" {
		hu = idHash(userKey(e.userID))
	}
	return hd, hu
}

// requestBuilder checks events and writes request bodies.
type requestBuilder struct {
	minIDLength int
	tooShort    string // the refusal of an id shorter than minIDLength
	maxEvents   int
	maxBytes    int
	prefix      []byte // {"api_key":"…","events":[
	suffix      []byte // ],"options":{…}}
}

func newRequestBuilder(apiKey string, minIDLength, maxEvents, maxBytes int) *requestBuilder {
	prefix := jsonw.AppendKey([]byte("{"), "api_key")
	prefix = jsonw.AppendString(prefix, apiKey)
	prefix = append(prefix, `,"events":[`...)
	suffix := append([]byte(`],"options":{"min_id_length":`), jsonw.AppendInt(nil, int64(minIDLength))...)
	suffix = append(suffix, "}}"...)
	return &requestBuilder{
		minIDLength: minIDLength,
		tooShort:    "shorter than min_id_length " + strconv.Itoa(minIDLength),
		maxEvents:   maxEvents,
		maxBytes:    maxBytes,
		prefix:      prefix,
		suffix:      suffix,
	}
}

// refusal says why Amplitude would refuse id as a user_id or device_id, or
// returns "" when it would accept it.
func (b *requestBuilder) refusal(id string) string {
	switch {
	case len(id) <= maxRefusedIDLen && refusedIDs[strings.ToLower(id)]:
		return "a placeholder"
	case allZeros(id):
		// All-zero advertising ids (iOS Limit Ad Tracking) are refused too.
		return "all zeros"
	case utf8.RuneCountInString(id) < b.minIDLength:
		return b.tooShort
	}
	return ""
}

// prepare checks one message's JSON and fills ev. Ids Amplitude always
// refuses are removed from the event; an event without event_type, without
// any usable id, with a non-integer time or too large for a request is
// refused with the reason.
func (b *requestBuilder) prepare(ev *event, index int, raw []byte) *deadletter.Error {
	return b.prepareMarked(ev, index, raw, nil)
}

// prepareMarked is prepare for bytes that mark may vouch for (nil: none
// does): valid JSON is not validated again, and of the Amplitude events of
// braze_to_amplitude only the fields before event_properties (scalars, see
// trusted.Mark.PropertiesLast) are read.
func (b *requestBuilder) prepareMarked(ev *event, index int, raw []byte, mark *trusted.Mark) *deadletter.Error {
	if mark == nil && !gjson.ValidBytes(raw) {
		return eventFault(reasonInvalidEvent, "message is not valid JSON")
	}
	var f headFields
	read := false
	if mark != nil && mark.PropertiesLast() {
		f, read = readScalars(unsafestr.FromBytes(raw))
	}
	if !read {
		// The message's bytes do not change while it is written; the ids
		// taken from them are cloned by whatever keeps them longer (holds).
		obj := gjson.Parse(unsafestr.FromBytes(raw))
		if !obj.IsObject() {
			return eventFault(reasonInvalidEvent, "message is not a JSON object")
		}
		// One pass over the top-level keys (valid JSON: validated or marked).
		jsonscan.ForEach(obj.Raw, func(k, v gjson.Result) bool {
			f.set(k.Str, v)
			return true
		})
	}
	eventType, userID, deviceID, tm := f.eventType, f.userID, f.deviceID, f.time
	if eventType.Type != gjson.String || eventType.Str == "" {
		return eventFault(reasonMissingFields, "event_type is missing or not a non-empty string")
	}
	if tm.Exists() && (tm.Type != gjson.Number || strings.ContainsAny(tm.Raw, ".eE")) {
		return eventFault(reasonInvalidFields, "time must be an integer of milliseconds since the epoch")
	}
	*ev = event{index: index, raw: raw}
	var drop []string
	var why string
	if ev.userID, why = b.usableID(userID); why != "" {
		drop = append(drop, "user_id")
		ev.removed = "user_id: " + why
	}
	if ev.deviceID, why = b.usableID(deviceID); why != "" {
		drop = append(drop, "device_id")
		ev.removed = "device_id: " + why
	}
	if ev.userID == "" && ev.deviceID == "" {
		return eventFault(reasonMissingFields, "no user_id or device_id Amplitude accepts (shorter than min_id_length, a placeholder such as \"null\", or missing)")
	}
	if len(drop) > 0 {
		ev.raw = withoutKeys(gjson.Parse(unsafestr.FromBytes(raw)), drop)
	}
	if len(b.prefix)+len(ev.raw)+len(b.suffix) > b.maxBytes {
		return eventFault(reasonTooLarge, "event is larger than one request may be")
	}
	ev.hd, ev.hu = ev.hashes()
	return nil
}

// headFields are the top-level fields of an event the output reads.
type headFields struct {
	eventType, userID, deviceID, time gjson.Result
}

// set keeps v when key is one of the fields.
func (f *headFields) set(key string, v gjson.Result) {
	if p := f.field(key); p != nil {
		*p = v
	}
}

// field returns the field named key, or nil when key is none of them.
func (f *headFields) field(key string) *gjson.Result {
	switch key {
	case "event_type":
		return &f.eventType
	case "user_id":
		return &f.userID
	case "device_id":
		return &f.deviceID
	case "time":
		return &f.time
	}
	return nil
}

// readScalars reads the fields from obj, an Amplitude event object written
// by braze_to_amplitude (see trusted.Mark.PropertiesLast): compact, every
// member before event_properties a string or a number, and event_properties,
// an object, last. It stops at event_properties, and skips the members it
// does not keep without parsing them; it yields what jsonscan.ForEach would.
// ok is false when obj is not exactly that shape (whitespace, an escaped
// key, another kind of value): the caller then reads it the general way.
func readScalars(obj string) (f headFields, ok bool) {
	if len(obj) < 2 || obj[0] != '{' {
		return f, false
	}
	for i := 1; ; {
		if i >= len(obj) || obj[i] != '"' {
			return f, false
		}
		kend, escaped := quotedEnd(obj, i)
		if kend < 0 || escaped || kend >= len(obj) || obj[kend] != ':' {
			return f, false
		}
		key, first := obj[i+1:kend-1], i == 1
		i = kend + 1
		// The value is built only for a field kept; the others are skipped.
		kept := f.field(key)
		var end int
		switch {
		case i >= len(obj):
			return f, false
		case obj[i] == '{' && key == "event_properties" && !first:
			// The last member, where trusted.PropertiesKey first occurs
			// (a string cannot hold `,"` unescaped): not read.
			return f, true
		case obj[i] == '"':
			if end, escaped = quotedEnd(obj, i); end < 0 {
				return f, false
			}
			if kept != nil {
				*kept = gjson.Result{Type: gjson.String, Raw: obj[i:end], Str: obj[i+1 : end-1], Index: i}
				if escaped {
					kept.Str = gjson.Parse(kept.Raw).Str
				}
			}
		case obj[i] == '-' || obj[i] >= '0' && obj[i] <= '9':
			end = jsonscan.NumberEnd(obj, i+1)
			if kept != nil {
				// Num is not read by prepare: only the type and the text.
				*kept = gjson.Result{Type: gjson.Number, Raw: obj[i:end], Index: i}
			}
		default:
			return f, false
		}
		switch {
		case end < len(obj) && obj[end] == ',':
			i = end + 1
		case end == len(obj)-1 && obj[end] == '}': // no event_properties
			return f, true
		default:
			return f, false
		}
	}
}

// quotedEnd returns the offset after the JSON string starting at s[i] (a
// quote), or -1 when it does not end, and whether it holds an escape. Eight
// bytes are looked at a time (a vectorised search's set-up costs more than
// an id or a key), the last few one by one.
func quotedEnd(s string, i int) (int, bool) {
	escaped := false
	for j := i + 1; ; {
		for j+8 <= len(s) {
			if m := jsonvalid.QuoteOrBackslash(jsonvalid.Load64(s, j)); m != 0 {
				j += bits.TrailingZeros64(m) >> 3
				break
			}
			j += 8
		}
		if j >= len(s) {
			return -1, escaped
		}
		switch s[j] {
		case '"':
			return j + 1, escaped
		case '\\':
			escaped = true
			j += 2 // the escaped byte
		default:
			j++ // one of the last bytes, fewer than eight
		}
	}
}

// allZeros reports whether id holds only '0' and '-' (strings.Trim(id, "0-")
// == "", without building the cut set).
func allZeros(id string) bool {
	for i := 0; i < len(id); i++ {
		if id[i] != '0' && id[i] != '-' {
			return false
		}
	}
	return true
}

// usableID returns the id in v, or why Amplitude refuses it (then the key
// must be removed). A missing id is "" with no reason.
func (b *requestBuilder) usableID(v gjson.Result) (id, why string) {
	switch {
	case !v.Exists():
		return "", ""
	case v.Type != gjson.String:
		return "", "not a string"
	}
	if why := b.refusal(v.Str); why != "" {
		return "", why
	}
	return v.Str, ""
}

// withoutKeys rewrites a JSON object without the top-level keys named.
func withoutKeys(obj gjson.Result, keys []string) []byte {
	out := make([]byte, 0, len(obj.Raw))
	out = append(out, '{')
	first := true
	obj.ForEach(func(k, v gjson.Result) bool {
		for _, d := range keys {
			if k.Str == d {
				return true
			}
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, k.Raw...)
		out = append(out, ':')
		out = append(out, v.Raw...)
		return true
	})
	return append(out, '}')
}

// split cuts events into requests within the event and byte limits, keeping
// their order.
func (b *requestBuilder) split(events []*event) [][]*event {
	var out [][]*event
	envelope := len(b.prefix) + len(b.suffix)
	start, size := 0, envelope
	for i, e := range events {
		add := len(e.raw)
		if i > start {
			add++ // comma
		}
		if i > start && (i-start >= b.maxEvents || size+add > b.maxBytes) {
			out = append(out, events[start:i:i])
			start, size, add = i, envelope, len(e.raw)
		}
		size += add
	}
	if start < len(events) {
		out = append(out, events[start:len(events):len(events)])
	}
	return out
}

// build appends the request body for events to dst.
func (b *requestBuilder) build(dst []byte, events []*event) []byte {
	dst = append(dst, b.prefix...)
	for i, e := range events {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e.raw...)
	}
	return append(dst, b.suffix...)
}
