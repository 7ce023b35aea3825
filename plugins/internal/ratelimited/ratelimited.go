// Package ratelimited tells nacks that mean "over a rate limit: send again
// later" from outages, without reading error text: an output marks its error
// with a RateLimited method (the amplitude output's deferred and throttled
// nacks), and an input that answers a sender (braze_currents_http) asks Only.
package ratelimited

import (
	"errors"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// marked is an error that says whether it is a rate limit.
type marked interface {
	RateLimited() bool
}

// Is reports whether err is, or wraps, an error marked as a rate limit.
func Is(err error) bool {
	var m marked
	return errors.As(err, &m) && m.RateLimited()
}

// Only reports whether every failure that err reports is a rate limit: err
// itself, or, for a *service.BatchError with per-message errors, each of
// them. It is false for a nil error.
func Only(err error) bool {
	if err == nil {
		return false
	}
	var berr *service.BatchError
	if !errors.As(err, &berr) || berr.IndexedErrors() == 0 {
		return Is(err)
	}
	only, failed := true, false
	// Only the errors matter here, not which message had them, so the walk
	// needs no indexer (indexing a batch costs a context per message).
	//lint:ignore SA1019 indexes are not compared with any batch
	berr.WalkMessages(func(_ int, _ *service.Message, merr error) bool {
		if merr == nil {
			return true
		}
		failed = true
		only = Is(merr)
		return only
	})
	return failed && only
}
