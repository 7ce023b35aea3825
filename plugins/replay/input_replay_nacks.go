package replay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/partialnack"
	"github.com/opencurrents/currents-amplitude/plugins/internal/ratelimited"
)

const (
	rnFieldInput            = "input"
	rnFieldRetryInterval    = "retry_interval"
	rnFieldMaxRetryInterval = "max_retry_interval"
	rnFieldMaxPending       = "max_pending"
)

func replayNacksInputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		Categories("Utility").
		Summary("Reads from a child input, sends again every message nacked downstream, and ends only once every message it read is acknowledged.").
		Description(`
Wrap a finite input (`+"`file`"+`, `+"`stdin`"+`) in it when no message may be lost at the end of the input. Benthos'
own `+"`auto_replay_nacks`"+` loses messages there in two ways (benthos v4.60.0, `+"`public/service/input_auto_retry_batched.go`"+`):

- The `+"`file`"+` input ends with `+"`component.ErrTypeClosed`"+` (`+"`internal/impl/io/input_file.go`"+`), which its auto-replay
  wrapper does not take for the end of the input: a batch nacked after the last file was read is never sent again,
  and the run ends without it.
- A batch nacked in part is sent again in part, but its messages keep the positions they had in the first batch: when
  the smaller batch is nacked in part again, the positions point at other messages or at none, and the messages that
  failed are not sent again.

This input keeps each message it read until it is acknowledged. A batch nacked with a batch error naming the messages
that failed (the `+"`amplitude`"+` output's partial outage nacks, its `+"`deferred`"+` nacks) is sent again with only those
messages (and any the error does not account for, such as messages a processor filtered out), indexed afresh on every
attempt; any other nack sends the whole batch again. The child input's batch is
acknowledged once all its messages are, so a `+"`file`"+` input's `+"`delete_on_finish`"+` and the `+"`currents_avro`"+`
scanner's progress only see deliveries. The child input ends only once all its batches are acknowledged (Benthos
waits for them), so this input ends after the last delivery.

A nacked batch is sent again at once the first two times, then after `+"`retry_interval`"+`, doubling up to
`+"`max_retry_interval`"+`; a nack whose failures all say how long to wait (the `+"`amplitude`"+` output's
`+"`deferred`"+` events) waits at least the shortest of them. Nothing is ever dropped: a message that fails for a reason of its own is the output's to
dead-letter. While `+"`max_pending`"+` messages or more have been nacked and are not delivered yet, no new batch is read from the
child input: an outage holds what was in flight, not the whole input.

A batching policy after this input needs a `+"`period`"+`: the child input ends only once its last messages are
acknowledged, so a batch that waits for its count alone would wait for ever.

On a stop (SIGTERM) the messages waiting for a retry are not delivered by this run: run the replay again
(Amplitude de-duplicates by `+"`insert_id`"+`).

### Metrics

| Metric | Kind | Meaning |
|---|---|---|
| `+"`replay_nacks_retried_total`"+` | counter | Messages sent again after a nack. |
| `+"`replay_nacks_pending`"+` | gauge | Messages nacked at least once and not delivered yet. |`).
		Field(service.NewInputField(rnFieldInput).
			Description("The input to read from. This input never nacks it, so turn the child's own replay of nacks off where it has one (`auto_replay_nacks: false` on `file`, `stdin`): it would only cost time, some 8 allocations per message (BENCHMARKS.md).")).
		Field(service.NewDurationField(rnFieldRetryInterval).
			Description("The wait before the third attempt of a nacked batch; later waits double.").
			Default("10ms").
			Example("100ms").
			Advanced()).
		Field(service.NewDurationField(rnFieldMaxRetryInterval).
			Description("The longest wait between two attempts of a nacked batch.").
			Default("1s").
			Example("5s").
			Advanced()).
		Field(service.NewIntField(rnFieldMaxPending).
			Description("How many messages may be nacked and not delivered yet before no new batch is read.").
			Default(10000).
			Example(1000).
			Advanced()).
		Example("Replay files without losing a nacked line",
			"The files are read once; a line whose events Amplitude did not take is read again, and the run ends once every line is in Amplitude or dead-lettered.",
			`
input:
  replay_nacks:
    input:
      file:
        auto_replay_nacks: false
        paths: [ ./backfill/*.jsonl ]
        scanner:
          currents_lines: {}
`)
}

func init() {
	service.MustRegisterBatchInput("replay_nacks", replayNacksInputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			return newReplayNacks(conf, mgr, clock.System)
		})
}

// origin is one batch read from the child input: acknowledged to the child
// once every one of its messages is delivered.
type origin struct {
	ack       service.AckFunc
	remaining int
}

// attempt is a set of messages of one origin, as kept between attempts.
type attempt struct {
	msgs  service.MessageBatch
	from  *origin
	tries int
}

type readResult struct {
	batch service.MessageBatch
	ack   service.AckFunc
	err   error
}

// replayNacks is the replay_nacks input.
type replayNacks struct {
	child      *service.OwnedInput
	clk        clock.Clock
	interval   time.Duration
	maxWait    time.Duration
	maxPending int

	retried *service.MetricCounter
	pending *service.MetricGauge

	reads    chan readResult
	stopRead context.CancelFunc
	readCtx  context.Context
	once     sync.Once

	mu       sync.Mutex
	ready    []*attempt    // nacked, due to be sent again
	waiting  int           // nacked attempts in their backoff
	nPending int           // messages nacked at least once, not delivered yet
	inFlight int           // attempts handed out and not yet acknowledged
	ended    bool          // the child input ended
	wake     chan struct{} // signalled (cap 1) when ready, ended or inFlight change
}

func newReplayNacks(conf *service.ParsedConfig, mgr *service.Resources, clk clock.Clock) (*replayNacks, error) {
	child, err := conf.FieldInput(rnFieldInput)
	if err != nil {
		return nil, err
	}
	r := &replayNacks{child: child, clk: clk, wake: make(chan struct{}, 1), reads: make(chan readResult)}
	if r.interval, err = conf.FieldDuration(rnFieldRetryInterval); err != nil {
		return nil, err
	}
	if r.maxWait, err = conf.FieldDuration(rnFieldMaxRetryInterval); err != nil {
		return nil, err
	}
	if r.maxPending, err = conf.FieldInt(rnFieldMaxPending); err != nil {
		return nil, err
	}
	switch {
	case r.interval <= 0:
		return nil, fmt.Errorf("%s must be positive, got %v", rnFieldRetryInterval, r.interval)
	case r.maxWait < r.interval:
		return nil, fmt.Errorf("%s (%v) must not be shorter than %s (%v)", rnFieldMaxRetryInterval, r.maxWait, rnFieldRetryInterval, r.interval)
	case r.maxPending < 1:
		return nil, fmt.Errorf("%s must be at least 1, got %d", rnFieldMaxPending, r.maxPending)
	}
	r.retried = mgr.Metrics().NewCounter("replay_nacks_retried_total")
	r.pending = mgr.Metrics().NewGauge("replay_nacks_pending")
	r.pending.Set(0)
	r.readCtx, r.stopRead = context.WithCancel(context.Background())
	return r, nil
}

// Connect starts reading the child input. The child is read one batch
// ahead, in its own goroutine, so that retries go on while a read blocks.
func (r *replayNacks) Connect(context.Context) error {
	r.once.Do(func() { go r.readLoop() })
	return nil
}

func (r *replayNacks) readLoop() {
	for {
		b, ack, err := r.child.ReadBatch(r.readCtx)
		select {
		case r.reads <- readResult{b, ack, err}:
		case <-r.readCtx.Done():
			return
		}
		if err != nil { // the end of the input, or Close (OwnedInput returns no other)
			return
		}
	}
}

func (r *replayNacks) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// ReadBatch hands out a retry when one is due, else the child's next
// batch; it returns service.ErrEndOfInput once the child has ended and no
// message waits for an acknowledgement or a retry.
func (r *replayNacks) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	for {
		r.mu.Lock()
		if len(r.ready) > 0 {
			a := r.ready[0]
			r.ready[0] = nil
			r.ready = r.ready[1:]
			r.inFlight++
			r.mu.Unlock()
			r.retried.Incr(int64(len(a.msgs)))
			b, ack := r.handOut(a)
			return b, ack, nil
		}
		// A Benthos input ends only once its batches are acknowledged, and
		// this input acknowledges a batch only once it is delivered, so
		// the child's end comes after the last delivery; the counts are
		// checked anyway.
		ended := r.ended
		if ended && r.inFlight == 0 && r.waiting == 0 {
			r.mu.Unlock()
			return nil, nil, service.ErrEndOfInput
		}
		reads := r.reads
		if ended || r.nPending >= r.maxPending {
			reads = nil
		}
		r.mu.Unlock()

		select {
		case <-r.wake:
		case res := <-reads:
			if res.err != nil {
				if !errors.Is(res.err, service.ErrEndOfInput) {
					return nil, nil, res.err
				}
				r.mu.Lock()
				r.ended = true
				r.mu.Unlock()
				continue
			}
			o := &origin{ack: res.ack, remaining: len(res.batch)}
			if len(res.batch) == 0 {
				_ = res.ack(ctx, nil)
				continue
			}
			r.mu.Lock()
			r.inFlight++
			r.mu.Unlock()
			b, ack := r.handOut(&attempt{msgs: res.batch, from: o})
			return b, ack, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// handOut returns a copy of the attempt's messages, indexed for this
// attempt only, and the acknowledgement that settles it.
func (r *replayNacks) handOut(a *attempt) (service.MessageBatch, service.AckFunc) {
	b := a.msgs.Copy()
	idx := b.Index()
	var once sync.Once
	return b, func(ctx context.Context, err error) error {
		var out error
		once.Do(func() { out = r.settle(ctx, a, idx, err) })
		return out
	}
}

// settle takes the result of one attempt: the delivered messages count
// towards their origin's acknowledgement, the failed ones wait for their
// next attempt.
func (r *replayNacks) settle(ctx context.Context, a *attempt, idx *service.Indexer, err error) error {
	var failed service.MessageBatch
	if err != nil {
		failed = a.msgs
		if which := partialnack.Failed(idx, len(a.msgs), err); which != nil {
			failed = failed[:0:0]
			for i, bad := range which {
				if bad {
					failed = append(failed, a.msgs[i])
				}
			}
		}
	}
	delivered := len(a.msgs) - len(failed)

	r.mu.Lock()
	r.inFlight--
	if a.tries > 0 {
		r.nPending -= delivered // these were pending: now delivered
	} else {
		r.nPending += len(failed) // pending from now on
	}
	r.pending.Set(int64(r.nPending))
	a.from.remaining -= delivered
	done := a.from.remaining == 0
	if len(failed) > 0 {
		next := &attempt{msgs: failed, from: a.from, tries: a.tries + 1}
		// A rate limit's hint (a hot device's deferred events: when its
		// backlog will have been sent) outlasts the back-off.
		if wait := max(r.backoff(next.tries), ratelimited.After(err)); wait > 0 {
			r.waiting++
			go r.after(wait, next)
		} else {
			r.ready = append(r.ready, next)
		}
	}
	r.mu.Unlock()
	r.signal()
	if done {
		return a.from.ack(ctx, nil)
	}
	return nil
}

// backoff is the wait before the given attempt (1: the first retry).
func (r *replayNacks) backoff(tries int) time.Duration {
	if tries <= 2 {
		return 0
	}
	wait := r.interval
	for i := 3; i < tries && wait < r.maxWait; i++ {
		wait *= 2
	}
	return min(wait, r.maxWait)
}

func (r *replayNacks) after(wait time.Duration, a *attempt) {
	_ = clock.Sleep(r.readCtx, r.clk, wait) // on Close the attempt is dropped with the run
	r.mu.Lock()
	r.waiting--
	r.ready = append(r.ready, a)
	r.mu.Unlock()
	r.signal()
}

// Close stops reading the child input and closes it.
func (r *replayNacks) Close(ctx context.Context) error {
	r.stopRead()
	return r.child.Close(ctx)
}
