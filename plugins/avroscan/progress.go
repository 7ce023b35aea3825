package avroscan

import (
	"encoding/hex"

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
	db  *store.DB
	key string
	// done and complete are what the store held when the file was opened.
	done     []byte
	complete bool
}

func progressKey(name string, sync [16]byte) string {
	return name + "\x00" + hex.EncodeToString(sync[:])
}

// loadProgress reads the progress of the file name with sync marker sync.
func loadProgress(db *store.DB, name string, sync [16]byte) (*fileProgress, error) {
	p := &fileProgress{db: db, key: progressKey(name, sync)}
	err := db.View(func(tx *store.Tx) error {
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

// isDone reports whether block i was recorded as delivered.
func (p *fileProgress) isDone(i int) bool {
	return i/8 < len(p.done) && p.done[i/8]&(1<<(i%8)) != 0
}

// markDone records block i as delivered. Concurrent calls share one commit.
func (p *fileProgress) markDone(i int) error {
	return p.db.Batch(func(tx *store.Tx) error {
		v, ok := tx.Get(progressNS, p.key)
		if !ok || len(v) < 2 || v[0] != progressVersion {
			v = []byte{progressVersion, 0}
		}
		if need := 2 + i/8 + 1; len(v) < need {
			v = append(v, make([]byte, need-len(v))...)
		}
		v[2+i/8] |= 1 << (i % 8)
		return tx.Put(progressNS, p.key, v, 0)
	})
}

// markComplete records that every record of the file was delivered or
// dead-lettered; the block bitmap is no longer needed.
func (p *fileProgress) markComplete() error {
	return p.db.Update(func(tx *store.Tx) error {
		return tx.Put(progressNS, p.key, []byte{progressVersion, progressComplete}, 0)
	})
}
