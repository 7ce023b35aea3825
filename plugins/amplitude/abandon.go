package amplitude

import (
	"context"
	"time"
)

// Abandoned events: a message whose own context ends before it is sent
// (kafka_franz cancels the context of a revoked partition's records, whose
// new owner delivers them from the committed offset) is not sent any more,
// not even when its budget comes: it is nacked with OutageAbandoned. Without
// this, a previous owner's paced backlog would reach Amplitude alongside the
// new owner's sends of the same devices, above their budgets. Messages
// without a cancellable context (every other input of ours) are never
// abandoned.

// watchAbandon registers the cancellable contexts of the write's events: when
// one ends, d.wake is signalled so that a waiting write notices at once. It
// returns the function that unregisters them.
func (d *delivery) watchAbandon(events []*event) (stop func()) {
	var stops []func() bool
	var last context.Context
	for _, e := range events {
		if e.ctx == nil || e.ctx == last {
			continue
		}
		last = e.ctx
		if d.wake == nil {
			d.wake = make(chan struct{}, 1)
		}
		stops = append(stops, context.AfterFunc(e.ctx, func() {
			select {
			case d.wake <- struct{}{}:
			default:
			}
		}))
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// abandoned reports whether the event's source withdrew it.
func (e *event) abandoned() bool { return e.ctx != nil && e.ctx.Err() != nil }

// abandon nacks an event its source withdrew. It is not an outage: no alert,
// and d.last is left alone.
func (d *delivery) abandon(e *event) {
	d.errs[e.index] = newOutage(OutageAbandoned, 0, "not sent: %v", context.Cause(e.ctx))
	d.o.metrics.nacked.Incr(1, string(OutageAbandoned))
}

// dropAbandoned removes the withdrawn events from the queued requests and the
// held events.
func (d *delivery) dropAbandoned() {
	queue := d.queue[:0]
	for _, req := range d.queue {
		kept := req[:0:0]
		for _, e := range req {
			if e.abandoned() {
				d.abandon(e)
				continue
			}
			kept = append(kept, e)
		}
		if len(kept) > 0 {
			queue = append(queue, kept)
		}
	}
	clear(d.queue[len(queue):])
	d.queue = queue
	held := d.held[:0]
	for _, h := range d.held {
		if h.ev.abandoned() {
			d.abandon(h.ev)
			continue
		}
		held = append(held, h)
	}
	clear(d.held[len(held):])
	d.held = held
}

// sleep waits for dur on the output's clock, or until ctx ends (its error is
// returned). Events withdrawn meanwhile are dropped as soon as they are; the
// wait ends early when nothing is left to deliver.
func (d *delivery) sleep(ctx context.Context, dur time.Duration) error {
	if dur <= 0 {
		return ctx.Err()
	}
	t := d.o.clock.NewTimer(dur)
	defer t.Stop()
	for {
		select {
		case <-t.C():
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-d.wake: // nil without cancellable events: never ready
			d.dropAbandoned()
			if len(d.queue) == 0 && len(d.held) == 0 {
				return nil
			}
		}
	}
}
