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
	defer func() { o.guard.answered(events, o.clock.Now()) }()
	if o.hedgeAfter <= 0 {
		return o.post(ctx, body, len(events))
	}
	return o.hedged(ctx, body, events)
}

// hedged posts body and, when no answer came within hedge_after, posts it
// once more and takes the first answer that is not an outage (Amplitude
// de-duplicates the events by insert_id, so a second copy ingests nothing
// twice). The second copy is charged to the events' budgets; when any of
// them has no budget left, no copy is sent. It returns once both attempts
// are over, so the body is not reused while one is still being sent.
func (o *amplitudeOutput) hedged(ctx context.Context, body []byte, events []*event) outcome {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan outcome, 2)
	attempt := func() { results <- o.post(hctx, body, len(events)) }
	go attempt()
	running := 1
	timer := o.clock.NewTimer(o.hedgeAfter)
	defer timer.Stop()
	var first outcome
	select {
	case first = <-results:
		return first
	case <-timer.C():
	}
	if o.chargeHedge(events) {
		o.metrics.hedges.Incr(1)
		o.metrics.sent.Incr(int64(len(events)))
		go attempt()
		running++
		defer func() { o.guard.answered(events, o.clock.Now()) }()
	}
	first = <-results
	running--
	if first.verdict == verdictOutage && running > 0 {
		first = <-results
		running--
	}
	cancel()
	for ; running > 0; running-- {
		<-results
	}
	return first
}

// chargeHedge charges a hedge's events to their budgets, or charges nothing
// and returns false when one has no budget.
func (o *amplitudeOutput) chargeHedge(events []*event) bool {
	now := o.clock.Now()
	for i, e := range events {
		_, paced := o.pacer.take(e, now)
		if paced {
			if _, ok := o.guard.admit(e, now); !ok {
				o.pacer.give(e, now)
				paced = false
			}
		}
		if !paced {
			for _, c := range events[:i] {
				o.pacer.give(c, now)
			}
			o.guard.answered(events[:i], now) // never sent: counted as answered now, on the safe side
			return false
		}
	}
	return true
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
