package ratelimit

// coldTable holds the compact daily counts of idle keys: an open-addressing
// table with linear probing over two parallel arrays, 12 bytes per slot, kept
// between 53% and 80% full (about 15 to 23 bytes per key, against 20 to 40
// for a Go map of the same entries). Slots are chosen by multiplying the low
// 32 bits of the hash by the table size, so the table grows by half instead
// of doubling.
type coldTable struct {
	keys []uint64 // 0 marks an empty slot; key 0 itself is kept in zero
	vals []uint32 // see packCold
	n    int      // keys in the table, key 0 included
	zero uint32   // value of key 0, when hasZero
	// hasZero says whether key 0 is in the table.
	hasZero bool
}

// A cold value packs a count (high 20 bits) and the unix hour it is dated
// to, modulo 4096 (low 12 bits): resolved against the current hour, that
// hour is exact for any value stored within 2048 hours of it. Counts expire
// after 25 hours and the table is scanned every hour, so only a clock that
// jumps by months could misread one, and then as a later hour: the count
// lingers longer, on the strict side.
const (
	coldHourBits = 12
	coldMaxCount = 1<<(32-coldHourBits) - 1
)

// packCold packs a daily count of at most coldMaxCount and its hour.
func packCold(hour, count uint32) uint32 {
	return count<<coldHourBits | hour&(1<<coldHourBits-1)
}

// unpackCold returns the hour and the count packed in v, the hour resolved
// against the current hour now.
func unpackCold(v, now uint32) (hour, count uint32) {
	d := int32((now-v)<<(32-coldHourBits)) >> (32 - coldHourBits)
	return now - uint32(d), v >> coldHourBits
}

// home returns the slot at which key h starts probing.
func (t *coldTable) home(h uint64) uint32 {
	return uint32(uint64(uint32(h)) * uint64(len(t.keys)) >> 32)
}

// next returns the slot after j.
func (t *coldTable) next(j uint32) uint32 {
	if j++; j == uint32(len(t.keys)) {
		return 0
	}
	return j
}

// find returns the slot of key h (not 0), or the empty slot where it would go.
func (t *coldTable) find(h uint64) (uint32, bool) {
	for j := t.home(h); ; j = t.next(j) {
		switch t.keys[j] {
		case h:
			return j, true
		case 0:
			return j, false
		}
	}
}

// len returns the number of keys.
func (t *coldTable) len() int {
	return t.n
}

// get returns the value of key h.
func (t *coldTable) get(h uint64) (uint32, bool) {
	if h == 0 {
		return t.zero, t.hasZero
	}
	if len(t.keys) == 0 {
		return 0, false
	}
	if j, ok := t.find(h); ok {
		return t.vals[j], true
	}
	return 0, false
}

// take removes key h and returns its value.
func (t *coldTable) take(h uint64) (uint32, bool) {
	if h == 0 {
		v, ok := t.zero, t.hasZero
		if ok {
			t.zero, t.hasZero = 0, false
			t.n--
		}
		return v, ok
	}
	if len(t.keys) == 0 {
		return 0, false
	}
	j, ok := t.find(h)
	if !ok {
		return 0, false
	}
	v := t.vals[j]
	t.keys[j] = 0
	backshift(j, t.next, func(k uint32) (uint32, bool) {
		return t.home(t.keys[k]), t.keys[k] != 0
	}, func(dst, src uint32) {
		t.keys[dst], t.vals[dst], t.keys[src] = t.keys[src], t.vals[src], 0
	})
	t.n--
	return v, true
}

// put sets the value of key h.
func (t *coldTable) put(h uint64, v uint32) {
	if h == 0 {
		if !t.hasZero {
			t.n++
		}
		t.zero, t.hasZero = v, true
		return
	}
	if (t.n+1)*5 > len(t.keys)*4 {
		t.resize(max(len(t.keys)*3/2, 16), nil)
	}
	j, ok := t.find(h)
	if !ok {
		t.keys[j] = h
		t.n++
	}
	t.vals[j] = v
}

// retain removes the keys keep returns false for (keep is called more than
// once per key and must answer the same), and rebuilds a table that became
// less than a quarter full, giving its memory back.
func (t *coldTable) retain(keep func(h uint64, v uint32) bool) {
	if t.hasZero && !keep(0, t.zero) {
		t.zero, t.hasZero = 0, false
		t.n--
	}
	kept := 0
	for j, h := range t.keys {
		if h != 0 && keep(h, t.vals[j]) {
			kept++
		}
	}
	if t.hasZero {
		kept++
	}
	if kept == t.n && t.n*4 >= len(t.keys) {
		return
	}
	size := kept * 3 / 2
	if kept > 0 {
		size = max(size, 16)
	}
	t.resize(size, keep)
}

// resize rebuilds the table with size slots, keeping only the keys keep
// returns true for (all of them when keep is nil).
func (t *coldTable) resize(size int, keep func(h uint64, v uint32) bool) {
	old, oldVals := t.keys, t.vals
	t.keys, t.vals = make([]uint64, size), make([]uint32, size)
	t.n = 0
	if t.hasZero {
		t.n = 1
	}
	for j, h := range old {
		if h != 0 && (keep == nil || keep(h, oldVals[j])) {
			k, _ := t.find(h)
			t.keys[k], t.vals[k] = h, oldVals[j]
			t.n++
		}
	}
}

// backshift fills the hole at slot j of a linear-probing table by moving
// back the entries after it that could otherwise no longer be found from
// their home slot (Knuth's algorithm R). next steps to the following slot,
// home returns the home slot of the entry in slot k (false when k is
// empty), and move moves the entry of slot src to slot dst, emptying src.
func backshift(j uint32, next func(uint32) uint32, home func(k uint32) (uint32, bool), move func(dst, src uint32)) {
	for k := next(j); ; k = next(k) {
		hk, ok := home(k)
		if !ok {
			return
		}
		var stays bool
		if j <= k {
			stays = j < hk && hk <= k
		} else {
			stays = j < hk || hk <= k
		}
		if !stays {
			move(j, k)
			j = k
		}
	}
}
