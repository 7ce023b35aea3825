package ratelimit

import "github.com/opencurrents/currents-amplitude/plugins/internal/idtable"

// slab hands out values of type T by number, in fixed-size chunks: addresses
// stay stable, slack stays small, and a T without pointers is never scanned
// by the GC. Released numbers are handed out again first.
type slab[T any] struct {
	chunks [][]T
	used   uint32   // numbers ever handed out
	free   []uint32 // numbers back for reuse
}

const (
	chunkBits = 6
	chunkSize = 1 << chunkBits
)

// at returns value i.
func (s *slab[T]) at(i uint32) *T {
	return &s.chunks[i>>chunkBits][i%chunkSize]
}

// alloc returns the number of a zeroed value.
func (s *slab[T]) alloc() uint32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		var zero T
		*s.at(i) = zero
		return i
	}
	if s.used == uint32(len(s.chunks))*chunkSize {
		s.chunks = append(s.chunks, make([]T, chunkSize))
	}
	s.used++
	return s.used - 1
}

// release gives value i back.
func (s *slab[T]) release(i uint32) {
	s.free = append(s.free, i)
}

// live returns how many values are handed out and not released.
func (s *slab[T]) live() int {
	return int(s.used) - len(s.free)
}

// dayRing is the hourly daily window of a heavy key: day counts per unix hour,
// indexed by hour modulo daySlots.
type dayRing [daySlots]uint32

// hotTable holds the full states of one shard's active keys inline in an
// idtable (open addressing, linear probing, outside the Go heap on Linux) of
// 64-byte slots, one cache line each: a lookup in a table larger than the
// caches costs one miss, which take overlaps with those of its other keys
// (it touches all their slots first). Key 0, which idtable keeps for empty
// slots, has its state beside the table. The few keys whose daily count is
// large also own an hourly ring from a slab.
//
// States move when the table grows or a key is removed: a pointer to one is
// good until the next insert beyond what reserve made room for, or the next
// sweep.
type hotTable struct {
	tab   idtable.Table[keyState]
	rings slab[dayRing]
	zero  keyState // the state of key 0, when hasZero
	// hasZero says whether key 0 is in the table.
	hasZero bool
	n       int // keys in the table, key 0 included
	peak    int // largest n since the table was last rebuilt
}

const minSlots = 64

// get returns the state of key h, or nil.
func (t *hotTable) get(h uint64) *keyState { return t.getHinted(h, idtable.NoHint) }

// getHinted is get for a key whose slot was hint (idtable's FindHinted).
func (t *hotTable) getHinted(h uint64, hint uint32) *keyState {
	if h == 0 {
		if t.hasZero {
			return &t.zero
		}
		return nil
	}
	if j, ok := t.tab.FindHinted(h, hint); ok {
		return &t.tab.At(j).Val
	}
	return nil
}

// touch loads the slot where key h starts its probe (see idtable's Touch).
func (t *hotTable) touch(h uint64) {
	t.tab.Touch(h)
}

// reserve makes room for k more keys, so that inserting them moves no state.
func (t *hotTable) reserve(k int) {
	if (t.tab.Len()+k)*4 > t.tab.Size()*3 {
		t.tab.Resize(max(2*(t.tab.Len()+k), minSlots)) // half full
	}
}

// insert adds key h, which must be absent, and returns its (empty) state.
// States move if it needs more room than reserve made.
func (t *hotTable) insert(h uint64) *keyState {
	t.n++
	t.peak = max(t.peak, t.n)
	if h == 0 {
		t.zero, t.hasZero = keyState{}, true
		return &t.zero
	}
	t.reserve(1)
	j, _ := t.tab.Find(h)
	st := &t.tab.Fill(j, h).Val
	st.hash = h
	return st
}

// ring returns the hourly ring of st, or nil while its daily count is compact.
func (t *hotTable) ring(st *keyState) *dayRing {
	if st.ring == 0 {
		return nil
	}
	return t.rings.at(st.ring - 1)
}

// spread gives st an hourly ring holding its compact daily count in the hour
// it is counted in, and returns it.
func (t *hotTable) spread(st *keyState) *dayRing {
	if r := t.ring(st); r != nil {
		return r
	}
	st.ring = t.rings.alloc() + 1
	r := t.rings.at(st.ring - 1)
	r[st.dayLast%daySlots] = st.dayTotal
	return r
}

// fold makes the daily count of st compact again: all of it is then counted
// in its newest hour, which only errs on the strict side.
func (t *hotTable) fold(st *keyState) {
	if st.ring == 0 {
		return
	}
	st.dayLast = st.newestDayHour(t.ring(st))
	t.rings.release(st.ring - 1)
	st.ring = 0
}

// sweep calls keep for every state (more than once for some: it must give
// the same answer for a state it kept) and removes the keys it returns false
// for, releasing their rings.
func (t *hotTable) sweep(keep func(st *keyState) bool) {
	if t.hasZero && !keep(&t.zero) {
		t.fold(&t.zero)
		t.zero, t.hasZero = keyState{}, false
		t.n--
	}
	t.tab.DeleteFunc(func(sl *idtable.Slot[keyState]) bool {
		if keep(&sl.Val) {
			return false
		}
		t.fold(&sl.Val)
		t.n--
		return true
	})
	if t.rings.live() == 0 {
		t.rings = slab[dayRing]{}
	}
}

// compact rebuilds the table for its keys, releasing the memory of the
// others (all of it when there are none). Rings are kept as they are
// (states keep their numbers).
func (t *hotTable) compact() {
	t.peak = t.n
	if t.tab.Len() == 0 {
		t.tab.Free()
		return
	}
	t.tab.Resize(max(2*t.tab.Len(), minSlots))
}
