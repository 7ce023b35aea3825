package amplitude

import (
	"sync/atomic"
	"unsafe"

	"github.com/opencurrents/currents-amplitude/plugins/internal/idtable"
)

// hourSketch keeps, for the ids a pacer shard has forgotten within the
// current hour, an upper bound of the events each was charged in that hour,
// in a fixed amount of memory whatever the number of ids.
//
// Why: the daily quota needs an id's count over the hour (an id over the
// tracking threshold gets a daily ring, see pacer), but keeping every id's
// slot for the rest of its hour made the table hold every id seen in the
// hour (62 bytes each at 10^6 ids) where its budget and its guard need it
// only for the second after it sends. With the sketch, an id whose budget
// and guard are idle is forgotten at once, its hour's count written here,
// and an id that comes back in the same hour starts from the sketch's bound
// instead of 0. The table then holds the ids active within the last window
// (and the busy ids' rings), and the sketch what the hour's other ids sent.
//
// It is a count-min sketch with conservative updates (Cormode and
// Muthukrishnan, "An Improved Data Stream Summary: The Count-Min Sketch and
// its Applications", 2005; Estan and Varghese, "New Directions in Traffic
// Measurement and Accounting", 2002) in the blocked layout of cache-line
// Bloom filters: an id's two counters lie in one 64-byte line, so a lookup
// costs one cache miss. Because a forgotten id's count is the whole hour's
// (it started from the sketch's bound), writing it is a maximum, not a sum:
// every counter of an id stays at or above its count, so the bound never
// under-counts (the quota is never exceeded because of it). It over-counts
// an id only when both of its counters were written by ids that sent more
// in the hour; an over-count moves an id to a daily ring sooner (104 bytes
// kept for 24 hours, and its earlier hours assumed at the threshold, as for
// any ringed id): it is then held at most that assumption (4.6% of the
// quota, pacer) plus the over-count below its true quota. Counts
// of refunded events are not taken back from the sketch (refunds are rare:
// an event whose user's budget refused it after its device's was charged).
//
// Memory: sketchLines lines of 64 bytes per shard (64 KiB; 4 MiB for the
// pacer's 64 shards), allocated when a shard first forgets an id with a count
// in the current hour, held as the tables are (outside the Go heap on Linux:
// idtable.Array), and cleared when the hour changes.
type hourSketch struct {
	hour int32 // the unix hour the counts are of
	mem  idtable.Array[sketchLine]
}

// sketchLine is one cache line of counts.
type sketchLine [32]uint16

const (
	// sketchLines is the number of lines per shard: 65,536 lines and 2^21
	// counters in the pacer's 64 shards.
	sketchLines = 1024
	sketchMax   = 1<<16 - 1
)

// cells returns the line and the two counters of the id whose hash is h.
// They are taken from bits 32 to 51, which neither the shard (the top 6
// bits) nor the table's home slot (the low 32 bits) use, and the second
// counter differs from the first.
func (s *hourSketch) cells(h uint64) (line *sketchLine, a, b int) {
	line = &s.mem.Items()[h>>32%sketchLines]
	a = int(h >> 42 % 32)
	b = (a + 1 + int(h>>47%31)) % 32
	return line, a, b
}

// touch loads the line of the id whose hash is h into the cache, as
// idtable's Touch does for a table, so that the misses of a batch's lookups
// overlap (prefetch): an id absent from the table reads its bound next.
func (s *hourSketch) touch(h uint64) {
	if s.mem.Items() != nil {
		line, _, _ := s.cells(h)
		_ = atomic.LoadUint64((*uint64)(unsafe.Pointer(line))) // a load the compiler keeps
	}
}

// bound returns an upper bound of the events counted in hour for the id
// whose hash is h when it was last forgotten (0: none, or another hour).
func (s *hourSketch) bound(h uint64, hour int32) uint32 {
	if s.mem.Items() == nil || s.hour != hour {
		return 0
	}
	line, a, b := s.cells(h)
	return uint32(min(line[a], line[b]))
}

// record writes that the id whose hash is h, forgotten in hour, counted
// count events in it. Counts of other hours than hour are of no use and
// not written; the counts of a past hour are cleared first.
func (s *hourSketch) record(h uint64, hour, countHour int32, count uint32) {
	lines := s.mem.Items()
	if count == 0 || countHour != hour || hour < s.hour && lines != nil {
		return
	}
	switch {
	case lines == nil:
		s.mem = idtable.NewArray[sketchLine](sketchLines)
	case s.hour != hour:
		clear(lines)
	}
	s.hour = hour
	line, a, b := s.cells(h)
	c := uint16(min(count, sketchMax))
	line[a], line[b] = max(line[a], c), max(line[b], c)
}
