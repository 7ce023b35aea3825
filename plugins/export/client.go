package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/amplitudehost"
	"github.com/opencurrents/currents-amplitude/plugins/internal/redact"
)

// Amplitude's Export API hosts (https://amplitude.com/docs/apis/analytics/export).
const (
	// USBaseURL is the default (US) REST base.
	USBaseURL = amplitudehost.US
	// EUBaseURL is the EU data residency REST base.
	EUBaseURL = amplitudehost.EU
	// Path is the Export API path under the REST base.
	Path = "/api/2/export"
	// MaxArchiveBytes is Amplitude's size limit of one export (4 GB): larger
	// ranges are refused with 400.
	MaxArchiveBytes = 4 << 30
)

// Outcomes of one export request.
var (
	// ErrTooLarge: Amplitude refused the range as larger than 4 GB (400), or
	// timed out building it (504). A shorter range may succeed.
	ErrTooLarge = errors.New("export range too large")
	// errRetryable marks failures worth retrying: 429, other 5xx, network.
	errRetryable = errors.New("retryable")
)

// Client downloads Export API archives. Build it with NewClient.
type Client struct {
	// Base is the REST base URL (USBaseURL, EUBaseURL or a test server).
	Base string
	// APIKey and SecretKey are the project's credentials (Basic auth).
	APIKey, SecretKey string
	// HTTP is the client used; its Timeout bounds one download.
	HTTP *http.Client
	// SpillDir is where archives are written ("" is os.TempDir()).
	SpillDir string
	// MaxBytes refuses larger answers (0 is MaxArchiveBytes plus 1 MiB).
	MaxBytes int64

	red redact.Redactor
}

// NewClient returns a client of the Export API at base with the project's
// credentials.
func NewClient(base, apiKey, secretKey string, hc *http.Client, spillDir string) *Client {
	return &Client{Base: base, APIKey: apiKey, SecretKey: secretKey, HTTP: hc, SpillDir: spillDir,
		red: redact.New(apiKey, secretKey)}
}

// Download fetches the events uploaded in the hours [first, last] (both
// included, UTC) into a temporary file, which the caller removes. It returns
// a nil file and no error when Amplitude has no data for the range (404).
// Errors wrap ErrTooLarge when a shorter range may succeed; IsRetryable
// reports the ones worth retrying as they are.
func (c *Client) Download(ctx context.Context, first, last time.Time) (*os.File, int64, error) {
	q := url.Values{}
	q.Set("start", first.UTC().Format(QueryHourLayout))
	q.Set("end", last.UTC().Format(QueryHourLayout))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.Base, "/")+Path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, 0, err
	}
	req.SetBasicAuth(c.APIKey, c.SecretKey)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s", errRetryable, c.redact(err.Error()))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return c.spill(resp.Body)
	case resp.StatusCode == http.StatusNotFound:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, 0, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := fmt.Sprintf("status %d: %s", resp.StatusCode, c.redact(strings.TrimSpace(string(body))))
	switch {
	case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusGatewayTimeout:
		return nil, 0, fmt.Errorf("%w (%s)", ErrTooLarge, msg)
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return nil, 0, fmt.Errorf("%w: %s", errRetryable, msg)
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return nil, 0, fmt.Errorf("credentials refused (check the API key, the secret key and the region): %s", msg)
	}
	return nil, 0, errors.New(msg)
}

// IsRetryable reports whether err, from Download, is worth retrying as is.
func IsRetryable(err error) bool { return errors.Is(err, errRetryable) }

func (c *Client) redact(s string) string {
	return c.red.String(s)
}

// spill copies the answer into a temporary file.
func (c *Client) spill(body io.Reader) (*os.File, int64, error) {
	limit := c.MaxBytes
	if limit <= 0 {
		limit = MaxArchiveBytes + 1<<20
	}
	f, err := os.CreateTemp(c.SpillDir, "amplitude-export-*.zip")
	if err != nil {
		return nil, 0, fmt.Errorf("spill file: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(body, limit+1))
	if err == nil && n > limit {
		err = fmt.Errorf("answer larger than %d bytes", limit)
	} else if err != nil {
		err = fmt.Errorf("%w: reading the answer after %d bytes: %s", errRetryable, n, c.redact(err.Error()))
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	return f, n, nil
}
