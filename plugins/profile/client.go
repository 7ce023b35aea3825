package profile

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
)

// profileAPIURL is the only region of the User Profile API: Amplitude does
// not offer it in its EU data centre
// (https://amplitude.com/docs/apis/analytics/user-profile).
const profileAPIURL = "https://profile-api.amplitude.com"

// maxAnswerBytes bounds the body read from Amplitude (Braze's Connected
// Content takes at most 1 MB answers).
const maxAnswerBytes = 1 << 20

// Query is what one profile is fetched by: the id (user or device) and the
// per-request parameters. It is the profile's key in the cache.
type Query struct {
	UserID, DeviceID, RecID, RecType, CompID string
}

// params are the fixed query parameters of every request.
type params struct {
	getRecs, getAmpProps, getCohortIDs, getComputations bool
}

// outcome is the class of one answer from Amplitude.
type outcome int

const (
	outOK           outcome = iota // 200 with userData
	outNotSeen                     // "User id and device id not seen before": a known-empty profile
	outUnauthorized                // 401 Invalid Api-Key / Missing Api-Key: a configuration error
	outThrottled                   // 429: the organisation's budget is spent
	outServerError                 // 5xx
	outError                       // transport error, timeout, or an answer of no documented shape
)

var outcomeNames = [...]string{"ok", "not_seen", "unauthorized", "throttled", "server_error", "error"}

func (o outcome) String() string { return outcomeNames[o] }

// fetched is one answer of Amplitude, classified.
type fetched struct {
	out outcome
	// body is the Liquid-shaped answer (outOK only).
	body []byte
	// retryAfter is Amplitude's Retry-After on 429 (0 when absent).
	retryAfter time.Duration
	// detail describes a failure for the log (never holds the key).
	detail string
}

// client calls the User Profile API.
type client struct {
	base   string // scheme://host, no trailing slash
	auth   string // Authorization header value
	params params
	http   *http.Client
}

// authHeader returns the Authorization value: "Api-Key <secret>" as Braze's
// page and Amplitude's recommendation guide show, or HTTP Basic
// api_key:secret_key (Amplitude's API reference) when apiKey is set.
func authHeader(apiKey, secretKey string) string {
	if apiKey == "" {
		return "Api-Key " + secretKey
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(apiKey+":"+secretKey))
}

// url returns the request URL of q.
func (c *client) url(q Query) string {
	v := make(url.Values, 8)
	set := func(on bool, k, val string) {
		if on && val != "" {
			v.Set(k, val)
		}
	}
	set(true, "user_id", q.UserID)
	set(true, "device_id", q.DeviceID)
	set(c.params.getRecs, "get_recs", "true")
	set(c.params.getRecs, "rec_id", q.RecID)
	set(c.params.getRecs, "rec_type", q.RecType)
	set(c.params.getAmpProps, "get_amp_props", "true")
	set(c.params.getCohortIDs, "get_cohort_ids", "true")
	set(c.params.getComputations, "get_computations", "true")
	set(true, "comp_id", q.CompID)
	return c.base + "/v1/userprofile?" + v.Encode()
}

// fetch asks Amplitude for q's profile and classifies the answer.
func (c *client) fetch(ctx context.Context, q Query) fetched {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(q), nil)
	if err != nil {
		return fetched{out: outError, detail: err.Error()}
	}
	req.Header.Set("Authorization", c.auth)
	resp, err := c.http.Do(req)
	if err != nil {
		// The error names the URL, which holds ids but never the key.
		return fetched{out: outError, detail: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return fetched{out: outError, detail: "reading the answer: " + err.Error()}
	}
	return classify(resp.StatusCode, resp.Header.Get("Retry-After"), body)
}

// classify maps one HTTP answer of the User Profile API to its outcome, as
// Amplitude documents them.
func classify(status int, retryAfter string, body []byte) fetched {
	switch {
	case status == http.StatusUnauthorized:
		return fetched{out: outUnauthorized, detail: "401 " + snippet(body)}
	case status == http.StatusTooManyRequests:
		f := fetched{out: outThrottled, detail: "429 " + snippet(body)}
		if s, err := strconv.Atoi(strings.TrimSpace(retryAfter)); err == nil && s > 0 {
			f.retryAfter = time.Duration(s) * time.Second
		}
		return f
	case status >= 500:
		return fetched{out: outServerError, detail: strconv.Itoa(status) + " " + snippet(body)}
	case len(body) > maxAnswerBytes:
		return fetched{out: outError, detail: "answer larger than 1 MB"}
	case !gjson.ValidBytes(body):
		return fetched{out: outError, detail: "answer is not JSON " + strconv.Itoa(status) + " " + snippet(body)}
	}
	if msg := gjson.GetBytes(body, "error"); msg.Type == gjson.String && strings.Contains(msg.Str, "not seen before") {
		return fetched{out: outNotSeen}
	}
	data := gjson.GetBytes(body, "userData")
	if status != http.StatusOK || !data.IsObject() {
		return fetched{out: outError, detail: "unexpected answer " + strconv.Itoa(status) + " " + snippet(body)}
	}
	return fetched{out: outOK, body: liquidBody(data)}
}

// liquidBody returns the answer served to Braze: the members of userData
// (recommendations, amp_props, cohort_ids, user_id, device_id…) at the top
// level, so that a template reads connected.recommendations[0].items, with
// "source":"amplitude" first.
func liquidBody(data gjson.Result) []byte {
	b := make([]byte, 0, len(data.Raw)+24)
	b = append(b, `{"source":"amplitude"`...)
	data.ForEach(func(k, v gjson.Result) bool {
		if k.Str == "source" {
			return true
		}
		b = append(b, ',')
		b = jsonw.AppendKey(b, k.Str)
		b = append(b, v.Raw...)
		return true
	})
	return append(b, '}')
}

// snippet shortens an answer for a log line.
func snippet(b []byte) string {
	const max = 128
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "…"
	}
	return strconv.Quote(string(b))
}

// errNoID is the error of a message with neither a user id nor a device id.
var errNoID = errors.New("amplitude_profile: the message has neither a user_id nor a device_id")
