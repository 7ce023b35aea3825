package amplitude

import (
	"bytes"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/redact"
)

// verdict says what to do with the events of a request after its answer.
type verdict int

const (
	verdictOK        verdict = iota // 2xx (JSON or empty): ingested
	verdictPartial                  // 400 naming events: fail those, re-send the rest now
	verdictSplit                    // 413: halve and re-send
	verdictBisect                   // 400 (or a JSON 4xx) naming no event: halve to isolate
	verdictThrottled                // 429 naming events or ids
	verdictOutage                   // not the events' fault: back off and retry, then nack
)

// Problems: what kind of outage an answer is, for logs.
const (
	problemServer      = "server_error"          // 5xx, 408
	problemThrottle    = "destination_throttled" // 429 naming nobody
	problemAuth        = "unauthorized"          // 401/403/407, invalid or missing API key
	problemNotFound    = "not_found"             // 404/405: a wrong URL or a proxy
	problemHTML        = "html_answer"           // an HTML page: a proxy, WAF or captive portal
	problemTransport   = "connection"            // timeouts, refused or cut connections
	problemRequest     = "request_refused"       // 400 about the request (not an event)
	problemUnreadable  = "unreadable_answer"     // the answer could not be read
	problemUnsupported = "unexpected_status"     // 1xx/3xx
)

// outcome is a classified answer. Indexes refer to the request's events.
type outcome struct {
	verdict verdict
	status  int    // HTTP status; 0 for transport errors
	problem string // the kind of outage, for verdictOutage
	message string // the answer's error text, redacted, then cut to maxMessageLen
	// failed maps the events a 400 names to their errors.
	failed map[int]*deadletter.Error
	// throttled lists the events a 429 (or a 400) names as throttled.
	throttled []int
	// throttledIDs and quotaIDs are id keys (deviceKey/userKey) a 429 or 400
	// names; silencedIDs are the silenced_devices.
	throttledIDs map[idKey]bool
	quotaIDs     map[idKey]bool
	silencedIDs  []string
	// ingested is events_ingested of a 2xx (-1 when absent).
	ingested int
	// retryAfter is the Retry-After header of a 429 or 503 (0 when absent).
	retryAfter time.Duration
}

// maxMessageLen bounds the part of an answer quoted in errors and logs.
const maxMessageLen = 256

// answer is what classify needs of an HTTP answer.
type answer struct {
	status      int
	contentType string
	retryAfter  string
	body        []byte
}

// classify turns an answer to a request of n events into an outcome. It is
// the one place that decides whether a refusal is the events' fault
// (https://amplitude.com/docs/apis/analytics/http-v2#status-codes): only a
// 400 naming events, a 413 for one event and a 400 that bisection isolates to
// one event are; every other failure is an outage, retried and then nacked,
// so that an invalid API key, a proxy's 403 or an HTML error page never sends
// the stream to the dead-letter output. Text quoted from the answer is
// redacted before it is cut to length, so no prefix of a secret survives.
func classify(a answer, n int, red redact.Redactor) outcome {
	o := outcome{status: a.status, ingested: -1}
	var parsed gjson.Result
	isJSON := gjson.ValidBytes(a.body)
	if isJSON {
		parsed = gjson.ParseBytes(a.body)
	}
	html := !isJSON && (strings.Contains(strings.ToLower(a.contentType), "html") ||
		bytes.HasPrefix(bytes.TrimSpace(a.body), []byte("<")))
	msg := parsed.Get("error").Str
	if msg == "" && !parsed.IsObject() {
		msg = strings.TrimSpace(string(a.body))
	}
	if strings.HasPrefix(msg, "Invalid API key") {
		msg = "Invalid API key" // the rest repeats the key
	}
	msg = red.String(msg)
	if len(msg) > maxMessageLen {
		msg = strings.ToValidUTF8(msg[:maxMessageLen], "") + "…"
	}
	if msg == "" {
		msg = http.StatusText(a.status)
	}
	o.message = msg
	if secs, err := strconv.Atoi(strings.TrimSpace(a.retryAfter)); err == nil && secs > 0 {
		o.retryAfter = time.Duration(secs) * time.Second
	}
	outage := func(problem string) outcome {
		o.verdict, o.problem = verdictOutage, problem
		return o
	}
	switch {
	case html:
		return outage(problemHTML)
	case a.status >= 200 && a.status < 300:
		o.verdict = verdictOK
		if v := parsed.Get("events_ingested"); v.Type == gjson.Number {
			o.ingested = int(v.Int())
		}
	case a.status == http.StatusBadRequest:
		classify400(&o, parsed, n)
	case a.status == http.StatusRequestEntityTooLarge:
		o.verdict = verdictSplit
	case a.status == http.StatusTooManyRequests:
		classify429(&o, parsed, n)
	case a.status == http.StatusUnauthorized, a.status == http.StatusForbidden, a.status == http.StatusProxyAuthRequired:
		return outage(problemAuth)
	case a.status == http.StatusNotFound, a.status == http.StatusMethodNotAllowed:
		return outage(problemNotFound)
	case a.status == http.StatusRequestTimeout || a.status >= 500:
		return outage(problemServer)
	case a.status >= 400 && isJSON:
		// Another 4xx in JSON: permanent for some event of the payload.
		o.verdict = verdictBisect
	default:
		return outage(problemUnsupported)
	}
	return o
}

// indexReasons maps the 400 body keys that name events to failure reasons.
var indexReasons = []struct {
	key    string
	reason deadletter.Reason
	what   string
}{
	{"events_with_missing_fields", reasonMissingFields, "missing"},
	{"events_with_invalid_fields", reasonInvalidFields, "invalid"},
	{"events_with_invalid_id_lengths", reasonInvalidIDLength, "invalid length of"},
}

func classify400(o *outcome, body gjson.Result, n int) {
	if body.Get("missing_field").Exists() || o.message == "Invalid API key" {
		// The request, not an event, is refused: a configuration problem
		// (or our bug) that needs a person; never the events' fault.
		if mf := body.Get("missing_field"); mf.Exists() {
			o.message += ": " + mf.String()
		}
		o.verdict, o.problem = verdictOutage, problemRequest
		if o.message == "Invalid API key" {
			o.problem = problemAuth
		}
		return
	}
	failed := map[int]*deadletter.Error{}
	add := func(i int64, reason deadletter.Reason, problem string) {
		if i < 0 || i >= int64(n) {
			return
		}
		if prev, ok := failed[int(i)]; ok {
			prev.Err = errorString(prev.Err.Error() + ", " + problem)
			return
		}
		failed[int(i)] = eventFault(reason, "Amplitude refused the event: "+problem)
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
	for _, d := range body.Get("silenced_devices").Array() {
		if d.Str != "" {
			o.silencedIDs = append(o.silencedIDs, d.Str)
		}
	}
	// A 400 may also name throttled ids and events: they are held, not
	// failed.
	collectThrottles(o, body, n)
	if len(failed) == 0 && len(o.throttled)+len(o.throttledIDs) == 0 {
		o.verdict = verdictBisect
		return
	}
	o.failed = failed
	o.verdict = verdictPartial
}

// errorString is a constant error text.
type errorString string

func (e errorString) Error() string { return string(e) }

// collectThrottles fills the throttled and daily-quota ids and events of a
// 429 or 400 body.
func collectThrottles(o *outcome, body gjson.Result, n int) {
	o.throttledIDs = map[idKey]bool{}
	o.quotaIDs = map[idKey]bool{}
	collect := func(path string, key func(string) idKey, into map[idKey]bool) {
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
}

func classify429(o *outcome, body gjson.Result, n int) {
	collectThrottles(o, body, n)
	if len(o.throttled)+len(o.throttledIDs)+len(o.quotaIDs) == 0 {
		// No device or user named: a throttle of the whole destination.
		o.verdict, o.problem = verdictOutage, problemThrottle
		return
	}
	o.verdict = verdictThrottled
}
