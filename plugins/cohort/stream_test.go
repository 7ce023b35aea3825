package cohort

import (
	"context"
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
	"github.com/opencurrents/currents-amplitude/plugins/store"
)

// TestStreamAmplitudeCohortToBraze runs the input and the output in a real
// stream with the state file: first sync, delta, an unchanged cohort, and a
// delivery that fails (5xx, 429, then a rejected message that is nacked and
// replayed) before it succeeds. The schedule runs on a fake clock: each step
// waits until the input sleeps until its next tick, so every assertion sees
// a finished sync.
func TestStreamAmplitudeCohortToBraze(t *testing.T) {
	clk := newFakeClock()
	useClock(t, clk)
	amp := cohorttest.NewAmplitude(t, "ak", "sk")
	braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
	braze.Now = clk.Now
	path := filepath.Join(t.TempDir(), "state", "cohorts.db")
	members := ids("u", 0, 300)
	amp.SetCohort("c1", cohorttest.Cohort{Name: "Buyers", LastComputed: 1, UserIDs: members})
	braze.Script(
		cohorttest.Response{Status: 500, Body: "oops"},
		cohorttest.Response{Status: 429, Headers: map[string]string{"Retry-After": "0"}},
		cohorttest.Response{Status: 400, Body: `{"message":"temporarily rejected"}`},
	)

	yaml := strings.NewReplacer("AMP", amp.URL, "BRAZE", braze.URL, "PATH", path, "KEY", restKey).Replace(`
input:
  amplitude_cohort:
    url: AMP
    api_key: ak
    secret_key: sk
    schedule: 24h
    poll_interval: 1ms
    state_path: PATH
    max_ids_per_message: 100
output:
  braze_cohort:
    url: BRAZE
    api_key: KEY
    backoff: { initial_interval: 5ms, max_interval: 20ms, max_elapsed_time: 1s }
logger: { level: none }
`)
	runStream(t, yaml)
	nextTick := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.True(t, clk.WaitForTimers(ctx, 1), "the input never finished its sync")
	}

	nextTick()
	value := DisplayName("Buyers", "c1")
	assert.Equal(t, members, braze.UsersWith("amplitude_cohorts", value), "first sync delivers everyone despite failures")
	assert.Equal(t, "1", committed(t, path, "c1"))
	assert.Equal(t, 1, amp.Requests())

	next := append(ids("new", 0, 5), members[10:]...)
	amp.SetCohort("c1", cohorttest.Cohort{Name: "Buyers", LastComputed: 2, UserIDs: next})
	clk.Advance(24 * time.Hour)
	nextTick()
	assert.Equal(t, "2", committed(t, path, "c1"))
	assert.ElementsMatch(t, next, braze.UsersWith("amplitude_cohorts", value))
	assert.Equal(t, 2, amp.Requests())

	requests := braze.Requests()
	for range 3 {
		clk.Advance(24 * time.Hour)
		nextTick()
	}
	assert.Equal(t, 2, amp.Requests(), "unchanged cohort is not downloaded")
	assert.Equal(t, requests, braze.Requests(), "unchanged cohort sends nothing")
}

// committed reads the lastComputed stored in the state file.
func committed(t *testing.T, path, cohortID string) string {
	t.Helper()
	db, err := store.Open(path, store.Options{})
	require.NoError(t, err)
	defer db.Close()
	st, err := syncState{db: db}.load(cohortID)
	require.NoError(t, err)
	return st.committed.lastComputed
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
