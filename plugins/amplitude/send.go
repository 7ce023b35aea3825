package amplitude

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// send posts one request and classifies the answer.
func (o *amplitudeOutput) send(ctx context.Context, events []*event) outcome {
	bufp, _ := o.bufs.Get().(*[]byte)
	if bufp == nil {
		bufp = new([]byte)
	}
	defer o.bufs.Put(bufp)
	*bufp = o.builder.build((*bufp)[:0], events)
	body := *bufp
	if o.gzip {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		_, _ = zw.Write(body)
		_ = zw.Close()
		body = zb.Bytes()
	}
	o.metrics.sent.Incr(int64(len(events)))
	// The events were admitted in flight by sendable (see arrivals.go).
	defer func() { o.pacer.answered(events, o.clock.Now()) }()
	if o.hedgeAfter <= 0 {
		return o.post(ctx, body, len(events))
	}
	return o.hedged(ctx, body, events)
}

// hedgeInFlight is the most attempts of one request in flight at once (the
// first and two copies).
const hedgeInFlight = 3

// hedgeMinWait is the shortest wait for budget before a copy is tried again.
const hedgeMinWait = time.Millisecond

// attemptResult is the outcome of one attempt of a hedged request.
type attemptResult struct {
	out  outcome
	copy bool // a hedged copy, not the first attempt
}

// hedged posts body and takes the first answer that is not an outage from
// it or its copies (Amplitude de-duplicates the events by insert_id, so a
// copy ingests nothing twice). While the first attempt is in flight (at
// most its timeout), a copy is sent when the attempts in flight have had no
// answer for hedge_after (twice as long after each copy), or after a
// back-off when an attempt failed while another is still in flight (a hung
// request whose copy got a 503 does not wait for its own timeout); at most
// hedgeInFlight attempts at once. Each copy is charged to its events'
// budgets; when one has no budget, the copy waits until the pacer allows it
// instead of being dropped, so that a hang costs about hedge_after, not the
// timeout. When every attempt failed it returns the last outage. It returns
// once every attempt is over, so the body is not reused while one is still
// being sent.
//
// The first attempt runs on the caller's goroutine, whose stack the HTTP
// client has already grown on earlier requests, and most requests end
// there: a goroutine (hedge) is started only once the first attempt has had
// no answer for hedge_after, for the copies and the choice between the
// answers. (A goroutine per first attempt grew a fresh stack through the
// HTTP client on every request: 3.5% of the live path's CPU.)
func (o *amplitudeOutput) hedged(ctx context.Context, body []byte, events []*event) outcome {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan attemptResult, hedgeInFlight)
	decided := make(chan outcome, 1)
	stop := clock.AfterFunc(o.clock, o.hedgeAfter, func() {
		decided <- o.hedge(hctx, cancel, body, events, results)
	})
	out := o.post(hctx, body, len(events))
	if stop() { // no copy: the first attempt's answer is the request's
		return out
	}
	results <- attemptResult{out, false}
	return <-decided
}

// hedge is hedged's choice between the answers of the first attempt, which
// its caller sends to results, and of the copies it posts itself; it starts
// once the first attempt has had no answer for hedge_after, with a copy
// due. It cancels the attempts still in flight once it has chosen, and
// returns once each has sent its result.
func (o *amplitudeOutput) hedge(hctx context.Context, cancel context.CancelFunc, body []byte, events []*event, results chan attemptResult) outcome {
	attempt := func(hedged bool) { results <- attemptResult{o.post(hctx, body, len(events)), hedged} }
	running, first := 1, true // first: the first attempt is in flight
	// silence is how long the attempts in flight may go without an answer
	// before a copy: hedge_after, doubled with every copy.
	silence := o.hedgeAfter
	bo := o.backoff
	bo.Clock = o.clock
	bo.MaxElapsedTime = 0
	bo.Reset()
	// wake is when to try a copy (nil: none due); it is set only while
	// the first attempt and fewer than hedgeInFlight are in flight. due is
	// set when a copy is due now.
	var wake clock.Timer
	due := true
	stop := func() {
		if wake != nil {
			wake.Stop()
			wake = nil
		}
	}
	defer stop()
	arm := func(d time.Duration) {
		stop()
		if first && running < hedgeInFlight {
			wake = o.clock.NewTimer(d)
		}
	}
	var result attemptResult
	for {
		if due {
			due = false
			if at, ok := o.chargeHedge(events); !ok {
				arm(max(at.Sub(o.clock.Now()), hedgeMinWait))
				continue
			}
			o.metrics.hedges.Incr(1)
			o.metrics.sent.Incr(int64(len(events)))
			go attempt(true)
			running++
			// The copy's events were admitted in flight by chargeHedge.
			defer func() { o.pacer.answered(events, o.clock.Now()) }()
			silence *= 2
			arm(silence)
			continue
		}
		var wakeC <-chan time.Time
		if wake != nil {
			wakeC = wake.C()
		}
		select {
		case result = <-results:
			running--
			first = first && result.copy
		case <-wakeC:
			wake = nil
			due = true
			continue
		}
		if result.out.verdict != verdictOutage || running == 0 {
			break
		}
		// Another attempt is still in flight: try a copy after a back-off
		// instead of waiting for that one's timeout.
		arm(bo.NextBackOff())
	}
	if result.copy && result.out.verdict != verdictOutage {
		o.metrics.hedgeWins.Incr(1)
	}
	cancel()
	for ; running > 0; running-- {
		<-results
	}
	return result.out
}

// chargeHedge charges a copy's events to their budgets and returns true, or
// charges nothing and returns when the first event without budget may next
// be sent.
func (o *amplitudeOutput) chargeHedge(events []*event) (time.Time, bool) {
	now := o.clock.Now()
	for i, e := range events {
		if at, _, ok := o.pacer.charge(e, now); !ok {
			for _, c := range events[:i] {
				o.pacer.give(c, now) // never sent: counted as answered now, on the safe side
			}
			return at, false
		}
	}
	return time.Time{}, true
}

// post sends one body of n events, with the request timeout, and classifies
// the answer.
func (o *amplitudeOutput) post(ctx context.Context, body []byte, n int) outcome {
	rctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, o.url, bytes.NewReader(body))
	if err != nil {
		return outcome{verdict: verdictOutage, problem: problemTransport, message: o.redact("cannot build request: " + err.Error())}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "*/*")
	if o.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	start := o.clock.Now()
	res, err := o.client.Do(req)
	defer func() {
	}()
	if err != nil {
		o.metrics.latency.Timing(o.clock.Now().Sub(start).Nanoseconds())
		o.metrics.requests.Incr(1, "error")
		return outcome{verdict: verdictOutage, problem: problemTransport, message: o.redact("request failed: " + err.Error())}
	}
	ans, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	_ = res.Body.Close()
	o.metrics.latency.Timing(o.clock.Now().Sub(start).Nanoseconds())
	o.metrics.requests.Incr(1, strconv.Itoa(res.StatusCode))
	if err != nil {
		return outcome{verdict: verdictOutage, problem: problemUnreadable, status: res.StatusCode, message: o.redact("reading the answer failed: " + err.Error())}
	}
	return classify(answer{status: res.StatusCode, contentType: res.Header.Get("Content-Type"), retryAfter: res.Header.Get("Retry-After"), body: ans}, n, o.redactor)
}

// redact removes the API key from text quoted from an answer or an error.
func (o *amplitudeOutput) redact(s string) string {
	return o.redactor.String(s)
}

// idRemoved counts and reports an id removed from an event before sending
// (the event goes with its other id). why is "<field>: <reason>".
func (o *amplitudeOutput) idRemoved(why string) {
	field, _, _ := strings.Cut(why, ":")
	o.metrics.idsRemoved.Incr(1, field)
	o.removedWarn.Warn(o.log, o.clock.Now().UnixNano(),
		"Removed %d user_id/device_id values Amplitude refuses from events, which were sent with their other id (last: %s)", why)
}

// alerter logs an error line at most once per period, with the number of
// lines it suppressed since the last one: an outage is logged for a person
// without one line per batch.
type alerter struct {
	last       atomic.Int64
	suppressed atomic.Int64
}

// alert logs an error that needs a person, rate-limited to one line per
// alertEvery.
func (o *amplitudeOutput) alert(format string, args ...any) {
	now := o.clock.Now().UnixNano()
	last := o.alerts.last.Load()
	if now-last < int64(alertEvery) || !o.alerts.last.CompareAndSwap(last, now) {
		o.alerts.suppressed.Add(1)
		return
	}
	if n := o.alerts.suppressed.Swap(0); n > 0 {
		format += " (%d similar lines suppressed)"
		args = append(args, n)
	}
	o.log.Errorf(format, args...)
}
