package reconcile

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
)

// Counts are the outcome of matching insert ids, for one hour and event
// type or for the whole window.
type Counts struct {
	// Expected is the number of distinct insert ids delivery sends.
	Expected int64
	// Present of those are in Amplitude; Missing are not.
	Present, Missing int64
	// Extra are events Amplitude holds that delivery would not send (not in
	// the Currents side, or dropped by the mapping).
	Extra int64
	// CurrentsDuplicates are repeated Currents events (same id); delivery
	// sends them once.
	CurrentsDuplicates int64
	// AmplitudeDuplicates are repeated Amplitude events (same insert id),
	// which Amplitude's de-duplication should have prevented.
	AmplitudeDuplicates int64
	// TypeMismatch counts present events whose Amplitude event_type differs
	// from the expected one.
	TypeMismatch int64
}

func (c *Counts) add(d Counts) {
	c.Expected += d.Expected
	c.Present += d.Present
	c.Missing += d.Missing
	c.Extra += d.Extra
	c.CurrentsDuplicates += d.CurrentsDuplicates
	c.AmplitudeDuplicates += d.AmplitudeDuplicates
	c.TypeMismatch += d.TypeMismatch
}

// appendJSON appends the counts as JSON members (no braces).
func (c *Counts) appendJSON(dst []byte) []byte {
	return appendCounts(dst,
		count{"expected", c.Expected}, count{"present", c.Present}, count{"missing", c.Missing}, count{"extra", c.Extra},
		count{"currents_duplicates", c.CurrentsDuplicates}, count{"amplitude_duplicates", c.AmplitudeDuplicates},
		count{"type_mismatch", c.TypeMismatch})
}

// Totals are the counts of a whole reconciliation.
type Totals struct {
	Counts
	// CurrentsEvents is every Currents event read, in the window or not.
	CurrentsEvents int64
	// CurrentsOutsideWindow were read but lie outside the window.
	CurrentsOutsideWindow int64
	// Dropped are the window's Currents events the mapping drops (filtered,
	// unknown type, unidentified): expected absent.
	Dropped int64
	// Rejected are the window's Currents events the mapping rejects (the
	// delivery path dead-letters them): expected absent.
	Rejected int64
	// AmplitudeEvents is every Amplitude event read; AmplitudeOutsideWindow
	// of them lie outside the window (uploaded in the range read, but with an
	// event time outside the window); AmplitudeUnreadable rows could not be
	// decoded.
	AmplitudeEvents, AmplitudeOutsideWindow, AmplitudeUnreadable int64
	// AmplitudeOtherLibrary are events of other senders (another library),
	// left out.
	AmplitudeOtherLibrary int64
}

// Row holds the counts of one hour and one Amplitude event type.
type Row struct {
	// Hour is the UTC hour of the event time, Unix seconds.
	Hour int64
	// EventType is the Amplitude event type (the expected one when both
	// sides have the event).
	EventType string
	Counts
}

// NotSentRow holds the Currents events of one hour and one Currents type
// that delivery does not send.
type NotSentRow struct {
	Hour              int64
	CurrentsEventType string
	Dropped, Rejected int64
}

// Report is the outcome of a reconciliation.
type Report struct {
	Start, End time.Time
	Totals     Totals
	// Rows are sorted by hour, then event type.
	Rows []*Row
	// NotSent are sorted by hour, then Currents event type.
	NotSent []*NotSentRow
	// Incomplete lists why a side was not read in full; empty when complete.
	Incomplete []string
	// Runs and SpilledBytes describe the external sort.
	Runs         int
	SpilledBytes int64

	rows    map[int64]map[string]*Row
	notSent map[int64]map[string]*NotSentRow
}

func newReport(start, end time.Time) *Report {
	return &Report{Start: start.UTC(), End: end.UTC(),
		rows: map[int64]map[string]*Row{}, notSent: map[int64]map[string]*NotSentRow{}}
}

// Complete reports whether both sides were read in full.
func (r *Report) Complete() bool { return len(r.Incomplete) == 0 }

func (r *Report) row(hour int64, typ []byte) *Row {
	byType := r.rows[hour]
	if byType == nil {
		byType = map[string]*Row{}
		r.rows[hour] = byType
	}
	row := byType[string(typ)]
	if row == nil {
		row = &Row{Hour: hour, EventType: string(typ)}
		byType[row.EventType] = row
	}
	return row
}

func (r *Report) notSentRow(hour int64, typ string) *NotSentRow {
	byType := r.notSent[hour]
	if byType == nil {
		byType = map[string]*NotSentRow{}
		r.notSent[hour] = byType
	}
	row := byType[typ]
	if row == nil {
		row = &NotSentRow{Hour: hour, CurrentsEventType: typ}
		byType[typ] = row
	}
	return row
}

// finish sorts the rows.
func (r *Report) finish() {
	for _, byType := range r.rows {
		for _, row := range byType {
			r.Rows = append(r.Rows, row)
		}
	}
	slices.SortFunc(r.Rows, func(a, b *Row) int {
		return cmp.Or(cmp.Compare(a.Hour, b.Hour), strings.Compare(a.EventType, b.EventType))
	})
	for _, byType := range r.notSent {
		for _, row := range byType {
			r.NotSent = append(r.NotSent, row)
		}
	}
	slices.SortFunc(r.NotSent, func(a, b *NotSentRow) int {
		return cmp.Or(cmp.Compare(a.Hour, b.Hour), strings.Compare(a.CurrentsEventType, b.CurrentsEventType))
	})
	r.rows, r.notSent = nil, nil
}

func hourString(h int64) string {
	if h == UnknownTime {
		return "unknown"
	}
	return time.Unix(h, 0).UTC().Format(time.RFC3339)
}

type count struct {
	key string
	n   int64
}

func appendCounts(dst []byte, cs ...count) []byte {
	for i, c := range cs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonw.AppendKey(dst, c.key)
		dst = jsonw.AppendInt(dst, c.n)
	}
	return dst
}

// AppendJSON appends the report as one JSON object.
func (r *Report) AppendJSON(dst []byte) []byte {
	t := r.Totals
	dst = append(dst, `{"window":{"start":`...)
	dst = jsonw.AppendString(dst, r.Start.Format(time.RFC3339))
	dst = append(dst, `,"end":`...)
	dst = jsonw.AppendString(dst, r.End.Format(time.RFC3339))
	dst = append(dst, `},"complete":`...)
	dst = fmt.Appendf(dst, "%t", r.Complete())
	dst = append(dst, `,"incomplete":[`...)
	for i, s := range r.Incomplete {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonw.AppendString(dst, s)
	}
	dst = append(dst, `],"totals":{`...)
	dst = t.Counts.appendJSON(dst)
	dst = append(dst, ',')
	dst = appendCounts(dst,
		count{"currents_events", t.CurrentsEvents}, count{"currents_outside_window", t.CurrentsOutsideWindow},
		count{"not_sent_dropped", t.Dropped}, count{"not_sent_rejected", t.Rejected},
		count{"amplitude_events", t.AmplitudeEvents}, count{"amplitude_outside_window", t.AmplitudeOutsideWindow},
		count{"amplitude_unreadable", t.AmplitudeUnreadable}, count{"amplitude_other_library", t.AmplitudeOtherLibrary})
	dst = append(dst, `},"hours":[`...)
	for i, row := range r.Rows {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"hour":`...)
		dst = jsonw.AppendString(dst, hourString(row.Hour))
		dst = append(dst, `,"event_type":`...)
		dst = jsonw.AppendString(dst, row.EventType)
		dst = append(dst, ',')
		dst = row.Counts.appendJSON(dst)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"not_sent":[`...)
	for i, row := range r.NotSent {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"hour":`...)
		dst = jsonw.AppendString(dst, hourString(row.Hour))
		dst = append(dst, `,"currents_event_type":`...)
		dst = jsonw.AppendString(dst, row.CurrentsEventType)
		dst = append(dst, ',')
		dst = appendCounts(dst, count{"dropped", row.Dropped}, count{"rejected", row.Rejected})
		dst = append(dst, '}')
	}
	dst = append(dst, `],"spill":{`...)
	dst = appendCounts(dst, count{"runs", int64(r.Runs)}, count{"bytes", r.SpilledBytes})
	return append(dst, `}}`...)
}

// maxSummaryTypes bounds the event types listed in the summary.
const maxSummaryTypes = 20

// WriteSummary writes a readable account: the verdict, the totals, one line
// per hour and the event types with missing or extra events.
func (r *Report) WriteSummary(w io.Writer) error {
	t := r.Totals
	var b strings.Builder
	fmt.Fprintf(&b, "Reconciliation of Braze Currents with Amplitude, %s to %s (UTC, end excluded)\n\n",
		r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339))
	switch {
	case !r.Complete():
		fmt.Fprintf(&b, "RESULT: INCOMPLETE: a side was not read in full; counts below are lower bounds:\n")
		for _, s := range r.Incomplete {
			fmt.Fprintf(&b, "  - %s\n", s)
		}
	case t.Missing == 0:
		fmt.Fprintf(&b, "RESULT: OK: all %d expected events are in Amplitude.\n", t.Expected)
	default:
		fmt.Fprintf(&b, "RESULT: MISSING: %d of %d expected events are not in Amplitude.\n", t.Missing, t.Expected)
	}
	pct := 100.0
	if t.Expected > 0 {
		pct = 100 * float64(t.Present) / float64(t.Expected)
	}
	fmt.Fprintf(&b, "\nCurrents events read:  %d (%d outside the window)\n", t.CurrentsEvents, t.CurrentsOutsideWindow)
	fmt.Fprintf(&b, "Not sent by design:    %d dropped by the mapping (filtered, unknown, unidentified), %d rejected (dead-lettered)\n", t.Dropped, t.Rejected)
	fmt.Fprintf(&b, "Expected in Amplitude: %d\n", t.Expected)
	fmt.Fprintf(&b, "Present:               %d (%.3f%%)\n", t.Present, pct)
	fmt.Fprintf(&b, "Missing:               %d\n", t.Missing)
	fmt.Fprintf(&b, "Unexpected extra:      %d\n", t.Extra)
	fmt.Fprintf(&b, "Duplicates:            %d in Currents (sent once), %d in Amplitude\n", t.CurrentsDuplicates, t.AmplitudeDuplicates)
	if t.TypeMismatch > 0 {
		fmt.Fprintf(&b, "Event type differs:    %d present events\n", t.TypeMismatch)
	}
	fmt.Fprintf(&b, "Amplitude events read: %d (%d outside the window); besides, %d unreadable rows and %d events of other senders\n\n", t.AmplitudeEvents, t.AmplitudeOutsideWindow, t.AmplitudeUnreadable, t.AmplitudeOtherLibrary)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "hour (UTC)\texpected\tpresent\tmissing\textra\t")
	var hours []Row
	for _, row := range r.Rows {
		if len(hours) == 0 || hours[len(hours)-1].Hour != row.Hour {
			hours = append(hours, Row{Hour: row.Hour})
		}
		hours[len(hours)-1].add(row.Counts)
	}
	for _, h := range hours {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", hourString(h.Hour), h.Expected, h.Present, h.Missing, h.Extra)
	}
	tw.Flush()

	byType := map[string]*Row{}
	for _, row := range r.Rows {
		if row.Missing == 0 && row.Extra == 0 {
			continue
		}
		s := byType[row.EventType]
		if s == nil {
			s = &Row{EventType: row.EventType}
			byType[row.EventType] = s
		}
		s.add(row.Counts)
	}
	if len(byType) > 0 {
		types := make([]*Row, 0, len(byType))
		for _, s := range byType {
			types = append(types, s)
		}
		slices.SortFunc(types, func(a, b *Row) int {
			return cmp.Or(cmp.Compare(b.Missing+b.Extra, a.Missing+a.Extra), strings.Compare(a.EventType, b.EventType))
		})
		fmt.Fprintf(&b, "\nEvent types with missing or extra events:\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  event type\texpected\tmissing\textra")
		for i, s := range types {
			if i == maxSummaryTypes {
				fmt.Fprintf(tw, "  (%d more in the JSON report)\t\t\t\n", len(types)-i)
				break
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", s.EventType, s.Expected, s.Missing, s.Extra)
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}
