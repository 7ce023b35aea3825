package deadletter

import (
	"context"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
	"github.com/opencurrents/currents-amplitude/plugins/internal/outcome"
)

// FieldDeadLetter is the name of the dead-letter child output field.
const FieldDeadLetter = "dead_letter"

// defaultRemember is how many dead-lettered keys a Writer remembers to write
// each one once (about 8 bytes each).
const defaultRemember = 1 << 20

// OutputField returns the optional `dead_letter` output field of a
// delivering output.
func OutputField() *service.ConfigField {
	return service.NewOutputField(FieldDeadLetter).
		Description("Where events that fail for a reason of their own go, each once, as one JSON record " +
			"`{\"reason\", \"error\", \"failed_at\", \"component\", \"currents_event_type\", \"source\", \"event\"}`. " +
			"Outages (retries exhausted, shutting down, an outage-like refusal) never go here: those messages are " +
			"nacked so that their input keeps them. When this field is absent, failed messages are reported to " +
			"Benthos individually (a batch error), so plain `fallback`, `switch` or `reject_errored` can route them.").
		Optional().
		Advanced()
}

// Entry is one message to dead-letter.
type Entry struct {
	Msg    *service.Message
	Reason Reason
	Err    error
	// Key identifies the event for writing it once (its insert_id, say);
	// empty means the message bytes identify it.
	Key string
}

// Writer writes dead-letter records to a child output, each event once
// within its memory (Remember keys), counts them in
// dead_letter_events_total{component,reason} and logs one line per write.
type Writer struct {
	out       *service.OwnedOutput
	component string
	log       *service.Logger
	counter   *service.MetricCounter
	clock     clock.Clock

	// durable, when set, remembers written keys across restarts.
	durable  *storeMemory
	mu       sync.Mutex
	seen     map[uint64]struct{}
	order    []uint64
	next     int
	remember int
}

// FromParsed returns the Writer of the `dead_letter` field of conf, or nil
// when the field is absent. component names the owning component in
// records, metrics and logs.
func FromParsed(conf *service.ParsedConfig, res *service.Resources, component string) (*Writer, error) {
	if !conf.Contains(FieldDeadLetter) {
		return nil, nil
	}
	out, err := conf.FieldOutput(FieldDeadLetter)
	if err != nil {
		return nil, err
	}
	w := NewWriter(out, res, component, nil)
	if conf.Contains(FieldDeadLetterState) {
		path, err := conf.FieldString(FieldDeadLetterState)
		if err != nil {
			return nil, err
		}
		if path != "" {
			if err := w.openDurable(path); err != nil {
				return nil, err
			}
		}
	}
	return w, nil
}

// NewWriter returns a Writer on out. A nil clk means the system clock.
func NewWriter(out *service.OwnedOutput, res *service.Resources, component string, clk clock.Clock) *Writer {
	w := &Writer{
		out:       out,
		component: component,
		clock:     clock.OrSystem(clk),
		seen:      make(map[uint64]struct{}),
		remember:  defaultRemember,
	}
	if res != nil {
		w.log = res.Logger()
		w.counter = res.Metrics().NewCounter("dead_letter_events_total", "component", "reason")
	}
	return w
}

// keyOf is stable across processes (FNV-1a), so that a durable memory
// recognises an event after a restart.
func (w *Writer) keyOf(e Entry) uint64 {
	h := fnv.New64a()
	h.Write([]byte(e.Reason))
	h.Write([]byte{0})
	if e.Key != "" {
		h.Write([]byte(e.Key))
	} else if b, err := e.Msg.AsBytes(); err == nil {
		h.Write(b)
	}
	return h.Sum64()
}

// Write writes one record per entry not written before, as one batch, and
// returns the child output's error (nil when nothing needed writing). On an
// error nothing is remembered, so the caller nacks the messages and a re-send
// writes them again.
func (w *Writer) Write(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	keys := make([]uint64, 0, len(entries))
	batch := make(service.MessageBatch, 0, len(entries))
	counts := map[Reason]int{}
	w.mu.Lock()
	for _, e := range entries {
		k := w.keyOf(e)
		if _, dup := w.seen[k]; dup || containsKey(keys, k) {
			continue
		}
		keys = append(keys, k)
		batch = append(batch, w.record(e))
		counts[e.Reason]++
	}
	w.mu.Unlock()
	if w.durable != nil && len(keys) > 0 {
		seen, err := w.durable.seen(keys)
		if err != nil {
			return err
		}
		if len(seen) > 0 {
			keep, kb := keys[:0], batch[:0]
			for i, k := range keys {
				if seen[k] {
					r, _ := batch[i].MetaGet(MetaReason)
					if counts[Reason(r)]--; counts[Reason(r)] == 0 {
						delete(counts, Reason(r))
					}
					continue
				}
				keep, kb = append(keep, k), append(kb, batch[i])
			}
			keys, batch = keep, kb
		}
	}
	if len(batch) == 0 {
		return nil
	}
	if err := w.out.WriteBatch(ctx, batch); err != nil {
		return err
	}
	// Remembered after the write: a crash in between writes the events again
	// on their next reading (at least once), never loses them.
	if w.durable != nil {
		if err := w.durable.remember(keys); err != nil && w.log != nil {
			w.log.Warnf("dead letters written but not remembered in %s (they may be written again after a restart): %v", w.durable.db.Path(), err)
		}
	}
	w.mu.Lock()
	for _, k := range keys {
		w.remember1(k)
	}
	w.mu.Unlock()
	w.report(counts, len(entries)-len(batch))
	return nil
}

func containsKey(keys []uint64, k uint64) bool {
	for _, o := range keys {
		if o == k {
			return true
		}
	}
	return false
}

// remember1 adds k, forgetting the oldest key beyond w.remember.
func (w *Writer) remember1(k uint64) {
	if _, ok := w.seen[k]; ok {
		return
	}
	if len(w.order) < w.remember {
		w.order = append(w.order, k)
	} else {
		delete(w.seen, w.order[w.next])
		w.order[w.next] = k
		w.next = (w.next + 1) % w.remember
	}
	w.seen[k] = struct{}{}
}

func (w *Writer) record(e Entry) *service.Message {
	return RecordMessage(e, w.component, w.clock.Now())
}

// RecordMessage returns the dead-letter record of e as a new message: the
// encoded Record (component, failure time at, the source metadata of
// SourceKeys), carrying e.Msg's metadata and MetaReason. It is what a
// Writer writes, for components that route failures themselves.
func RecordMessage(e Entry, component string, at time.Time) *service.Message {
	raw, _ := e.Msg.AsBytes()
	r := Record{
		Reason:    e.Reason,
		FailedAt:  at,
		Component: component,
		Event:     raw,
	}
	if e.Err != nil {
		r.Error = e.Err.Error()
	}
	r.EventType, _ = e.Msg.MetaGet(currentsbody.MetaEventType)
	for _, k := range SourceKeys {
		if v, ok := e.Msg.MetaGet(k); ok && v != "" {
			r.Source = append(r.Source, [2]string{k, v})
		}
	}
	out := service.NewMessage(r.Encode(make([]byte, 0, len(raw)+256)))
	// The record keeps the message's metadata, so that the dead_letter
	// output can interpolate it (a Kafka key, a file name per event type).
	_ = e.Msg.MetaWalkMut(func(k string, v any) error {
		out.MetaSetMut(k, v)
		return nil
	})
	out.MetaSetMut(MetaReason, string(e.Reason))
	return out
}

func (w *Writer) report(counts map[Reason]int, duplicates int) {
	reasons := make([]string, 0, len(counts))
	for r, n := range counts {
		if w.counter != nil {
			w.counter.Incr(int64(n), w.component, string(r))
		}
		outcome.Add(outcome.DeadLettered, string(r), n)
		reasons = append(reasons, string(r)+"="+strconv.Itoa(n))
	}
	if w.log == nil {
		return
	}
	sort.Strings(reasons)
	if duplicates > 0 {
		w.log.Warnf("dead-lettered %d events (%s); %d already dead-lettered before", sum(counts), strings.Join(reasons, " "), duplicates)
		return
	}
	w.log.Warnf("dead-lettered %d events (%s)", sum(counts), strings.Join(reasons, " "))
}

func sum(m map[Reason]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

// Close closes the child output.
func (w *Writer) Close(ctx context.Context) error {
	if w == nil {
		return nil
	}
	// An owned output that was never written to was never started, and
	// closing it would wait for ever: start it first. (Prime fails only on
	// an output already started.)
	_ = w.out.Prime()
	err := w.out.Close(ctx)
	if w.durable != nil {
		if cerr := w.durable.close(); err == nil {
			err = cerr
		}
	}
	return err
}
