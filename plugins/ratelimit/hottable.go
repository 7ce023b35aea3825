package ratelimit

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

// hotTable holds the full states of one shard's active keys, in a slab, found
// through an open-addressing index with linear probing whose slots hold state
// numbers and an 8-bit tag of the key's hash; each state carries its own key
// hash. This costs about 8 bytes per key on top of the state, against 20 to
// 40 for a Go map. The tag spares a probe the load of a state that is not
// the key's (255 times in 256): with a million keys every state load is a
// cache miss, so a lookup costs one miss in the index and one in the state.
// The few keys whose daily count is large also own an hourly ring from a
// second slab.
type hotTable struct {
	states slab[keyState]
	rings  slab[dayRing]
	slots  []uint32 // tag<<slotIndexBits | state number + 1, 0 when empty; len is a power of two
	n      int      // keys in the table
	peak   int      // largest n since the table was last rebuilt
}

const minSlots = 64

// A slot holds a state number + 1 in its low slotIndexBits bits (so a shard
// holds at most 2^24-1 keys, 10^9 over the 64 shards: 56 GB of states) and a
// tag of the key's hash above them. The tag is taken from hash bits that
// neither the shard (the top 6) nor the home slot (the low ones) use.
const (
	slotIndexBits = 24
	slotIndexMask = 1<<slotIndexBits - 1
	tagShift      = 50
)

// slotTag returns the tag bits of hash h, in place in a slot.
func slotTag(h uint64) uint32 {
	return uint32(uint8(h>>tagShift)) << slotIndexBits
}

// find returns the slot of hash h, or the empty slot where it would go.
func (t *hotTable) find(h uint64) (uint32, bool) {
	mask := uint32(len(t.slots) - 1)
	tag := slotTag(h)
	for j := uint32(h) & mask; ; j = (j + 1) & mask {
		v := t.slots[j]
		if v == 0 {
			return j, false
		}
		if v&^slotIndexMask == tag && t.states.at(v&slotIndexMask-1).hash == h {
			return j, true
		}
	}
}

// stateAt returns the state slot j points to.
func (t *hotTable) stateAt(j uint32) *keyState {
	return t.states.at(t.slots[j]&slotIndexMask - 1)
}

// get returns the state of key h, or nil.
func (t *hotTable) get(h uint64) *keyState {
	if t.n == 0 {
		return nil
	}
	if j, ok := t.find(h); ok {
		return t.stateAt(j)
	}
	return nil
}

// insert adds key h, which must be absent, and returns its (empty) state.
func (t *hotTable) insert(h uint64) *keyState {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(len(t.slots)*2, minSlots))
	}
	i := t.states.alloc()
	j, _ := t.find(h)
	t.slots[j] = slotTag(h) | (i + 1)
	t.n++
	t.peak = max(t.peak, t.n)
	st := t.states.at(i)
	st.hash, st.live = h, true
	return st
}

// resize rebuilds the index with size slots.
func (t *hotTable) resize(size int) {
	old := t.slots
	t.slots = make([]uint32, size)
	for _, v := range old {
		if v != 0 {
			j, _ := t.find(t.states.at(v&slotIndexMask - 1).hash)
			t.slots[j] = v
		}
	}
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

// sweep calls keep for every state and removes the keys it returns false
// for, releasing their rings.
func (t *hotTable) sweep(keep func(st *keyState) bool) {
	for i := range t.states.used {
		st := t.states.at(i)
		if !st.live || keep(st) {
			continue
		}
		t.fold(st)
		j, _ := t.find(st.hash)
		t.deleteSlot(j)
		st.live = false
		t.states.release(i)
	}
	if t.rings.live() == 0 {
		t.rings = slab[dayRing]{}
	}
}

// deleteSlot empties slot j.
func (t *hotTable) deleteSlot(j uint32) {
	mask := uint32(len(t.slots) - 1)
	t.slots[j] = 0
	backshift(j, func(k uint32) uint32 { return (k + 1) & mask }, func(k uint32) (uint32, bool) {
		v := t.slots[k]
		if v == 0 {
			return 0, false
		}
		return uint32(t.states.at(v&slotIndexMask-1).hash) & mask, true
	}, func(dst, src uint32) {
		t.slots[dst], t.slots[src] = t.slots[src], 0
	})
	t.n--
}

// compact rebuilds the table with only its live keys, releasing the memory
// of the others. Rings are kept as they are (states keep their numbers).
func (t *hotTable) compact() {
	old := *t
	*t = hotTable{rings: old.rings}
	size := minSlots
	for size*3 < old.n*4*2 {
		size *= 2
	}
	t.slots = make([]uint32, size)
	for i := range old.states.used {
		if st := old.states.at(i); st.live {
			*t.insert(st.hash) = *st
		}
	}
}
