package reconcile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/export"
	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// MaxMemoryLimit is the largest Options.MemoryLimit: each side's buffer is
// addressed with 32-bit offsets.
const MaxMemoryLimit = 8 << 30

// Options configure a Reconciler.
type Options struct {
	// Start and End bound the window of event times, [Start, End), whole
	// UTC hours.
	Start, End time.Time
	// Dir is the folder of the spill files (created and removed by the
	// Reconciler, under os.TempDir() when empty).
	Dir string
	// MemoryLimit bounds the records buffered in memory, in bytes, for both
	// sides together. Default 256 MiB.
	MemoryLimit int
	// KeepBodies keeps each expected event as delivery sends it, so that
	// Finish can write the missing ones.
	KeepBodies bool
	// Clock times progress reports (default clock.System).
	Clock clock.Clock
	// Progress, when set, is called about every ProgressInterval with a
	// one-line account of the work done.
	Progress         func(string)
	ProgressInterval time.Duration
}

// Reconciler compares the events delivery would have sent (expected) with
// the events Amplitude holds (present), by insert id, with memory bounded by
// an external sort: each side is buffered, sorted and spilled to disk in
// runs, which Finish merges.
//
// AddExpected and NotSent are called from one goroutine, AddPresent and
// Incomplete from one other (or the same); Finish after both are done.
type Reconciler struct {
	opts     Options
	dir      string
	start    int64 // window, Unix ms
	end      int64
	expected *sorter
	present  *sorter
	report   *Report

	nCurrents, nAmplitude atomic.Int64
	lastProgress          atomic.Int64
	runs                  atomic.Int64

	mu sync.Mutex // guards report.Incomplete
}

// New creates a Reconciler and its spill folder.
func New(opts Options) (*Reconciler, error) {
	if !opts.End.After(opts.Start) {
		return nil, errors.New("reconcile: the window's end must be after its start")
	}
	if opts.MemoryLimit <= 0 {
		opts.MemoryLimit = 256 << 20
	}
	if int64(opts.MemoryLimit) > MaxMemoryLimit { // int64: the maximum overflows a 32-bit int
		return nil, fmt.Errorf("reconcile: memory limit %d above the maximum of %d bytes", opts.MemoryLimit, int64(MaxMemoryLimit))
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = 30 * time.Second
	}
	opts.Clock = clock.OrSystem(opts.Clock)
	dir, err := os.MkdirTemp(opts.Dir, "reconcile-")
	if err != nil {
		return nil, fmt.Errorf("reconcile: spill folder: %w", err)
	}
	r := &Reconciler{
		opts:   opts,
		dir:    dir,
		start:  opts.Start.UnixMilli(),
		end:    opts.End.UnixMilli(),
		report: newReport(opts.Start, opts.End),
	}
	r.expected = newSorter(dir, "expected", opts.MemoryLimit/2, &r.runs)
	r.present = newSorter(dir, "present", opts.MemoryLimit/2, &r.runs)
	r.lastProgress.Store(opts.Clock.Now().UnixNano())
	return r, nil
}

func (r *Reconciler) inWindow(ms int64) bool { return ms >= r.start && ms < r.end }

// AddExpected records one event as delivery sends it to Amplitude. body is
// kept (when KeepBodies is set) to be written if the event is missing.
// Events outside the window are counted and left out.
func (r *Reconciler) AddExpected(ev export.Event, body []byte) error {
	r.nCurrents.Add(1)
	r.report.Totals.CurrentsEvents++
	if !r.inWindow(ev.Time) {
		r.report.Totals.CurrentsOutsideWindow++
		return nil
	}
	if !r.opts.KeepBodies {
		body = nil
	}
	r.progress()
	return r.expected.add(ev.InsertID, sideExpected, ev.Time, ev.EventType, body)
}

// NotSent records a Currents event delivery does not send: dropped by the
// mapping (filtered, unknown or unidentified) or rejected (dead-lettered).
// timeSec is the Currents time, Unix seconds, or UnknownTime when the event
// has none that can be read: it is then counted as in the window, under the
// hour UnknownTime.
func (r *Reconciler) NotSent(timeSec int64, currentsType string, rejected bool) {
	r.nCurrents.Add(1)
	r.report.Totals.CurrentsEvents++
	hour := int64(UnknownTime)
	if timeSec != UnknownTime {
		if !r.inWindow(timeSec * 1000) {
			r.report.Totals.CurrentsOutsideWindow++
			return
		}
		hour = hourOf(timeSec * 1000)
	}
	row := r.report.notSentRow(hour, currentsType)
	if rejected {
		row.Rejected++
		r.report.Totals.Rejected++
	} else {
		row.Dropped++
		r.report.Totals.Dropped++
	}
	r.progress()
}

// AddPresent records one event Amplitude holds.
func (r *Reconciler) AddPresent(ev export.Event) error {
	r.nAmplitude.Add(1)
	r.report.Totals.AmplitudeEvents++
	if !r.inWindow(ev.Time) {
		r.report.Totals.AmplitudeOutsideWindow++
		return nil
	}
	r.progress()
	return r.present.add(ev.InsertID, sidePresent, ev.Time, ev.EventType, nil)
}

// AmplitudeUnreadable counts an Amplitude row that could not be decoded.
func (r *Reconciler) AmplitudeUnreadable() { r.report.Totals.AmplitudeUnreadable++ }

// AmplitudeOtherLibrary counts an Amplitude event of another sender, left
// out.
func (r *Reconciler) AmplitudeOtherLibrary() { r.report.Totals.AmplitudeOtherLibrary++ }

// Incomplete records that a side could not be read in full: the report is
// marked incomplete with this reason.
func (r *Reconciler) Incomplete(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.report.Incomplete) < 1000 {
		r.report.Incomplete = append(r.report.Incomplete, reason)
	}
}

// progress reports, at most every ProgressInterval.
func (r *Reconciler) progress() {
	if r.opts.Progress == nil || (r.nCurrents.Load()+r.nAmplitude.Load())&4095 != 0 {
		return
	}
	now := r.opts.Clock.Now().UnixNano()
	last := r.lastProgress.Load()
	if now-last < int64(r.opts.ProgressInterval) || !r.lastProgress.CompareAndSwap(last, now) {
		return
	}
	r.opts.Progress(fmt.Sprintf("reconcile: read %d Currents events and %d Amplitude events; %d runs spilled",
		r.nCurrents.Load(), r.nAmplitude.Load(), r.runs.Load()))
}

// Finish merges both sides, writes the missing events (when KeepBodies is
// set and missing is not nil) as JSON lines, and returns the report.
func (r *Reconciler) Finish(missing io.Writer) (*Report, error) {
	for _, s := range [...]*sorter{r.expected, r.present} {
		if err := s.spill(); err != nil {
			return nil, fmt.Errorf("reconcile: %w", err)
		}
		s.release()
	}
	runs := append(append([]string(nil), r.expected.runs...), r.present.runs...)
	total := r.expected.records + r.present.records
	r.report.SpilledBytes = r.expected.spilledBytes + r.present.spilledBytes
	r.report.Runs = len(runs)
	var bw *bufio.Writer
	if missing != nil && r.opts.KeepBodies {
		bw = bufio.NewWriterSize(missing, 256<<10)
	}
	g := group{rep: r.report, missing: bw}
	var merged int64
	err := mergeRuns(r.dir, runs, func(rec *record) error {
		merged++
		if r.opts.Progress != nil && merged&65535 == 0 {
			now := r.opts.Clock.Now().UnixNano()
			if now-r.lastProgress.Load() >= int64(r.opts.ProgressInterval) {
				r.lastProgress.Store(now)
				r.opts.Progress(fmt.Sprintf("reconcile: merged %d of %d records (%.0f%%)", merged, total, 100*float64(merged)/float64(max(total, 1))))
			}
		}
		return g.add(rec)
	})
	if err == nil {
		err = g.flush()
	}
	if err == nil && bw != nil {
		err = bw.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	r.report.finish()
	return r.report, nil
}

// Close frees the sort buffers and removes the spill folder.
func (r *Reconciler) Close() error {
	r.expected.release()
	r.present.release()
	return os.RemoveAll(r.dir)
}

// group accumulates the records of one insert id and classifies them.
type group struct {
	rep     *Report
	missing *bufio.Writer

	id                 []byte
	nE, nP             int
	eTime, pTime       int64
	eType, pType, body []byte
}

func (g *group) add(rec *record) error {
	if (g.nE > 0 || g.nP > 0) && !bytes.Equal(rec.id, g.id) {
		if err := g.flush(); err != nil {
			return err
		}
	}
	g.id = append(g.id[:0], rec.id...)
	switch rec.side {
	case sideExpected:
		if g.nE == 0 {
			g.eTime, g.eType = rec.time, append(g.eType[:0], rec.typ...)
			g.body = append(g.body[:0], rec.body...)
		}
		g.nE++
	case sidePresent:
		if g.nP == 0 {
			g.pTime, g.pType = rec.time, append(g.pType[:0], rec.typ...)
		}
		g.nP++
	default:
		return errors.New("damaged spill record: unknown side")
	}
	return nil
}

// flush classifies the current id: matched, missing or extra, and counts it
// under its hour and event type (the expected ones when expected).
func (g *group) flush() error {
	defer func() { g.nE, g.nP = 0, 0 }()
	if g.nE == 0 && g.nP == 0 {
		return nil
	}
	var c Counts
	hour, typ := hourOf(g.eTime), g.eType
	if g.nP > 1 {
		c.AmplitudeDuplicates = int64(g.nP - 1)
	}
	switch {
	case g.nE == 0:
		hour, typ = hourOf(g.pTime), g.pType
		c.Extra = 1
	case g.nP == 0:
		c.Expected, c.Missing = 1, 1
	default:
		c.Expected, c.Present = 1, 1
		if !bytes.Equal(g.eType, g.pType) {
			c.TypeMismatch = 1
		}
	}
	if g.nE > 1 {
		c.CurrentsDuplicates = int64(g.nE - 1)
	}
	g.rep.row(hour, typ).add(c)
	g.rep.Totals.add(c)
	if c.Missing == 1 && g.missing != nil && len(g.body) > 0 {
		g.missing.Write(g.body)
		return g.missing.WriteByte('\n')
	}
	return nil
}

// UnknownTime stands for the time of an event that has none that can be
// read (a rejected event); its not-sent row has this hour, "unknown" in the
// JSON report.
const UnknownTime = math.MinInt64

// hourOf returns the UTC hour of a Unix millisecond time, as Unix seconds.
func hourOf(ms int64) int64 {
	h := ms / 3_600_000
	if ms < 0 && ms%3_600_000 != 0 {
		h--
	}
	return h * 3600
}
