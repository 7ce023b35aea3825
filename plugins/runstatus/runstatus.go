// Package runstatus records that a run failed in a way a Benthos stream
// cannot express. An input that must stop the stream after an error (the
// amplitude_reconcile input when one side cannot be read) can only end it
// with service.ErrEndOfInput, after which Benthos exits 0; it calls Fail
// first, and the binary (main.go) exits 1 when Err returns an error.
//
// The status is per process: with several streams in one process (streams
// mode, tests) any failure fails the run.
package runstatus

import "sync"

var (
	mu    sync.Mutex
	first error
)

// Fail records err as a reason for the run to fail; the first one is kept.
// A nil err is ignored.
func Fail(err error) {
	if err == nil {
		return
	}
	mu.Lock()
	if first == nil {
		first = err
	}
	mu.Unlock()
}

// Err returns the first error given to Fail, or nil.
func Err() error {
	mu.Lock()
	defer mu.Unlock()
	return first
}
