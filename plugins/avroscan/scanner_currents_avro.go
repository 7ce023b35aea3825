package avroscan

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hamba/avro/v2"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
)

const (
	caFieldEventTypeMismatch = "event_type_mismatch"
	caFieldBatchSize         = "batch_size"
	caFieldMaxBlockSize      = "max_block_size"
	caFieldMaxBlockRecords   = "max_block_records"
	caFieldMaxDecodedSize    = "max_decoded_block_size"
)

// Values of event_type_mismatch.
const (
	mismatchError     = "error"
	mismatchUsePath   = "use_path"
	mismatchUseSchema = "use_schema"
)

// Metadata keys written on every message.
const (
	// MetaSchema is the full name of the file's record schema.
	MetaSchema = "currents_avro_schema"
	// MetaFile is the name of the source (the file path), when known.
	MetaFile = "currents_avro_file"
	// MetaBlock is the index of the record's block in the file, from 0.
	MetaBlock = "currents_avro_block"
	// MetaRecord is the index of the record in the file, from 0.
	MetaRecord = "currents_avro_record"
)

func currentsAvroScannerSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Summary("Decodes Avro object container files written by Braze Currents storage connectors (Amazon S3, Google Cloud Storage, Azure Blob Storage) into one JSON message per record.").
		Description(`
Each record becomes one message holding the record as a JSON object, in schema field order, with unions unwrapped (`+"`\"platform\":\"ios\"`, not `\"platform\":{\"string\":\"ios\"}`"+`) and Avro `+"`float`"+` values written in their shortest 32-bit form (`+"`3.14`, not `3.140000104904175`"+`). Bytes and fixed values are written as avro-tools does (one code point per byte); NaN and infinities as the strings `+"`\"NaN\"`, `\"Infinity\"`, `\"-Infinity\"`"+`. The codecs null, deflate, snappy and zstandard are supported.

The file is streamed: one Avro block is held in memory at a time. Each record is emitted as a batch of its own by default (`+"`batch_size: 1`"+`), so that every record is its own transaction and an output fails, or dead-letters, exactly the records it refused; Benthos' output batching still packs them into large requests. A block is checked whole (size, codec, checksum, every record against the schema, sync marker) before any of its records is emitted, so a damaged file yields every record of the blocks before the damage exactly once, then an error naming the file and the block (and its byte offset). The rest of that file is skipped: the input logs the error and moves on to its next file, and the file is not acknowledged as done (`+"`delete_on_finish`"+` keeps it). The metric `+"`currents_avro_files_failed`"+` counts such files.

== Event type

The metadata key `+"`currents_event_type`"+` is taken from the record schema's full name with Braze's storage prefix removed (`+"`dataexport.S3.inner.users.behaviors.Purchase`"+` gives `+"`users.behaviors.Purchase`"+`; older namespaces such as `+"`users.behaviors.UpgradedApp`"+` are kept as they are). When the source path has an `+"`event_type=<type>`"+` segment (Braze's storage layout), that value is used, and it is checked against the schema according to `+"`"+caFieldEventTypeMismatch+"`"+`.

== Metadata

- `+"`currents_event_type`"+`: the Currents event type, e.g. `+"`users.messages.email.Open`"+`.
- `+"`currents_avro_schema`"+`: the full name of the record schema.
- `+"`currents_avro_file`"+`: the source name (the file path), when the input gives one.
- `+"`currents_avro_block`"+`: the index of the record's block in the file, from 0.
- `+"`currents_avro_record`"+`: the index of the record in the file, from 0.

== Metrics

`+"`currents_avro_records_decoded`, `currents_avro_blocks_decoded`, `currents_avro_files_completed`, `currents_avro_files_failed`"+` (counters).
`).
		Fields(
			service.NewIntField(caFieldBatchSize).
				Description("Records per message batch. `1` makes every record its own transaction (per-record failure routing, as with the `lines` scanner). `0` emits each Avro block as one batch: fewer transactions, but an output that fails one record of a batch fails, or dead-letters, the whole batch.").
				Default(1).
				Example(0).
				Example(100),
			service.NewStringAnnotatedEnumField(caFieldEventTypeMismatch, map[string]string{
				mismatchError:     "Reject the file before emitting any record: it is logged as failed and skipped.",
				mismatchUsePath:   "Log a warning and use the event type of the path.",
				mismatchUseSchema: "Log a warning and use the event type derived from the schema.",
			}).
				Description("What to do when the path's `event_type=` segment names another event type than the file's record schema.").
				Default(mismatchError).
				Example(mismatchUsePath),
			service.NewIntField(caFieldMaxBlockSize).
				Description("The largest Avro block accepted, in bytes, stored and decompressed. Braze writes blocks of about 64 KB. A larger block fails the file.").
				Default(16<<20).
				Example(64<<20).
				Advanced(),
			service.NewIntField(caFieldMaxBlockRecords).
				Description("The largest record count a block may declare. A larger count fails the file.").
				Default(1_000_000).
				Example(100_000).
				Advanced(),
			service.NewIntField(caFieldMaxDecodedSize).
				Description("The largest JSON decoded from one block, in bytes (JSON is larger than Avro: each null field becomes `\"name\":null`). A larger block fails the file.").
				Default(256<<20).
				Example(64<<20).
				Advanced(),
		).
		Example("Replay a folder of Currents files",
			"Read every Avro file under a local copy (or a mount) of a Currents bucket prefix and map the events for Amplitude.",
			`
input:
  file:
    paths: [ "./currents/**/*.avro" ]
    scanner:
      currents_avro: {}
pipeline:
  processors:
    - braze_to_amplitude: {}
`)
}

func init() {
	service.MustRegisterBatchScannerCreator("currents_avro", currentsAvroScannerSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchScannerCreator, error) {
			return newCurrentsAvroFromParsed(conf, mgr)
		})
}

func newCurrentsAvroFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*scannerCreator, error) {
	c := &scannerCreator{
		log:          mgr.Logger(),
		mRecords:     mgr.Metrics().NewCounter("currents_avro_records_decoded"),
		mBlocks:      mgr.Metrics().NewCounter("currents_avro_blocks_decoded"),
		mFilesDone:   mgr.Metrics().NewCounter("currents_avro_files_completed"),
		mFilesFailed: mgr.Metrics().NewCounter("currents_avro_files_failed"),
	}
	var err error
	if c.batchSize, err = conf.FieldInt(caFieldBatchSize); err != nil {
		return nil, err
	}
	if c.batchSize < 0 {
		return nil, fmt.Errorf("%s must be 0 (one batch per Avro block) or more, got %d", caFieldBatchSize, c.batchSize)
	}
	if c.onMismatch, err = conf.FieldString(caFieldEventTypeMismatch); err != nil {
		return nil, err
	}
	switch c.onMismatch {
	case mismatchError, mismatchUsePath, mismatchUseSchema:
	default:
		return nil, fmt.Errorf("%s must be one of %s, %s, %s, got %q", caFieldEventTypeMismatch,
			mismatchError, mismatchUsePath, mismatchUseSchema, c.onMismatch)
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{
		{caFieldMaxBlockSize, &c.lim.blockBytes},
		{caFieldMaxBlockRecords, &c.lim.blockRecords},
		{caFieldMaxDecodedSize, &c.lim.jsonBytes},
	} {
		if *f.dst, err = conf.FieldInt(f.name); err != nil {
			return nil, err
		}
		if *f.dst < 1 {
			return nil, fmt.Errorf("%s must be at least 1, got %d", f.name, *f.dst)
		}
	}
	return c, nil
}

//------------------------------------------------------------------------------

// scannerCreator holds the parsed config of one currents_avro scanner.
type scannerCreator struct {
	log        *service.Logger
	lim        limits
	batchSize  int // 0: one batch per block
	onMismatch string

	mRecords, mBlocks, mFilesDone, mFilesFailed *service.MetricCounter
}

// Create starts a scanner on one file. The header is read on the first call
// to NextBatch, not here: an error from Create would make the file input
// retry the same file forever, while an error from NextBatch makes it log
// the error and move on.
func (c *scannerCreator) Create(rdr io.ReadCloser, aFn service.AckFunc, details *service.ScannerSourceDetails) (service.BatchScanner, error) {
	s := &scanner{c: c, src: rdr}
	if details != nil {
		s.name = details.Name()
	}
	return service.AutoAggregateBatchScannerAcks(s, aFn), nil
}

// Close releases nothing: each scanner owns its resources.
func (*scannerCreator) Close(context.Context) error { return nil }

// scanner decodes one file.
type scanner struct {
	c    *scannerCreator
	src  io.ReadCloser
	name string

	ocf       *ocfReader
	eventType string
	schema    string
	block     *block // the block being emitted
	next      int    // its next record to emit
	records   int64  // records of the file emitted so far
	finished  bool
}

// NextBatch returns the next batch_size records of the file.
func (s *scanner) NextBatch(context.Context) (service.MessageBatch, error) {
	if s.finished {
		return nil, io.EOF
	}
	if s.ocf == nil {
		if err := s.open(); err != nil {
			return nil, s.fail(err)
		}
	}
	if s.block == nil || s.next == s.block.len() {
		b, err := s.ocf.next()
		if errors.Is(err, io.EOF) {
			s.finished = true
			s.c.mFilesDone.Incr(1)
			s.c.log.Debugf("currents_avro: %s: %d records in %d blocks", s.displayName(), s.records, s.ocf.block)
			return nil, io.EOF
		}
		if err != nil {
			return nil, s.fail(err)
		}
		s.block, s.next = b, 0
		s.c.mBlocks.Incr(1)
	}
	n := s.block.len() - s.next
	if s.c.batchSize > 0 {
		n = min(n, s.c.batchSize)
	}
	// Values boxed once, not once per message.
	var eventType, schema, name, blockIndex any = s.eventType, s.schema, s.name, s.block.index
	batch := make(service.MessageBatch, n)
	for i := range batch {
		m := service.NewMessage(s.block.record(s.next + i))
		m.MetaSetMut(currentsbody.MetaEventType, eventType)
		m.MetaSetMut(MetaSchema, schema)
		if s.name != "" {
			m.MetaSetMut(MetaFile, name)
		}
		m.MetaSetMut(MetaBlock, blockIndex)
		m.MetaSetMut(MetaRecord, s.records+int64(i))
		batch[i] = m
	}
	s.next += n
	s.records += int64(n)
	s.c.mRecords.Incr(int64(n))
	return batch, nil
}

// open reads the header and settles the file's event type.
func (s *scanner) open() error {
	o, err := newOCFReader(s.src, s.c.lim)
	if err != nil {
		return err
	}
	s.ocf = o
	if named, ok := o.schema.(avro.NamedSchema); ok {
		s.schema = named.FullName()
	}
	s.eventType = eventTypeFromSchema(s.schema)
	fromPath := eventTypeFromPath(s.name)
	if fromPath == "" || sameEventType(fromPath, s.schema) {
		if fromPath != "" {
			s.eventType = fromPath
		}
		return nil
	}
	msg := fmt.Sprintf("the path says event_type=%s but the file's schema is %q", fromPath, s.schema)
	switch s.c.onMismatch {
	case mismatchUsePath:
		s.c.log.Warnf("currents_avro: %s: %s: using %s", s.displayName(), msg, fromPath)
		s.eventType = fromPath
	case mismatchUseSchema:
		s.c.log.Warnf("currents_avro: %s: %s: using %s", s.displayName(), msg, s.eventType)
	default:
		return errors.New(msg)
	}
	return nil
}

// fail ends the file with err, which it logs, counts and returns with the
// file name.
func (s *scanner) fail(err error) error {
	s.finished = true
	s.c.mFilesFailed.Incr(1)
	err = fmt.Errorf("currents_avro: %s: %w", s.displayName(), err)
	s.c.log.Errorf("%v; the %d records before this point were emitted, the rest of the file is skipped", err, s.records)
	return err
}

func (s *scanner) displayName() string {
	if s.name == "" {
		return "unnamed source"
	}
	return fmt.Sprintf("file %q", s.name)
}

// Close closes the file.
func (s *scanner) Close(context.Context) error {
	if s.ocf != nil {
		s.ocf.close()
	}
	return s.src.Close()
}
