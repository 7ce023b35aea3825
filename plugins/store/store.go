package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// ttlBucket is the internal index of entries that expire: key = 8-byte
// big-endian expiry (Unix nanoseconds) + namespace + 0x00 + key, no value.
// Namespaces starting with 0x00 are reserved.
const ttlBucket = "\x00ttl"

// headerLen is the size of the expiry header in front of every stored value.
const headerLen = 8

// sweepChunk bounds the expired entries one sweep transaction deletes, so a
// sweep never holds the write lock for long.
const sweepChunk = 10_000

// Options configure Open. The zero value is ready to use.
type Options struct {
	// Clock decides when entries expire; nil means the system clock.
	Clock clock.Clock
	// LockTimeout is how long Open waits for another process to release the
	// file lock before failing; default 5s.
	LockTimeout time.Duration
	// BeforeCommit, when set, runs inside every Update after fn succeeded
	// and before the commit; an error aborts the transaction (nothing of it
	// is written) and is returned by Update. Tests use it to crash a
	// component at each of its write points.
	BeforeCommit func() error
}

// DB is one store file. It is safe for concurrent use. Components that name
// the same file share one DB (Open is reference counted), since a file can be
// opened only once: bbolt locks it, and a second process waits, then fails.
type DB struct {
	path  string
	bolt  *bolt.DB
	clock clock.Clock
	hook  func() error
	refs  int // guarded by registry.mu
}

var registry = struct {
	mu  sync.Mutex
	dbs map[string]*DB
}{dbs: map[string]*DB{}}

// Open opens (creating it and its folder if needed) the store file at path,
// or returns the DB already open on that file in this process. Every Open
// must be paired with a Close. The options of the first Open apply.
func Open(path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if db, ok := registry.dbs[abs]; ok {
		db.refs++
		return db, nil
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("store: creating the state folder: %w", err)
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	b, err := bolt.Open(abs, 0o600, &bolt.Options{
		Timeout:      timeout,
		FreelistType: bolt.FreelistMapType,
		// NoSync stays false: every commit is fsynced before Update returns.
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s is locked by another process: each instance needs its own state folder", abs)
	}
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", abs, err)
	}
	// Batch waits at most this long for more writes to share a commit.
	b.MaxBatchDelay = 2 * time.Millisecond
	db := &DB{path: abs, bolt: b, clock: clock.OrSystem(opts.Clock), hook: opts.BeforeCommit, refs: 1}
	registry.dbs[abs] = db
	return db, nil
}

// Path returns the absolute path of the file.
func (db *DB) Path() string { return db.path }

// Close releases this reference; the file is closed with the last one.
func (db *DB) Close() error {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	db.refs--
	if db.refs > 0 {
		return nil
	}
	delete(registry.dbs, db.path)
	return db.bolt.Close()
}

// Update runs fn in a read-write transaction and commits it, durably (fsync)
// and atomically: after a crash at any point either all of fn's writes are
// in the file or none is. An error from fn rolls everything back.
func (db *DB) Update(fn func(*Tx) error) error {
	return db.bolt.Update(func(btx *bolt.Tx) error {
		if err := fn(&Tx{tx: btx, now: db.clock.Now()}); err != nil {
			return err
		}
		if db.hook != nil {
			return db.hook()
		}
		return nil
	})
}

// Batch is Update for small independent writes from many goroutines: bbolt
// coalesces concurrent calls into one commit (one fsync), up to 1000 calls or
// 2ms. fn may run more than once, so it must be idempotent (set a bit, put a
// value), and it is as durable as Update once Batch returns.
func (db *DB) Batch(fn func(*Tx) error) error {
	return db.bolt.Batch(func(btx *bolt.Tx) error {
		if err := fn(&Tx{tx: btx, now: db.clock.Now()}); err != nil {
			return err
		}
		if db.hook != nil {
			return db.hook()
		}
		return nil
	})
}

// View runs fn in a read-only transaction: a consistent snapshot.
func (db *DB) View(fn func(*Tx) error) error {
	return db.bolt.View(func(btx *bolt.Tx) error {
		return fn(&Tx{tx: btx, now: db.clock.Now()})
	})
}

// Sweep deletes the entries expired by now, sweepChunk per transaction, and
// returns how many it deleted.
func (db *DB) Sweep() (int, error) {
	total := 0
	for {
		n := 0
		err := db.Update(func(tx *Tx) error {
			idx := tx.tx.Bucket([]byte(ttlBucket))
			if idx == nil {
				return nil
			}
			now := uint64(tx.now.UnixNano())
			c := idx.Cursor()
			for k, _ := c.First(); k != nil && n < sweepChunk; k, _ = c.Next() {
				if len(k) < headerLen || binary.BigEndian.Uint64(k) > now {
					break
				}
				rest := string(k[headerLen:])
				ns, key, _ := strings.Cut(rest, "\x00")
				if b := tx.tx.Bucket([]byte(ns)); b != nil {
					if err := b.Delete([]byte(key)); err != nil {
						return err
					}
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		total += n
		if err != nil || n < sweepChunk {
			return total, err
		}
	}
}

// Tx is a transaction. Values returned by its methods are copies.
type Tx struct {
	tx  *bolt.Tx
	now time.Time
}

// Now is the time the transaction started, by the store's clock.
func (t *Tx) Now() time.Time { return t.now }

func checkNS(ns string) error {
	if ns == "" || ns[0] == 0 {
		return fmt.Errorf("store: invalid namespace %q", ns)
	}
	return nil
}

// Get returns the value of key in namespace ns, and false when it is absent
// or expired.
func (t *Tx) Get(ns, key string) ([]byte, bool) {
	b := t.tx.Bucket([]byte(ns))
	if b == nil {
		return nil, false
	}
	return t.live(b.Get([]byte(key)))
}

// live strips the expiry header of a stored value, copying the value, and
// reports false for an absent or expired one.
func (t *Tx) live(raw []byte) ([]byte, bool) {
	if len(raw) < headerLen {
		return nil, false
	}
	if exp := binary.BigEndian.Uint64(raw); exp != 0 && exp <= uint64(t.now.UnixNano()) {
		return nil, false
	}
	return append([]byte{}, raw[headerLen:]...), true
}

// Put writes value under key in namespace ns. A ttl > 0 makes the entry
// expire after ttl (by the store's clock); 0 keeps it until deleted.
func (t *Tx) Put(ns, key string, value []byte, ttl time.Duration) error {
	if err := checkNS(ns); err != nil {
		return err
	}
	if strings.IndexByte(ns, 0) >= 0 {
		return fmt.Errorf("store: namespace %q holds a NUL byte", ns)
	}
	if key == "" {
		return errors.New("store: empty key")
	}
	b, err := t.tx.CreateBucketIfNotExists([]byte(ns))
	if err != nil {
		return err
	}
	if err := t.unindex(b, ns, key); err != nil {
		return err
	}
	var exp uint64
	if ttl > 0 {
		exp = uint64(t.now.Add(ttl).UnixNano())
		idx, err := t.tx.CreateBucketIfNotExists([]byte(ttlBucket))
		if err != nil {
			return err
		}
		if err := idx.Put(indexKey(exp, ns, key), nil); err != nil {
			return err
		}
	}
	v := make([]byte, headerLen+len(value))
	binary.BigEndian.PutUint64(v, exp)
	copy(v[headerLen:], value)
	return b.Put([]byte(key), v)
}

// Delete removes key from namespace ns; an absent key is not an error.
func (t *Tx) Delete(ns, key string) error {
	b := t.tx.Bucket([]byte(ns))
	if b == nil {
		return nil
	}
	if err := t.unindex(b, ns, key); err != nil {
		return err
	}
	return b.Delete([]byte(key))
}

// unindex drops the expiry index entry of the current value of key.
func (t *Tx) unindex(b *bolt.Bucket, ns, key string) error {
	old := b.Get([]byte(key))
	if len(old) < headerLen {
		return nil
	}
	exp := binary.BigEndian.Uint64(old)
	if exp == 0 {
		return nil
	}
	if idx := t.tx.Bucket([]byte(ttlBucket)); idx != nil {
		return idx.Delete(indexKey(exp, ns, key))
	}
	return nil
}

// ForEach calls fn, in key order, with every live entry of namespace ns whose
// key starts with prefix; an error from fn stops the walk and is returned.
func (t *Tx) ForEach(ns, prefix string, fn func(key string, value []byte) error) error {
	b := t.tx.Bucket([]byte(ns))
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, raw := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, raw = c.Next() {
		v, ok := t.live(raw)
		if !ok {
			continue
		}
		if err := fn(string(k), v); err != nil {
			return err
		}
	}
	return nil
}

// DeletePrefix removes every entry of namespace ns whose key starts with
// prefix.
func (t *Tx) DeletePrefix(ns, prefix string) error {
	b := t.tx.Bucket([]byte(ns))
	if b == nil {
		return nil
	}
	var keys []string
	c := b.Cursor()
	for k, _ := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, _ = c.Next() {
		keys = append(keys, string(k))
	}
	for _, k := range keys {
		if err := t.Delete(ns, k); err != nil {
			return err
		}
	}
	return nil
}

func indexKey(exp uint64, ns, key string) []byte {
	k := make([]byte, headerLen, headerLen+len(ns)+1+len(key))
	binary.BigEndian.PutUint64(k, exp)
	k = append(k, ns...)
	k = append(k, 0)
	return append(k, key...)
}
