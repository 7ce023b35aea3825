package avroscan

import (
	"context"
	"encoding/hex"
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
//	byte 0     version (1)
//	byte 1     flags: bit 0 = complete (every record delivered or dead-lettered)
//	bytes 2…   bitmap of the blocks fully delivered or dead-lettered (bit i = block i)
const progressNS = "currents_avro"

const (
	progressVersion  = 1
	progressComplete = 1
)

// fileProgress is the progress record of one file.
type fileProgress struct {
	w   *progressWriter
	key string
	// done and complete are what the store held when the file was opened.
	done     []byte
	complete bool
}

func progressKey(name string, sync [16]byte) string {
	return name + "\x00" + hex.EncodeToString(sync[:])
}

// isDone reports whether block i was recorded as delivered.
func (p *fileProgress) isDone(i int) bool {
	return i/8 < len(p.done) && p.done[i/8]&(1<<(i%8)) != 0
}

// markDone queues the record of block i as delivered.
func (p *fileProgress) markDone(i int) { p.w.queue(p.key, i, false) }

// markComplete queues the record that every record of the file was
// delivered or dead-lettered (the block bitmap is then dropped).
func (p *fileProgress) markComplete() { p.w.queue(p.key, -1, true) }

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
		v, ok := tx.Get(progressNS, p.key)
		if !ok || len(v) < 2 || v[0] != progressVersion {
			return nil
		}
		p.complete = v[1]&progressComplete != 0
		p.done = v[2:]
		return nil
	})
	return p, err
}

func (w *progressWriter) queue(key string, block int, complete bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pending[key]
	if p == nil {
		p = &pendingMarks{}
		w.pending[key] = p
	}
	if complete {
		p.complete, p.blocks = true, nil
	} else if !p.complete {
		p.blocks = append(p.blocks, block)
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
			if p.complete {
				if err := tx.Put(progressNS, key, []byte{progressVersion, progressComplete}, 0); err != nil {
					return err
				}
				continue
			}
			v, ok := tx.Get(progressNS, key)
			if !ok || len(v) < 2 || v[0] != progressVersion {
				v = []byte{progressVersion, 0}
			}
			if v[1]&progressComplete != 0 {
				continue
			}
			for _, i := range p.blocks {
				if need := 2 + i/8 + 1; len(v) < need {
					v = append(v, make([]byte, need-len(v))...)
				}
				v[2+i/8] |= 1 << (i % 8)
			}
			if err := tx.Put(progressNS, key, v, 0); err != nil {
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
