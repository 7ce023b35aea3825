package store

import (
	"context"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

const (
	scFieldPath      = "path"
	scFieldNamespace = "namespace"
	scFieldTTL       = "default_ttl"
)

// sweepInterval is how often a store cache deletes expired entries.
const sweepInterval = time.Minute

func storeCacheSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		Categories("Local").
		Summary("A durable key-value cache in an embedded transactional store file (bbolt): state that must survive a crash or a restart.").
		Description(`
Every write is one transaction, fsynced before it returns: after a crash (kill -9, power loss) the file holds each
write either whole or not at all, never a torn or half-written value. The folder of `+"`path`"+` is created on start.
Memory is bounded: values are read from a memory-mapped file (page cache, reclaimable by the kernel), not held in the
Go heap. Entries with a TTL are hidden as soon as they expire and deleted by a sweep once a minute.

Several caches (and the `+"`amplitude_cohort`"+` input or the `+"`currents_avro`"+` scanner) may name the same file: one
process opens it once and shares it; each cache keeps its keys in its own `+"`namespace`"+`. A file is locked by the
process that opens it: a second process (another instance) waits five seconds and fails, so state is never shared
between instances by accident. See docs/state.md for the file layout and what is per instance.

Why bbolt rather than Pebble or Badger: the state is small (cohort memberships, progress records, id budgets),
written a few times per second and read mostly at start-up, so a single-file B+tree with copy-on-write pages and one
fsync per commit (no write-ahead log to replay, no compactions, no background goroutines, no value log to garbage
collect) is the simplest store that gives atomic, durable transactions. Pebble and Badger are LSM trees made for
write-heavy workloads: more throughput than needed here, at the cost of background compaction, several files per
store and more memory.

== Metrics

- `+"`store_cache_writes_total`"+` (label `+"`op`"+`: set, add, delete): committed writes
- `+"`store_cache_write_seconds`"+`: latency of a write, fsync included
`).
		Fields(
			service.NewStringField(scFieldPath).
				Description("The store file. Its folder is created on start; keep it on persistent storage (a volume).").
				Default("./state/state.db").Example("/var/lib/currents-amplitude/state/state.db"),
			service.NewStringField(scFieldNamespace).
				Description("The namespace (bbolt bucket) of this cache's keys in the file. Empty uses the resource label.").
				Default("").Example("webhook_message_ids"),
			service.NewDurationField(scFieldTTL).
				Description("TTL of entries written without one; empty keeps them until deleted.").
				Optional().Example("24h"),
		).
		Example("Remembering webhook message ids for a day", "", `
cache_resources:
  - label: webhook_message_ids
    store:
      path: ./state/webhook.db
      default_ttl: 24h
`)
}

func init() {
	service.MustRegisterCache("store", storeCacheSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.Cache, error) {
			return newStoreCacheFromParsed(conf, mgr)
		})
}

// storeCache is a Benthos cache on a namespace of a DB.
type storeCache struct {
	db     *DB
	ns     string
	ttl    time.Duration
	log    *service.Logger
	clock  clock.Clock
	stop   chan struct{}
	done   chan struct{}
	writes *service.MetricCounter
	lat    *service.MetricTimer
}

func newStoreCacheFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*storeCache, error) {
	path, err := conf.FieldString(scFieldPath)
	if err != nil {
		return nil, err
	}
	ns, err := conf.FieldString(scFieldNamespace)
	if err != nil {
		return nil, err
	}
	if ns == "" {
		ns = mgr.Label()
	}
	if ns == "" {
		ns = "cache"
	}
	if err := checkNS(ns); err != nil {
		return nil, err
	}
	c := &storeCache{ns: ns, log: mgr.Logger(), clock: clock.System, stop: make(chan struct{}), done: make(chan struct{})}
	if conf.Contains(scFieldTTL) {
		if c.ttl, err = conf.FieldDuration(scFieldTTL); err != nil {
			return nil, err
		}
	}
	if c.db, err = Open(path, Options{Clock: c.clock}); err != nil {
		return nil, err
	}
	m := mgr.Metrics()
	c.writes = m.NewCounter("store_cache_writes_total", "op")
	c.lat = m.NewTimer("store_cache_write_seconds")
	go c.sweep()
	return c, nil
}

func (c *storeCache) sweep() {
	defer close(c.done)
	for {
		t := c.clock.NewTimer(sweepInterval)
		select {
		case <-c.stop:
			t.Stop()
			return
		case <-t.C():
			if n, err := c.db.Sweep(); err != nil {
				c.log.Errorf("store %s: deleting expired entries: %v", c.db.Path(), err)
			} else if n > 0 {
				c.log.Debugf("store %s: deleted %d expired entries", c.db.Path(), n)
			}
		}
	}
}

func (c *storeCache) ttlOf(ttl *time.Duration) time.Duration {
	if ttl != nil {
		return *ttl
	}
	return c.ttl
}

// Get returns the value of key, or service.ErrKeyNotFound.
func (c *storeCache) Get(_ context.Context, key string) ([]byte, error) {
	var v []byte
	var ok bool
	if err := c.db.View(func(tx *Tx) error { v, ok = tx.Get(c.ns, key); return nil }); err != nil {
		return nil, err
	}
	if !ok {
		return nil, service.ErrKeyNotFound
	}
	return v, nil
}

func (c *storeCache) write(op string, fn func(*Tx) error) error {
	start := c.clock.Now()
	if err := c.db.Update(fn); err != nil {
		return err
	}
	c.lat.Timing(c.clock.Now().Sub(start).Nanoseconds())
	c.writes.Incr(1, op)
	return nil
}

// Set writes key durably.
func (c *storeCache) Set(_ context.Context, key string, value []byte, ttl *time.Duration) error {
	return c.write("set", func(tx *Tx) error { return tx.Put(c.ns, key, value, c.ttlOf(ttl)) })
}

// Add writes key unless a live entry holds it (service.ErrKeyAlreadyExists),
// atomically.
func (c *storeCache) Add(_ context.Context, key string, value []byte, ttl *time.Duration) error {
	return c.write("add", func(tx *Tx) error {
		if _, ok := tx.Get(c.ns, key); ok {
			return service.ErrKeyAlreadyExists
		}
		return tx.Put(c.ns, key, value, c.ttlOf(ttl))
	})
}

// Delete removes key.
func (c *storeCache) Delete(_ context.Context, key string) error {
	return c.write("delete", func(tx *Tx) error { return tx.Delete(c.ns, key) })
}

// Close stops the sweep and releases the file.
func (c *storeCache) Close(context.Context) error {
	select {
	case <-c.stop:
		return nil
	default:
	}
	close(c.stop)
	<-c.done
	return c.db.Close()
}
