package profile

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter string
		body       string
		want       outcome
		wantBody   string
		wantRetry  time.Duration
	}{
		{"profile", 200, "", `{"userData":{"recommendations":[{"rec_id":"r1","items":["a","b"],"is_control":false}],"user_id":"u1","amp_props":null}}`,
			outOK, `{"source":"amplitude","recommendations":[{"rec_id":"r1","items":["a","b"],"is_control":false}],"user_id":"u1","amp_props":null}`, 0},
		{"profile with a source member keeps ours", 200, "", `{"userData":{"source":"x","cohort_ids":["c1"]}}`,
			outOK, `{"source":"amplitude","cohort_ids":["c1"]}`, 0},
		{"not seen, 200", 200, "", `{"error":"User id and device id not seen before"}`, outNotSeen, "", 0},
		{"not seen, 400", 400, "", `{"error":"User id and device id not seen before"}`, outNotSeen, "", 0},
		{"invalid key", 401, "", "Invalid Api-Key", outUnauthorized, "", 0},
		{"missing key", 401, "", "Missing Api-Key in Authorization header", outUnauthorized, "", 0},
		{"throttled", 429, "", `{"error":"Number of concurrent requests exceeds limit"}`, outThrottled, "", 0},
		{"throttled with Retry-After", 429, "30", `{}`, outThrottled, "", 30 * time.Second},
		{"unavailable", 500, "", `oops`, outServerError, "", 0},
		{"bad gateway", 503, "", ``, outServerError, "", 0},
		{"wrong path", 404, "", ``, outError, "", 0},
		{"redirect to https", 301, "", `<html>`, outError, "", 0},
		{"no userData", 200, "", `{"foo":1}`, outError, "", 0},
		{"not JSON", 200, "", `nope`, outError, "", 0},
		{"too large", 200, "", `{"userData":{"x":"` + strings.Repeat("a", maxAnswerBytes) + `"}}`, outError, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := classify(tc.status, tc.retryAfter, []byte(tc.body))
			assert.Equal(t, tc.want, f.out, f.detail)
			if tc.wantBody != "" {
				assert.JSONEq(t, tc.wantBody, string(f.body))
			}
			assert.Equal(t, tc.wantRetry, f.retryAfter)
		})
	}
}

func TestRequestURL(t *testing.T) {
	c := &client{base: "https://profile-api.amplitude.com",
		params: params{getRecs: true, getAmpProps: true, getCohortIDs: true, getComputations: true}}
	u, err := url.Parse(c.url(Query{UserID: "u 1&x", RecID: "r1,r2", RecType: "model", CompID: "c9"}))
	require.NoError(t, err)
	assert.Equal(t, "/v1/userprofile", u.Path)
	assert.Equal(t, url.Values{"user_id": {"u 1&x"}, "get_recs": {"true"}, "rec_id": {"r1,r2"}, "rec_type": {"model"},
		"get_amp_props": {"true"}, "get_cohort_ids": {"true"}, "get_computations": {"true"}, "comp_id": {"c9"}}, u.Query())

	c.params = params{}
	u, err = url.Parse(c.url(Query{DeviceID: "d1", RecID: "ignored without get_recs"}))
	require.NoError(t, err)
	assert.Equal(t, url.Values{"device_id": {"d1"}}, u.Query())
}

func TestAuthHeader(t *testing.T) {
	assert.Equal(t, "Api-Key s3cret", authHeader("", "s3cret"))
	assert.Equal(t, "Basic YWs6czNjcmV0", authHeader("ak", "s3cret")) // base64("ak:s3cret")
}

func TestDefaultBody(t *testing.T) {
	b, err := defaultBody(` {"recommendations":[{"items":["x"]}]} `)
	require.NoError(t, err)
	assert.JSONEq(t, `{"source":"default","recommendations":[{"items":["x"]}]}`, string(b))
	b, err = defaultBody(`{}`)
	require.NoError(t, err)
	assert.JSONEq(t, `{"source":"default"}`, string(b))
	for _, bad := range []string{`[]`, `nope`, `{"source":"x"}`, ``} {
		_, err := defaultBody(bad)
		assert.Error(t, err, bad)
	}
}

func TestJSONPath(t *testing.T) {
	for raw, want := range map[string]string{
		`${! json("user_id") }`: "user_id", `${!json("a.b")}`: "a.b",
		`${! json("a") + "x" }`: "", `${! meta("a") }`: "", `plain`: "", `${! json("a b") }`: "",
	} {
		got, ok := jsonPath(raw)
		assert.Equal(t, want, got, raw)
		assert.Equal(t, want != "", ok, raw)
	}
}

// FuzzClassify checks that no answer of Amplitude makes classify panic, and
// that a profile answer is always valid JSON.
func FuzzClassify(f *testing.F) {
	f.Add(200, []byte(`{"userData":{"recommendations":[{"items":["a"]}]}}`))
	f.Add(200, []byte(`{"error":"User id and device id not seen before"}`))
	f.Add(429, []byte(`{}`))
	f.Add(200, []byte(`{"userData":{"a\"b":1,"":[}}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		r := classify(status, "", body)
		if r.out == outOK && !gjson.ValidBytes(r.body) {
			t.Fatalf("invalid answer %q from %q", r.body, body)
		}
	})
}

// TestFetchDoesNotFollowRedirects: Amplitude answers plain HTTP with a 301 to
// HTTPS; the key must not be sent again to wherever Location points.
func TestFetchDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Bool
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed.Store(true) }))
	defer target.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.RequestURI(), http.StatusMovedPermanently)
	}))
	defer redirect.Close()
	c := &client{base: redirect.URL, auth: authHeader("", "k"), http: newHTTPClient(10)}
	f := c.fetch(context.Background(), Query{UserID: "u1"})
	assert.Equal(t, outError, f.out)
	assert.False(t, followed.Load())
}
