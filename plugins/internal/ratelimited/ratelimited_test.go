package ratelimited

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
)

type limitErr struct{ limited bool }

func (e limitErr) Error() string     { return fmt.Sprintf("limited=%v", e.limited) }
func (e limitErr) RateLimited() bool { return e.limited }

func batchErr(errs ...error) error {
	b := make(service.MessageBatch, len(errs)+1) // one more message, delivered
	for i := range b {
		b[i] = service.NewMessage(nil)
	}
	be := service.NewBatchError(b, errors.New("some failed"))
	for i, err := range errs {
		be.Failed(i, err)
	}
	return be
}

func TestOnly(t *testing.T) {
	limited, outage := limitErr{true}, errors.New("503")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"a rate limit", limited, true},
		{"a wrapped rate limit", fmt.Errorf("write: %w", limited), true},
		{"a marked error that is not a limit", limitErr{false}, false},
		{"an outage", outage, false},
		{"a batch of rate limits", batchErr(limited, fmt.Errorf("x: %w", limited)), true},
		{"a batch with an outage among rate limits", batchErr(limited, outage, limited), false},
		{"a batch error naming no message, with a rate-limited headline", service.NewBatchError(service.MessageBatch{service.NewMessage(nil)}, limited), true},
		{"a batch error naming no message, with an outage headline", service.NewBatchError(service.MessageBatch{service.NewMessage(nil)}, outage), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Only(tc.err))
		})
	}
}

type waitErr time.Duration

func (e waitErr) Error() string             { return "wait " + time.Duration(e).String() }
func (e waitErr) RetryAfter() time.Duration { return time.Duration(e) }

func TestAfter(t *testing.T) {
	outage := errors.New("503")
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
	}{
		{"nil", nil, 0},
		{"an outage", outage, 0},
		{"a hint", waitErr(time.Second), time.Second},
		{"a wrapped hint", fmt.Errorf("write: %w", waitErr(time.Second)), time.Second},
		{"a negative hint", waitErr(-time.Second), 0},
		{"a batch: the shortest hint", batchErr(waitErr(3*time.Second), waitErr(time.Second), waitErr(2*time.Second)), time.Second},
		{"a batch with an outage among hints", batchErr(waitErr(time.Second), outage), 0},
		{"a batch error naming no message, with a hinted headline", service.NewBatchError(service.MessageBatch{service.NewMessage(nil)}, waitErr(time.Second)), time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, After(tc.err))
		})
	}
}
