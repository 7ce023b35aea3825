package avroscan

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/store"
)

// progressNS is the store namespace of backfill progress. One key per file,
// "<path>\x00<hex sync marker>" (the path as the input names it; the sync
// marker is random per Avro file, so a file replaced under the same name
// starts over), with the value
//
//	byte 0     version (2)
//	byte 1     flags: bit 0 = complete (every record delivered or dead-lettered)
//	uvarint n, then n bytes: bitmap of the blocks fully acknowledged (bit i = block i)
//	then, for each block partly acknowledged: uvarint block, uvarint m, then
//	m bytes: bitmap of its records acknowledged (bit j = record j of the block)
//
// A complete file keeps only the first two bytes.
const progressNS = "currents_avro"

const (
	progressVersion  = 2
	progressComplete = 1
)

// progressValue is a decoded progress record.
type progressValue struct {
	complete bool
	done     []byte
	partial  map[int][]byte
}

func decodeProgress(v []byte) (progressValue, bool) {
	var p progressValue
	if len(v) < 2 || v[0] != progressVersion {
		return p, false
	}
	p.complete = v[1]&progressComplete != 0
	rest := v[2:]
	chunk := func() ([]byte, bool) {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, false
		}
		c := rest[w : w+int(n)]
		rest = rest[w+int(n):]
		return c, true
	}
	if len(rest) == 0 {
		return p, true
	}
	var ok bool
	if p.done, ok = chunk(); !ok {
		return progressValue{}, false
	}
	for len(rest) > 0 {
		b, w := binary.Uvarint(rest)
		if w <= 0 || b > 1<<31 {
			return progressValue{}, false
		}
		rest = rest[w:]
		bits, ok := chunk()
		if !ok {
			return progressValue{}, false
		}
		if p.partial == nil {
			p.partial = map[int][]byte{}
		}
		p.partial[int(b)] = bits
	}
	return p, true
}

func (p progressValue) encode() []byte {
	flags := byte(0)
	if p.complete {
		flags = progressComplete
		return []byte{progressVersion, flags}
	}
	v := []byte{progressVersion, flags}
	v = binary.AppendUvarint(v, uint64(len(p.done)))
	v = append(v, p.done...)
	blocks := make([]int, 0, len(p.partial))
	for b := range p.partial {
		blocks = append(blocks, b)
	}
	slices.Sort(blocks)
	for _, b := range blocks {
		v = binary.AppendUvarint(v, uint64(b))
		v = binary.AppendUvarint(v, uint64(len(p.partial[b])))
		v = append(v, p.partial[b]...)
	}
	return v
}

// setBit sets bit i of bm, growing it as needed.
func setBit(bm []byte, i int) []byte {
	if need := i/8 + 1; len(bm) < need {
		bm = append(bm, make([]byte, need-len(bm))...)
	}
	bm[i/8] |= 1 << (i % 8)
	return bm
}

// hasBit reports whether bit i of bm is set.
func hasBit(bm []byte, i int) bool {
	return i/8 < len(bm) && bm[i/8]&(1<<(i%8)) != 0
}

// fileProgress is the progress record of one file.
type fileProgress struct {
	w   *progressWriter
	key string
	// progressValue is what the store held when the file was opened.
	progressValue
}

func progressKey(name string, sync [16]byte) string {
	return name + "\x00" + hex.EncodeToString(sync[:])
}

// isDone reports whether block i was recorded as delivered.
func (p *fileProgress) isDone(i int) bool { return hasBit(p.done, i) }

// markDone queues the record of block i as delivered.
func (p *fileProgress) markDone(i int) { p.w.queue(p.key, i, nil, false) }

// markPartial queues the records of block i acknowledged so far (acked is
// the block's record bitmap, owned by the writer from now on).
func (p *fileProgress) markPartial(i int, acked []byte) { p.w.queue(p.key, i, acked, false) }

// markComplete queues the record that every record of the file was
// delivered or dead-lettered (the block bitmaps are then dropped).
func (p *fileProgress) markComplete() { p.w.queue(p.key, -1, nil, true) }

// progressWriter batches the progress records of every file into one store
// transaction per flush interval, so that an ack never waits for a commit.
// Progress may lag behind the acks by one interval: a resumed run then sends
// those blocks again, which Amplitude de-duplicates by insert_id. The source
// of a file is acknowledged regardless, so deleting it never waits either.
type progressWriter struct {
	db    *store.DB
	log   *service.Logger
	clock clock.Clock
	every time.Duration

	mu      sync.Mutex
	pending map[string]*pendingMarks

	quit chan struct{}
	done chan struct{}
	mErr *service.MetricCounter
	mTx  *service.MetricCounter
}

type pendingMarks struct {
	blocks   []int
	partial  map[int][]byte // latest record bitmap of blocks partly acked
	complete bool
}

func newProgressWriter(db *store.DB, log *service.Logger, m *service.Metrics, clk clock.Clock, every time.Duration) *progressWriter {
	w := &progressWriter{db: db, log: log, clock: clk, every: every, pending: map[string]*pendingMarks{},
		quit: make(chan struct{}), done: make(chan struct{}),
		mErr: m.NewCounter("currents_avro_progress_errors_total"), mTx: m.NewCounter("currents_avro_progress_writes_total")}
	go w.loop()
	return w
}

// load reads the progress of the file name with sync marker sync, including
// marks not yet flushed.
func (w *progressWriter) load(name string, sync [16]byte) (*fileProgress, error) {
	w.flush()
	p := &fileProgress{w: w, key: progressKey(name, sync)}
	err := w.db.View(func(tx *store.Tx) error {
		if v, ok := tx.Get(progressNS, p.key); ok {
			p.progressValue, _ = decodeProgress(v) // unreadable: start over
		}
		return nil
	})
	return p, err
}

func (w *progressWriter) queue(key string, block int, acked []byte, complete bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pending[key]
	if p == nil {
		p = &pendingMarks{}
		w.pending[key] = p
	}
	switch {
	case complete:
		p.complete, p.blocks, p.partial = true, nil, nil
	case p.complete:
	case acked != nil:
		if p.partial == nil {
			p.partial = map[int][]byte{}
		}
		p.partial[block] = acked
	default:
		p.blocks = append(p.blocks, block)
		delete(p.partial, block)
	}
}

func (w *progressWriter) loop() {
	defer close(w.done)
	for {
		if clock.Sleep(quitContext{w.quit}, w.clock, w.every) != nil {
			return
		}
		w.flush()
	}
}

// flush writes the queued marks in one transaction. On an error they are
// dropped and counted: the progress lags, nothing else is lost.
func (w *progressWriter) flush() {
	w.mu.Lock()
	batch := w.pending
	w.pending = map[string]*pendingMarks{}
	w.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	err := w.db.Update(func(tx *store.Tx) error {
		for key, p := range batch {
			var cur progressValue
			if v, ok := tx.Get(progressNS, key); ok {
				cur, _ = decodeProgress(v)
			}
			if cur.complete {
				continue
			}
			cur.complete = p.complete
			for b, bits := range p.partial {
				if cur.partial == nil {
					cur.partial = map[int][]byte{}
				}
				cur.partial[b] = bits
			}
			for _, b := range p.blocks {
				cur.done = setBit(cur.done, b)
				delete(cur.partial, b)
			}
			if err := tx.Put(progressNS, key, cur.encode(), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		w.mErr.Incr(1)
		w.log.Errorf("currents_avro: recording the progress of %d files: %v (a resumed run sends their last blocks again)", len(batch), err)
		return
	}
	w.mTx.Incr(1)
}

// close flushes what is queued and stops the loop.
func (w *progressWriter) close() {
	close(w.quit)
	<-w.done
	w.flush()
}

// quitContext is a context that ends when quit is closed.
type quitContext struct{ quit chan struct{} }

func (quitContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (q quitContext) Done() <-chan struct{}     { return q.quit }
func (q quitContext) Err() error {
	select {
	case <-q.quit:
		return context.Canceled
	default:
		return nil
	}
}
func (quitContext) Value(any) any { return nil }
