package deadletter

import (
	"encoding/binary"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/store"
)

// FieldDeadLetterState is the name of the field naming the store file in
// which a Writer remembers what it dead-lettered, across restarts.
const FieldDeadLetterState = "dead_letter_state"

// durableTTL is how long a dead-lettered key is remembered on disk: longer
// than any source keeps a message to re-send (Braze retries for 24 h,
// Kafka's default retention is 7 days).
const durableTTL = 8 * 24 * time.Hour

// durableNS is the store namespace of dead-lettered keys.
const durableNS = "dead_letters"

// StateField returns the optional `dead_letter_state` field that goes with
// OutputField.
func StateField() *service.ConfigField {
	return service.NewStringField(FieldDeadLetterState).
		Description("A store file (see the `store` cache) in which the events written to `dead_letter` are " +
			"remembered for 8 days, so that an event re-read after a crash or restart (a Kafka offset not yet " +
			"committed, a Braze re-send, a re-read file) is not dead-lettered again. Empty: remembered in memory " +
			"only (the last 2^20 events of this process). One file per instance; it may be the file other " +
			"components of the pipeline use.").
		Example("./state/dead_letters.db").
		Default("").
		Advanced()
}

// storeMemory keeps dead-lettered keys in a store file.
type storeMemory struct{ db *store.DB }

func keyBytes(k uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], k)
	return string(b[:])
}

func (m storeMemory) seen(keys []uint64) (map[uint64]bool, error) {
	out := make(map[uint64]bool, len(keys))
	err := m.db.View(func(tx *store.Tx) error {
		for _, k := range keys {
			if _, ok := tx.Get(durableNS, keyBytes(k)); ok {
				out[k] = true
			}
		}
		return nil
	})
	return out, err
}

func (m storeMemory) remember(keys []uint64) error {
	return m.db.Update(func(tx *store.Tx) error {
		for _, k := range keys {
			if err := tx.Put(durableNS, keyBytes(k), nil, durableTTL); err != nil {
				return err
			}
		}
		return nil
	})
}

func (m storeMemory) close() error { return m.db.Close() }

// openDurable opens the store file at path for w.
func (w *Writer) openDurable(path string) error {
	db, err := store.Open(path, store.Options{Clock: w.clock})
	if err != nil {
		return err
	}
	w.durable = &storeMemory{db: db}
	return nil
}
