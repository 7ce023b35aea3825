package reconcile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	// The braze_to_amplitude processor, the default of the delivery field.
	_ "github.com/opencurrents/currents-amplitude/plugins/currents"
	"github.com/opencurrents/currents-amplitude/plugins/export"
	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
	"github.com/opencurrents/currents-amplitude/plugins/internal/logthrottle"
	"github.com/opencurrents/currents-amplitude/plugins/runstatus"
)

const (
	arFieldCurrents         = "currents"
	arFieldDelivery         = "delivery"
	arFieldAmplitude        = "amplitude"
	arFieldStart            = "start"
	arFieldEnd              = "end"
	arFieldSpillDir         = "spill_dir"
	arFieldMemoryMB         = "memory_mb"
	arFieldReportPath       = "report_path"
	arFieldSummaryPath      = "summary_path"
	arFieldEmitMissing      = "emit_missing"
	arFieldProgressInterval = "progress_interval"
	arFieldBatchSize        = "batch_size"
	arFieldLibrary          = "amplitude_library"

	// MetaMissing is set to "true" on every event amplitude_reconcile emits.
	MetaMissing = "reconcile_missing"
)

func amplitudeReconcileSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Utility").
		Version("0.1.0").
		Summary("Proves that every Braze Currents event of a time window reached Amplitude: compares what delivery sends with what Amplitude holds, per hour and event type.").
		Description(`
Reads two child inputs to their end, at the same time:

- `+"`currents`"+`: the Currents events of the window (storage exports through the `+"`currents_avro`"+` scanner,
  or JSON lines). Each batch goes through the `+"`delivery`"+` processors, the mapping of the delivery pipeline
  (by default `+"`braze_to_amplitude`"+` with its defaults; give it the same configuration as delivery), so that the
  *expected* events are exactly the ones delivery sends: the events it drops (filtered, unknown type,
  unidentified) and rejects (dead-lettered) are expected absent, and counted per hour and Currents type
  under `+"`not_sent`"+`.
- `+"`amplitude`"+`: the events Amplitude holds, normally `+"`amplitude_export`"+` over the upload hours of the window
  plus a lag. Any message with `+"`insert_id`"+` (or `+"`$insert_id`"+`), `+"`event_type`"+` and `+"`time`"+` (or an
  exported row's `+"`client_event_time`"+`) is accepted. Errored messages with the metadata
  `+"`amplitude_export_incomplete`"+` mark the report incomplete.

Events are matched by insert id (the Currents event id) and counted by the UTC hour of their event time and
Amplitude event type: *expected*, *present*, *missing* (expected, not in Amplitude), *extra* (in Amplitude, not
expected), duplicates on either side and event types that differ. Only event times in `+"`[start, end)`"+` count;
Braze's `+"`time`"+` is Unix seconds, Amplitude's export hours are UTC, so windows and hours are UTC whatever the
zone the times are written in.

Memory is bounded by `+"`memory_mb`"+`, not by the number of events: each side's records (insert id, side, time,
event type, and the event itself with `+"`emit_missing`"+`) are sorted in memory-sized runs, spilled to
compressed files under `+"`spill_dir`"+` and merged. Progress is logged every `+"`progress_interval`"+`.

At the end the JSON report is written to `+"`report_path`"+` and a readable summary to `+"`summary_path`"+`; then,
with `+"`emit_missing`"+`, every missing event is emitted as a message, as delivery would have sent it (an
Amplitude event object, metadata `+"`reconcile_missing: true`"+`), to be written to a file or re-sent through the
normal delivery output (Amplitude de-duplicates by insert id, so a re-send is safe). The input then ends.

If a side fails to be read (an error of a child input or of the spill folder), both sides stop, the error is
logged at error level, no report is written (a report left by an earlier run is removed first) and the input
ends. In that case, and when the report is incomplete (a side was not read in full: refused keys, hours not
exportable yet), the `+"`currents-amplitude`"+` process exits with status 1 once the stream ends, so that a scheduler
sees that the run proved nothing; a complete report exits 0, whatever it found missing.

Metrics: `+"`reconcile_expected_total`"+`, `+"`reconcile_present_total`"+`, `+"`reconcile_missing_total`"+`,
`+"`reconcile_extra_total`"+` (set once at the end).`).
		Fields(
			service.NewInputField(arFieldCurrents).
				Description("The Currents side: an input reading the window's Currents events."),
			service.NewProcessorListField(arFieldDelivery).
				Description("The mapping of the delivery pipeline, run on each Currents batch: what leaves it is what delivery sends.").
				Default([]any{map[string]any{"braze_to_amplitude": map[string]any{}}}),
			service.NewInputField(arFieldAmplitude).
				Description("The Amplitude side: an input reading the events Amplitude holds, normally `amplitude_export`."),
			service.NewStringField(arFieldLibrary).
				Description("Only Amplitude events whose `library` is this are reconciled (delivery sets `Braze`); the project's events from other senders (SDKs, other sources) are counted as `amplitude_other_library` and left out. Empty reconciles every event.").
				Default("Braze").
				Example(""),
			service.NewStringField(arFieldStart).
				Description("Start of the window of event times, included: a whole UTC hour (`YYYYMMDDTHH`, `YYYY-MM-DDTHH`, a date or an RFC 3339 time in any zone).").
				Example("2026-11-29"),
			service.NewStringField(arFieldEnd).
				Description("End of the window, excluded; same formats as `start`.").
				Example("2026-11-30"),
			service.NewStringField(arFieldSpillDir).
				Description("Folder of the sorted runs (empty: the system's temporary folder). Needs room for at most about 85 bytes per event and side (less once compressed), plus the events themselves with `emit_missing`.").
				Default("").
				Example("/var/tmp"),
			service.NewIntField(arFieldMemoryMB).
				Description("Memory for the records sorted in memory before a run is spilled, in MiB, for both sides together (at most 8192). The process needs a few tens of MiB more.").
				Default(256).
				Example(1024),
			service.NewStringField(arFieldReportPath).
				Description("File of the JSON report (replaced). Empty: not written.").
				Default("reconcile_report.json").
				Example("/reports/2026-11-29.json"),
			service.NewStringField(arFieldSummaryPath).
				Description("File of the readable summary (replaced; `/dev/stdout` prints it). Empty: not written.").
				Default("").
				Example("/dev/stdout"),
			service.NewBoolField(arFieldEmitMissing).
				Description("After the report, emit every missing event as delivery would have sent it.").
				Default(false).
				Example(true),
			service.NewDurationField(arFieldProgressInterval).
				Description("How often progress is logged while reading and merging.").
				Default("30s").
				Example("5s"),
			service.NewIntField(arFieldBatchSize).
				Description("Missing events per emitted batch.").
				Default(500).
				Example(100),
		).
		Example("Yesterday, from storage exports", "Reconciles 2026-11-29 (UTC): the Avro files of that day against Amplitude's export of what was uploaded that day and up to six hours later.", `
input:
  amplitude_reconcile:
    start: 2026-11-29
    end: 2026-11-30
    currents:
      file:
        paths: [ "/mnt/currents/**/date=2026-11-29-*/**/*.avro" ]
        scanner:
          currents_avro: {}
    delivery:
      - braze_to_amplitude: {}
    amplitude:
      amplitude_export:
        api_key: ${AMPLITUDE_API_KEY}
        secret_key: ${AMPLITUDE_SECRET_KEY}
        start: 2026-11-29
        end: 2026-11-30
        upload_lag: 6h
    summary_path: /dev/stdout
`)
}

func init() {
	service.MustRegisterBatchInput("amplitude_reconcile", amplitudeReconcileSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			in, err := newAmplitudeReconcileFromParsed(conf, mgr, clock.System)
			if err != nil {
				return nil, err
			}
			return service.AutoRetryNacksBatched(in), nil
		})
}

type amplitudeReconcile struct {
	currents, amplitude *service.OwnedInput
	delivery            []*service.OwnedProcessor
	opts                Options
	reportPath          string
	summaryPath         string
	emitMissing         bool
	batchSize           int
	library             string
	log                 *service.Logger
	warn                logthrottle.Warner
	clock               clock.Clock

	mExpected, mPresent, mMissing, mExtra *service.MetricCounter

	startOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
	runErr    error

	spool   *os.File
	scanner *bufio.Scanner
}

func newAmplitudeReconcileFromParsed(conf *service.ParsedConfig, mgr *service.Resources, clk clock.Clock) (*amplitudeReconcile, error) {
	start, end, err := export.WindowFromParsed(conf, arFieldStart, arFieldEnd)
	if err != nil {
		return nil, err
	}
	in := &amplitudeReconcile{log: mgr.Logger(), clock: clk, done: make(chan struct{})}
	if in.currents, err = conf.FieldInput(arFieldCurrents); err != nil {
		return nil, err
	}
	if in.amplitude, err = conf.FieldInput(arFieldAmplitude); err != nil {
		return nil, err
	}
	if in.delivery, err = conf.FieldProcessorList(arFieldDelivery); err != nil {
		return nil, err
	}
	spill, err := conf.FieldString(arFieldSpillDir)
	if err != nil {
		return nil, err
	}
	mb, err := conf.FieldInt(arFieldMemoryMB)
	if err != nil {
		return nil, err
	}
	if mb < 1 || mb > MaxMemoryLimit>>20 {
		return nil, fmt.Errorf("memory_mb must be between 1 and %d", MaxMemoryLimit>>20)
	}
	if in.reportPath, err = conf.FieldString(arFieldReportPath); err != nil {
		return nil, err
	}
	if in.summaryPath, err = conf.FieldString(arFieldSummaryPath); err != nil {
		return nil, err
	}
	if in.emitMissing, err = conf.FieldBool(arFieldEmitMissing); err != nil {
		return nil, err
	}
	interval, err := conf.FieldDuration(arFieldProgressInterval)
	if err != nil {
		return nil, err
	}
	if in.batchSize, err = conf.FieldInt(arFieldBatchSize); err != nil {
		return nil, err
	}
	if in.library, err = conf.FieldString(arFieldLibrary); err != nil {
		return nil, err
	}
	if in.batchSize < 1 {
		return nil, errors.New("batch_size must be at least 1")
	}
	in.opts = Options{
		Start: start, End: end, Dir: spill, MemoryLimit: mb << 20,
		KeepBodies: in.emitMissing, Clock: clk, ProgressInterval: interval,
		Progress: func(s string) { in.log.Info(s) },
	}
	m := mgr.Metrics()
	in.mExpected = m.NewCounter("reconcile_expected_total")
	in.mPresent = m.NewCounter("reconcile_present_total")
	in.mMissing = m.NewCounter("reconcile_missing_total")
	in.mExtra = m.NewCounter("reconcile_extra_total")
	return in, nil
}

// Connect starts the reconciliation in the background, once.
func (in *amplitudeReconcile) Connect(context.Context) error {
	in.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		in.cancel = cancel
		go func() {
			defer close(in.done)
			in.runErr = in.run(ctx)
			if in.runErr != nil && ctx.Err() == nil {
				// The stream can only end: the process must still fail.
				runstatus.Fail(fmt.Errorf("amplitude_reconcile: no report written: %w", in.runErr))
			}
		}()
	})
	return nil
}

// ReadBatch waits for the report, then emits the missing events (with
// emit_missing) and ends.
func (in *amplitudeReconcile) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	select {
	case <-in.done:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if in.runErr != nil || in.scanner == nil {
		return nil, nil, service.ErrEndOfInput
	}
	batch := make(service.MessageBatch, 0, in.batchSize)
	for len(batch) < in.batchSize && in.scanner.Scan() {
		msg := service.NewMessage(append([]byte(nil), in.scanner.Bytes()...))
		msg.MetaSetMut(MetaMissing, "true")
		batch = append(batch, msg)
	}
	if err := in.scanner.Err(); err != nil {
		in.log.Errorf("amplitude_reconcile: reading the missing events back: %v", err)
		runstatus.Fail(fmt.Errorf("amplitude_reconcile: reading the missing events back: %w", err))
		in.scanner = nil
	}
	if len(batch) == 0 {
		in.scanner = nil
		return nil, nil, service.ErrEndOfInput
	}
	return batch, func(context.Context, error) error { return nil }, nil
}

// run reads both sides, merges them and writes the report.
func (in *amplitudeReconcile) run(ctx context.Context) error {
	// A report left by an earlier run must not pass for this one's if it
	// fails.
	if in.reportPath != "" {
		if err := os.Remove(in.reportPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			in.log.Errorf("amplitude_reconcile: removing the previous report: %v", err)
			return err
		}
	}
	rec, err := New(in.opts)
	if err != nil {
		in.log.Errorf("amplitude_reconcile: %v", err)
		return err
	}
	defer rec.Close()
	in.log.Infof("amplitude_reconcile: reconciling %s to %s; spill folder %s", in.opts.Start.Format(time.RFC3339), in.opts.End.Format(time.RFC3339), rec.dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, read := range [...]func(context.Context, *Reconciler) error{in.readCurrents, in.readAmplitude} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = read(ctx, rec); errs[i] != nil {
				cancel() // the other side is of no use now
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		in.log.Errorf("amplitude_reconcile: reading failed, no report written: %v", err)
		return err
	}
	var missing io.Writer
	if in.emitMissing {
		if in.spool, err = os.CreateTemp(in.opts.Dir, "reconcile-missing-*.jsonl"); err != nil {
			in.log.Errorf("amplitude_reconcile: %v", err)
			return err
		}
		missing = in.spool
	}
	rep, err := rec.Finish(missing)
	if err != nil {
		in.log.Errorf("amplitude_reconcile: %v", err)
		return err
	}
	if err := in.writeReport(rep); err != nil {
		in.log.Errorf("amplitude_reconcile: %v", err)
		return err
	}
	in.mExpected.Incr(rep.Totals.Expected)
	in.mPresent.Incr(rep.Totals.Present)
	in.mMissing.Incr(rep.Totals.Missing)
	in.mExtra.Incr(rep.Totals.Extra)
	t := rep.Totals
	line := fmt.Sprintf("amplitude_reconcile: %d expected, %d present, %d missing, %d extra, %d duplicated in Amplitude; %d not sent by design; complete: %t",
		t.Expected, t.Present, t.Missing, t.Extra, t.AmplitudeDuplicates, t.Dropped+t.Rejected, rep.Complete())
	if t.Missing > 0 || !rep.Complete() {
		in.log.Warn(line)
	} else {
		in.log.Info(line)
	}
	if !rep.Complete() {
		// A side was not read in full (refused keys, hours not exportable
		// yet): the report is written, but it proves nothing for those hours.
		runstatus.Fail(fmt.Errorf("amplitude_reconcile: the report is incomplete, its counts are lower bounds: %s", strings.Join(rep.Incomplete, "; ")))
	}
	if in.spool != nil {
		if _, err := in.spool.Seek(0, io.SeekStart); err != nil {
			return err
		}
		in.scanner = bufio.NewScanner(in.spool)
		in.scanner.Buffer(make([]byte, 64<<10), export.MaxLineLength)
	}
	return nil
}

// pendingEvent is a Currents event of the batch being mapped.
type pendingEvent struct {
	time int64
	typ  string
	n    int
}

// readCurrents maps every Currents batch as delivery does and records the
// outcome of each event.
func (in *amplitudeReconcile) readCurrents(ctx context.Context, rec *Reconciler) error {
	pending := map[string]*pendingEvent{}
	for {
		batch, ack, err := in.currents.ReadBatch(ctx)
		if errors.Is(err, service.ErrEndOfInput) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("currents: %w", err)
		}
		clear(pending)
		for _, msg := range batch {
			notePending(pending, msg)
		}
		outs, err := service.ExecuteProcessors(ctx, in.delivery, batch)
		if err != nil {
			_ = ack(ctx, err)
			return fmt.Errorf("currents: %w", err)
		}
		for _, out := range outs {
			for _, msg := range out {
				if err := in.recordMapped(rec, pending, msg); err != nil {
					_ = ack(ctx, err)
					return err
				}
			}
		}
		for _, p := range pending {
			for range p.n {
				rec.NotSent(p.time, p.typ, false)
			}
		}
		if err := ack(ctx, nil); err != nil {
			return fmt.Errorf("currents: %w", err)
		}
	}
}

// notePending records the events of one Currents message (a single event or
// an HTTP connector request body) before mapping.
func notePending(pending map[string]*pendingEvent, msg *service.Message) {
	raw, err := msg.AsBytes()
	if err != nil {
		return
	}
	events, _, err := currentsbody.SplitEvents(raw)
	if err != nil {
		return
	}
	if events == nil {
		events = [][]byte{raw}
	}
	hint, _ := msg.MetaGet(currentsbody.MetaEventType)
	for _, ev := range events {
		f := gjson.GetManyBytes(ev, "id", "time", "event_type")
		typ := f[2].String()
		if typ == "" {
			typ = hint
		}
		p := pending[f[0].String()]
		if p == nil {
			p = &pendingEvent{time: currentsTime(f[1]), typ: typ}
			pending[f[0].String()] = p
		}
		p.n++
	}
}

// currentsTime reads a Currents time (Unix seconds), UnknownTime when it is
// not a positive number.
func currentsTime(v gjson.Result) int64 {
	if v.Type != gjson.Number || v.Int() <= 0 {
		return UnknownTime
	}
	return v.Int()
}

// recordMapped records one message leaving the delivery processors: an
// event delivery sends, or one it rejects.
func (in *amplitudeReconcile) recordMapped(rec *Reconciler, pending map[string]*pendingEvent, msg *service.Message) error {
	raw, err := msg.AsBytes()
	if err != nil {
		return err
	}
	if msg.GetError() != nil {
		id := gjson.GetBytes(raw, "id").String()
		p := pending[id]
		if p == nil || p.n == 0 {
			typ, _ := msg.MetaGet(currentsbody.MetaEventType)
			rec.NotSent(currentsTime(gjson.GetBytes(raw, "time")), typ, true)
			return nil
		}
		p.n--
		rec.NotSent(p.time, p.typ, true)
		return nil
	}
	ev, err := export.ParseEvent(raw)
	if err != nil {
		// Not an Amplitude event: delivery would refuse it.
		in.warn.Warn(in.log, in.clock.Now().UnixNano(), "amplitude_reconcile: %d mapped Currents events are not Amplitude events, counted as rejected (last: %v)", err)
		typ, _ := msg.MetaGet(currentsbody.MetaEventType)
		rec.NotSent(UnknownTime, typ, true)
		return nil
	}
	if p := pending[ev.InsertID]; p != nil && p.n > 0 {
		p.n--
	}
	return rec.AddExpected(ev, raw)
}

// readAmplitude records every event Amplitude holds.
func (in *amplitudeReconcile) readAmplitude(ctx context.Context, rec *Reconciler) error {
	for {
		batch, ack, err := in.amplitude.ReadBatch(ctx)
		if errors.Is(err, service.ErrEndOfInput) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("amplitude: %w", err)
		}
		for _, msg := range batch {
			if err := in.recordPresent(rec, msg); err != nil {
				_ = ack(ctx, err)
				return err
			}
		}
		if err := ack(ctx, nil); err != nil {
			return fmt.Errorf("amplitude: %w", err)
		}
	}
}

func (in *amplitudeReconcile) recordPresent(rec *Reconciler, msg *service.Message) error {
	msgErr := msg.GetError()
	if _, ok := msg.MetaGet(export.MetaIncomplete); ok && msgErr != nil {
		rec.Incomplete("amplitude: " + msgErr.Error())
		return nil
	}
	raw, err := msg.AsBytes()
	if err != nil {
		return err
	}
	// An errored message holds the row that could not be decoded: its
	// library still says whether it is one of ours.
	ev, err := export.ParseEvent(raw)
	if err == nil {
		err = msgErr
	}
	if in.library != "" && ev.Library != in.library && (err == nil || ev.Library != "") {
		rec.AmplitudeOtherLibrary()
		return nil
	}
	if err != nil {
		rec.AmplitudeUnreadable()
		in.warn.Warn(in.log, in.clock.Now().UnixNano(), "amplitude_reconcile: %d unreadable Amplitude rows (last: %v)", err)
		return nil
	}
	return rec.AddPresent(ev)
}

// writeReport writes the JSON report and the summary.
func (in *amplitudeReconcile) writeReport(rep *Report) error {
	if in.reportPath != "" {
		if err := replaceFile(in.reportPath, append(rep.AppendJSON(nil), '\n')); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		in.log.Infof("amplitude_reconcile: report written to %s", in.reportPath)
	}
	if in.summaryPath != "" {
		f, err := os.Create(in.summaryPath)
		if err != nil {
			return fmt.Errorf("summary: %w", err)
		}
		err = rep.WriteSummary(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("summary: %w", err)
		}
	}
	return nil
}

// replaceFile writes b to path through a temporary file renamed over it.
func replaceFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// Close stops the reconciliation, closes both sides and removes the spool.
func (in *amplitudeReconcile) Close(ctx context.Context) error {
	if in.cancel != nil {
		in.cancel()
		select {
		case <-in.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	err := errors.Join(in.currents.Close(ctx), in.amplitude.Close(ctx))
	for _, p := range in.delivery {
		err = errors.Join(err, p.Close(ctx))
	}
	if in.spool != nil {
		in.spool.Close()
		os.Remove(in.spool.Name())
	}
	return err
}
