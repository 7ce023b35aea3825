package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplayScenarioSettings holds the replay end-to-end scenarios to the
// shipped replay pipeline's batching, so that the benchmark measures what
// the config ships: currents_lines' batch_size, the output's events per
// batch and writes in flight, and the Batch API.
func TestReplayScenarioSettings(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "config", "currents_replay_to_amplitude.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	for _, want := range []string{
		fmt.Sprintf("batch_size: ${REPLAY_BATCH_SIZE:%d}", ReplayLines),
		fmt.Sprintf("count: %d", ReplayRequestEvents),
		fmt.Sprintf("max_in_flight: ${AMPLITUDE_MAX_IN_FLIGHT:%d}", ReplayMaxInFlight),
		"endpoint: " + replaySending.endpoint,
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config/currents_replay_to_amplitude.yaml has no %q: the replay scenarios no longer measure the shipped settings", want)
		}
	}
}
