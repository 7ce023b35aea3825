//go:build race

package ratelimit

// raceEnabled is true when the tests run under the race detector.
const raceEnabled = true
