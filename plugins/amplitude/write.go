package amplitude

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/trusted"
)

// WriteBatch delivers a batch. Messages errored upstream are not sent. With
// a dead_letter output, event faults (and messages errored upstream) are
// written there once and acknowledged, and only outages are returned, in a
// *service.BatchError of *OutageError; without one, every failed message is
// reported in the *service.BatchError, with a *deadletter.Error for an event
// fault and an *OutageError for an outage.
func (o *amplitudeOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	d := newDelivery(o)
	store := make([]event, len(batch))
	ready := make([]*event, 0, len(batch))
	for i, msg := range batch {
		if reason, err, errored := deadletter.Of(msg); errored {
			var typed *deadletter.Error
			if !errors.As(err, &typed) {
				typed = &deadletter.Error{Reason: reason, Err: err}
			}
			d.fail(i, typed)
			continue
		}
		raw, err := msg.AsBytes()
		if err != nil {
			d.fail(i, eventFault(reasonInvalidEvent, "message has no readable body"))
			continue
		}
		if eerr := o.builder.prepareMarked(&store[i], i, raw, trusted.OfAt(msg, raw, i)); eerr != nil {
			d.fail(i, eerr)
			continue
		}
		ev := &store[i]
		if ev.removed != "" {
			o.idRemoved(ev.removed)
		}
		if mctx := msg.Context(); mctx.Done() != nil {
			ev.ctx = mctx
		}
		ready = append(ready, ev)
	}
	defer d.watchAbandon(ready)()
	d.run(ctx, ready)
	if len(d.errs) == 0 {
		return nil
	}
	return o.report(ctx, batch, d)
}

// report dead-letters or returns the failures of a write and logs one line
// for them.
func (o *amplitudeOutput) report(ctx context.Context, batch service.MessageBatch, d *delivery) error {
	idx := make([]int, 0, len(d.errs))
	faults := map[deadletter.Reason]int{}
	outages, abandoned, deferred := 0, 0, 0
	for i, err := range d.errs {
		idx = append(idx, i)
		var oe *OutageError
		switch r, ok := deadletter.ReasonOf(err); {
		case ok:
			faults[r]++
		case errors.As(err, &oe) && oe.Reason == OutageAbandoned:
			abandoned++
		case errors.As(err, &oe) && oe.Reason == OutageDeferred:
			deferred++
		default:
			outages++
		}
	}
	sort.Ints(idx)
	returned := idx
	if o.deadLetter != nil {
		var entries []deadletter.Entry
		returned = returned[:0:0]
		for _, i := range idx {
			err := d.errs[i]
			r, ok := deadletter.ReasonOf(err)
			if !ok {
				returned = append(returned, i)
				continue
			}
			raw, _ := batch[i].AsBytes()
			entries = append(entries, deadletter.Entry{Msg: batch[i], Reason: r, Err: err, Key: gjson.GetBytes(raw, "insert_id").Str})
		}
		if err := o.deadLetter.Write(ctx, entries); err != nil {
			// The dead-letter output is down: nack these too, so that they
			// are written when the input re-sends them.
			o.alert("Cannot write %d events to the dead_letter output, nacking them: %v", len(entries), err)
			dlErr := newOutage(OutageRetriesExhausted, 0, "the dead_letter output failed: %v", o.redact(err.Error()))
			for _, i := range idx {
				if _, ok := deadletter.ReasonOf(d.errs[i]); ok {
					d.errs[i] = dlErr
					returned = append(returned, i)
				}
			}
			sort.Ints(returned)
		}
	} else if len(faults) > 0 {
		o.log.Warnf("%d of %d events failed for a reason of their own (%s), reported as batch errors", len(idx)-outages-abandoned, len(batch), reasonCounts(faults))
	}
	if abandoned > 0 {
		o.log.Debugf("%d of %d events not sent and nacked: their input withdrew them (a revoked Kafka partition, whose new owner delivers them)", abandoned, len(batch))
	}
	if deferred > 0 {
		o.deferredWarn.WarnN(o.log, o.clock.Now().UnixNano(), int64(deferred),
			"%d events nacked for redelivery since the last line (deferred): their id already held its share of the writes (pacing_id_share) waiting for its budget; last write: %d of %d events", deferred, len(batch))
	}
	if outages > 0 && d.last != nil {
		o.alert("Amplitude unavailable: %d of %d events not delivered and nacked (%s, last status %d): %s",
			outages, len(batch), d.last.Reason, d.last.Status, d.last.Detail)
	}
	if len(returned) == 0 {
		return nil
	}
	first := d.errs[returned[0]]
	berr := service.NewBatchError(batch, fmt.Errorf("%d of %d events not delivered to Amplitude, first: %w", len(returned), len(batch), first))
	for _, i := range returned {
		berr.Failed(i, d.errs[i])
	}
	return berr
}

func reasonCounts(m map[deadletter.Reason]int) string {
	parts := make([]string, 0, len(m))
	for r, n := range m {
		parts = append(parts, string(r)+"="+strconv.Itoa(n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
