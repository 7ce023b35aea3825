package avroscan

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
	"github.com/opencurrents/currents-amplitude/plugins/store"
)

const (
	caFieldEventTypeMismatch = "event_type_mismatch"
	caFieldBatchSize         = "batch_size"
	caFieldMaxBlockSize      = "max_block_size"
	caFieldMaxBlockRecords   = "max_block_records"
	caFieldMaxDecodedSize    = "max_decoded_block_size"
	caFieldOnDamage          = "on_damage"
	caFieldProgressPath      = "progress_path"
	caFieldProgressLog       = "progress_log_interval"
)

// Values of on_damage.
const (
	damageDeadLetter = "dead_letter"
	damageFail       = "fail"
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
		Version("0.1.0").
		Summary("Decodes Avro object container files written by Braze Currents storage connectors (Amazon S3, Google Cloud Storage, Azure Blob Storage) into one JSON message per record.").
		Description(`
Each record becomes one message holding the record as a JSON object, in schema field order, with unions unwrapped (`+"`\"platform\":\"ios\"`, not `\"platform\":{\"string\":\"ios\"}`"+`) and Avro `+"`float`"+` values written in their shortest 32-bit form (`+"`3.14`, not `3.140000104904175`"+`). Bytes and fixed values are written as avro-tools does (one code point per byte); NaN and infinities as the strings `+"`\"NaN\"`, `\"Infinity\"`, `\"-Infinity\"`"+`. The codecs null, deflate, snappy and zstandard are supported.

The file is streamed: one Avro block is held in memory at a time. Each record is emitted as a batch of its own by default (`+"`batch_size: 1`"+`), so that every record is its own transaction and an output fails, or dead-letters, exactly the records it refused; Benthos' output batching still packs them into large requests. A block is checked whole (size, codec, checksum, every record against the schema, sync marker) before any of its records is emitted, so a damaged block never yields a record.

== Damaged blocks

With `+"`on_damage: dead_letter`"+` (default) a damaged block becomes one message of its own, marked failed with the reason `+"`unreadable`"+` (a delivering output with a `+"`dead_letter`"+` field writes it there), whose content names the file, the block, its byte offset, the record count it declared and the error, with the block's bytes in base64 (at most 1 MiB) for a later repair. The scanner then goes on with the next block: right after the damaged one when its framing was intact, else at the next sync marker (the bytes passed over are those of the record). A truncated file ends with such a record. The metric `+"`currents_avro_blocks_damaged_total`"+` counts them. With `+"`on_damage: fail`"+` the file ends at the damage: the records before it are emitted and the file is logged as failed and kept. A file whose header is unreadable (not Avro, say) always fails that way.

== Progress and resuming

The source (the file) is acknowledged as done only when it was read to its end and every record of it was acknowledged: delivered, or dead-lettered for a reason of its own. Only then does the `+"`file`"+` input's `+"`delete_on_finish`"+` delete it; a nack (an outage) keeps it. With `+"`progress_path`"+` the scanner also records, in that store file, the records acknowledged, each block whose records are all acknowledged and each file completed, keyed by the file name and its sync marker, in one transaction per 200 ms. A run that was stopped (or killed) resumes where it stopped: completed files are not read again (`+"`currents_avro_files_resumed_total`"+`), recorded blocks are passed over without decoding (`+"`currents_avro_blocks_resumed_total`"+`) and acknowledged records are not emitted again. After a graceful stop nothing is sent twice; after a kill, at most the records acknowledged in the last 200 ms (Amplitude de-duplicates them by insert_id). Without `+"`delete_on_finish`"+` the sources are never touched.

A file is finished (and the next one read) once every batch of it is acknowledged: Benthos' `+"`file`"+` input would otherwise end the stream after its last file even with nacked messages still to be replayed.

== Event type

The metadata key `+"`currents_event_type`"+` is taken from the record schema's full name with Braze's storage prefix removed (`+"`dataexport.S3.inner.users.behaviors.Purchase`"+` gives `+"`users.behaviors.Purchase`"+`; older namespaces such as `+"`users.behaviors.UpgradedApp`"+` are kept as they are). When the source path has an `+"`event_type=<type>`"+` segment (Braze's storage layout), that value is used, and it is checked against the schema according to `+"`"+caFieldEventTypeMismatch+"`"+`.

== Metadata

- `+"`currents_event_type`"+`: the Currents event type, e.g. `+"`users.messages.email.Open`"+`.
- `+"`currents_avro_schema`"+`: the full name of the record schema.
- `+"`currents_avro_file`"+`: the source name (the file path), when the input gives one.
- `+"`currents_avro_block`"+`: the index of the record's block in the file, from 0.
- `+"`currents_avro_record`"+`: the index of the record in the file, from 0.

== Metrics

`+"`currents_avro_records_decoded_total`, `currents_avro_blocks_decoded_total`, `currents_avro_files_completed_total`"+` (read to the end), `+"`currents_avro_files_failed_total`"+`, `+"`currents_avro_files_delivered_total`"+` (every record acknowledged), `+"`currents_avro_blocks_damaged_total`, `currents_avro_blocks_resumed_total`, `currents_avro_files_resumed_total`"+` (counters).

With `+"`progress_log_interval`"+` the scanner logs, at that cadence, the files and events delivered so far and the rate, and a summary when the input closes.
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
			service.NewStringAnnotatedEnumField(caFieldOnDamage, map[string]string{
				damageDeadLetter: "Emit one message per damaged block, marked failed with the reason `unreadable`, and go on with the next block.",
				damageFail:       "End the file at the damage: it is logged as failed and kept.",
			}).
				Description("What to do with a damaged block.").
				Default(damageDeadLetter).Example(damageFail),
			service.NewStringField(caFieldProgressPath).
				Description("A store file (see the `store` cache) recording the blocks and files fully delivered, so that a stopped run resumes where it stopped. Its folder is created on start. Empty keeps no progress.").
				Default("").Example("./state/backfill.db"),
			service.NewDurationField(caFieldProgressLog).
				Description("How often to log the files and events delivered so far and the rate; `0s` logs only the summary at the end.").
				Default("0s").Example("30s"),
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
	m := mgr.Metrics()
	c := &scannerCreator{
		log:           mgr.Logger(),
		mRecords:      m.NewCounter("currents_avro_records_decoded_total"),
		mBlocks:       m.NewCounter("currents_avro_blocks_decoded_total"),
		mFilesDone:    m.NewCounter("currents_avro_files_completed_total"),
		mFilesFailed:  m.NewCounter("currents_avro_files_failed_total"),
		mDamaged:      m.NewCounter("currents_avro_blocks_damaged_total"),
		mResumed:      m.NewCounter("currents_avro_blocks_resumed_total"),
		mFilesResumed: m.NewCounter("currents_avro_files_resumed_total"),
		mDelivered:    m.NewCounter("currents_avro_files_delivered_total"),
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
	if c.onDamage, err = conf.FieldString(caFieldOnDamage); err != nil {
		return nil, err
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
	if path, _ := conf.FieldString(caFieldProgressPath); path != "" {
		if c.db, err = store.Open(path, store.Options{}); err != nil {
			return nil, err
		}
		c.progress = newProgressWriter(c.db, c.log, m, clock.System, progressFlushInterval)
	}
	if c.logEvery, err = conf.FieldDuration(caFieldProgressLog); err != nil {
		return nil, err
	}
	c.report = newReporter(c.log, c.logEvery)
	return c, nil
}

//------------------------------------------------------------------------------

// scannerCreator holds the parsed config of one currents_avro scanner.
type scannerCreator struct {
	log        *service.Logger
	lim        limits
	batchSize  int // 0: one batch per block
	onMismatch string
	onDamage   string
	db         *store.DB       // backfill progress, or nil
	progress   *progressWriter // nil without db
	logEvery   time.Duration
	report     *reporter

	mRecords, mBlocks, mFilesDone, mFilesFailed   *service.MetricCounter
	mDamaged, mResumed, mFilesResumed, mDelivered *service.MetricCounter
}

// Create starts a scanner on one file. The header is read on the first call
// to NextBatch, not here: an error from Create would make the file input
// retry the same file forever, while an error from NextBatch makes it log
// the error and move on.
func (c *scannerCreator) Create(rdr io.ReadCloser, aFn service.AckFunc, details *service.ScannerSourceDetails) (service.BatchScanner, error) {
	s := &scanner{c: c, src: rdr, left: map[int]int{}, acks: map[int][]byte{}, acked: make(chan struct{}, 1)}
	s.sourceAck = func(ctx context.Context, err error) {
		s.ackOnce.Do(func() { _ = aFn(ctx, err) })
	}
	if details != nil {
		s.name = details.Name()
	}
	return s, nil
}

// Close stops the progress log (with a summary) and releases the progress
// file.
func (c *scannerCreator) Close(context.Context) error {
	c.report.stop()
	if c.db != nil {
		c.progress.close()
		return c.db.Close()
	}
	return nil
}

// scanner decodes one file. It tracks the acknowledgement of every record:
// a block whose records are all acked (delivered or dead-lettered) is
// recorded in the progress file, and once the file was read to its end and
// every record acked, the file is recorded as complete and the source is
// acknowledged (which lets the file input delete it). A nack, or a file that
// cannot be read to its end, acknowledges the source with an error: the file
// is kept.
type scanner struct {
	c    *scannerCreator
	src  io.ReadCloser
	name string

	ocf       *ocfReader
	prog      *fileProgress // nil without progress_path
	eventType string
	schema    string
	block     *block // the block being emitted
	next      int    // its next record to emit
	resumed   []byte // its records acknowledged in a previous run
	records   int64  // records of the file passed so far (emitted, skipped or damaged)
	finished  bool   // nothing more to emit
	emitted   int64  // records emitted by this scanner

	ackOnce   sync.Once
	sourceAck func(context.Context, error)

	mu      sync.Mutex
	left    map[int]int    // block index -> records not yet acked
	acks    map[int][]byte // block index -> bitmap of its records acked (with progress)
	pending int            // batches not yet acked
	acked   chan struct{}  // signalled on every ack
	readAll bool           // the file was read to its end
	failed  error          // first nack
}

// NextBatch returns the next batch_size records of the file, or the
// dead-letter record of a damaged block.
func (s *scanner) NextBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	if s.finished {
		return nil, nil, io.EOF
	}
	if s.ocf == nil {
		if err := s.open(); err != nil {
			return nil, nil, s.fail(ctx, err)
		}
		if s.prog != nil && s.prog.complete {
			s.c.log.Infof("currents_avro: %s: already delivered (progress file), not read again", s.displayName())
			s.c.mFilesResumed.Incr(1)
			return nil, nil, s.end(ctx)
		}
	}
	for {
		if s.block == nil {
			if s.prog != nil && s.prog.isDone(s.ocf.block) {
				if err := s.skipDone(); err != nil {
					return nil, nil, s.end(ctx)
				}
				continue
			}
			b, err := s.ocf.next()
			if errors.Is(err, io.EOF) {
				return nil, nil, s.end(ctx)
			}
			if err != nil {
				return s.damage(ctx, err)
			}
			s.load(b)
		}
		// Records acknowledged in a previous run are passed over.
		for s.next < s.block.len() && hasBit(s.resumed, s.next) {
			s.next++
			s.records++
		}
		if s.next < s.block.len() {
			break
		}
		s.block = nil
	}
	n := s.block.len() - s.next
	if s.c.batchSize > 0 {
		n = min(n, s.c.batchSize)
	}
	for i := 1; i < n; i++ { // a batch stops before a record already acknowledged
		if hasBit(s.resumed, s.next+i) {
			n = i
			break
		}
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
	first := s.next
	s.next += n
	s.records += int64(n)
	s.emitted += int64(n)
	s.c.mRecords.Incr(int64(n))
	return batch, s.track(s.block.index, first, n), nil
}

// load makes b the block being emitted, with what a previous run
// acknowledged of it.
func (s *scanner) load(b *block) {
	s.block, s.next, s.resumed = b, 0, nil
	s.c.mBlocks.Incr(1)
	var acked []byte
	left := b.len()
	if s.prog != nil {
		if s.resumed = s.prog.partial[b.index]; s.resumed != nil {
			acked = slices.Clone(s.resumed)
			for i := range b.len() {
				if hasBit(s.resumed, i) {
					left--
				}
			}
		}
	}
	s.mu.Lock()
	s.left[b.index] = left
	if s.prog != nil {
		s.acks[b.index] = acked
	}
	s.mu.Unlock()
}

// skipDone passes over a block recorded as done. A block that was
// dead-lettered as damaged is passed over again without a second record. It
// returns an error (io.EOF) when the file has no more blocks.
func (s *scanner) skipDone() error {
	n, err := s.ocf.skip()
	if err == nil {
		s.records += n
		s.c.mResumed.Incr(1)
		return nil
	}
	var fe *formatError
	if errors.As(err, &fe) && fe.records > 0 {
		s.records += fe.records
	}
	if errors.As(err, &fe) && !fe.framed {
		if _, _, rerr := s.ocf.resync(0); rerr != nil {
			return rerr
		}
	}
	s.c.mResumed.Incr(1)
	return nil
}

// track counts an emitted batch of the n records of block from first and
// returns its ack.
func (s *scanner) track(block, first, n int) service.AckFunc {
	s.mu.Lock()
	s.pending++
	s.mu.Unlock()
	return func(ctx context.Context, err error) error {
		defer func() {
			select {
			case s.acked <- struct{}{}:
			default:
			}
		}()
		s.mu.Lock()
		s.pending--
		if err != nil && s.failed == nil {
			s.failed = err
		}
		done := false
		var partial []byte
		if err == nil {
			s.left[block] -= n
			if s.left[block] <= 0 {
				delete(s.left, block)
				delete(s.acks, block)
				done = true
			} else if s.prog != nil {
				bm := s.acks[block]
				for i := first; i < first+n; i++ {
					bm = setBit(bm, i)
				}
				s.acks[block] = bm
				partial = slices.Clone(bm)
			}
		}
		s.mu.Unlock()
		switch {
		case done && s.prog != nil:
			s.prog.markDone(block)
		case partial != nil:
			s.prog.markPartial(block, partial)
		}
		if err == nil {
			s.c.report.records(int64(n))
		}
		s.maybeFinish(ctx)
		return nil
	}
}

// end marks the file as read to its end, once every batch of it was acked.
//
// It waits for the acks because Benthos' file input ends the stream once its
// last file is read, even when nacked messages are still to be replayed: a
// backfill would then exit 0 with undelivered events. Waiting here keeps the
// input open while the nacked batches are replayed (the retry wrapper of the
// file input replays them meanwhile) and costs one round trip to the output
// per file.
func (s *scanner) end(ctx context.Context) error {
	for {
		s.mu.Lock()
		pending := s.pending
		s.mu.Unlock()
		if pending == 0 {
			break
		}
		select {
		case <-s.acked:
		case <-ctx.Done():
			// Shutting down: the file is not finished, NextBatch is
			// called again if the input goes on.
			return ctx.Err()
		}
	}
	s.finished = true
	s.c.mFilesDone.Incr(1)
	s.c.log.Debugf("currents_avro: %s: %d records emitted, %d passed in %d blocks", s.displayName(), s.emitted, s.records, s.ocf.block)
	s.mu.Lock()
	s.readAll = true
	s.mu.Unlock()
	s.maybeFinish(ctx)
	return io.EOF
}

// maybeFinish acknowledges the source once the file was read to its end and
// every batch acked.
func (s *scanner) maybeFinish(ctx context.Context) {
	s.mu.Lock()
	ready, failed := s.readAll && s.pending == 0, s.failed
	s.mu.Unlock()
	if !ready {
		return
	}
	if failed != nil {
		s.sourceAck(ctx, failed)
		return
	}
	if s.prog != nil {
		s.prog.markComplete()
	}
	s.c.mDelivered.Incr(1)
	s.c.report.file()
	s.sourceAck(ctx, nil)
}

// damage turns a damaged block into one dead-letter message (reason
// unreadable) holding what is known of it and its raw bytes, then finds the
// next block; with on_damage: fail it ends the file instead.
func (s *scanner) damage(ctx context.Context, err error) (service.MessageBatch, service.AckFunc, error) {
	var fe *formatError
	if s.c.onDamage == damageFail || !errors.As(err, &fe) {
		return nil, nil, s.fail(ctx, err)
	}
	s.c.mDamaged.Incr(1)
	raw := fe.raw
	var skipped int64
	var rerr error
	if !fe.framed {
		raw, skipped, rerr = s.ocf.resync(maxDamagedBytes)
	}
	body := damageRecord(s.name, fe, raw, max(skipped, int64(len(raw))))
	msg := service.NewMessage(body)
	msg.MetaSetMut(currentsbody.MetaEventType, s.eventType)
	msg.MetaSetMut(MetaSchema, s.schema)
	if s.name != "" {
		msg.MetaSetMut(MetaFile, s.name)
	}
	msg.MetaSetMut(MetaBlock, fe.block)
	msg.MetaSetMut(MetaRecord, s.records)
	deadletter.Fail(msg, deadletter.ReasonUnreadable, fmt.Errorf("currents_avro: %s: %w", s.displayName(), err))
	if fe.records > 0 {
		s.records += fe.records
	}
	how := "the next block follows"
	switch {
	case errors.Is(rerr, io.EOF):
		how = "no block follows: the rest of the file is in the record"
	case rerr != nil:
		s.c.log.Errorf("currents_avro: %s: reading after block %d: %v", s.displayName(), fe.block, rerr)
	case !fe.framed:
		how = fmt.Sprintf("%d bytes passed over to the next sync marker", skipped)
	}
	s.c.log.Warnf("currents_avro: %s: %v: the block goes to the dead letter (reason unreadable); %s", s.displayName(), err, how)
	s.mu.Lock()
	s.left[fe.block] = 1
	s.mu.Unlock()
	ack := s.track(fe.block, 0, 1)
	if rerr != nil {
		s.finished = true
		s.mu.Lock()
		s.readAll = true
		if !errors.Is(rerr, io.EOF) && s.failed == nil {
			s.failed = rerr
		}
		s.mu.Unlock()
	}
	return service.MessageBatch{msg}, ack, nil
}

// progressFlushInterval is how often the progress of the blocks and files
// acknowledged meanwhile is committed, in one transaction.
const progressFlushInterval = 200 * time.Millisecond

// maxDamagedBytes bounds the bytes of a damaged region kept in its
// dead-letter record.
const maxDamagedBytes = 1 << 20

// damageRecord is the content of a damaged block's dead-letter message:
//
//	{"file":…,"block":3,"byte_offset":1234,"declared_records":50,
//	 "error":"…","bytes":5120,"data_base64":"…"}
//
// data_base64 holds the block as stored (or the bytes passed over to the
// next sync marker), at most 1 MiB of it; declared_records is -1 when the
// block's header was unreadable.
func damageRecord(name string, fe *formatError, raw []byte, total int64) []byte {
	keep := raw[:min(len(raw), maxDamagedBytes)]
	b := make([]byte, 0, 256+base64.StdEncoding.EncodedLen(len(keep)))
	b = append(b, `{"file":`...)
	b = jsonw.AppendString(b, name)
	b = append(b, `,"block":`...)
	b = strconv.AppendInt(b, int64(fe.block), 10)
	b = append(b, `,"byte_offset":`...)
	b = strconv.AppendInt(b, fe.offset, 10)
	b = append(b, `,"declared_records":`...)
	b = strconv.AppendInt(b, fe.records, 10)
	b = append(b, `,"error":`...)
	b = jsonw.AppendString(b, fe.err.Error())
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, total, 10)
	b = append(b, `,"data_base64":"`...)
	b = base64.StdEncoding.AppendEncode(b, keep)
	return append(b, `"}`...)
}

// open reads the header, the file's progress and settles its event type.
func (s *scanner) open() error {
	o, err := newOCFReader(s.src, s.c.lim)
	if err != nil {
		return err
	}
	s.ocf = o
	if s.c.progress != nil {
		if s.prog, err = s.c.progress.load(s.name, o.sync); err != nil {
			return fmt.Errorf("reading the progress file: %w", err)
		}
	}
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
// file name; the file is not acknowledged as done, so it is kept.
func (s *scanner) fail(ctx context.Context, err error) error {
	s.finished = true
	s.c.mFilesFailed.Incr(1)
	err = fmt.Errorf("currents_avro: %s: %w", s.displayName(), err)
	s.c.log.Errorf("%v; the %d records before this point were emitted, the rest of the file is skipped and the file kept", err, s.emitted)
	s.mu.Lock()
	s.readAll = true
	if s.failed == nil {
		s.failed = err
	}
	s.mu.Unlock()
	s.maybeFinish(ctx)
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
