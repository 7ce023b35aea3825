package ratelimit

// hotTable holds the full states of one shard's active keys. States live in
// fixed-size chunks (stable addresses, little slack, no pointers for the GC to
// scan) and are found through an open-addressing index with linear probing
// whose slots hold state numbers; each state carries its own key hash. This
// costs about 8 bytes per key on top of the state, against 20 to 40 for a Go
// map.
type hotTable struct {
	chunks [][]keyState
	used   uint32   // states ever handed out
	free   []uint32 // state numbers back for reuse
	slots  []uint32 // state number + 1, 0 when empty; len is a power of two
	n      int      // keys in the table
	peak   int      // largest n since the table was last rebuilt
}

const (
	chunkBits = 6
	chunkSize = 1 << chunkBits
	minSlots  = 64
)

// at returns state i.
func (t *hotTable) at(i uint32) *keyState {
	return &t.chunks[i>>chunkBits][i%chunkSize]
}

// find returns the slot of hash h, or the empty slot where it would go.
func (t *hotTable) find(h uint64) (uint32, bool) {
	mask := uint32(len(t.slots) - 1)
	for j := uint32(h) & mask; ; j = (j + 1) & mask {
		v := t.slots[j]
		if v == 0 {
			return j, false
		}
		if t.at(v-1).hash == h {
			return j, true
		}
	}
}

// get returns the state of key h, or nil.
func (t *hotTable) get(h uint64) *keyState {
	if t.n == 0 {
		return nil
	}
	if j, ok := t.find(h); ok {
		return t.at(t.slots[j] - 1)
	}
	return nil
}

// insert adds key h, which must be absent, and returns its (empty) state.
func (t *hotTable) insert(h uint64) *keyState {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(len(t.slots)*2, minSlots))
	}
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		if t.used == uint32(len(t.chunks))*chunkSize {
			t.chunks = append(t.chunks, make([]keyState, chunkSize))
		}
		i = t.used
		t.used++
	}
	j, _ := t.find(h)
	t.slots[j] = i + 1
	t.n++
	t.peak = max(t.peak, t.n)
	st := t.at(i)
	*st = keyState{hash: h, live: true}
	return st
}

// resize rebuilds the index with size slots.
func (t *hotTable) resize(size int) {
	old := t.slots
	t.slots = make([]uint32, size)
	for _, v := range old {
		if v != 0 {
			j, _ := t.find(t.at(v - 1).hash)
			t.slots[j] = v
		}
	}
}

// sweep calls keep for every state and removes the keys it returns false
// for.
func (t *hotTable) sweep(keep func(st *keyState) bool) {
	for i := range t.used {
		st := t.at(i)
		if !st.live || keep(st) {
			continue
		}
		j, _ := t.find(st.hash)
		t.deleteSlot(j)
		st.live = false
		t.free = append(t.free, i)
	}
}

// deleteSlot empties slot j, shifting back the entries after it that would
// otherwise no longer be found (Knuth's algorithm R).
func (t *hotTable) deleteSlot(j uint32) {
	mask := uint32(len(t.slots) - 1)
	t.slots[j] = 0
	for k := (j + 1) & mask; t.slots[k] != 0; k = (k + 1) & mask {
		home := uint32(t.at(t.slots[k]-1).hash) & mask
		var stays bool
		if j <= k {
			stays = j < home && home <= k
		} else {
			stays = j < home || home <= k
		}
		if !stays {
			t.slots[j], t.slots[k] = t.slots[k], 0
			j = k
		}
	}
	t.n--
}

// compact rebuilds the table with only its live keys, releasing the memory
// of the others.
func (t *hotTable) compact() {
	old := *t
	*t = hotTable{}
	size := minSlots
	for size*3 < old.n*4*2 {
		size *= 2
	}
	t.slots = make([]uint32, size)
	for i := range old.used {
		if st := old.at(i); st.live {
			*t.insert(st.hash) = *st
		}
	}
}
