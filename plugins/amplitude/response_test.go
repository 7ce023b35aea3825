package amplitude

import (
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/redact"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		body      string
		n         int
		ctype     string
		verdict   verdict
		problem   string
		failed    map[int]deadletter.Reason // index -> reason
		throttled []int
		ids       []string // throttled id keys
		quota     []string
		message   string // substring of the message
	}{
		{name: "ok", status: 200, body: `{"code":200,"events_ingested":50,"payload_size_bytes":50,"server_upload_time":1396381378123}`, n: 50, verdict: verdictOK},
		{name: "ok non-json", status: 204, body: ``, n: 1, verdict: verdictOK},
		{name: "missing api_key", status: 400, body: `{"code":400,"error":"Request missing required field","missing_field":"api_key","events_with_invalid_fields":{"time":[3]}}`,
			n: 5, verdict: verdictOutage, problem: problemRequest, message: "api_key"},
		{name: "invalid api key", status: 400, body: `{"code":400,"error":"Invalid API key: secret-123"}`, n: 5, verdict: verdictOutage, problem: problemAuth, message: "Invalid API key"},
		{name: "indexes", status: 400, n: 14, verdict: verdictPartial, body: `{
			"code": 400, "error": "Request missing required field",
			"events_with_invalid_fields": {"time": [3, 4, 7]},
			"events_with_missing_fields": {"event_type": [3, 4, 7]},
			"events_with_invalid_id_lengths": {"user_id": [10, 11], "device_id": [13, 99]}}`,
			failed: map[int]deadletter.Reason{3: reasonMissingFields, 4: reasonMissingFields, 7: reasonMissingFields, 10: reasonInvalidIDLength, 11: reasonInvalidIDLength, 13: reasonInvalidIDLength}},
		{name: "silenced", status: 400, n: 7, verdict: verdictPartial, body: `{"code": 400, "error": "Events silenced for device_id", "eps_threshold": 100,
			"exceeded_daily_quota_devices": {}, "silenced_devices": ["a","b"], "silenced_events": [5, 6],
			"throttled_devices": {"a": 0}, "throttled_events": [3, 4]}`,
			failed: map[int]deadletter.Reason{5: reasonSilenced, 6: reasonSilenced}, throttled: []int{3, 4}, ids: []string{"device a"}},
		{name: "400 throttled only", status: 400, n: 3, verdict: verdictPartial, body: `{"code":400,"error":"x","throttled_users":{"u1":31},"throttled_events":[2]}`,
			throttled: []int{2}, ids: []string{"user u1"}},
		{name: "400 no index", status: 400, body: `{"code":400,"error":"Invalid event JSON"}`, n: 4, verdict: verdictBisect, message: "Invalid event JSON"},
		{name: "400 html", status: 400, body: `<html>bad</html>`, n: 4, verdict: verdictOutage, problem: problemHTML, message: "<html>bad</html>"},
		{name: "200 html portal", status: 200, ctype: "text/html; charset=utf-8", body: `<!doctype html><p>Sign in</p>`, n: 4, verdict: verdictOutage, problem: problemHTML},
		{name: "401", status: 401, body: `{"error":"Unauthorized"}`, n: 4, verdict: verdictOutage, problem: problemAuth},
		{name: "403 json", status: 403, body: `{"code":403,"error":"Forbidden"}`, n: 4, verdict: verdictOutage, problem: problemAuth},
		{name: "403 proxy text", status: 403, body: `Forbidden`, n: 4, verdict: verdictOutage, problem: problemAuth},
		{name: "404", status: 404, body: `404 page not found`, n: 4, verdict: verdictOutage, problem: problemNotFound},
		{name: "422 json", status: 422, body: `{"error":"bad event"}`, n: 4, verdict: verdictBisect},
		{name: "302", status: 302, body: ``, n: 4, verdict: verdictOutage, problem: problemUnsupported},
		{name: "413", status: 413, body: `{"code":413,"error":"Payload too large"}`, n: 4, verdict: verdictSplit},
		{name: "429 v2", status: 429, n: 8, verdict: verdictThrottled, body: `{"code": 429, "error": "Too many requests for some devices and users", "eps_threshold": 30,
			"throttled_devices": {"C8F9E604": 31}, "throttled_users": {"datamonster@amplitude.com": 32}, "throttled_events": [3, 4, 7, 8]}`,
			throttled: []int{3, 4, 7}, ids: []string{"device C8F9E604", "user datamonster@amplitude.com"}},
		{name: "429 quota", status: 429, n: 2, verdict: verdictThrottled, body: `{"code":429,"eps_threshold":1000,
			"exceeded_daily_quota_users": {"datanom@amplitude.com": 500200}, "exceeded_daily_quota_devices": {"A1A1": 500900}, "throttled_events":[1]}`,
			throttled: []int{1}, quota: []string{"device A1A1", "user datanom@amplitude.com"}},
		{name: "429 nobody", status: 429, body: `{"code":429,"error":"Too many requests"}`, n: 3, verdict: verdictOutage, problem: problemThrottle},
		{name: "500", status: 500, body: `{"code":500,"error":"Internal"}`, n: 3, verdict: verdictOutage, problem: problemServer, message: "Internal"},
		{name: "502 html", status: 502, body: `<html><h1>502 Bad Gateway</h1>` + strings.Repeat("x", 1000), n: 3, verdict: verdictOutage, problem: problemHTML, message: "502 Bad Gateway"},
		{name: "503 empty", status: 503, body: ``, n: 3, verdict: verdictOutage, problem: problemServer, message: "Service Unavailable"},
		{name: "408", status: 408, body: ``, n: 3, verdict: verdictOutage, problem: problemServer},
		// The key is redacted before the text is cut: no prefix of it
		// survives at the cut.
		{name: "key at the cut", status: 500, body: strings.Repeat("x", maxMessageLen-6) + "secret-123", n: 1, verdict: verdictOutage, problem: problemServer, message: "[redac"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := classify(answer{status: tc.status, contentType: tc.ctype, body: []byte(tc.body)}, tc.n, redact.New("secret-123"))
			if o.verdict != tc.verdict || o.status != tc.status || o.problem != tc.problem {
				t.Fatalf("verdict %d problem %q status %d, want %d %q", o.verdict, o.problem, o.status, tc.verdict, tc.problem)
			}
			if !strings.Contains(o.message, tc.message) || len(o.message) > maxMessageLen+4 {
				t.Errorf("message %q lacks %q", o.message, tc.message)
			}
			if strings.Contains(o.message, "secret") {
				t.Errorf("message repeats the key: %q", o.message)
			}
			got := map[int]deadletter.Reason{}
			for i, e := range o.failed {
				got[i] = e.Reason
			}
			if tc.failed == nil {
				tc.failed = map[int]deadletter.Reason{}
			}
			if !reflect.DeepEqual(got, tc.failed) {
				t.Errorf("failed %v, want %v", got, tc.failed)
			}
			if !reflect.DeepEqual(o.throttled, tc.throttled) {
				t.Errorf("throttled %v, want %v", o.throttled, tc.throttled)
			}
			if keys := sortedKeys(o.throttledIDs); !reflect.DeepEqual(keys, tc.ids) {
				t.Errorf("throttled ids %v, want %v", keys, tc.ids)
			}
			if keys := sortedKeys(o.quotaIDs); !reflect.DeepEqual(keys, tc.quota) {
				t.Errorf("quota ids %v, want %v", keys, tc.quota)
			}
		})
	}
}

func TestClassifyDetail(t *testing.T) {
	o := classify(answer{status: 400, body: []byte(`{"code":400,"events_with_invalid_fields":{"time":[0]},"events_with_missing_fields":{"event_type":[0]}}`)}, 1, redact.Redactor{})
	if got := o.failed[0].Error(); got != "missing_fields: Amplitude refused the event: missing event_type, invalid time" {
		t.Fatalf("got %q", got)
	}
}

func sortedKeys(m map[idKey]bool) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k.String())
	}
	sort.Strings(out)
	return out
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		`{"code":400,"events_with_invalid_fields":{"time":[0,5,-1,99999999999]},"silenced_events":[1]}`,
		`{"code":429,"throttled_devices":{"a":1},"throttled_events":[0,2,-3],"exceeded_daily_quota_users":{"u":1}}`,
		`{"code":400,"missing_field":"api_key"}`, `<html>`, ``, `{"error":12}`,
	} {
		f.Add(400, []byte(s))
		f.Add(429, []byte(s))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		const n = 3
		o := classify(answer{status: status, body: body}, n, redact.New("secret"))
		for i := range o.failed {
			if i < 0 || i >= n {
				t.Fatalf("failed index %d out of range", i)
			}
		}
		for _, i := range o.throttled {
			if i < 0 || i >= n {
				t.Fatalf("throttled index %d out of range", i)
			}
		}
		if o.verdict == verdictPartial && len(o.failed)+len(o.throttled)+len(o.throttledIDs) == 0 {
			t.Fatal("partial verdict naming no event")
		}
		if o.verdict == verdictOutage && o.problem == "" {
			t.Fatal("outage without a problem")
		}
		if strings.Contains(o.message, "secret") {
			t.Fatal("the key survived redaction")
		}
	})
}
