package amplitude

import (
	"net/http"
	"sort"
	"strings"

	"github.com/tidwall/gjson"
)

// Failure reasons: the `reason` label of amplitude_events_failed and the
// parenthesised word of a failed message's error.
const (
	reasonInvalidEvent     = "invalid_event"     // not a JSON object
	reasonMissingFields    = "missing_fields"    // event_type or both ids missing
	reasonInvalidFields    = "invalid_fields"    // a field value Amplitude refuses
	reasonInvalidIDLength  = "invalid_id_length" // an id Amplitude finds too short
	reasonSilenced         = "silenced"          // device silenced by Amplitude
	reasonDailyQuota       = "daily_quota"       // id over its daily quota
	reasonTooLarge         = "payload_too_large" // one event above the request limits
	reasonRejected         = "rejected"          // refused by a 4xx without event indexes
	reasonRequest          = "request_refused"   // whole request refused (api key, missing field)
	reasonRetriesExhausted = "retries_exhausted" // 5xx/timeouts until the back-off ran out
)

// eventError is the error of one failed message.
type eventError struct {
	reason string
	detail string
}

func newEventError(reason, detail string) *eventError {
	return &eventError{reason: reason, detail: detail}
}

// Error returns "amplitude (<reason>): <detail>".
func (e *eventError) Error() string {
	return "amplitude (" + e.reason + "): " + e.detail
}

// verdict says what to do with the events of a request after its answer.
type verdict int

const (
	verdictOK        verdict = iota // 2xx: ingested
	verdictPartial                  // 400 naming events: fail those, re-send the rest now
	verdictFatal                    // the whole request is refused for good
	verdictSplit                    // 413: halve and re-send
	verdictBisect                   // refused without naming events: halve to isolate
	verdictThrottled                // 429 naming events or ids
	verdictRetry                    // 5xx, 408, bare 429, transport error: back off
)

// outcome is a classified answer. Indexes refer to the request's events.
type outcome struct {
	verdict verdict
	status  int    // HTTP status; 0 for transport errors
	message string // the answer's error text (not yet redacted)
	// failed maps the events a 400 names to their errors.
	failed map[int]*eventError
	// throttled lists the events a 429 names.
	throttled []int
	// throttledIDs and quotaIDs are id keys (deviceKey/userKey) a 429 names.
	throttledIDs map[string]bool
	quotaIDs     map[string]bool
}

// maxMessageLen bounds the part of an answer quoted in errors and logs.
const maxMessageLen = 256

// classify turns an answer to a request of n events into an outcome
// (amplitude-api.md §4.7). Non-JSON bodies are tolerated.
func classify(status int, body []byte, n int) outcome {
	o := outcome{status: status}
	var parsed gjson.Result
	if gjson.ValidBytes(body) {
		parsed = gjson.ParseBytes(body)
	}
	o.message = parsed.Get("error").Str
	if o.message == "" && !parsed.IsObject() {
		o.message = strings.TrimSpace(string(body))
	}
	if len(o.message) > maxMessageLen {
		o.message = strings.ToValidUTF8(o.message[:maxMessageLen], "") + "…"
	}
	if o.message == "" {
		o.message = http.StatusText(status)
	}
	switch {
	case status >= 200 && status < 300:
		o.verdict = verdictOK
	case status == http.StatusBadRequest:
		classify400(&o, parsed, n)
	case status == http.StatusRequestEntityTooLarge:
		o.verdict = verdictSplit
	case status == http.StatusTooManyRequests:
		classify429(&o, parsed, n)
	case status == http.StatusRequestTimeout || status >= 500:
		o.verdict = verdictRetry
	default: // 403 (WAF) and other 4xx: permanent for some event of the payload
		o.verdict = verdictBisect
	}
	return o
}

// indexReasons maps the 400 body keys that name events to failure reasons.
var indexReasons = []struct{ key, reason, what string }{
	{"events_with_missing_fields", reasonMissingFields, "missing"},
	{"events_with_invalid_fields", reasonInvalidFields, "invalid"},
	{"events_with_invalid_id_lengths", reasonInvalidIDLength, "invalid length of"},
}

func classify400(o *outcome, body gjson.Result, n int) {
	if mf := body.Get("missing_field"); mf.Exists() || strings.HasPrefix(o.message, "Invalid API key") {
		o.verdict = verdictFatal
		if strings.HasPrefix(o.message, "Invalid API key") {
			o.message = "Invalid API key" // the rest repeats the key
		} else {
			o.message += ": " + mf.String()
		}
		return
	}
	o.failed = map[int]*eventError{}
	add := func(i int64, reason, problem string) {
		if i < 0 || i >= int64(n) {
			return
		}
		if prev, ok := o.failed[int(i)]; ok {
			prev.detail += ", " + problem
			return
		}
		o.failed[int(i)] = newEventError(reason, "Amplitude refused the event: "+problem)
	}
	for _, ir := range indexReasons {
		fields := body.Get(ir.key)
		keys := make([]string, 0, 4)
		fields.ForEach(func(k, _ gjson.Result) bool {
			keys = append(keys, k.Str)
			return true
		})
		sort.Strings(keys) // stable error texts
		for _, field := range keys {
			for _, i := range fields.Get(gjson.Escape(field)).Array() {
				add(i.Int(), ir.reason, ir.what+" "+field)
			}
		}
	}
	for _, i := range body.Get("silenced_events").Array() {
		add(i.Int(), reasonSilenced, "device_id silenced")
	}
	if len(o.failed) == 0 {
		o.failed = nil
		o.verdict = verdictBisect
		return
	}
	o.verdict = verdictPartial
}

func classify429(o *outcome, body gjson.Result, n int) {
	o.throttledIDs = map[string]bool{}
	o.quotaIDs = map[string]bool{}
	collect := func(path string, key func(string) string, into map[string]bool) {
		body.Get(path).ForEach(func(k, _ gjson.Result) bool {
			into[key(k.Str)] = true
			return true
		})
	}
	collect("throttled_devices", deviceKey, o.throttledIDs)
	collect("throttled_users", userKey, o.throttledIDs)
	collect("exceeded_daily_quota_devices", deviceKey, o.quotaIDs)
	collect("exceeded_daily_quota_users", userKey, o.quotaIDs)
	for _, i := range body.Get("throttled_events").Array() {
		if v := i.Int(); v >= 0 && v < int64(n) {
			o.throttled = append(o.throttled, int(v))
		}
	}
	if len(o.throttled)+len(o.throttledIDs)+len(o.quotaIDs) == 0 {
		// No device or user named: a throttle of the whole destination.
		o.verdict = verdictRetry
		return
	}
	o.verdict = verdictThrottled
}
