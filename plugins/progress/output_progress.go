package progress

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/outcome"
)

const (
	fieldOutput      = "output"
	fieldInterval    = "interval"
	fieldTotal       = "total"
	fieldMaxInFlight = "max_in_flight"
	fieldBatching    = "batching"
)

// metaPath is the metadata key in which Benthos' file input names the file a
// message was read from.
const metaPath = "path"

// maxFiles bounds the set of file names counted (about 100 bytes each).
const maxFiles = 1 << 20

// reasonOutage labels events given back to the input for an error that is
// not a dead-letter reason of their own (retries exhausted, shutting down).
const reasonOutage = "outage"

func outputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		Categories("Utility").
		Summary("Wraps the output of a replay or backfill and reports its progress: events done, rate, time left, and a summary at the end.").
		Description(`
Wrap the pipeline's whole output (with its dead-letter routing, if any) in ` + "`progress`" + `. Every batch goes to
the child ` + "`output`" + ` unchanged, and its result comes back unchanged (an error still nacks the batch, so the
input keeps it). An event is *done* once the child output acknowledges it: delivered, or dead-lettered for a reason of
its own; an event the child fails is *given back* to the input.

Move the batching policy of the delivering output to this output's ` + "`batching`" + ` and set ` + "`max_in_flight`" + `
to the delivering output's: each batch passed to the child waits for its acknowledgement.

` + "```yaml" + `
output:
  progress:
    total: ${REPLAY_TOTAL:0}
    max_in_flight: 8
    batching: { count: 2000, period: 1s }
    output:
      amplitude:
        api_key: ${AMPLITUDE_API_KEY}
        endpoint: batch
        max_in_flight: 8
` + "```" + `

Every ` + "`interval`" + ` one log line at info level says how many events are done, the rate over the last interval
and, when ` + "`total`" + ` is set, the share done and the estimated time left (from the average rate since the
start), and, for inputs that name the file of each message in the ` + "`path`" + ` metadata (Benthos' ` + "`file`" + `
input), how many files the events done came from:

` + "```" + `
progress: 12000 of 50000 events done (24.0%), 1200 events/s, about 32s left; 3 dead-lettered, 0 given back; from 4 files
` + "```" + `

When the run ends (the input is exhausted and the pipeline closes) one summary line says how long it took, how many
events were delivered, how many were dead-lettered and dropped on purpose before the output, by reason, and how many
were given back to the input (nacked) by reason:

` + "```" + `
progress: finished in 41s: 50000 events done, 49990 delivered, 10 dead-lettered (unmappable=10); dropped: filtered=5; given back: none
` + "```" + `

Dead-lettered and dropped events are counted by the components that dead-letter or drop them, for the whole process
(a ` + "`streams`" + ` mode process with several pipelines sums them).

### Metrics

| Metric | Kind | Labels | Meaning |
|---|---|---|---|
| ` + "`progress_events_done_total`" + ` | counter | | Events the child output acknowledged. |
| ` + "`progress_events_given_back_total`" + ` | counter | ` + "`reason`" + ` | Events the child output failed, nacked back to the input (` + "`outage`" + ` or their dead-letter reason). |
| ` + "`progress_events_per_second`" + ` | gauge | | Events done per second over the last interval. |
| ` + "`progress_events_expected`" + ` | gauge | | The ` + "`total`" + ` field (0 when unknown). |
| ` + "`progress_eta_seconds`" + ` | gauge | | Estimated seconds left (only when ` + "`total`" + ` is set). |`).
		Field(service.NewOutputField(fieldOutput).
			Description("The output that delivers the events: its acknowledgements are what is counted.")).
		Field(service.NewDurationField(fieldInterval).
			Description("How often a progress line is logged and the gauges are updated.").
			Default("10s").
			Example("1m")).
		Field(service.NewIntField(fieldTotal).
			Description("How many events the run will deliver, when known (for example the line count of the replayed files), for the share done and the time left. 0: unknown.").
			Default(0).
			Example("${REPLAY_TOTAL:0}")).
		Field(service.NewIntField(fieldMaxInFlight).
			Description("Batches passed to the child output at once: set it to the child's own `max_in_flight`.").
			Default(64).
			Example(8)).
		Field(service.NewBatchPolicyField(fieldBatching).
			Description("How messages are grouped before they reach the child output. Put the batching policy here and " +
				"none on the child: every batch written to the child waits for its acknowledgement, so a child that " +
				"batches by itself would only ever see `max_in_flight` messages at once."))
}

func init() {
	err := service.RegisterBatchOutput("progress", outputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			policy, err := conf.FieldBatchPolicy(fieldBatching)
			if err != nil {
				return nil, policy, 0, err
			}
			o, maxInFlight, err := newOutput(conf, mgr, clock.System)
			return o, policy, maxInFlight, err
		})
	if err != nil {
		panic(err)
	}
}

// output is the progress wrapper.
type output struct {
	child    *service.OwnedOutput
	log      *service.Logger
	clk      clock.Clock
	interval time.Duration
	total    int64

	doneCounter      *service.MetricCounter
	givenBackCounter *service.MetricCounter
	rateGauge        *service.MetricGauge
	etaGauge         *service.MetricGauge

	mu        sync.Mutex
	started   bool
	start     time.Time
	base      outcome.Counts
	done      int64
	givenBack map[string]int64
	files     map[string]struct{}
	lastAt    time.Time
	lastDone  int64

	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
}

func newOutput(conf *service.ParsedConfig, mgr *service.Resources, clk clock.Clock) (*output, int, error) {
	child, err := conf.FieldOutput(fieldOutput)
	if err != nil {
		return nil, 0, err
	}
	interval, err := conf.FieldDuration(fieldInterval)
	if err != nil {
		return nil, 0, err
	}
	if interval <= 0 {
		return nil, 0, fmt.Errorf("%s must be positive, got %v", fieldInterval, interval)
	}
	total, err := conf.FieldInt(fieldTotal)
	if err != nil {
		return nil, 0, err
	}
	if total < 0 {
		return nil, 0, fmt.Errorf("%s must not be negative, got %d", fieldTotal, total)
	}
	maxInFlight, err := conf.FieldInt(fieldMaxInFlight)
	if err != nil {
		return nil, 0, err
	}
	if maxInFlight < 1 {
		return nil, 0, fmt.Errorf("%s must be at least 1, got %d", fieldMaxInFlight, maxInFlight)
	}
	m := mgr.Metrics()
	o := &output{
		child:            child,
		log:              mgr.Logger(),
		clk:              clk,
		interval:         interval,
		total:            int64(total),
		doneCounter:      m.NewCounter("progress_events_done_total"),
		givenBackCounter: m.NewCounter("progress_events_given_back_total", "reason"),
		rateGauge:        m.NewGauge("progress_events_per_second"),
		etaGauge:         m.NewGauge("progress_eta_seconds"),
		givenBack:        map[string]int64{},
		files:            map[string]struct{}{},
		stop:             make(chan struct{}),
		stopped:          make(chan struct{}),
	}
	m.NewGauge("progress_events_expected").Set(int64(total))
	o.rateGauge.Set(0) // a series from the start, before the first interval
	// The run's counts start here, not at Connect: the processors may drop
	// or dead-letter events before the output connects.
	o.base = outcome.Snapshot()
	return o, maxInFlight, nil
}

// Connect starts the clock of the run and the reporting loop.
func (o *output) Connect(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.started {
		return nil
	}
	if err := o.child.Prime(); err != nil {
		return err
	}
	o.started = true
	o.start = o.clk.Now()
	o.lastAt = o.start
	go o.loop()
	return nil
}

func (o *output) loop() {
	defer close(o.stopped)
	for {
		t := o.clk.NewTimer(o.interval)
		select {
		case <-t.C():
			o.report()
		case <-o.stop:
			t.Stop()
			return
		}
	}
}

// WriteBatch passes the batch to the child output and counts its result.
func (o *output) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	idx := batch.Index()
	err := o.child.WriteBatch(ctx, batch)
	failed := map[string]int64{}
	var failedIdx map[int]struct{}
	var be *service.BatchError
	switch {
	case err == nil:
	case errors.As(err, &be):
		failedIdx = make(map[int]struct{}, be.IndexedErrors())
		be.WalkMessagesIndexedBy(idx, func(i int, _ *service.Message, merr error) bool {
			if _, dup := failedIdx[i]; merr != nil && !dup {
				failedIdx[i] = struct{}{}
				failed[reasonOf(merr)]++
			}
			return true
		})
	default:
		failed[reasonOf(err)] = int64(len(batch))
	}
	var nFailed int64
	for r, n := range failed {
		nFailed += n
		o.givenBackCounter.Incr(n, r)
	}
	done := int64(len(batch)) - nFailed
	o.doneCounter.Incr(done)
	o.mu.Lock()
	o.done += done
	for r, n := range failed {
		o.givenBack[r] += n
	}
	if done > 0 {
		for i, m := range batch {
			if _, nacked := failedIdx[i]; nacked {
				continue
			}
			if p, ok := m.MetaGet(metaPath); ok && p != "" && len(o.files) < maxFiles {
				o.files[p] = struct{}{}
			}
		}
	}
	o.mu.Unlock()
	return err
}

func reasonOf(err error) string {
	if r, ok := deadletter.ReasonOf(err); ok {
		return string(r)
	}
	return reasonOutage
}

// report logs one progress line and updates the gauges.
func (o *output) report() {
	now := o.clk.Now()
	o.mu.Lock()
	done, givenBack, files := o.done, sum(o.givenBack), len(o.files)
	rate := perSecond(done-o.lastDone, now.Sub(o.lastAt))
	avg := perSecond(done, now.Sub(o.start))
	o.lastAt, o.lastDone = now, done
	base := o.base
	o.mu.Unlock()

	o.rateGauge.Set(int64(rate + 0.5))
	deadLettered := outcome.Snapshot().Since(base).Total(outcome.DeadLettered)
	var b strings.Builder
	if o.total > 0 {
		fmt.Fprintf(&b, "progress: %d of %d events done (%.1f%%), %.0f events/s", done, o.total, 100*float64(done)/float64(o.total), rate)
		left := o.total - done
		switch {
		case left <= 0:
			o.etaGauge.Set(0)
		case avg > 0:
			eta := time.Duration(float64(left) / avg * float64(time.Second)).Round(time.Second)
			o.etaGauge.Set(int64(eta / time.Second))
			if eta < time.Second {
				b.WriteString(", under a second left")
			} else {
				fmt.Fprintf(&b, ", about %v left", eta)
			}
		default:
			b.WriteString(", time left unknown")
		}
	} else {
		fmt.Fprintf(&b, "progress: %d events done, %.0f events/s", done, rate)
	}
	fmt.Fprintf(&b, "; %d dead-lettered, %d given back", deadLettered, givenBack)
	if files > 0 {
		fmt.Fprintf(&b, "; from %d files", files)
	}
	o.log.Infof("%s", b.String())
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Close stops the reporting loop, closes the child output and logs the
// summary of the run.
func (o *output) Close(ctx context.Context) error {
	o.stopOnce.Do(func() {
		o.mu.Lock()
		started := o.started
		o.mu.Unlock()
		if started {
			close(o.stop)
			<-o.stopped
		} else {
			// An owned output that was never primed never reports closed.
			_ = o.child.Prime()
		}
	})
	err := o.child.Close(ctx)
	o.log.Infof("%s", o.summary())
	return err
}

// summary is the end-of-run line.
func (o *output) summary() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.started {
		return "progress: finished before any event was written"
	}
	d := outcome.Snapshot().Since(o.base)
	deadLettered := d.Total(outcome.DeadLettered)
	delivered := max(o.done-deadLettered, 0)
	o.etaGauge.Set(0)
	files := ""
	if len(o.files) > 0 {
		files = fmt.Sprintf(" from %d files", len(o.files))
	}
	return fmt.Sprintf("progress: finished in %v: %d events done%s, %d delivered, %d dead-lettered (%s); dropped: %s; given back: %s",
		o.clk.Now().Sub(o.start).Round(time.Second), o.done, files, delivered, deadLettered,
		byReason(d[outcome.DeadLettered]), byReason(d[outcome.Dropped]), byReason(o.givenBack))
}

// byReason renders counts as "a=1 b=2", sorted, or "none".
func byReason(m map[string]int64) string {
	parts := make([]string, 0, len(m))
	for r, n := range m {
		if n > 0 {
			parts = append(parts, r+"="+strconv.FormatInt(n, 10))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func sum(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}
