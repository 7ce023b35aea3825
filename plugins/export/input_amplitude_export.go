package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/speclint"
)

const (
	aeFieldAPIKey          = "api_key"
	aeFieldSecretKey       = "secret_key"
	aeFieldRegion          = "region"
	aeFieldURL             = "url"
	aeFieldStart           = "start"
	aeFieldEnd             = "end"
	aeFieldUploadLag       = "upload_lag"
	aeFieldHoursPerRequest = "hours_per_request"
	aeFieldDataDelay       = "data_delay"
	aeFieldTimeout         = "timeout"
	aeFieldBackoff         = "backoff"
	aeFieldSpillDir        = "spill_dir"
	aeFieldFormat          = "format"
	aeFieldBatchSize       = "batch_size"

	// FormatCompact emits {"insert_id","event_type","time","user_id","device_id","library"}.
	FormatCompact = "compact"
	// FormatRow emits the exported row as it is.
	FormatRow = "row"
)

// Metadata keys set by amplitude_export.
const (
	// MetaEntry names the archive entry of the row.
	MetaEntry = "amplitude_export_entry"
	// MetaLine is the row's line number in its entry (1-based).
	MetaLine = "amplitude_export_line"
	// MetaIncomplete is set, on an errored message with no event, to the
	// upload hours ("20261129T13-20261129T14") whose events are missing from
	// the stream, wholly or in part: a failed download, a damaged entry, hours
	// not yet exportable. A consumer that counts events (reconciliation) must
	// treat those hours as unknown, not as empty.
	MetaIncomplete = "amplitude_export_incomplete"
)

func amplitudeExportSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Version("0.1.0").
		LintRule(speclint.Rule(speclint.Required(aeFieldAPIKey, "the Amplitude project's API key"), speclint.Required(aeFieldSecretKey, "the Amplitude project's secret key"))).
		Summary("Reads the events of a time range from Amplitude's Export API, one message per event.").
		Description(`
Calls `+"`GET /api/2/export?start=YYYYMMDDTHH&end=YYYYMMDDTHH`"+` (Basic auth with the project's API key and secret key;
https://amplitude.com/docs/apis/analytics/export) for each slice of `+"`hours_per_request`"+` hours of the range
`+"`[start, end + upload_lag)`"+`, spills each answer (a zip of gzipped JSON-lines files, up to 4 GB) to a temporary
file in `+"`spill_dir`"+` and reads it entry by entry, line by line: memory stays bounded whatever the size of the
export. The file is deleted once read.

Amplitude selects exported events by the hour they were *uploaded* (`+"`server_upload_time`"+`), not by their event
time; `+"`upload_lag`"+` extends the range so that events of the last hours of the window delivered late are
included. Exports lag uploads by about two hours (`+"`data_delay`"+`): hours not exportable yet are not requested,
and reported as incomplete (see below).

Each message is one event: with `+"`format: compact`"+` the fields reconciliation needs,
`+"`{\"insert_id\",\"event_type\",\"time\",\"user_id\",\"device_id\",\"library\"}`"+` (`+"`time`"+` in Unix
milliseconds from `+"`client_event_time`"+`, the time the sender set; ids and library left out when empty); with `+"`format: row`"+` the row as
exported. Metadata `+"`amplitude_export_entry`"+` and `+"`amplitude_export_line`"+` locate the row.

Failures:

- 404 (no data in the range) yields no message.
- 400 (over 4 GB) and 504 (timeout building it) split the range in halves, down to one hour.
- 429, other 5xx and network errors are retried with `+"`backoff`"+`; 401/403 and everything else are not.
- A row that cannot be decoded becomes a message flagged with the reason `+"`unreadable`"+` (its content is the row).
- A range that could not be read, wholly or from some line on, becomes one errored message with the metadata
  `+"`amplitude_export_incomplete`"+` naming the upload hours, so that a consumer never takes missing data for
  absent events. It is logged at error level.

Metrics: `+"`amplitude_export_requests_total`"+` (label `+"`status`"+`), `+"`amplitude_export_request_seconds`"+`,
`+"`amplitude_export_bytes_total`"+`, `+"`amplitude_export_events_total`"+`, `+"`amplitude_export_rows_failed_total`"+`,
`+"`amplitude_export_ranges_incomplete_total`"+`.`).
		Fields(
			service.NewStringField(aeFieldAPIKey).Secret().
				Description("The Amplitude project's API key.").
				Example("${AMPLITUDE_API_KEY}"),
			service.NewStringField(aeFieldSecretKey).Secret().
				Description("The Amplitude project's secret key.").
				Example("${AMPLITUDE_SECRET_KEY}"),
			service.NewStringEnumField(aeFieldRegion, "us", "eu").
				Description("The project's data residency: `us` is https://amplitude.com, `eu` is https://analytics.eu.amplitude.com.").
				Default("us").
				Example("eu"),
			service.NewStringField(aeFieldURL).
				Description("REST base URL overriding the region's (proxies, tests); the path `/api/2/export` is appended.").
				Default("").
				Example("http://127.0.0.1:8080"),
			service.NewStringField(aeFieldStart).
				Description("First upload hour read, included: a whole UTC hour as `YYYYMMDDTHH`, `YYYY-MM-DDTHH`, a date, or an RFC 3339 time in any zone.").
				Example("2026-11-29T00"),
			service.NewStringField(aeFieldEnd).
				Description("End of the range, excluded (before `upload_lag` is added): same formats as `start`. `2026-11-30` reads the whole of 2026-11-29 with `start: 2026-11-29`.").
				Example("2026-11-30"),
			service.NewDurationField(aeFieldUploadLag).
				Description("Added to `end`: also read what was uploaded this long after the range (late deliveries, retries). Whole hours.").
				Default("0s").
				Example("6h"),
			service.NewIntField(aeFieldHoursPerRequest).
				Description("Hours requested at a time. Larger answers are split automatically when Amplitude refuses them.").
				Default(1).
				Example(6),
			service.NewDurationField(aeFieldDataDelay).
				Description("How long after an hour ends its events can be exported (Amplitude documents about 2 hours). Later hours are not requested and are reported as incomplete.").
				Default("2h").
				Example("3h"),
			service.NewDurationField(aeFieldTimeout).
				Description("Time limit of one request, download included.").
				Default("15m").
				Example("1h"),
			service.NewBackOffField(aeFieldBackoff, false, &backoff.ExponentialBackOff{
				InitialInterval: 5 * time.Second,
				MaxInterval:     2 * time.Minute,
				MaxElapsedTime:  30 * time.Minute,
			}).Description("Retries of a request answered 429, 5xx or failing on the network."),
			service.NewStringField(aeFieldSpillDir).
				Description("Folder of the temporary archive files (empty: the system's temporary folder). Needs room for one answer (up to 4 GB).").
				Default("").
				Example("/var/tmp"),
			service.NewStringEnumField(aeFieldFormat, FormatCompact, FormatRow).
				Description("`compact`: the fields reconciliation needs; `row`: the exported row as it is.").
				Default(FormatCompact).
				Example(FormatRow),
			service.NewIntField(aeFieldBatchSize).
				Description("Messages per batch.").
				Default(1000).
				Example(100),
		).
		Example("Yesterday's events", "Every event Amplitude received on 2026-11-29 (UTC), and what arrived up to six hours later.", `
input:
  amplitude_export:
    api_key: ${AMPLITUDE_API_KEY}
    secret_key: ${AMPLITUDE_SECRET_KEY}
    start: 2026-11-29
    end: 2026-11-30
    upload_lag: 6h
`)
}

func init() {
	service.MustRegisterBatchInput("amplitude_export", amplitudeExportSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			in, err := newAmplitudeExportFromParsed(conf, mgr, clock.System)
			if err != nil {
				return nil, err
			}
			return service.AutoRetryNacksBatched(in), nil
		})
}

// hourRange is a range of upload hours, both included.
type hourRange struct{ first, last time.Time }

func (r hourRange) hours() int { return int(r.last.Sub(r.first)/time.Hour) + 1 }

func (r hourRange) String() string {
	return r.first.Format(QueryHourLayout) + "-" + r.last.Format(QueryHourLayout)
}

type amplitudeExport struct {
	client    *Client
	clock     clock.Clock
	log       *service.Logger
	boff      *backoff.ExponentialBackOff
	format    string
	batchSize int
	dataDelay time.Duration
	want      hourRange

	queue   []hourRange
	cur     hourRange
	file    *os.File
	archive *Archive
	buf     []byte

	mRequests   *service.MetricCounter
	mSeconds    *service.MetricTimer
	mBytes      *service.MetricCounter
	mEvents     *service.MetricCounter
	mRowsFailed *service.MetricCounter
	mIncomplete *service.MetricCounter
}

func newAmplitudeExportFromParsed(conf *service.ParsedConfig, mgr *service.Resources, clk clock.Clock) (*amplitudeExport, error) {
	key, err := conf.FieldString(aeFieldAPIKey)
	if err != nil {
		return nil, err
	}
	secret, err := conf.FieldString(aeFieldSecretKey)
	if err != nil {
		return nil, err
	}
	if key == "" || secret == "" {
		return nil, errors.New("api_key and secret_key are required")
	}
	region, err := conf.FieldString(aeFieldRegion)
	if err != nil {
		return nil, err
	}
	base, err := conf.FieldString(aeFieldURL)
	if err != nil {
		return nil, err
	}
	if base == "" {
		base = USBaseURL
		if region == "eu" {
			base = EUBaseURL
		}
	}
	want, err := rangeFromParsed(conf)
	if err != nil {
		return nil, err
	}
	per, err := conf.FieldInt(aeFieldHoursPerRequest)
	if err != nil {
		return nil, err
	}
	if per < 1 {
		return nil, errors.New("hours_per_request must be at least 1")
	}
	e := &amplitudeExport{clock: clk, log: mgr.Logger(), want: want}
	if e.dataDelay, err = conf.FieldDuration(aeFieldDataDelay); err != nil {
		return nil, err
	}
	timeout, err := conf.FieldDuration(aeFieldTimeout)
	if err != nil {
		return nil, err
	}
	if e.boff, err = conf.FieldBackOff(aeFieldBackoff); err != nil {
		return nil, err
	}
	spill, err := conf.FieldString(aeFieldSpillDir)
	if err != nil {
		return nil, err
	}
	if e.format, err = conf.FieldString(aeFieldFormat); err != nil {
		return nil, err
	}
	if e.batchSize, err = conf.FieldInt(aeFieldBatchSize); err != nil {
		return nil, err
	}
	if e.batchSize < 1 {
		return nil, errors.New("batch_size must be at least 1")
	}
	e.client = NewClient(base, key, secret, &http.Client{Timeout: timeout}, spill)
	e.queue = splitRange(want, per)
	m := mgr.Metrics()
	e.mRequests = m.NewCounter("amplitude_export_requests_total", "status")
	e.mSeconds = m.NewTimer("amplitude_export_request_seconds")
	e.mBytes = m.NewCounter("amplitude_export_bytes_total")
	e.mEvents = m.NewCounter("amplitude_export_events_total")
	e.mRowsFailed = m.NewCounter("amplitude_export_rows_failed_total")
	e.mIncomplete = m.NewCounter("amplitude_export_ranges_incomplete_total")
	return e, nil
}

// WindowFromParsed reads a window of whole UTC hours, [start, end), from two
// string fields parsed with ParseHour.
func WindowFromParsed(conf *service.ParsedConfig, startField, endField string) (start, end time.Time, err error) {
	var t [2]time.Time
	for i, f := range [...]string{startField, endField} {
		s, err := conf.FieldString(f)
		if err != nil {
			return start, end, err
		}
		if t[i], err = ParseHour(s); err != nil {
			return start, end, fmt.Errorf("%s: %w", f, err)
		}
	}
	if !t[1].After(t[0]) {
		return start, end, fmt.Errorf("%s %s is not after %s %s", endField, t[1].Format(time.RFC3339), startField, t[0].Format(time.RFC3339))
	}
	return t[0], t[1], nil
}

// rangeFromParsed reads start, end and upload_lag into the hours to request.
func rangeFromParsed(conf *service.ParsedConfig) (hourRange, error) {
	start, end, err := WindowFromParsed(conf, aeFieldStart, aeFieldEnd)
	if err != nil {
		return hourRange{}, err
	}
	lag, err := conf.FieldDuration(aeFieldUploadLag)
	if err != nil {
		return hourRange{}, err
	}
	if lag < 0 || lag%time.Hour != 0 {
		return hourRange{}, fmt.Errorf("upload_lag %s: must be whole hours", lag)
	}
	return hourRange{first: start, last: end.Add(lag - time.Hour)}, nil
}

// splitRange cuts r into slices of at most per hours.
func splitRange(r hourRange, per int) []hourRange {
	var out []hourRange
	for first := r.first; !first.After(r.last); first = first.Add(time.Duration(per) * time.Hour) {
		last := first.Add(time.Duration(per-1) * time.Hour)
		if last.After(r.last) {
			last = r.last
		}
		out = append(out, hourRange{first, last})
	}
	return out
}

// Connect drops the hours not exportable yet, keeping a marker for them.
func (e *amplitudeExport) Connect(context.Context) error {
	newest := e.clock.Now().UTC().Add(-e.dataDelay).Truncate(time.Hour).Add(-time.Hour)
	if !e.want.last.After(newest) {
		return nil
	}
	kept := e.queue[:0]
	for _, r := range e.queue {
		if r.first.After(newest) {
			continue
		}
		if r.last.After(newest) {
			r.last = newest
		}
		kept = append(kept, r)
	}
	e.queue = kept
	e.log.Warnf("amplitude_export: upload hours after %s are not exportable yet (data delay %s): reported as incomplete", newest.Format(time.RFC3339), e.dataDelay)
	return nil
}

// ReadBatch returns the next rows of the current archive, downloading the
// next range when it is done.
func (e *amplitudeExport) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	for {
		if e.archive == nil {
			if len(e.queue) == 0 {
				if marker := e.delayMarker(); marker != nil {
					return marker, noAck, nil
				}
				return nil, nil, service.ErrEndOfInput
			}
			marker, err := e.open(ctx)
			if err != nil {
				return nil, nil, err
			}
			if marker != nil {
				return marker, noAck, nil
			}
			continue
		}
		batch := e.read()
		if len(batch) > 0 {
			return batch, noAck, nil
		}
	}
}

func noAck(context.Context, error) error { return nil }

// delayMarker reports, once, the hours Connect left out.
func (e *amplitudeExport) delayMarker() service.MessageBatch {
	newest := e.clock.Now().UTC().Add(-e.dataDelay).Truncate(time.Hour).Add(-time.Hour)
	if !e.want.last.After(newest) {
		return nil
	}
	first := newest.Add(time.Hour)
	if first.Before(e.want.first) {
		first = e.want.first
	}
	r := hourRange{first, e.want.last}
	e.want.last = newest // once
	return e.incomplete(r, fmt.Errorf("not exportable yet: Amplitude exports an hour about %s after it ends", e.dataDelay))
}

// open downloads the next range and opens it; it returns a marker batch when
// the range cannot be read, nothing when it holds no data.
func (e *amplitudeExport) open(ctx context.Context) (service.MessageBatch, error) {
	r := e.queue[0]
	e.queue = e.queue[1:]
	f, size, err := e.download(ctx, r)
	if errors.Is(err, ErrTooLarge) && r.hours() > 1 {
		mid := r.first.Add(time.Duration(r.hours()/2-1) * time.Hour)
		e.log.Warnf("amplitude_export: %s refused as too large (%v): splitting it", r, err)
		e.queue = append([]hourRange{{r.first, mid}, {mid.Add(time.Hour), r.last}}, e.queue...)
		return nil, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return e.incomplete(r, err), nil
	}
	if f == nil {
		e.log.Debugf("amplitude_export: no data uploaded in %s", r)
		return nil, nil
	}
	a, err := OpenArchive(f, size)
	if err != nil {
		e.removeFile(f)
		return e.incomplete(r, err), nil
	}
	e.log.Infof("amplitude_export: read %s: %d bytes, %d files", r, size, a.Entries())
	e.cur, e.file, e.archive = r, f, a
	return nil, nil
}

// download runs one request with retries.
func (e *amplitudeExport) download(ctx context.Context, r hourRange) (*os.File, int64, error) {
	boff := *e.boff
	boff.Clock = backoffClock{e.clock} // max_elapsed_time on the same clock
	boff.Reset()
	for attempt := 1; ; attempt++ {
		start := e.clock.Now()
		f, size, err := e.client.Download(ctx, r.first, r.last)
		e.mSeconds.Timing(e.clock.Now().Sub(start).Nanoseconds())
		e.mRequests.Incr(1, statusLabel(f, err))
		if err == nil {
			e.mBytes.Incr(size)
			return f, size, nil
		}
		if !IsRetryable(err) || ctx.Err() != nil {
			return nil, 0, err
		}
		wait := boff.NextBackOff()
		if wait == backoff.Stop {
			return nil, 0, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		e.log.Warnf("amplitude_export: %s: attempt %d failed, retrying in %s: %v", r, attempt, wait, err)
		if err := clock.Sleep(ctx, e.clock, wait); err != nil {
			return nil, 0, err
		}
	}
}

// backoffClock adapts a clock.Clock to backoff.Clock.
type backoffClock struct{ c clock.Clock }

func (b backoffClock) Now() time.Time { return b.c.Now() }

func statusLabel(f *os.File, err error) string {
	switch {
	case err == nil && f == nil:
		return "no_data"
	case err == nil:
		return "ok"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case IsRetryable(err):
		return "retryable"
	}
	return "failed"
}

// read returns up to batchSize messages of the current archive, closing it
// at its end.
func (e *amplitudeExport) read() service.MessageBatch {
	batch := make(service.MessageBatch, 0, e.batchSize)
	for len(batch) < e.batchSize {
		line, err := e.archive.Next()
		if err == io.EOF {
			e.closeArchive()
			break
		}
		entry, n := e.archive.Position()
		if err != nil {
			if errors.Is(err, ErrLineTooLong) {
				e.mRowsFailed.Incr(1)
				msg := service.NewMessage(nil)
				e.locate(msg, entry, n)
				deadletter.Fail(msg, deadletter.ReasonTooLarge, err)
				batch = append(batch, msg)
				continue
			}
			// The rest of the entry is lost: the range is incomplete.
			batch = append(batch, e.incomplete(e.cur, err)...)
			continue
		}
		msg, ok := e.message(line)
		e.locate(msg, entry, n)
		if ok {
			e.mEvents.Incr(1)
		}
		batch = append(batch, msg)
	}
	return batch
}

// message turns one row into a message; ok is false for an unreadable row,
// flagged with the reason.
func (e *amplitudeExport) message(line []byte) (*service.Message, bool) {
	ev, err := ParseEvent(line)
	if err != nil {
		e.mRowsFailed.Incr(1)
		msg := service.NewMessage(append([]byte(nil), line...))
		deadletter.Fail(msg, deadletter.ReasonUnreadable, fmt.Errorf("amplitude_export: %w", err))
		return msg, false
	}
	if e.format == FormatRow {
		return service.NewMessage(append([]byte(nil), line...)), true
	}
	e.buf = AppendCompact(e.buf[:0], ev)
	return service.NewMessage(append([]byte(nil), e.buf...)), true
}

func (e *amplitudeExport) locate(msg *service.Message, entry string, line int) {
	msg.MetaSetMut(MetaEntry, entry)
	msg.MetaSetMut(MetaLine, strconv.Itoa(line))
}

// incomplete returns the marker of a range whose events are missing, wholly
// or in part, and logs it.
func (e *amplitudeExport) incomplete(r hourRange, err error) service.MessageBatch {
	e.mIncomplete.Incr(1)
	e.log.Errorf("amplitude_export: upload hours %s are incomplete: %v", r, err)
	msg := service.NewMessage(nil)
	msg.MetaSetMut(MetaIncomplete, r.String())
	msg.SetError(fmt.Errorf("amplitude_export: upload hours %s incomplete: %w", r, err))
	return service.MessageBatch{msg}
}

func (e *amplitudeExport) closeArchive() {
	if e.archive != nil {
		e.archive.Close()
		e.archive = nil
	}
	if e.file != nil {
		e.removeFile(e.file)
		e.file = nil
	}
}

func (e *amplitudeExport) removeFile(f *os.File) {
	f.Close()
	if err := os.Remove(f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.log.Warnf("amplitude_export: removing %s: %v", f.Name(), err)
	}
}

// Close removes the current spill file.
func (e *amplitudeExport) Close(context.Context) error {
	e.closeArchive()
	return nil
}
