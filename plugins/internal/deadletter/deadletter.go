// Package deadletter is the project's one dead-letter contract.
//
// A message is dead-lettered only for a reason of its own: an event that
// cannot be read or mapped, an event Amplitude (or Braze) refuses by index,
// or what configuration says to fail. Such failures travel as an *Error
// carrying a typed Reason (or, on a message errored by a processor, as the
// MetaReason metadata set by Fail), never as text to be parsed. Every other
// error is an outage: the message is nacked so that its input keeps it.
//
// Outputs that deliver events (amplitude, braze_cohort) take an optional
// `dead_letter` child output (OutputField, FromParsed) and write each
// dead-lettered message to it once, as one JSON record (Encode), through a
// Writer that counts and logs what it writes.
package deadletter

import (
	"errors"
	"fmt"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Reason says why a message was dead-lettered. It is the `reason` field of
// the dead-letter record and the `reason` label of the dead_letter_events
// metric. Components declare their own reasons as constants of this type.
type Reason string

// Reasons shared by several components.
const (
	// ReasonUnreadable: the input could not decode the record (bad JSON,
	// a damaged Avro record, a line that is not an event).
	ReasonUnreadable Reason = "unreadable"
	// ReasonTooLarge: the record is over the input's size or depth limit.
	ReasonTooLarge Reason = "too_large"
	// ReasonUnmappable: the event could not be mapped to an Amplitude event.
	ReasonUnmappable Reason = "unmappable"
	// ReasonProcessingFailed: a message errored by a processor that gave no
	// reason of its own (a user's Bloblang mapping, say).
	ReasonProcessingFailed Reason = "processing_failed"
)

// MetaReason is the metadata key in which Fail records the reason of a
// message errored by a processor; outputs read it with Of.
const MetaReason = "dead_letter_reason"

// Error is an event-specific failure: the message it belongs to is
// dead-lettered with Reason. Any error that is not (or does not wrap) an
// *Error is an outage.
type Error struct {
	Reason Reason
	Err    error
}

// Error returns "<reason>: <detail>".
func (e *Error) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error with reason and a formatted detail.
func New(reason Reason, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Wrap returns err as an *Error with reason (nil for a nil err).
func Wrap(reason Reason, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Reason: reason, Err: err}
}

// ReasonOf returns the reason of err when err is (or wraps) an *Error.
func ReasonOf(err error) (Reason, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason, true
	}
	return "", false
}

// Fail marks msg as failed for its own reason: it sets the message's error
// (an *Error) and MetaReason, so that a delivering output dead-letters it.
func Fail(msg *service.Message, reason Reason, err error) {
	msg.SetError(Wrap(reason, err))
	msg.MetaSetMut(MetaReason, string(reason))
}

// Of returns the dead-letter reason of a message errored upstream, and false
// when the message carries no error. A message errored without a typed
// reason (by a user's processor) gets ReasonProcessingFailed.
func Of(msg *service.Message) (Reason, error, bool) {
	err := msg.GetError()
	if err == nil {
		return "", nil, false
	}
	if r, ok := ReasonOf(err); ok {
		return r, err, true
	}
	if v, ok := msg.MetaGet(MetaReason); ok && v != "" {
		return Reason(v), err, true
	}
	return ReasonProcessingFailed, err, true
}
