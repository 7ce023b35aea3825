// Package partialnack tells which messages of a batch a nack failed, for the
// inputs that send again only those (kafka_franz, replay_nacks).
package partialnack

import (
	"errors"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Failed tells which of the n messages handed out with the indexer ix the
// nack err failed. It returns nil when the nack names none of them in
// particular (a plain error, a batch error without per-message errors) or
// when a failed message of its batch cannot be traced back to one of them (a
// processor that built new messages): then every message counts as failed.
// A message the error's batch does not hold (a processor filtered it, or its
// outcome is unknown) counts as failed too: it is sent again, never assumed
// delivered.
//
// Index the batch afresh for every attempt (service.MessageBatch.Index):
// an indexer from an earlier, larger attempt points at other messages.
func Failed(ix *service.Indexer, n int, err error) []bool {
	var berr *service.BatchError
	if err == nil || !errors.As(err, &berr) || berr.IndexedErrors() == 0 {
		return nil
	}
	failed := make([]bool, n)
	seen := make([]bool, n)
	traced := 0
	berr.WalkMessagesIndexedBy(ix, func(i int, _ *service.Message, merr error) bool {
		if i < 0 || i >= n {
			return true
		}
		seen[i] = true
		if merr != nil {
			failed[i] = true
			traced++
		}
		return true
	})
	if traced < berr.IndexedErrors() {
		return nil
	}
	for i := range failed {
		failed[i] = failed[i] || !seen[i]
	}
	return failed
}
