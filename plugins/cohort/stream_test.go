package cohort

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/cohort/cohorttest"
)

// TestStreamAmplitudeCohortToBraze runs the input and the output in a real
// stream with a file cache: first sync, delta, an unchanged cohort, and a
// delivery that fails (5xx, 429, then a rejected message that is nacked and
// replayed) before it succeeds.
func TestStreamAmplitudeCohortToBraze(t *testing.T) {
	amp := cohorttest.NewAmplitude(t, "ak", "sk")
	braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
	dir := t.TempDir()
	members := ids("u", 0, 300)
	amp.SetCohort("c1", cohorttest.Cohort{Name: "Buyers", LastComputed: 1, UserIDs: members})
	braze.Script(
		cohorttest.Response{Status: 500, Body: "oops"},
		cohorttest.Response{Status: 429, Headers: map[string]string{"Retry-After": "0"}},
		cohorttest.Response{Status: 400, Body: `{"message":"temporarily rejected"}`},
	)

	yaml := strings.NewReplacer("AMP", amp.URL, "BRAZE", braze.URL, "DIR", dir, "KEY", restKey).Replace(`
input:
  amplitude_cohort:
    url: AMP
    api_key: ak
    secret_key: sk
    schedule: 100ms
    poll_interval: 1ms
    cache: state
    max_ids_per_message: 100
output:
  braze_cohort:
    url: BRAZE
    api_key: KEY
    backoff: { initial_interval: 5ms, max_interval: 20ms, max_elapsed_time: 1s }
cache_resources:
  - label: state
    file: { directory: DIR }
logger: { level: none }
`)
	runStream(t, yaml)

	value := DisplayName("Buyers", "c1")
	require.Eventually(t, func() bool { return len(braze.UsersWith("amplitude_cohorts", value)) == len(members) },
		20*time.Second, 20*time.Millisecond, "first sync delivers everyone despite failures")
	require.Eventually(t, func() bool { return committed(t, dir, "c1") == "1" }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, members, braze.UsersWith("amplitude_cohorts", value))
	assert.Equal(t, 1, amp.Requests())

	next := append(ids("new", 0, 5), members[10:]...)
	amp.SetCohort("c1", cohorttest.Cohort{Name: "Buyers", LastComputed: 2, UserIDs: next})
	require.Eventually(t, func() bool { return committed(t, dir, "c1") == "2" }, 10*time.Second, 20*time.Millisecond)
	assert.ElementsMatch(t, next, braze.UsersWith("amplitude_cohorts", value))
	assert.Equal(t, 2, amp.Requests())

	requests := braze.Requests()
	time.Sleep(500 * time.Millisecond) // several ticks of an unchanged cohort
	assert.Equal(t, 2, amp.Requests(), "unchanged cohort is not downloaded")
	assert.Equal(t, requests, braze.Requests(), "unchanged cohort sends nothing")
}

// committed reads the lastComputed stored in the file cache.
func committed(t *testing.T, dir, cohortID string) string {
	raw, err := os.ReadFile(filepath.Join(dir, "amplitude_cohort_state_"+cohortID))
	if err != nil {
		return ""
	}
	st, err := decodeState(raw)
	require.NoError(t, err)
	return st.lastComputed
}

// runStream builds and runs a stream until the test ends.
func runStream(t *testing.T, yaml string) {
	t.Helper()
	b := service.NewStreamBuilder()
	require.NoError(t, b.SetYAML(yaml))
	stream, err := b.Build()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
