package cohort

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/amplitudehost"
	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// amplitudeRegions maps a region to the base URL of Amplitude's Dashboard
// REST API.
var amplitudeRegions = map[string]string{
	"US": amplitudehost.US,
	"EU": amplitudehost.EU,
}

// cohortInfo is one cohort of Amplitude's cohort list.
type cohortInfo struct {
	ID           string
	Name         string
	LastComputed string
	Archived     bool
}

// amplitudeClient talks to Amplitude's Behavioral Cohorts API.
type amplitudeClient struct {
	base         string
	apiKey       string
	secretKey    string
	http         *http.Client // requests bounded by timeout
	fileHTTP     *http.Client // the file download, bounded by the job context
	pollInterval time.Duration
	clock        clock.Clock
}

func (c *amplitudeClient) get(ctx context.Context, hc *http.Client, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(c.apiKey, c.secretKey)
	resp, err := hc.Do(req)
	if err != nil {
		// The error names the URL, which carries no credentials.
		return nil, fmt.Errorf("amplitude %s: %w", path, err)
	}
	return resp, nil
}

// Transient answers (connection errors, timeouts, 408, 429, 5xx) are retried
// in place, with exponential back-off on the client's clock, for at most
// transientRetryFor: one failed status poll or download must not restart the
// export job, which would spend another download of the monthly budget.
const (
	transientRetryFor     = 2 * time.Minute
	transientRetryInitial = time.Second
	transientRetryMax     = 15 * time.Second
)

// transient reports whether a request that got code (0: no answer) and err
// is worth retrying as is.
func transient(code int, err error) bool {
	return err != nil && (code == 0 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500)
}

// retrying calls do until it succeeds, fails for good, the context ends or
// transientRetryFor has passed since the first try, backing off as the Braze
// client does (cenkalti/backoff on the client's clock).
func retrying[T any](ctx context.Context, c *amplitudeClient, do func() (int, T, error)) (int, T, error) {
	b := backoff.ExponentialBackOff{
		InitialInterval:     transientRetryInitial,
		RandomizationFactor: backoff.DefaultRandomizationFactor,
		Multiplier:          backoff.DefaultMultiplier,
		MaxInterval:         transientRetryMax,
		MaxElapsedTime:      transientRetryFor,
		Stop:                backoff.Stop,
		Clock:               c.clock,
	}
	b.Reset()
	for {
		code, v, err := do()
		if !transient(code, err) || ctx.Err() != nil {
			return code, v, err
		}
		next := b.NextBackOff()
		if next == backoff.Stop {
			return code, v, err
		}
		if serr := clock.Sleep(ctx, c.clock, next); serr != nil {
			return code, v, err
		}
	}
}

// getJSON performs a GET, retrying transient answers, and returns the body of
// a 200 or 202 response.
func (c *amplitudeClient) getJSON(ctx context.Context, path string) (int, []byte, error) {
	return retrying(ctx, c, func() (int, []byte, error) { return c.getJSONOnce(ctx, path) })
}

// getJSONOnce performs one GET and returns the body of a 200 or 202 response.
func (c *amplitudeClient) getJSONOnce(ctx context.Context, path string) (int, []byte, error) {
	resp, err := c.get(ctx, c.http, path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("amplitude %s: reading response: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return resp.StatusCode, nil, fmt.Errorf("amplitude %s: status %d: %s", path, resp.StatusCode, snippet(body))
	}
	return resp.StatusCode, body, nil
}

// listCohorts returns every cohort of the project (GET /api/3/cohorts).
func (c *amplitudeClient) listCohorts(ctx context.Context) ([]cohortInfo, error) {
	_, body, err := c.getJSON(ctx, "/api/3/cohorts")
	if err != nil {
		return nil, err
	}
	list := gjson.GetBytes(body, "cohorts")
	if !list.IsArray() {
		return nil, errors.New("amplitude /api/3/cohorts: response has no cohorts array")
	}
	var out []cohortInfo
	list.ForEach(func(_, v gjson.Result) bool {
		if id := v.Get("id").String(); id != "" {
			out = append(out, cohortInfo{
				ID:           id,
				Name:         v.Get("name").String(),
				LastComputed: v.Get("lastComputed").String(),
				Archived:     v.Get("archived").Bool(),
			})
		}
		return true
	})
	return out, nil
}

// requestCohort starts an export job and waits until it completes; it
// returns the request id to download.
func (c *amplitudeClient) requestCohort(ctx context.Context, cohortID string) (string, error) {
	_, body, err := c.getJSON(ctx, "/api/5/cohorts/request/"+url.PathEscape(cohortID))
	if err != nil {
		return "", err
	}
	reqID := gjson.GetBytes(body, "request_id").String()
	if reqID == "" {
		return "", fmt.Errorf("amplitude cohort %s: request returned no request_id", cohortID)
	}
	statusPath := "/api/5/cohorts/request-status/" + url.PathEscape(reqID)
	for {
		code, body, err := c.getJSON(ctx, statusPath)
		if err != nil && code != http.StatusTooManyRequests {
			return "", err
		}
		status := gjson.GetBytes(body, "async_status").String()
		switch {
		case code == http.StatusOK && status == "JOB COMPLETED":
			return reqID, nil
		case code == http.StatusOK && status != "" && status != "JOB INPROGRESS":
			return "", fmt.Errorf("amplitude cohort %s: export job ended with status %q", cohortID, status)
		}
		if err := clock.Sleep(ctx, c.clock, c.pollInterval); err != nil {
			return "", fmt.Errorf("amplitude cohort %s: waiting for export job: %w", cohortID, err)
		}
	}
}

// download opens the cohort file of a completed job, following the redirect
// to storage. The caller closes the body.
// Transient answers are retried (see retrying): the job's file stays
// downloadable, so no new job is started.
func (c *amplitudeClient) download(ctx context.Context, reqID string) (io.ReadCloser, error) {
	path := "/api/5/cohorts/request/" + url.PathEscape(reqID) + "/file"
	_, body, err := retrying(ctx, c, func() (int, io.ReadCloser, error) {
		resp, err := c.get(ctx, c.fileHTTP, path)
		if err != nil {
			return 0, nil, err
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			return resp.StatusCode, nil, fmt.Errorf("amplitude %s: status %d: %s", path, resp.StatusCode, snippet(body))
		}
		return resp.StatusCode, resp.Body, nil
	})
	return body, err
}

// snippet shortens a response body for an error message.
func snippet(b []byte) string {
	const max = 256
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "…"
	}
	return strconv.Quote(string(b))
}
