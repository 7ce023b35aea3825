package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/idtable"
)

// cacheTTL is how long a key's daily counts are useful: the daily window.
const cacheTTL = daySlots * time.Hour

// countCache keeps daily counts in a Benthos cache resource: a key's counts
// are read when this process first sees the key, and the counts of keys that
// passed events are written back by flush. A nil *countCache does nothing.
//
// It is best-effort: the cache API has no atomic increment, so counts read
// are merged by taking, hour by hour, the larger of the local and the stored
// count, and writes overwrite. Two instances limiting the same key at the same
// time can therefore lose each other's counts.
type countCache struct {
	res    *service.Resources
	name   string
	prefix string
	lim    *limiter
	// dirty holds, per limiter shard, the cache keys of keys whose counts
	// changed since the last flush.
	dirty [numShards]struct {
		mu   sync.Mutex
		keys map[uint64]string
	}
}

func parseCache(conf *service.ParsedConfig, mgr *service.Resources, lim *limiter) (*countCache, error) {
	name, err := conf.FieldString(drlFieldCache)
	if err != nil || name == "" {
		return nil, err
	}
	if !mgr.HasCache(name) {
		return nil, fmt.Errorf("cache resource %q was not found", name)
	}
	prefix, err := conf.FieldString(drlFieldCachePfx)
	if err != nil {
		return nil, err
	}
	c := &countCache{res: mgr, name: name, prefix: prefix, lim: lim}
	for i := range c.dirty {
		c.dirty[i].keys = map[uint64]string{}
	}
	return c, nil
}

func (c *countCache) cacheKey(k *msgKeys, i int) string {
	return c.prefix + strconv.Itoa(int(k.idx[i])) + ":" + k.vals[i]
}

// load seeds the limiter with the stored counts of the keys of a batch's
// messages (those with n >= 0) that it does not track yet, before any of
// them is taken: a key is read at its first message only (taking that
// message makes the key known to the later ones). failed is called with the
// error of each message whose counts could not be read.
func (c *countCache) load(ctx context.Context, now int64, keys []msgKeys, failed func(error)) {
	if c == nil {
		return
	}
	seen := map[uint64]struct{}{}
	for i := range keys {
		if keys[i].n < 0 {
			continue
		}
		if err := c.loadKeys(ctx, now, &keys[i], seen); err != nil {
			failed(err)
		}
	}
}

// loadKeys is load for the keys of one message, skipping those in seen
// (and adding them to it).
func (c *countCache) loadKeys(ctx context.Context, now int64, k *msgKeys, seen map[uint64]struct{}) error {
	var errs []error
	for i, h := range k.hs[:k.n] {
		if _, ok := seen[h]; ok {
			continue
		}
		seen[h] = struct{}{}
		if c.lim.known(h) {
			continue
		}
		key := c.cacheKey(k, i)
		var val []byte
		var err error
		if aerr := c.res.AccessCache(ctx, c.name, func(cc service.Cache) {
			val, err = cc.Get(ctx, key)
		}); aerr != nil {
			err = aerr
		}
		if errors.Is(err, service.ErrKeyNotFound) {
			continue
		}
		if err == nil {
			var counts dayCounts
			if counts, err = decodeCounts(val); err == nil {
				c.lim.seed(h, now, counts)
				continue
			}
		}
		errs = append(errs, fmt.Errorf("reading the counts of key %d: %w", k.idx[i], err))
	}
	return errors.Join(errs...)
}

// touch records that the keys of k passed an event.
func (c *countCache) touch(k *msgKeys) {
	if c == nil {
		return
	}
	for i, h := range k.hs[:k.n] {
		d := &c.dirty[h>>58]
		d.mu.Lock()
		if _, ok := d.keys[h]; !ok {
			d.keys[h] = c.cacheKey(k, i)
		}
		d.mu.Unlock()
	}
}

// flush writes the counts of the keys touched since the last flush; now is
// the current time (unix nanoseconds).
func (c *countCache) flush(ctx context.Context, now int64) error {
	if c == nil {
		return nil
	}
	failed, total := 0, 0
	var first error
	for i := range c.dirty {
		d := &c.dirty[i]
		d.mu.Lock()
		keys := d.keys
		if len(keys) > 0 {
			d.keys = map[uint64]string{}
		}
		d.mu.Unlock()
		for h, key := range keys {
			counts, ok := c.lim.counts(h, now)
			if !ok {
				continue
			}
			total++
			ttl := cacheTTL
			var err error
			if aerr := c.res.AccessCache(ctx, c.name, func(cc service.Cache) {
				err = cc.Set(ctx, key, counts.encode(), &ttl)
			}); aerr != nil {
				err = aerr
			}
			if err != nil {
				failed++
				first = cmpOr(first, err)
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("writing the counts of %d of %d keys: %w", failed, total, first)
	}
	return nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// dayCounts is a key's daily window: counts[i] events in unix hour newest-i.
type dayCounts struct {
	newest uint32
	counts [daySlots]uint32
}

// encode writes the counts as "<newest hour>:<count>,<count>,...", newest
// first, trailing zeros left out.
func (d dayCounts) encode() []byte {
	n := daySlots
	for n > 1 && d.counts[n-1] == 0 {
		n--
	}
	b := strconv.AppendUint(make([]byte, 0, 16+n*4), uint64(d.newest), 10)
	b = append(b, ':')
	for i, c := range d.counts[:n] {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(c), 10)
	}
	return b
}

// decodeCounts parses what encode wrote.
func decodeCounts(b []byte) (dayCounts, error) {
	var d dayCounts
	hour, list, ok := strings.Cut(string(b), ":")
	if !ok {
		return d, errors.New("malformed counts: no hour")
	}
	h, err := strconv.ParseUint(hour, 10, 32)
	if err != nil {
		return d, fmt.Errorf("malformed counts: %w", err)
	}
	d.newest = uint32(h)
	parts := strings.Split(list, ",")
	if len(parts) > daySlots {
		return d, fmt.Errorf("malformed counts: %d hours, at most %d", len(parts), daySlots)
	}
	for i, s := range parts {
		c, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return d, fmt.Errorf("malformed counts: %w", err)
		}
		d.counts[i] = uint32(c)
	}
	return d, nil
}

// known reports whether the limiter tracks key h.
func (l *limiter) known(h uint64) bool {
	s := l.shardOf(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, cold := s.cold.get(h)
	return cold || s.hot.get(h) != nil
}

// seed merges stored daily counts into key h, keeping for each hour the
// larger of the local and the stored count, up to per_day in all. The key's
// window moves forward to d's newest hour if the local clock is behind it.
func (l *limiter) seed(h uint64, now int64, d dayCounts) {
	s := l.shardOf(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, hour := l.buckets(now)
	st := s.state(h, idtable.NoHint, sb, hour)
	r := s.hot.spread(st) // the next sweep folds it again if the count stays small
	s.hot.advance(st, sb, max(hour, d.newest))
	for i, c := range d.counts {
		hr := d.newest - uint32(i)
		if st.dayLast-hr >= daySlots {
			continue
		}
		if j := hr % daySlots; c > r[j] {
			// Never beyond per_day in all (which also keeps the
			// total from overflowing on a corrupt entry).
			add := min(c-r[j], l.perDay-min(st.dayTotal, l.perDay))
			st.dayTotal += add
			r[j] += add
		}
	}
}

// counts returns the daily window of key h at now, if tracked.
func (l *limiter) counts(h uint64, now int64) (dayCounts, bool) {
	s := l.shardOf(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	var d dayCounts
	if st := s.hot.get(h); st != nil {
		d.newest = st.dayLast
		r := s.hot.ring(st)
		if r == nil {
			d.counts[0] = st.dayTotal
			return d, true
		}
		for j := range d.counts {
			d.counts[j] = r[(st.dayLast-uint32(j))%daySlots]
		}
		return d, true
	}
	if v, ok := s.cold.get(h); ok {
		_, hour := l.buckets(now)
		d.newest, d.counts[0] = unpackCold(v, hour)
		return d, true
	}
	return d, false
}
