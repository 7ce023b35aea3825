package amplitude

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
)

// heldEvent is an event waiting for a throttle hold or its id's budget.
type heldEvent struct {
	ev    *event
	until time.Time
	// throttled: held after Amplitude refused it (429), not by the pacer;
	// only such holds end with the back-off's max_elapsed_time.
	throttled bool
	// waiter is the id hash the event is counted under in o.waiting while
	// it waits for the pacer (0: not counted).
	waiter uint64
}

// delivery is the state machine of one WriteBatch: requests to send, events
// held after a 429 or by the pacer, and the error of each failed message (a
// *deadletter.Error for an event fault, an *OutageError otherwise).
type delivery struct {
	o     *amplitudeOutput
	errs  map[int]error
	queue [][]*event
	held  []heldEvent
	bo    backoff.ExponentialBackOff
	// giveUp is when events still held by a throttle fail instead of being
	// held again: the back-off's maximum elapsed time after the write began
	// (zero: never).
	giveUp time.Time
	// deadline is the caller's deadline (zero: none): no event is held
	// beyond it. Context deadlines are wall-clock times: compared with the
	// output's clock, which is the system clock outside tests.
	deadline time.Time
	// last is the last outage, for the failure summary.
	last *OutageError
	// wake is signalled when an event's own context ends (see abandon.go);
	// nil when no event has a cancellable context.
	wake chan struct{}
	// limit is the most events a request may hold (0: the builder's): 413s
	// and bisections lower it, so that events coming back from a hold are
	// not merged again into a request Amplitude refuses.
	limit int
	// waiting is what this write added to o.waiting, given back when its
	// events stop waiting or the write ends.
	waiting map[uint64]int32
	// claimed are the ids this write holds a claim of (see waiters.claim),
	// released when the write ends.
	claimed map[uint64]struct{}
}

func newDelivery(o *amplitudeOutput) *delivery {
	return &delivery{o: o, errs: map[int]error{}}
}

func (d *delivery) now() time.Time { return d.o.clock.Now() }

// fail records an event fault.
func (d *delivery) fail(index int, err *deadletter.Error) {
	d.errs[index] = err
	d.o.metrics.failed.Incr(1, string(err.Reason))
}

// nack records an outage for an event.
func (d *delivery) nack(index int, err *OutageError) {
	d.errs[index] = err
	d.last = err
	d.o.metrics.nacked.Incr(1, string(err.Reason))
}

func (d *delivery) nackAll(events []*event, err *OutageError) {
	for _, e := range events {
		d.nack(e.index, err)
	}
}

// holdEvent parks an event until t, or nacks it when t is past the caller's
// deadline (a throttled device must not turn the caller's request into a
// timeout).
func (d *delivery) holdEvent(e *event, t time.Time, throttled bool) {
	if !d.deadline.IsZero() && t.After(d.deadline) {
		d.nack(e.index, newOutage(OutageThrottled, 0, "the event's device or user is held by Amplitude until %s, past the write's deadline",
			t.UTC().Format(time.RFC3339)))
		return
	}
	d.held = append(d.held, heldEvent{ev: e, until: t, throttled: throttled})
}

// wakeTogether is how many events of one id waiting for its budget wake
// together when the pacer next has room; the others wait for later turns.
// Below it, events of many ids wake at the same instants and go in the same
// requests; above it, the hundreds of writes a hot device's backlog can fill
// would all wake for one event's room, 27 times a second.
const wakeTogether = 32

// holdPaced parks an event whose id had no budget until its turn: when the
// pacer has room (t), or, behind wakeTogether events of the id already
// waiting (in this write or others), one pacer interval later per event
// beyond them. The turn is an estimate (the event takes the budget only if
// it is there when it wakes), but it keeps a hot id's waiting events from
// waking all at once, and a turn past the caller's deadline nacks the event
// at once. When its id already holds its share of the writes
// (pacing_id_share) and this write is not one of them, the event is
// deferred (nacked) instead of held.
func (d *delivery) holdPaced(e *event, t time.Time) {
	o := d.o
	id := e.deviceID
	key := deviceKey(id)
	if id == "" {
		key = userKey(e.userID)
	}
	h := idHash(key)
	if !d.claim(h) {
		d.deferEvent(e, h)
		return
	}
	o.metrics.paced.Incr(1)
	if behind := o.waiting.add(h, 1) - wakeTogether; behind > 0 {
		t = t.Add(time.Duration(behind) * time.Duration(o.pacer.interval))
	}
	if !d.deadline.IsZero() && t.After(d.deadline) {
		o.waiting.add(h, -1)
		d.holdEvent(e, t, false) // nacks it
		return
	}
	if d.waiting == nil {
		d.waiting = map[uint64]int32{}
	}
	d.waiting[h]++
	d.held = append(d.held, heldEvent{ev: e, until: t, waiter: h})
}

// claim reports whether this write may hold waiting events of the id whose
// hash is h: it already does, or fewer than the output's idWrites writes do
// (0: no bound).
func (d *delivery) claim(h uint64) bool {
	o := d.o
	if o.idWrites == 0 {
		return true
	}
	if _, ok := d.claimed[h]; ok {
		return true
	}
	if !o.waiting.claim(h, o.idWrites) {
		return false
	}
	if d.claimed == nil {
		d.claimed = map[uint64]struct{}{}
	}
	d.claimed[h] = struct{}{}
	return true
}

// deferEvent nacks an event that would have had to wait for its id's budget
// while its id (whose hash is h) already holds as many writes as it may: its
// input delivers it again later, and this write's slot is free once its other
// events are sent. Its error says when its turn comes (OutageError.RetryAfter:
// waiters.deferTurn), so that the input need not deliver it again and again
// before then.
func (d *delivery) deferEvent(e *event, h uint64) {
	err := *errDeferred
	if p := d.o.pacer; p != nil && p.interval > 0 {
		now := d.now().UnixNano()
		err.Wait = time.Duration(d.o.waiting.deferTurn(h, now, p.interval) - now)
	}
	d.errs[e.index] = &err
	d.o.metrics.nacked.Incr(1, string(OutageDeferred))
}

// errDeferred is what the error of every deferred event copies.
var errDeferred = newOutage(OutageDeferred, 0, "the event's id already has its share of the writes in flight waiting for its budget (pacing_id_share); nacked for redelivery")

// unwait stops counting a held event as waiting for its id's budget.
func (d *delivery) unwait(h heldEvent) {
	if h.waiter == 0 {
		return
	}
	d.o.waiting.add(h.waiter, -1)
	if d.waiting[h.waiter]--; d.waiting[h.waiter] == 0 {
		delete(d.waiting, h.waiter)
	}
}

// endWaits gives back what the write still counts in o.waiting (events
// dropped or nacked while they waited).
func (d *delivery) endWaits() {
	for h, n := range d.waiting {
		d.o.waiting.add(h, -n)
	}
	d.waiting = nil
	for h := range d.claimed {
		d.o.waiting.release(h)
	}
	d.claimed = nil
}

// sendable returns the events that may be sent now, parking the others:
// events of ids Amplitude holds (429, daily quota) and events whose id has
// no budget left. Budgets are charged here, just before the send, so every
// attempt (first send, retry, split, bisection) is charged.
func (d *delivery) sendable(events []*event) []*event {
	now := d.now()
	d.o.pacer.prefetch(events)
	out := events[:0:0]
	for _, e := range events {
		if e.abandoned() {
			d.abandon(e)
			continue
		}
		if t, quota, held := d.o.holds.heldUntil(e.idKeys(), now); held {
			if quota && d.o.quotaFails {
				d.fail(e.index, eventFault(reasonDailyQuota, "the event's device or user is over Amplitude's daily quota"))
				continue
			}
			d.holdEvent(e, t, true)
			continue
		}
		if d.o.silenced.has(e.deviceID) {
			d.fail(e.index, eventFault(reasonSilenced, "Amplitude silenced the event's device_id"))
			continue
		}
		if t, paced, ok := d.o.pacer.charge(e, now); !ok {
			if paced {
				d.holdPaced(e, t)
			} else {
				d.o.metrics.paced.Incr(1)
				d.holdEvent(e, t, false)
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

// split cuts events into requests within the builder's limits and d.limit.
func (d *delivery) split(events []*event) [][]*event {
	reqs := d.o.builder.split(events)
	if d.limit == 0 {
		return reqs
	}
	out := reqs[:0:0]
	for _, r := range reqs {
		for len(r) > d.limit {
			out = append(out, r[:d.limit:d.limit])
			r = r[d.limit:]
		}
		out = append(out, r)
	}
	return out
}

// pushFront queues requests to be sent before the others.
func (d *delivery) pushFront(reqs ...[]*event) {
	d.queue = append(reqs, d.queue...)
}

// run sends events until each is delivered or failed, or ctx ends.
func (d *delivery) run(ctx context.Context, events []*event) {
	d.bo = d.o.backoff
	d.bo.Clock = d.o.clock
	d.bo.Reset()
	if d.bo.MaxElapsedTime > 0 {
		d.giveUp = d.now().Add(d.bo.MaxElapsedTime)
	}
	if dl, ok := ctx.Deadline(); ok {
		d.deadline = dl
	}
	d.queue = d.split(events)
	defer d.endWaits()
	for len(d.queue) > 0 || len(d.held) > 0 {
		if len(d.queue) == 0 {
			if !d.waitForHeld(ctx) {
				return
			}
			continue
		}
		req := d.queue[0]
		d.queue = d.queue[1:]
		// Events of held ids, or of ids out of budget, wait; the others
		// are charged to their ids' budgets and sent.
		if req = d.sendable(req); len(req) == 0 {
			continue
		}
		out := d.o.send(ctx, req)
		if out.verdict != verdictOutage {
			d.bo.Reset()
		}
		if !d.handle(ctx, req, out) {
			return
		}
	}
}

// handle acts on the outcome of a request; false means ctx ended and every
// event left was nacked.
func (d *delivery) handle(ctx context.Context, req []*event, out outcome) bool {
	o := d.o
	switch out.verdict {
	case verdictOK:
		o.metrics.ingested.Incr(int64(len(req)))
		if out.ingested >= 0 && out.ingested < len(req) {
			o.metrics.unconfirmed.Incr(int64(len(req) - out.ingested))
			o.unconfirmedWarn.WarnN(o.log, o.clock.Now().UnixNano(), int64(len(req)-out.ingested),
				"Amplitude answered 2xx with events_ingested lower than the events sent (%d events unconfirmed since the last line; last: %d of %d)",
				out.ingested, len(req))
		}
	case verdictPartial:
		o.log.Debugf("Amplitude refused %d of %d events (%d): %s", len(out.failed), len(req), out.status, out.message)
		o.silenced.add(out.silencedIDs)
		throttledAt := map[int]bool{}
		for _, i := range out.throttled {
			throttledAt[i] = true
		}
		o.holdThrottled(req, out)
		rest := make([]*event, 0, len(req))
		for i, e := range req {
			if err, bad := out.failed[i]; bad {
				d.fail(e.index, err)
				continue
			}
			if throttledAt[i] {
				d.holdEvent(e, o.holdEnd(out), true)
				continue
			}
			rest = append(rest, e)
		}
		if len(rest) > 0 {
			d.pushFront(rest)
		}
	case verdictSplit, verdictBisect:
		if len(req) == 1 {
			e := req[0]
			if out.verdict == verdictSplit {
				d.fail(e.index, eventFault(reasonTooLarge, fmt.Sprintf("Amplitude refused the event as too large (%d): %s", out.status, out.message)))
				return true
			}
			d.limit = 1
			if e.refusals == 0 {
				// Isolated: send it alone once more, so that a refusal that
				// does not repeat (a transient 400) fails nothing.
				e.refusals++
				d.pushFront(req)
				return true
			}
			d.fail(e.index, eventFault(reasonRejected, fmt.Sprintf("Amplitude refused the event alone, twice (%d): %s", out.status, out.message)))
			if out.verdict == verdictBisect {
				d.limit = 0 // isolated: the others may go together again
			}
			return true
		}
		o.log.Debugf("Amplitude refused a request of %d events (%d): %s; halving it", len(req), out.status, out.message)
		half := len(req) / 2
		if d.limit == 0 || half < d.limit {
			d.limit = len(req) - half
		}
		d.pushFront(req[:half:half], req[half:])
	case verdictThrottled:
		if !d.throttled(req, out) {
			// The 429 names none of these events: a throttle of the
			// destination, to back off from.
			return d.retry(ctx, req, out)
		}
	case verdictOutage:
		return d.retry(ctx, req, out)
	}
	return true
}

// retry queues req again after a back-off, or nacks it when the back-off ran
// out; false means ctx ended and every event left was nacked.
func (d *delivery) retry(ctx context.Context, req []*event, out outcome) bool {
	o := d.o
	pause := d.bo.NextBackOff()
	if pause != backoff.Stop && out.retryAfter > pause {
		pause = out.retryAfter
	}
	if pause == backoff.Stop || (!d.deadline.IsZero() && d.now().Add(pause).After(d.deadline)) {
		d.nackAll(req, newOutage(OutageRetriesExhausted, out.status, "gave up after retries, last answer (%s, %d): %s", out.problem, out.status, out.message))
		return true
	}
	o.log.Debugf("Request of %d events failed (%s, %d): %s; retrying in %v", len(req), out.problem, out.status, out.message, pause.Round(time.Millisecond))
	d.pushFront(req)
	if err := d.sleep(ctx, pause); err != nil {
		d.interrupt(err)
		return false
	}
	o.metrics.retried.Incr(int64(len(req)))
	return true
}

// throttled handles a 429 naming events or ids: events of ids over their daily
// quota are held until the next hourly step (or fail, with daily_quota:
// fail), events of throttled ids are held, the others are re-sent now. It
// returns false, doing nothing, when the answer names none of the events.
func (d *delivery) throttled(req []*event, out outcome) bool {
	o := d.o
	o.holdThrottled(req, out)
	if !slices.ContainsFunc(req, func(e *event) bool {
		keys := e.idKeys()
		return anyIn(keys, out.quotaIDs) || anyIn(keys, out.throttledIDs)
	}) {
		return false
	}
	until := o.holdEnd(out)
	rest := make([]*event, 0, len(req))
	var held int
	for _, e := range req {
		keys := e.idKeys()
		switch {
		case anyIn(keys, out.quotaIDs) && o.quotaFails:
			d.fail(e.index, eventFault(reasonDailyQuota, "the event's device or user is over Amplitude's daily quota"))
		case anyIn(keys, out.quotaIDs):
			d.holdEvent(e, nextHourlyStep(d.now()), true)
			held++
		case anyIn(keys, out.throttledIDs):
			d.holdEvent(e, until, true)
			held++
		default:
			rest = append(rest, e)
		}
	}
	o.metrics.throttled.Incr(int64(held))
	o.log.Debugf("Amplitude throttled %d devices/users: holding %d events, re-sending %d", len(out.throttledIDs), held, len(rest))
	if len(rest) > 0 {
		d.pushFront(rest)
	}
	return true
}

func anyIn(keys [2]idKey, set map[idKey]bool) bool {
	for _, k := range keys {
		if k.id != "" && set[k] {
			return true
		}
	}
	return false
}

// waitForHeld sleeps until the earliest hold ends and queues the events whose
// hold ended; false means ctx ended and every event left was nacked.
func (d *delivery) waitForHeld(ctx context.Context) bool {
	earliest := d.held[0].until
	for _, h := range d.held[1:] {
		if h.until.Before(earliest) {
			earliest = h.until
		}
	}
	throttled := slices.ContainsFunc(d.held, func(h heldEvent) bool { return h.throttled })
	if !d.giveUp.IsZero() && d.now().After(d.giveUp) && throttled {
		// Still throttled after being held and re-sent for longer than
		// failures are retried: give the events back (nack) rather than
		// hold a write slot indefinitely. Events waiting for the pacer
		// keep waiting: their wait is bounded by their budget.
		e := newOutage(OutageThrottled, 429, "still throttled by Amplitude after %v", d.bo.MaxElapsedTime)
		kept := d.held[:0]
		for _, h := range d.held {
			if h.throttled {
				d.nack(h.ev.index, e)
				continue
			}
			kept = append(kept, h)
		}
		d.held = kept
		return true
	}
	if throttled && !d.giveUp.IsZero() && d.giveUp.Before(earliest) {
		// A long hold (a daily quota's, until the next hourly step) ends
		// the write when the back-off would have given up, not later.
		earliest = d.giveUp.Add(time.Nanosecond)
	}
	if err := d.sleep(ctx, earliest.Sub(d.now())); err != nil {
		d.interrupt(err)
		return false
	}
	now := d.now()
	var due []*event
	kept := d.held[:0]
	for _, h := range d.held {
		if h.until.After(now) {
			kept = append(kept, h)
			continue
		}
		d.unwait(h)
		due = append(due, h.ev)
	}
	d.held = kept
	sort.Slice(due, func(i, j int) bool { return due[i].index < due[j].index })
	d.queue = append(d.queue, d.split(due)...)
	return true
}

// interrupt nacks every event not yet delivered because ctx ended.
func (d *delivery) interrupt(err error) {
	e := newOutage(OutageInterrupted, 0, "delivery interrupted: %v", err)
	for _, req := range d.queue {
		d.nackAll(req, e)
	}
	for _, h := range d.held {
		d.nack(h.ev.index, e)
	}
	d.queue, d.held = nil, nil
}
