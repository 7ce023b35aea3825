package profile

import (
	"hash/maphash"
	"sync"
	"time"
)

// cacheShards splits the cache so that concurrent hits rarely share a lock.
const cacheShards = 64

// entry is one cached answer. Entries are immutable once stored.
type entry struct {
	body []byte
	// empty marks a known-empty profile (Amplitude has not seen the id): the
	// default answer is served for it.
	empty bool
	// fresh, stale and keep end the three ages of the entry: served as is,
	// served while a refresh runs, and served only when Amplitude fails.
	fresh, stale, keep time.Time
}

// flight is one call to Amplitude in progress; identical lookups wait for it
// instead of calling again.
type flight struct {
	done chan struct{}
	// set before done is closed:
	ent *entry
	out outcome
	// reason is why the flight produced no entry (a default reason).
	reason string
}

type shard struct {
	mu      sync.RWMutex
	entries map[Query]*entry
	flights map[Query]*flight
}

// cache is the TTL cache of answers, with the flights in progress, bounded to
// about max entries: past it a shard evicts expired entries first, then an
// arbitrary one (Go's map order), in constant time; good enough for profiles
// that are all read about equally often during a send.
type cache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]shard
	// onEvict counts evictions (expired: whether the entry was past keep).
	onEvict func(expired bool)
}

func newCache(max int, onEvict func(expired bool)) *cache {
	c := &cache{seed: maphash.MakeSeed(), perShard: max/cacheShards + 1, onEvict: onEvict}
	for i := range c.shards {
		c.shards[i].entries = map[Query]*entry{}
		c.shards[i].flights = map[Query]*flight{}
	}
	return c
}

func (c *cache) shard(key Query) *shard {
	return &c.shards[maphash.Comparable(c.seed, key)%cacheShards]
}

// get returns the entry of key, if any.
func (c *cache) get(key Query) *entry {
	s := c.shard(key)
	s.mu.RLock()
	e := s.entries[key]
	s.mu.RUnlock()
	return e
}

// join returns the flight of key in progress, or registers a new one and
// reports that the caller must run it.
func (c *cache) join(key Query) (f *flight, leader bool) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.flights[key]; f != nil {
		return f, false
	}
	f = &flight{done: make(chan struct{})}
	s.flights[key] = f
	return f, true
}

// land ends the flight of key: stores its entry (when not nil) and wakes the
// waiters.
func (c *cache) land(key Query, f *flight, now time.Time) {
	s := c.shard(key)
	s.mu.Lock()
	if f.ent != nil {
		if _, ok := s.entries[key]; !ok && len(s.entries) >= c.perShard {
			c.evictLocked(s, now)
		}
		s.entries[key] = f.ent
	}
	delete(s.flights, key)
	s.mu.Unlock()
	close(f.done)
}

// evictSample is how many entries one eviction looks at.
const evictSample = 32

// evictLocked makes room for one entry in s: of up to evictSample entries
// (Go's map order is random), those past their keep time go; when none is,
// the first one looked at goes. Constant time whatever the shard's size.
func (c *cache) evictLocked(s *shard, now time.Time) {
	var first Query
	seen, expired := 0, 0
	for k, e := range s.entries {
		if seen == 0 {
			first = k
		}
		if now.After(e.keep) {
			delete(s.entries, k)
			expired++
		}
		if seen++; seen == evictSample {
			break
		}
	}
	for i := 0; i < expired; i++ {
		c.onEvict(true)
	}
	if expired == 0 && seen > 0 {
		delete(s.entries, first)
		c.onEvict(false)
	}
}

// len returns the number of entries.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}
