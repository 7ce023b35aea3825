package cohort

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/redact"
)

// clusterNames lists the Braze clusters in documentation order.
var clusterNames = []string{"US-01", "US-02", "US-03", "US-04", "US-05", "US-06", "US-07", "US-08", "EU-01", "EU-02", "AU-01"}

// brazeClusters maps Braze dashboard clusters to REST endpoints.
var brazeClusters = map[string]string{
	"US-01": "https://rest.iad-01.braze.com",
	"US-02": "https://rest.iad-02.braze.com",
	"US-03": "https://rest.iad-03.braze.com",
	"US-04": "https://rest.iad-04.braze.com",
	"US-05": "https://rest.iad-05.braze.com",
	"US-06": "https://rest.iad-06.braze.com",
	"US-07": "https://rest.iad-07.braze.com",
	"US-08": "https://rest.iad-08.braze.com",
	"EU-01": "https://rest.fra-01.braze.eu",
	"EU-02": "https://rest.fra-02.braze.eu",
	"AU-01": "https://rest.au-01.braze.com",
}

// brazeClient posts JSON to Braze, retrying 429, 423, 5xx and network errors
// with back-off, honouring Retry-After and X-RateLimit-* headers. It is safe
// for concurrent use: a rate-limit pause seen by one request delays all.
type brazeClient struct {
	base    string
	bearer  string          // REST API key, sent as a Bearer token (users_track)
	secrets redact.Redactor // removes the keys from error messages
	http    *http.Client
	boff    *backoff.ExponentialBackOff
	clock   clock.Clock

	mu           sync.Mutex
	blockedUntil time.Time

	onRetry func(reason string)
}

// errPermanent marks a response that retrying cannot fix; status is its HTTP
// status, 0 when no request was made.
type errPermanent struct {
	status int
	msg    string
}

func (e *errPermanent) Error() string { return e.msg }

// refusesChange reports whether Braze refused the request for its content
// (400, 413, 422), not for the credentials, the cluster or the partner name
// (401, 403, 404…), which no change is to blame for.
func (e *errPermanent) refusesChange() bool {
	switch e.status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// post sends body to path and returns the response body of a 2xx answer.
func (c *brazeClient) post(ctx context.Context, path string, body []byte) ([]byte, error) {
	b := *c.boff
	b.Clock = c.clock
	b.Reset()
	for {
		if err := c.waitRateLimit(ctx); err != nil {
			return nil, err
		}
		respBody, wait, err := c.try(ctx, path, body)
		if err == nil {
			return respBody, nil
		}
		var perm *errPermanent
		if errors.As(err, &perm) || ctx.Err() != nil {
			return nil, err
		}
		next := b.NextBackOff()
		if next == backoff.Stop {
			return nil, fmt.Errorf("giving up after %s of retries: %w", b.MaxElapsedTime, err)
		}
		if wait > next {
			next = wait
		}
		if c.onRetry != nil {
			c.onRetry(retryReason(err))
		}
		if err := clock.Sleep(ctx, c.clock, next); err != nil {
			return nil, err
		}
	}
}

func retryReason(err error) string {
	var re *errRetryable
	if errors.As(err, &re) {
		return re.reason
	}
	return "network"
}

// errRetryable is a response worth retrying.
type errRetryable struct {
	reason string
	msg    string
}

func (e *errRetryable) Error() string { return e.msg }

// try performs one request. On a retryable failure it also returns how long
// the server asked us to wait.
func (c *brazeClient) try(ctx context.Context, path string, body []byte) ([]byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, &errPermanent{msg: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("braze %s: %w", path, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("braze %s: reading response: %w", path, err)
	}
	c.noteRateLimit(resp.Header)
	msg := func() string {
		return fmt.Sprintf("braze %s: status %d: %s", path, resp.StatusCode, c.redact(brazeMessage(respBody)))
	}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return respBody, 0, nil
	case code == http.StatusTooManyRequests:
		return nil, c.retryAfter(resp.Header), &errRetryable{reason: "rate_limited", msg: msg()}
	case code >= 500 || code == http.StatusLocked:
		// X-RateLimit-Reset says when the rate window resets, not when a
		// failing server recovers: only Retry-After is honoured here.
		return nil, c.retryAfterHeader(resp.Header), &errRetryable{reason: "server_error", msg: msg()}
	default:
		return nil, 0, &errPermanent{status: code, msg: msg()}
	}
}

// brazeMessage extracts Braze's "message" from an error body, or a snippet.
func brazeMessage(body []byte) string {
	if m := gjson.GetBytes(body, "message"); m.Type == gjson.String {
		return strconv.Quote(m.Str)
	}
	return snippet(body)
}

// redact removes secrets that an error body may echo (the partner API echoes
// the client secret in some 401 messages).
func (c *brazeClient) redact(s string) string {
	return c.secrets.String(s)
}

// retryAfter reads Retry-After (seconds or HTTP date), else X-RateLimit-Reset
// (Unix seconds).
func (c *brazeClient) retryAfter(h http.Header) time.Duration {
	if d := c.retryAfterHeader(h); d > 0 {
		return d
	}
	if t, ok := resetTime(h); ok {
		return t.Sub(c.clock.Now())
	}
	return 0
}

// retryAfterHeader reads Retry-After (seconds or HTTP date).
func (c *brazeClient) retryAfterHeader(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(c.clock.Now())
	}
	return 0
}

func resetTime(h http.Header) (time.Time, bool) {
	v := h.Get("X-RateLimit-Reset")
	if v == "" {
		return time.Time{}, false
	}
	s, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(s, 0), true
}

// noteRateLimit pauses all requests until X-RateLimit-Reset once Braze says
// no request is left in the window.
func (c *brazeClient) noteRateLimit(h http.Header) {
	if h.Get("X-RateLimit-Remaining") != "0" {
		return
	}
	t, ok := resetTime(h)
	if !ok {
		return
	}
	c.mu.Lock()
	if t.After(c.blockedUntil) {
		c.blockedUntil = t
	}
	c.mu.Unlock()
}

func (c *brazeClient) waitRateLimit(ctx context.Context) error {
	c.mu.Lock()
	until := c.blockedUntil
	c.mu.Unlock()
	return clock.Sleep(ctx, c.clock, until.Sub(c.clock.Now()))
}
