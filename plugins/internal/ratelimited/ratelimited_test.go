package ratelimited

import (
	"errors"
	"fmt"
	"testing"

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
