package amplitude

import (
	"errors"
	"fmt"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
)

// Event-fault reasons: the message itself is at fault, so it is dead-lettered
// (with a dead_letter output) or failed alone with a *deadletter.Error. They
// are the `reason` label of amplitude_events_failed_total and of
// dead_letter_events_total.
const (
	reasonInvalidEvent    deadletter.Reason = "invalid_event"     // not a JSON object
	reasonMissingFields   deadletter.Reason = "missing_fields"    // event_type or both ids missing
	reasonInvalidFields   deadletter.Reason = "invalid_fields"    // a field value Amplitude refuses
	reasonInvalidIDLength deadletter.Reason = "invalid_id_length" // an id Amplitude finds too short
	reasonSilenced        deadletter.Reason = "silenced"          // device silenced by Amplitude
	reasonDailyQuota      deadletter.Reason = "daily_quota"       // id over its daily quota (daily_quota: fail)
	reasonTooLarge        deadletter.Reason = "payload_too_large" // one event above the request limits
	reasonRejected        deadletter.Reason = "rejected"          // a refusal bisection isolated to the event, twice
)

// OutageReason says why events were not delivered for no fault of their own.
// It is the `reason` label of amplitude_events_nacked_total.
type OutageReason string

// Outage reasons. Events failed with these are nacked, never dead-lettered.
const (
	// OutageRetriesExhausted: 5xx, timeouts, connection errors, HTML
	// answers, 401/403/404 or an invalid API key until the back-off ran out.
	OutageRetriesExhausted OutageReason = "retries_exhausted"
	// OutageInterrupted: the write was cancelled (shutdown, or the caller's
	// deadline) before the events were delivered.
	OutageInterrupted OutageReason = "interrupted"
	// OutageThrottled: Amplitude throttles the events' ids for longer than
	// the caller can wait, or for longer than the back-off allows.
	OutageThrottled OutageReason = "throttled"
	// OutageAbandoned: the message's own context ended before it was sent
	// (kafka_franz: its partition was revoked, and the new owner delivers
	// it); not an outage of Amplitude, so it raises no alert.
	OutageAbandoned OutageReason = "abandoned"
	// OutageDeferred: the event had to wait for its id's budget while as
	// many writes as pacing_id_share allows already held waiting events of
	// that id; it is given back at once so that its id's backlog does not
	// take the write slots of every other id, and its input delivers it
	// again. Not an outage of Amplitude, so it raises no alert.
	OutageDeferred OutageReason = "deferred"
)

// OutageError is the error of a message that was not delivered because of an
// outage (of Amplitude, of a proxy, of credentials, or a shutdown). It is
// never a *deadletter.Error: such messages are nacked so that their input
// keeps them.
type OutageError struct {
	Reason OutageReason
	// Status is the last HTTP status (0 for transport errors or none).
	Status int
	// Detail is the last answer or error, with secrets redacted.
	Detail string
	// Wait is, for a deferred event, about when its id's budget has room
	// for it (its id's waiting events at the pacer's rate); 0: unknown.
	Wait time.Duration
}

// Error returns "amplitude outage (<reason>): <detail>".
func (e *OutageError) Error() string {
	return "amplitude outage (" + string(e.Reason) + "): " + e.Detail
}

// RateLimited reports whether the events were given back for their ids'
// rate (deferred, throttled) rather than for an outage, so that an input
// answering a sender can say "too many requests" (plugins/internal/ratelimited).
func (e *OutageError) RateLimited() bool {
	return e.Reason == OutageDeferred || e.Reason == OutageThrottled
}

// RetryAfter returns e.Wait: how long an input should wait before it
// delivers the events again (plugins/internal/ratelimited.After), so that a
// hot device's deferred events are not redelivered many times before their
// turn; 0: no hint, the input's own back-off applies.
func (e *OutageError) RetryAfter() time.Duration { return e.Wait }

// IsOutage reports whether err is (or wraps) an *OutageError.
func IsOutage(err error) bool {
	var o *OutageError
	return errors.As(err, &o)
}

func newOutage(reason OutageReason, status int, format string, args ...any) *OutageError {
	return &OutageError{Reason: reason, Status: status, Detail: fmt.Sprintf(format, args...)}
}

// eventFault returns the *deadletter.Error of an event Amplitude refuses.
func eventFault(reason deadletter.Reason, detail string) *deadletter.Error {
	return &deadletter.Error{Reason: reason, Err: errors.New(detail)}
}
