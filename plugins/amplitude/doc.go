// Package amplitude provides the `amplitude` Benthos output, which delivers
// Amplitude events (one JSON object per message) to Amplitude's HTTP V2 or
// Batch Event Upload API.
//
// Files, one concern each:
//
//   - output_amplitude.go: the spec, the constructor and its validation table;
//   - write.go: WriteBatch, and where failures go (dead_letter or batch errors);
//   - delivery.go: the delivery state machine of one write (queue, holds,
//     retries, splits, bisection);
//   - pacer.go: per-device and per-user budgets, charged on every attempt;
//   - holds.go: ids Amplitude throttled, over quota or silenced;
//   - response.go: the one classifier of answers (event fault or outage);
//   - errors.go: the reasons and the *OutageError type;
//   - send.go: the HTTP request, hedging, logs; state.go: state_cache.
//
// Failures are typed: an event fault is a *deadletter.Error with a reason of
// its own, an outage an *OutageError (nacked, never dead-lettered). Time comes
// from a clock.Clock, so tests run on the fake clock.
//
// The sub-package amplitudetest is an Amplitude-compatible server for tests.
package amplitude
