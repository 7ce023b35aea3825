package replay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
)

const (
	clFieldMaxLineBytes = "max_line_bytes"
	clFieldMaxJSONDepth = "max_json_depth"
	clFieldBatchSize    = "batch_size"

	// DefaultMaxLineBytes is the braze_currents_http input's default body
	// limit: any request body the live path accepts replays as one line.
	DefaultMaxLineBytes = 10 << 20
	// keptPrefix is how much of a line over max_line_bytes the dead-letter
	// message keeps.
	keptPrefix = 4 << 10
	// readBufferSize is the read buffer; longer lines are assembled from
	// several reads.
	readBufferSize = 256 << 10
)

func currentsLinesScannerSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		Summary("Reads JSON-lines files of Braze Currents events, one event or one `{\"events\": [...]}` request body per line, with the live input's limits; a line it cannot take becomes one dead-letter message and the rest goes on.").
		Description(`
Each non-empty line becomes one message holding the line (without its line break; a trailing `+"`\\r`"+` is removed too). Lines are emitted in batches of up to `+"`batch_size`"+`, so that the processors and outputs work on many events at once; a batch ends early when no more input is read yet, so lines from a slow source (a pipe, standard input) never wait for the next ones.

A line the scanner cannot take is not an end of input: it becomes one message failed with `+"`deadletter.Fail`"+`, which a delivering output with a `+"`dead_letter`"+` child (`+"`amplitude`"+`) writes once to its dead-letter output, and the lines after it are read on:

| Line | Message | Reason |
|---|---|---|
| longer than `+"`max_line_bytes`"+` | its first 4 KiB | `+"`too_large`"+` |
| JSON nested deeper than `+"`max_json_depth`"+` | the line | `+"`too_large`"+` |
| not valid JSON | the line | `+"`unreadable`"+` |
| empty or blank | none: skipped (counted) | |

A read error (a truncated gzip stream, an I/O error) ends that file: it is logged at error level with the line number reached, counted in `+"`currents_lines_files_failed_total`"+`, and the input moves on to its next file without acknowledging this one (`+"`delete_on_finish`"+` keeps it).

### Metadata

`+"`"+deadletter.MetaLine+"`"+`: the line number in the file, from 1 (the `+"`file`"+` input adds `+"`path`"+`). Dead-letter records carry both in their `+"`source`"+`.

### Metrics

`+"`currents_lines_read_total`"+` (lines emitted), `+"`currents_lines_refused_total`"+` (label `+"`reason`"+`: lines emitted as failed messages), `+"`currents_lines_empty_total`"+` (blank lines skipped), `+"`currents_lines_files_failed_total`"+` (counters).`).
		Fields(
			service.NewIntField(clFieldMaxLineBytes).
				Description("The longest line taken, in bytes, without its line break. The default is the `braze_currents_http` input's `max_body_bytes`, so that every request body the live path accepts can be replayed. Memory is bounded by this size plus one batch.").
				Default(DefaultMaxLineBytes).
				Example(1<<20),
			service.NewIntField(clFieldMaxJSONDepth).
				Description("The deepest nesting of JSON objects and arrays accepted in a line, checked before the line is parsed.").
				Default(jsonlimit.DefaultMaxDepth).
				Example(32).
				Advanced(),
			service.NewIntField(clFieldBatchSize).
				Description("Lines per message batch. With an output that takes a `dead_letter` child, one line failing does not fail its batch.").
				Default(500).
				Example(1).
				Example(2000),
		).
		Example("Replay JSON-lines Currents events",
			"Read exported events, one per line, and map them for Amplitude.",
			`
input:
  file:
    paths: [ "./backfill/*.jsonl" ]
    scanner:
      currents_lines: {}
pipeline:
  processors:
    - braze_to_amplitude: {}
`)
}

func init() {
	service.MustRegisterBatchScannerCreator("currents_lines", currentsLinesScannerSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchScannerCreator, error) {
			return newCurrentsLinesFromParsed(conf, mgr)
		})
}

// linesCreator creates one lineScanner per file.
type linesCreator struct {
	log                            *service.Logger
	maxLine, maxDepth, batchSize   int
	mRead, mRefused, mEmpty, mFail *service.MetricCounter
}

func newCurrentsLinesFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*linesCreator, error) {
	c := &linesCreator{
		log:      mgr.Logger(),
		mRead:    mgr.Metrics().NewCounter("currents_lines_read_total"),
		mRefused: mgr.Metrics().NewCounter("currents_lines_refused_total", "reason"),
		mEmpty:   mgr.Metrics().NewCounter("currents_lines_empty_total"),
		mFail:    mgr.Metrics().NewCounter("currents_lines_files_failed_total"),
	}
	for _, f := range []struct {
		name string
		dst  *int
		min  int
	}{
		{clFieldMaxLineBytes, &c.maxLine, 1},
		{clFieldMaxJSONDepth, &c.maxDepth, 1},
		{clFieldBatchSize, &c.batchSize, 1},
	} {
		v, err := conf.FieldInt(f.name)
		if err != nil {
			return nil, err
		}
		if v < f.min {
			return nil, fmt.Errorf("%s must be at least %d, got %d", f.name, f.min, v)
		}
		*f.dst = v
	}
	return c, nil
}

// Create returns the scanner of one file; the file is acknowledged once
// every batch of it is.
func (c *linesCreator) Create(rdr io.ReadCloser, aFn service.AckFunc, details *service.ScannerSourceDetails) (service.BatchScanner, error) {
	s := &lineScanner{c: c, src: rdr, r: bufio.NewReaderSize(rdr, readBufferSize)}
	if details != nil {
		s.name = details.Name()
	}
	return service.AutoAggregateBatchScannerAcks(s, aFn), nil
}

// Close releases nothing.
func (*linesCreator) Close(context.Context) error { return nil }

// lineScanner reads the lines of one file.
type lineScanner struct {
	c    *linesCreator
	src  io.ReadCloser
	r    *bufio.Reader
	name string
	line int64  // lines read so far
	buf  []byte // the line being assembled, reused
	// pending is a read error held back while the lines read before it are
	// handed over (the file input drops a batch returned with an error).
	pending   error
	done      bool
	lastArena int // bytes of lines in the last batch, plus a margin
}

// NextBatch returns up to batch_size messages, io.EOF at the end of the
// file, or the read error that ends it.
func (s *lineScanner) NextBatch(context.Context) (service.MessageBatch, error) {
	if s.pending != nil {
		return nil, s.fail()
	}
	if s.done {
		return nil, io.EOF
	}
	batch := make(service.MessageBatch, 0, s.c.batchSize)
	// The lines of a batch share one allocation, sized after the last batch.
	arena := make([]byte, 0, min(s.lastArena, 2*s.c.maxLine))
	for len(batch) < s.c.batchSize {
		if len(batch) > 0 && s.r.Buffered() == 0 {
			// Nothing more read yet: hand over what is here rather than
			// wait for a slow source (a pipe) to fill the batch.
			break
		}
		line, length, err := s.readLine()
		if length >= 0 {
			s.line++
			if m := s.message(line, length, &arena); m != nil {
				batch = append(batch, m)
			}
		}
		if err != nil {
			s.done = true
			if !errors.Is(err, io.EOF) {
				s.pending = fmt.Errorf("currents_lines: %s: read error after line %d: %w", s.displayName(), s.line, err)
			}
			break
		}
	}
	s.lastArena = len(arena) + len(arena)/8
	s.c.mRead.Incr(int64(len(batch)))
	switch {
	case len(batch) > 0:
		return batch, nil
	case s.pending != nil:
		return nil, s.fail()
	}
	return nil, io.EOF
}

// fail reports the pending read error, which ends the file.
func (s *lineScanner) fail() error {
	err := s.pending
	s.c.mFail.Incr(1)
	s.c.log.Errorf("%v; the rest of the file is skipped and the file is not acknowledged", err)
	return err
}

// readLine reads the next line, keeping at most max_line_bytes+2 bytes of
// it (enough to know it is too long), and returns what it kept without the
// line break ("\n" or "\r\n") and the line's full length without it; -1
// at the end of input. The returned bytes are valid until the next call.
func (s *lineScanner) readLine() ([]byte, int, error) {
	if cap(s.buf) > readBufferSize {
		s.buf = nil // do not keep the buffer of an outsized line
	}
	s.buf = s.buf[:0]
	length := 0
	for {
		chunk, err := s.r.ReadSlice('\n')
		length += len(chunk)
		if room := s.c.maxLine + 2 - len(s.buf); room > 0 {
			s.buf = append(s.buf, chunk[:min(room, len(chunk))]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if length == 0 {
			return nil, -1, err
		}
		line := s.buf
		if err == nil { // the line ends with '\n'
			length--
			if len(line) > length { // kept whole: drop the break
				line = line[:length]
				if n := len(line); n > 0 && line[n-1] == '\r' {
					line, length = line[:n-1], length-1
				}
			}
		}
		return line, length, err
	}
}

// message turns one line into a message (nil for a blank line), copying it
// into arena; length is the line's full length.
func (s *lineScanner) message(line []byte, length int, arena *[]byte) *service.Message {
	var reason deadletter.Reason
	var err error
	switch {
	case length > s.c.maxLine:
		line = line[:min(len(line), keptPrefix)]
		reason, err = deadletter.ReasonTooLarge, fmt.Errorf("line %d is %d bytes long, over max_line_bytes %d (its first %d bytes are kept)", s.line, length, s.c.maxLine, len(line))
	case len(bytes.TrimSpace(line)) == 0:
		s.c.mEmpty.Incr(1)
		return nil
	case jsonlimit.Exceeds(line, s.c.maxDepth):
		reason, err = deadletter.ReasonTooLarge, fmt.Errorf("line %d nests JSON deeper than %d levels", s.line, s.c.maxDepth)
	case !gjson.ValidBytes(line):
		reason, err = deadletter.ReasonUnreadable, fmt.Errorf("line %d is not valid JSON", s.line)
	}
	start := len(*arena)
	*arena = append(*arena, line...)
	m := service.NewMessage((*arena)[start:len(*arena):len(*arena)])
	m.MetaSetMut(deadletter.MetaLine, s.line)
	if reason != "" {
		s.c.mRefused.Incr(1, string(reason))
		deadletter.Fail(m, reason, err)
	}
	return m
}

func (s *lineScanner) displayName() string {
	if s.name == "" {
		return "unnamed source"
	}
	return fmt.Sprintf("file %q", s.name)
}

// Close closes the file.
func (s *lineScanner) Close(context.Context) error {
	return s.src.Close()
}
