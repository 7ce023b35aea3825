package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Sides of a comparison.
const (
	Ours  = "ours"
	Plain = "plain Benthos"
)

// Inputs a scenario reads.
const (
	// InputCurrents is the generated Currents stream, JSON lines.
	InputCurrents = "currents"
	// InputAmplitude is the same stream already mapped to Amplitude events.
	InputAmplitude = "amplitude"
	// InputAvro is the same stream as Avro object container files, one per
	// event type, in the storage layout.
	InputAvro = "avro"
	// InputBodies is the same stream as HTTP connector request bodies,
	// {"events":[...]} of InputBatch events, one per line.
	InputBodies = "bodies"
)

// Scenario is one benchmark: a side of one comparison.
type Scenario struct {
	// Group names the comparison ("end to end", "mapping", ...).
	Group string
	// Versus, for an Ours scenario without a Plain side in its own group,
	// names the group whose Plain side it is compared with.
	Versus string
	// Side is Ours or Plain.
	Side string
	// Needs lists the components (or "bloblang-file") the scenario uses;
	// it is skipped while one is missing.
	Needs []string
	// Input is one of the Input* constants.
	Input string
	// Scanner, when set, is the file input's scanner (YAML body) instead
	// of the Input's default (lines, or currents_avro for InputAvro).
	Scanner string
	// Unbatched reads the file input as it is, without the broker's
	// batching of InputBatch messages: a batch is what the scanner emits
	// (one line for lines, as stdin or a plain file input would).
	Unbatched bool
	// Batch, when set, is the broker's batch of messages instead of the
	// Input's (InputBatch, or 1 for InputBodies).
	Batch int
	// Of, for a scenario measured against another of ours rather than
	// plain Benthos, names the group of its baseline (a row of that group
	// on either side): the report gives its share of the baseline.
	Of string
	// Server is set when the scenario sends to the fake Amplitude server.
	Server bool
	// Processors and Output are YAML list items and an output body, built
	// from the run's parameters.
	Processors func(p Params) string
	Output     func(p Params) string
}

// Name is the scenario's unique name.
func (s Scenario) Name() string { return s.Group + " / " + s.Side }

// Params are what a scenario's config is built from.
type Params struct {
	// InputPaths are the files read (globs allowed).
	InputPaths []string
	// URL is the fake Amplitude's HTTP V2 endpoint, BatchURL its Batch
	// one (URL where it is empty).
	URL, BatchURL string
	// Bloblang is the plain-Benthos mapping.
	Bloblang string
	// Threads is pipeline.threads; 0 means -1 (one per CPU).
	Threads int
}

// Shared settings, identical on both sides so that the comparison is fair.
const (
	// InputBatch is the number of events per input batch, as Braze's HTTP
	// connector posts them.
	InputBatch = 100
	// RequestEvents is the number of events per request to Amplitude.
	RequestEvents = 500
	// MaxInFlight is the number of concurrent requests to Amplitude.
	MaxInFlight = 4
	// ReplayLines, ReplayRequestEvents and ReplayMaxInFlight are the
	// shipped replay pipeline's batch of lines (currents_lines'
	// batch_size), events per request and requests at once, which the
	// GroupReplayEndToEnd scenarios use on both sides.
	ReplayLines         = 500
	ReplayRequestEvents = 2000
	ReplayMaxInFlight   = 8
	// APIKey is the key both sides send to the fake server.
	APIKey = "bench-api-key-0123456789"
)

// BloblangPath is the plain-Benthos mapping, relative to the repository
// root: braze_to_amplitude written independently in idiomatic Bloblang for
// the HTTP connector shape every scenario reads (checked equal to the
// processor on the generated stream). The line-by-line twin beside it
// (TwinBloblangPath) mirrors the processor's structure and is about three
// times slower, so it would flatter us.
const BloblangPath = "plugins/currents/testdata/braze_to_amplitude_idiomatic.blobl"

// TwinBloblangPath is the processor's line-by-line Bloblang twin (both
// shapes, checked equal on every catalogue type).
const TwinBloblangPath = "plugins/currents/testdata/braze_to_amplitude.blobl"

// needBloblang marks scenarios that use the Bloblang mapping file.
const needBloblang = "bloblang-file"

func oursMapping(Params) string { return "- braze_to_amplitude: {}" }

func plainMapping(p Params) string { return "- mapping: |\n" + indent(p.Bloblang, 4) }

func limiter(Params) string { return "- device_rate_limit: {}" }

// plainSplit is how plain Benthos turns a request body into one message
// per event.
func plainSplit(Params) string {
	return "- mapping: root = this.events\n- unarchive:\n    format: json_array"
}

func noProcessors(Params) string { return "" }

func drop(Params) string { return "drop: {}" }

// sending is how a scenario's output sends: requests of events, at most
// inFlight at once, both sides alike.
type sending struct {
	events, inFlight int
	// endpoint is the amplitude output's (the fake answers both alike).
	endpoint string
}

// harnessSending is the shared setting of the scenarios.
var harnessSending = sending{RequestEvents, MaxInFlight, "http_v2"}

// replaySending is the shipped replay pipeline's
// (config/currents_replay_to_amplitude.yaml): requests of 2000 events to
// the Batch API, 8 at once.
var replaySending = sending{ReplayRequestEvents, ReplayMaxInFlight, "batch"}

// plainReplaySending is replaySending for http_client, whose batches are
// its requests: Benthos adds a whole incoming batch before it flushes, and
// input batches cut short by their period add up past any count, so that a
// request of count plus one input batch must stay within Amplitude's 2000
// events (the amplitude output splits its batches into requests itself).
var plainReplaySending = sending{ReplayRequestEvents - ReplayLines, ReplayMaxInFlight, "batch"}

func amplitudeOut(p Params) string { return harnessSending.amplitude(p) }

func httpClientOut(p Params) string { return harnessSending.httpClient(p) }

// url is where c sends on the fake of p.
func (c sending) url(p Params) string {
	if c.endpoint == "batch" && p.BatchURL != "" {
		return p.BatchURL
	}
	return p.URL
}

func (c sending) amplitude(p Params) string {
	return fmt.Sprintf(`amplitude:
  api_key: %q
  url: %q
  endpoint: %s
  max_in_flight: %d
  batching:
    count: %d
    period: 50ms`, APIKey, c.url(p), c.endpoint, c.inFlight, c.events)
}

func (c sending) httpClient(p Params) string {
	return fmt.Sprintf(`http_client:
  url: %q
  verb: POST
  headers:
    Content-Type: application/json
  max_in_flight: %d
  batching:
    count: %d
    period: 50ms
    processors:
      - archive:
          format: json_array
      - mapping: 'root = {"api_key": %q, "events": this}'`, c.url(p), c.inFlight, c.events, APIKey)
}

// Scenarios lists every benchmark, ours before plain within each group.
func Scenarios() []Scenario {
	both := func(fs ...func(Params) string) func(Params) string {
		return func(p Params) string {
			parts := make([]string, len(fs))
			for i, f := range fs {
				parts[i] = f(p)
			}
			return strings.Join(parts, "\n")
		}
	}
	return append([]Scenario{
		{Group: "end to end", Side: Ours, Needs: []string{"braze_to_amplitude", "device_rate_limit", "amplitude"},
			Input: InputCurrents, Server: true, Processors: both(oursMapping, limiter), Output: amplitudeOut},
		{Group: "end to end", Side: Plain, Needs: []string{needBloblang},
			Input: InputCurrents, Server: true, Processors: plainMapping, Output: httpClientOut},
		{Group: "end to end without limiter", Versus: "end to end", Side: Ours, Needs: []string{"braze_to_amplitude", "amplitude"},
			Input: InputCurrents, Server: true, Processors: oursMapping, Output: amplitudeOut},
		// The live pipeline's shape: request bodies, pacing in the output.
		{Group: "end to end from request bodies", Side: Ours, Needs: []string{"braze_to_amplitude", "amplitude"},
			Input: InputBodies, Server: true, Processors: oursMapping, Output: amplitudeOut},
		{Group: "end to end from request bodies", Side: Plain, Needs: []string{needBloblang},
			Input: InputBodies, Server: true, Processors: both(plainSplit, plainMapping), Output: httpClientOut},
		// The replay pipeline at its shipped batching, against plain Benthos
		// doing the same job with the same batches and requests in flight.
		{Group: GroupReplayEndToEnd, Side: Ours, Needs: []string{"currents_lines", "braze_to_amplitude", "amplitude"},
			Input: InputCurrents, Unbatched: true, Scanner: fmt.Sprintf("currents_lines:\n  batch_size: %d", ReplayLines),
			Server: true, Processors: oursMapping, Output: replaySending.amplitude},
		{Group: GroupReplayEndToEnd, Side: Plain, Needs: []string{needBloblang},
			Input: InputCurrents, Batch: ReplayLines, Server: true, Processors: plainMapping, Output: plainReplaySending.httpClient},
		{Group: "mapping", Side: Ours, Needs: []string{"braze_to_amplitude"},
			Input: InputCurrents, Processors: oursMapping, Output: drop},
		{Group: "mapping", Side: Plain, Needs: []string{needBloblang},
			Input: InputCurrents, Processors: plainMapping, Output: drop},
		{Group: "limiter", Side: Ours, Needs: []string{"device_rate_limit"},
			Input: InputAmplitude, Processors: limiter, Output: drop},
		{Group: "avro decode", Side: Ours, Needs: []string{"currents_avro"},
			Input: InputAvro, Processors: noProcessors, Output: drop},
		{Group: "read JSON lines (baseline)", Side: Plain,
			Input: InputCurrents, Processors: noProcessors, Output: drop},
	}, fileScenarios()...)
}

// Config returns the complete Benthos config of scenario s.
func (s Scenario) Config(p Params) string {
	// Bodies are ~70 KB lines, over the lines scanner's default 64 KiB.
	scanner, batch := "lines:\n  max_buffer_size: 16000000", InputBatch
	switch s.Input {
	case InputAvro:
		scanner = "currents_avro: {}"
	case InputBodies:
		batch = 1 // a body already holds InputBatch events
	}
	if s.Batch > 0 {
		batch = s.Batch
	}
	if s.Scanner != "" {
		scanner = s.Scanner
	}
	paths := make([]string, len(p.InputPaths))
	for i, path := range p.InputPaths {
		paths[i] = fmt.Sprintf("%q", path)
	}
	threads := p.Threads
	if threads == 0 {
		threads = -1
	}
	procs := s.Processors(p)
	if procs == "" {
		procs = "[]"
	} else {
		procs = "\n" + indent(procs, 4)
	}
	// As in the shipped replay and backfill, our delivery scenarios read
	// through replay_nacks (a batch nacked after the last file was read is
	// sent again), which never nacks the file input: its own replay of
	// nacks is off then.
	wrapped := s.Side == Ours && s.Server
	replay := strconv.FormatBool(!wrapped)
	input := fmt.Sprintf(`broker:
    batching:
      count: %d
      period: 10ms
    inputs:
      - file:
          auto_replay_nacks: %s
          paths: [ %s ]
          scanner:
            %s`, batch, replay, strings.Join(paths, ", "), indent(scanner, 12)[12:])
	if s.Unbatched {
		input = fmt.Sprintf(`file:
    auto_replay_nacks: %s
    paths: [ %s ]
    scanner:
      %s`, replay, strings.Join(paths, ", "), indent(scanner, 6)[6:])
	}
	if wrapped {
		input = "replay_nacks:\n    input:\n      " + strings.ReplaceAll(input, "\n", "\n    ")
	}
	return fmt.Sprintf(`logger:
  level: WARN
metrics:
  %s: {}
input:
  %s
pipeline:
  threads: %d
  processors: %s
output:
%s
`, countersExporter, input, threads, procs, indent(s.Output(p), 2))
}

// Missing returns the components s needs that are not available: not
// registered, or (for the Bloblang mapping) not present under root.
func (s Scenario) Missing(root string) []string {
	var missing []string
	for _, n := range s.Needs {
		if n == needBloblang {
			if _, err := os.Stat(filepath.Join(root, BloblangPath)); err != nil {
				missing = append(missing, BloblangPath)
			}
			continue
		}
		missing = append(missing, HasComponents(n)...)
	}
	return missing
}
