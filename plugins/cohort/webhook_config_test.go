package cohort

import (
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/cohort/cohorttest"
)

// TestWebhookConfigEndToEnd runs config/amplitude_cohort_webhook_to_braze.yaml
// against the Braze fake: a delivery updates Braze, its retry is answered 200
// without a second write, and a wrong token is refused.
func TestWebhookConfigEndToEnd(t *testing.T) {
	conf, err := os.ReadFile("../../config/amplitude_cohort_webhook_to_braze.yaml")
	require.NoError(t, err)
	braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	t.Setenv("WEBHOOK_ADDRESS", addr)
	t.Setenv("AMPLITUDE_WEBHOOK_TOKEN", "tok")
	t.Setenv("BRAZE_REST_API_KEY", restKey)
	t.Setenv("DEAD_LETTER_DIR", t.TempDir())

	// Point the output at the fake instead of a Braze cluster.
	runStream(t, strings.Replace(string(conf), "cluster: ${BRAZE_CLUSTER:US-01}", "url: "+braze.URL, 1)+"\nlogger: { level: none }\n")

	post := func(token, body string) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/amplitude/cohorts", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Amplitude-Webhook-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	payload := `{"cohort_id":"abc1","cohort_name":"Churn","in_cohort":true,"message_id":"m-1","users":[{"user_id":"u1"},{"user_id":"u2"}]}`
	require.Eventually(t, func() bool { return post("tok", payload) == http.StatusOK }, 10*time.Second, 50*time.Millisecond)
	value := DisplayName("Churn", "abc1")
	assert.Equal(t, []string{"u1", "u2"}, braze.UsersWith("amplitude_cohorts", value))
	requests := braze.Requests()

	assert.Equal(t, http.StatusOK, post("tok", payload), "a retry is acknowledged")
	assert.Equal(t, requests, braze.Requests(), "a retry is not written again")

	assert.Equal(t, http.StatusUnauthorized, post("wrong", strings.Replace(payload, "m-1", "m-2", 1)), "a wrong token is refused")
	assert.Equal(t, http.StatusBadRequest, post("tok", `{"cohort_id":"abc1","message_id":"m-4","users":[]}`), "a malformed payload is refused")
	assert.Equal(t, http.StatusOK, post("tok", `{"cohort_id":"abc1","cohort_name":"Churn","in_cohort":false,"message_id":"m-3","users":[{"user_id":"u1"}]}`))
	assert.Equal(t, []string{"u2"}, braze.UsersWith("amplitude_cohorts", value))
}
