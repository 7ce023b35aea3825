package tests

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/cohort"
	"github.com/opencurrents/currents-amplitude/plugins/cohort/cohorttest"
)

// TestWebhookConfigEndToEnd runs config/amplitude_cohort_webhook_to_braze.yaml
// against the Braze fake: a delivery Braze fails is answered 502 (no local
// path in the body) and its retry is delivered; the retry of a delivered
// delivery is answered 200 without a second write; a change Braze refuses is
// dead-lettered and answered 200; a wrong token is refused.
func TestWebhookConfigEndToEnd(t *testing.T) {
	const restKey = "rest-key-SECRET"
	braze := cohorttest.NewBraze(t, restKey, "partner-key-SECRET", "data-import-SECRET")
	addr := freeAddr(t)
	dir := t.TempDir()
	env := map[string]string{
		"WEBHOOK_ADDRESS": addr, "AMPLITUDE_WEBHOOK_TOKEN": "tok", "BRAZE_REST_API_KEY": restKey,
		"BRAZE_REST_URL": braze.URL, "DEAD_LETTER_DIR": dir + "/dead-letter", "COHORT_STATE_DIR": dir + "/state",
		"HTTP_ADDRESS": "127.0.0.1:0", "LOG_LEVEL": "NONE", "BRAZE_RETRY_FOR": "300ms",
	}
	// The pipeline's Bloblang reads the token with env(), which sees the
	// process environment rather than the stream builder's.
	t.Setenv("AMPLITUDE_WEBHOOK_TOKEN", env["AMPLITUDE_WEBHOOK_TOKEN"])
	startPipeline(t, "amplitude_cohort_webhook_to_braze.yaml", env, nil)

	post := func(token, body string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/amplitude/cohorts", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Amplitude-Webhook-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code := func(token, body string) int { c, _ := post(token, body); return c }
	require.Eventually(t, func() bool { return code("tok", `{}`) == http.StatusBadRequest }, 10*time.Second, 20*time.Millisecond, "listening")
	value := cohort.DisplayName("Churn", "abc1")

	// Braze down for longer than the output's retries: 502, nothing recorded.
	down := make([]cohorttest.Response, 40)
	for i := range down {
		down[i] = cohorttest.Response{Status: 503, Body: `{"message":"unavailable"}`}
	}
	braze.Script(down...)
	payload := `{"cohort_id":"abc1","cohort_name":"Churn","in_cohort":true,"message_id":"m-1","users":[{"user_id":"u1"},{"user_id":"u2"}]}`
	status, body := post("tok", payload)
	assert.Equal(t, http.StatusBadGateway, status)
	assert.NotContains(t, body, dir, "the 502 body names no local file")
	assert.Empty(t, braze.UsersWith("amplitude_cohorts", value))

	// Braze back: Amplitude's retries (same message_id) end up delivered.
	for range 100 {
		if status, _ = post("tok", payload); status == http.StatusOK {
			break
		}
		assert.Equal(t, http.StatusBadGateway, status)
	}
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, []string{"u1", "u2"}, braze.UsersWith("amplitude_cohorts", value), "the retry of a failed delivery is delivered")
	requests := braze.Requests()

	assert.Equal(t, http.StatusOK, code("tok", payload), "a retry of a delivered delivery is acknowledged")
	assert.Equal(t, requests, braze.Requests(), "and not written again")

	braze.Script(cohorttest.Response{Status: 400, Body: `{"message":"invalid"}`})
	assert.Equal(t, http.StatusOK, code("tok", strings.Replace(payload, "m-1", "m-9", 1)), "a change Braze refuses is dead-lettered and acknowledged")
	dl, err := os.ReadFile(dir + "/dead-letter/cohort-webhook-" + time.Now().UTC().Format("2006-01-02") + ".jsonl")
	if err != nil { // the file output names the date in local time
		dl, err = os.ReadFile(dir + "/dead-letter/cohort-webhook-" + time.Now().Format("2006-01-02") + ".jsonl")
	}
	require.NoError(t, err)
	assert.Contains(t, string(dl), `"reason":"refused"`)

	assert.Equal(t, http.StatusUnauthorized, code("wrong", strings.Replace(payload, "m-1", "m-2", 1)), "a wrong token is refused")
	assert.Equal(t, http.StatusBadRequest, code("tok", `{"cohort_id":"abc1","message_id":"m-4","users":[]}`), "a malformed payload is refused")
	assert.Equal(t, http.StatusOK, code("tok", `{"cohort_id":"abc1","cohort_name":"Churn","in_cohort":false,"message_id":"m-3","users":[{"user_id":"u1"}]}`))
	assert.Equal(t, []string{"u2"}, braze.UsersWith("amplitude_cohorts", value))
}
