package bench

import "strconv"

// Groups of the per-message (file) pipelines and of their baselines.
const (
	// GroupStdin is the floor of the replay pipeline: the same JSON lines
	// read by the file input's lines scanner, each line its own message (as
	// a plain stdin or file input reads them), dropped.
	GroupStdin = "stdin passthrough (baseline)"
	// GroupReplay is the replay pipeline (config/currents_replay_to_amplitude.yaml)
	// up to its output: currents_lines with its shipped batch size, then
	// braze_to_amplitude.
	GroupReplay = "replay"
	// GroupAvroRead is the floor of the backfill pipeline: the same events
	// as Avro files, decoded by currents_avro with a batch per block,
	// dropped.
	GroupAvroRead = "read Avro files (baseline)"
	// GroupBackfill is the backfill pipeline
	// (config/currents_storage_backfill.yaml) up to its output.
	GroupBackfill = "backfill"
	// GroupReplayEndToEnd is the replay pipeline from the files to the
	// fake Amplitude at its shipped batching (currents_lines under
	// replay_nacks, braze_to_amplitude, amplitude on the Batch API with
	// the shipped events per request and requests in flight; pipeline
	// threads one per CPU as in every scenario, without the progress
	// output), against plain Benthos doing the same job at the same
	// settings. TestReplayScenarioSettings holds the settings to the
	// shipped config.
	GroupReplayEndToEnd = "replay end to end (shipped batching)"
)

// BackfillBatchSize is the currents_avro batch_size the backfill pipeline
// ships with.
const BackfillBatchSize = 500

// fileScenarios are the per-message pipelines measured against reading
// their input: the replay and backfill pipelines as shipped (batched before
// the processors) and record by record, each as a share of its floor. The
// output is drop on every side, so that the share is what the input and
// the processors cost over reading the files.
func fileScenarios() []Scenario {
	avroBatch := "currents_avro:\n  batch_size: " + strconv.Itoa(BackfillBatchSize)
	return []Scenario{
		{Group: GroupStdin, Side: Plain, Input: InputCurrents, Unbatched: true,
			Processors: noProcessors, Output: drop},
		{Group: GroupReplay, Of: GroupStdin, Side: Ours, Needs: []string{"currents_lines", "braze_to_amplitude"},
			Input: InputCurrents, Unbatched: true, Scanner: "currents_lines: {}",
			Processors: oursMapping, Output: drop},
		{Group: GroupReplay + " record by record", Of: GroupStdin, Side: Ours, Needs: []string{"currents_lines", "braze_to_amplitude"},
			Input: InputCurrents, Unbatched: true, Scanner: "currents_lines:\n  batch_size: 1",
			Processors: oursMapping, Output: drop},
		{Group: GroupAvroRead, Side: Ours, Needs: []string{"currents_avro"},
			Input: InputAvro, Unbatched: true, Scanner: avroBatch,
			Processors: noProcessors, Output: drop},
		{Group: GroupBackfill, Of: GroupAvroRead, Side: Ours, Needs: []string{"currents_avro", "braze_to_amplitude"},
			Input: InputAvro, Unbatched: true, Scanner: avroBatch,
			Processors: oursMapping, Output: drop},
		{Group: GroupBackfill + " record by record", Of: GroupAvroRead, Side: Ours, Needs: []string{"currents_avro", "braze_to_amplitude"},
			Input: InputAvro, Unbatched: true, Scanner: "currents_avro:\n  batch_size: 1",
			Processors: oursMapping, Output: drop},
	}
}
