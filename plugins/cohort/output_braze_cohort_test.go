package cohort

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/cohort/cohorttest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/batchtest"
)

const (
	restKey      = "rest-key-SECRET"
	partnerKey   = "partner-key-SECRET"
	clientSecret = "data-import-SECRET"
)

func newTestOutput(t *testing.T, braze *cohorttest.Braze, extra string) (*brazeCohortOutput, *fakeClock) {
	t.Helper()
	yaml := "url: " + braze.URL + "\napi_key: " + restKey + "\npartner_api_key: " + partnerKey +
		"\nclient_secret: " + clientSecret + "\n" + extra
	clk := newFakeClock()
	useClock(t, clk)
	out, err := newBrazeCohortOutputFromParsed(parseConf(t, brazeCohortOutputSpec(), yaml), service.MockResources())
	require.NoError(t, err)
	t.Cleanup(func() { _ = out.Close(context.Background()) })
	braze.Now = clk.Now
	return out, clk
}

func TestUsersTrackAddsAndRemoves(t *testing.T) {
	braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
	out, _ := newTestOutput(t, braze, "")
	value := DisplayName("Churn risk", "c1")

	added := ids("u", 0, 200)
	require.NoError(t, out.WriteBatch(t.Context(), service.MessageBatch{changeMsg(Change{
		CohortID: "c1", CohortName: "Churn risk", IDType: IDTypeExternal, Added: added})}))
	assert.Equal(t, added, braze.UsersWith("amplitude_cohorts", value))
	assert.Equal(t, 3, braze.Requests(), "200 objects take 3 requests of at most 75")

	require.NoError(t, out.WriteBatch(t.Context(), service.MessageBatch{changeMsg(Change{
		CohortID: "c1", CohortName: "Churn risk", Removed: added[:150]})}))
	assert.Equal(t, added[150:], braze.UsersWith("amplitude_cohorts", value))
	assert.Equal(t, 5, braze.Requests())
}

func TestUsersTrackUpdateExistingOnly(t *testing.T) {
	braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
	braze.KnownUsers("a")
	value := DisplayName("N", "c1")
	for _, tc := range []struct {
		conf string
		want []string
	}{
		{"", []string{"a"}},
		{"update_existing_only: false", []string{"a", "b"}},
	} {
		out, _ := newTestOutput(t, braze, tc.conf)
		require.NoError(t, out.WriteBatch(t.Context(), service.MessageBatch{changeMsg(Change{
			CohortID: "c1", CohortName: "N", Added: []string{"a", "b"}})}))
		assert.Equal(t, tc.want, braze.UsersWith("amplitude_cohorts", value), tc.conf)
	}
}

func TestBrazeRetriesHonourRateLimitHeaders(t *testing.T) {
	for _, tc := range []struct {
		name      string
		responses func(now time.Time) []cohorttest.Response
		minWait   time.Duration
		sleeps    int
	}{
		{
			name: "429 waits for X-RateLimit-Reset",
			responses: func(now time.Time) []cohorttest.Response {
				return []cohorttest.Response{{Status: 429, Body: `{"message":"rate limited"}`, Headers: map[string]string{
					"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(now.Add(7*time.Second).Unix(), 10)}}}
			},
			minWait: 7 * time.Second,
		},
		{
			name: "429 waits for Retry-After",
			responses: func(time.Time) []cohorttest.Response {
				return []cohorttest.Response{{Status: 429, Headers: map[string]string{"Retry-After": "12"}}}
			},
			minWait: 12 * time.Second,
		},
		{
			name: "5xx retried with back-off",
			responses: func(time.Time) []cohorttest.Response {
				return []cohorttest.Response{{Status: 500, Body: "oops"}, {Status: 503, Body: "busy"}, {Status: 423, Body: `{"message":"Resource locked"}`}}
			},
			// The three back-offs at their least: Benthos' FieldBackOff
			// jitters each by ±50% around 1 s × 1.5^n, so 0.5 × (1 + 1.5 +
			// 2.25) s (3 s, the bound before, failed one run in many).
			minWait: 2375 * time.Millisecond,
			sleeps:  3,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
			out, clk := newTestOutput(t, braze, "")
			braze.Script(tc.responses(clk.Now())...)
			require.NoError(t, out.WriteBatch(t.Context(), service.MessageBatch{changeMsg(Change{
				CohortID: "c1", CohortName: "N", Added: []string{"a"}})}))
			assert.Equal(t, []string{"a"}, braze.UsersWith("amplitude_cohorts", DisplayName("N", "c1")))
			assert.GreaterOrEqual(t, clk.total(), tc.minWait)
			if tc.sleeps > 0 {
				assert.Equal(t, tc.sleeps, clk.count())
			}
		})
	}
}

func TestBrazeRemainingZeroPausesNextRequest(t *testing.T) {
	braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
	out, clk := newTestOutput(t, braze, "")
	reset := clk.Now().Add(30 * time.Second)
	braze.Script(cohorttest.Response{Status: 201, Body: `{"message":"success"}`, Headers: map[string]string{
		"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(reset.Unix(), 10)}})
	require.NoError(t, out.WriteBatch(t.Context(), service.MessageBatch{changeMsg(Change{
		CohortID: "c1", CohortName: "N", Added: ids("u", 0, 100)})}))
	assert.Equal(t, 2, braze.Requests())
	assert.Equal(t, []time.Duration{30 * time.Second}, clk.sleeps, "the second request waits for the window reset")
}

func TestBrazePerMessageErrors(t *testing.T) {
	braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
	out, _ := newTestOutput(t, braze, "backoff:\n  max_elapsed_time: 10s")
	batch := service.MessageBatch{
		changeMsg(Change{CohortID: "c1", CohortName: "N", Added: []string{"a"}}),
		service.NewMessage([]byte(`{"cohort_id":"c1"}`)),
		changeMsg(Change{CohortID: "c1", CohortName: "N", IDType: IDTypeDevice, Added: []string{"d1"}}),
		changeMsg(Change{CohortID: "c1", CohortName: "N", Added: []string{"b"}}),
	}
	failed := batchtest.Failures(t, batch.Index(), out.WriteBatch(t.Context(), batch))
	assert.Len(t, failed, 2)
	assert.ErrorContains(t, failed[1], "no cohort_name")
	assert.ErrorContains(t, failed[2], "device id")
	assert.Equal(t, []string{"a", "b"}, braze.UsersWith("amplitude_cohorts", DisplayName("N", "c1")))
}

func TestBrazeGivesUpAndKeepsSecretsOut(t *testing.T) {
	t.Run("5xx until max_elapsed_time", func(t *testing.T) {
		braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
		out, _ := newTestOutput(t, braze, "backoff:\n  max_elapsed_time: 10s")
		for range 50 {
			braze.Script(cohorttest.Response{Status: 502, Body: "bad gateway"})
		}
		err := out.WriteBatch(t.Context(), service.MessageBatch{changeMsg(Change{CohortID: "c1", CohortName: "N", Added: []string{"a"}})})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "status 502")
		assert.Less(t, braze.Requests(), 50)
	})
	t.Run("401 is not retried", func(t *testing.T) {
		braze := cohorttest.NewBraze(t, "other-key", partnerKey, clientSecret)
		out, clk := newTestOutput(t, braze, "")
		err := out.WriteBatch(t.Context(), service.MessageBatch{changeMsg(Change{CohortID: "c1", CohortName: "N", Added: []string{"a"}})})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "status 401")
		assert.NotContains(t, err.Error(), restKey)
		assert.Equal(t, 1, braze.Requests())
		assert.Zero(t, clk.count())
	})
	t.Run("partner 401 echoing the client secret is redacted", func(t *testing.T) {
		braze := cohorttest.NewBraze(t, restKey, partnerKey, "another-secret")
		out, _ := newTestOutput(t, braze, "method: partner_cohort")
		err := out.WriteBatch(t.Context(), service.MessageBatch{changeMsg(Change{CohortID: "c1", CohortName: "N", Added: []string{"a"}})})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "[redacted]")
		assert.NotContains(t, err.Error(), clientSecret)
	})
}

func TestPartnerCohort(t *testing.T) {
	braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
	out, _ := newTestOutput(t, braze, "method: partner_cohort")
	write := func(c Change) {
		t.Helper()
		require.NoError(t, out.WriteBatch(t.Context(), service.MessageBatch{changeMsg(c)}))
	}
	users := ids("u", 0, 2500)
	write(Change{CohortID: "c1", CohortName: "Buyers", Added: users})
	name, calls := braze.CohortName("c1")
	assert.Equal(t, "Buyers", name)
	assert.Equal(t, 1, calls)
	assert.Equal(t, 4, braze.Requests(), "one naming call and 3 requests of at most 1,000 ids")
	assert.Len(t, braze.CohortMembers("c1"), 2500)

	write(Change{CohortID: "c1", CohortName: "Buyers", Added: []string{"new"}, Removed: users[1:]})
	assert.Equal(t, []string{"user:new", "user:u000000"}, braze.CohortMembers("c1"))
	_, calls = braze.CohortName("c1")
	assert.Equal(t, 1, calls, "an unchanged name is not sent again")

	write(Change{CohortID: "c1", CohortName: "Big buyers", IDType: IDTypeDevice, Added: []string{"dev1"}})
	name, calls = braze.CohortName("c1")
	assert.Equal(t, "Big buyers", name)
	assert.Equal(t, 2, calls, "a rename is sent")
	assert.Contains(t, braze.CohortMembers("c1"), "device:dev1")
}

func TestBrazeOutputConfigValidation(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"", "needs api_key"},
		{"method: partner_cohort\npartner_api_key: x", "needs partner_api_key and client_secret"},
		{"api_key: k\nmax_objects_per_request: 76", "between 1 and 75"},
		{"method: partner_cohort\npartner_api_key: x\nclient_secret: y\nmax_ids_per_request: 1001", "between 1 and 1000"},
	} {
		_, err := newBrazeCohortOutputFromParsed(parseConf(t, brazeCohortOutputSpec(), tc.yaml), service.MockResources())
		require.Error(t, err, tc.yaml)
		assert.Contains(t, err.Error(), tc.want)
	}
	out, err := newBrazeCohortOutputFromParsed(parseConf(t, brazeCohortOutputSpec(), "api_key: k\ncluster: EU-02"), service.MockResources())
	require.NoError(t, err)
	assert.Equal(t, "https://rest.fra-02.braze.eu", out.client.base)
}

func TestBrazeCancelledWriteReturnsContextError(t *testing.T) {
	braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
	out, _ := newTestOutput(t, braze, "")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := out.WriteBatch(ctx, service.MessageBatch{changeMsg(Change{CohortID: "c1", CohortName: "N", Added: []string{"a"}})})
	assert.True(t, errors.Is(err, context.Canceled), "got %v", err)
	assert.False(t, strings.Contains(err.Error(), restKey))
}
