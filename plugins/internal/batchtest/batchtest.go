// Package batchtest helps tests read the per-message failures of a Benthos
// batch error.
package batchtest

import (
	"errors"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Failures returns, by index in the batch that idx was taken from (take it
// with batch.Index() before the write), the error of every failed message
// of err. A nil err gives an empty map; an err that is not a
// *service.BatchError fails the test.
func Failures(tb testing.TB, idx *service.Indexer, err error) map[int]error {
	tb.Helper()
	failed := map[int]error{}
	if err == nil {
		return failed
	}
	var berr *service.BatchError
	if !errors.As(err, &berr) {
		tb.Fatalf("got %v, not a batch error", err)
	}
	berr.WalkMessagesIndexedBy(idx, func(i int, _ *service.Message, err error) bool {
		if err != nil {
			failed[i] = err
		}
		return true
	})
	return failed
}
