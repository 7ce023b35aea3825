// Package amplitude provides the `amplitude` Benthos output, which delivers
// Amplitude events (one JSON object per message) to Amplitude's HTTP V2 or
// Batch Event Upload API.
//
// The output packs messages into requests within Amplitude's limits (2000
// events, 1 MB for HTTP V2 or 20 MB for Batch, on the uncompressed JSON),
// writing the body by appending each message's raw JSON. It classifies every
// answer in one place (classify, after amplitude-api.md §4.7): events a 400
// names fail alone with their reason and the rest are re-sent; 413 halves the
// request; throttled devices and users are held for the throttle period while
// other ids keep flowing; 5xx, timeouts and connection errors are retried
// with exponential back-off. Failed messages are reported in a
// service.BatchError, so a `fallback` output can route them to a dead-letter
// output with the reason in @fallback_error.
//
// The sub-package amplitudetest is an Amplitude-compatible server for tests.
package amplitude
