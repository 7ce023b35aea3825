// Package bench measures this distribution against the same pipeline
// written in plain Benthos, on one generated Currents stream.
//
// Each scenario (Scenarios) is a complete Benthos config: a file input
// reading the stream, processors, an output. Ours uses braze_to_amplitude,
// device_rate_limit and the amplitude output; plain Benthos uses the
// independent, idiomatic Bloblang mapping kept beside the processor
// (plugins/currents/testdata/braze_to_amplitude_idiomatic.blobl) and
// http_client. LiveScenarios are the live-path benchmark: Braze-like HTTP
// posts to a pipeline relaying to a fast fake Amplitude, against the floor
// of the same transport without processing (RunLive), with the CPU shares
// of their profiles by owner (ProfileShares).
// Both send to the same loopback fake Amplitude (amplitudetest), which checks
// that every event arrives exactly once. Run measures each scenario in its
// own child process (the test binary, re-executed) so that the CPU time,
// allocations and peak RSS it reports are that pipeline's alone; Markdown
// and Scaling render the results.
//
// Entry points: TestHarness runs everything on 1,000 events in a few
// seconds (CI); TestReport, run by tests/bench/run.sh, produces the figures
// of BENCHMARKS.md; the Benchmark functions are the in-process Go
// benchmarks.
package bench
