// Package ratelimited tells nacks that mean "over a rate limit: send again
// later" from outages, without reading error text: an output marks its error
// with a RateLimited method (the amplitude output's deferred and throttled
// nacks), and an input that answers a sender (braze_currents_http) asks Only.
// An error may also say how long to wait before sending again (a RetryAfter
// method: the amplitude output's deferred events), which the inputs that
// redeliver read with After.
package ratelimited

import (
	"errors"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// marked is an error that says whether it is a rate limit.
type marked interface {
	RateLimited() bool
}

// hinted is an error that says how long to wait before sending again.
type hinted interface {
	RetryAfter() time.Duration
}

// After returns how long the failures that err reports ask to wait before
// their messages are sent again: the shortest of their hints, so that no
// message waits longer than its own failure asks; 0 when err is nil or any
// failure gives no hint (an outage: the input's own back-off applies).
func After(err error) time.Duration {
	var wait time.Duration
	eachFailure(err, func(ferr error) bool {
		h := hint(ferr)
		if wait == 0 || h < wait {
			wait = h
		}
		return h > 0
	})
	return wait
}

func hint(err error) time.Duration {
	var h hinted
	if errors.As(err, &h) {
		return max(h.RetryAfter(), 0)
	}
	return 0
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
	only, failed := true, false
	eachFailure(err, func(ferr error) bool {
		failed = true
		only = Is(ferr)
		return only
	})
	return failed && only
}

// eachFailure calls f with each failure that err reports, until f returns
// false: err itself, or, for a *service.BatchError with per-message errors,
// each message's error. A nil err reports none.
func eachFailure(err error, f func(error) bool) {
	if err == nil {
		return
	}
	var berr *service.BatchError
	if !errors.As(err, &berr) || berr.IndexedErrors() == 0 {
		f(err)
		return
	}
	// Only the errors matter, not which message had them, so the walk needs
	// no indexer (indexing a batch costs a context per message).
	//lint:ignore SA1019 indexes are not compared with any batch
	berr.WalkMessages(func(_ int, _ *service.Message, merr error) bool {
		return merr == nil || f(merr)
	})
}
