package ratelimit

import "github.com/opencurrents/currents-amplitude/plugins/internal/idtable"

// coldTable holds the compact daily counts of idle keys in an idtable
// (outside the Go heap on Linux) of 16-byte slots, kept between 53% and 80%
// full (about 20 to 30 bytes per key, not doubled by the collector), growing
// by half instead of doubling. Key 0, which idtable keeps for empty slots,
// has its value beside the table.
type coldTable struct {
	tab  idtable.Table[uint32] // values: see packCold
	n    int                   // keys in the table, key 0 included
	zero uint32                // value of key 0, when hasZero
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

// touch loads the slot where key h starts its probe (see idtable's Touch).
func (t *coldTable) touch(h uint64) {
	t.tab.Touch(h)
}

// coldSize returns a table size of about n slots (a multiple of 4, so that
// probes start at cache line boundaries).
func coldSize(n int) int {
	return (n + 3) &^ 3
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
	if j, ok := t.tab.Find(h); ok {
		return t.tab.At(j).Val, true
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
	j, ok := t.tab.Find(h)
	if !ok {
		return 0, false
	}
	v := t.tab.At(j).Val
	t.tab.Delete(j)
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
	if (t.tab.Len()+1)*5 > t.tab.Size()*4 {
		t.tab.Resize(coldSize(max(t.tab.Size()*3/2, 16)))
	}
	j, ok := t.tab.Find(h)
	if !ok {
		t.tab.Fill(j, h)
		t.n++
	}
	t.tab.At(j).Val = v
}

// retain removes the keys keep returns false for, and rebuilds a table that
// became less than a quarter full, giving its memory back.
func (t *coldTable) retain(keep func(h uint64, v uint32) bool) {
	if t.hasZero && !keep(0, t.zero) {
		t.zero, t.hasZero = 0, false
		t.n--
	}
	t.tab.Retain(func(sl *idtable.Slot[uint32]) bool {
		return keep(sl.Key, sl.Val)
	}, func(kept int) int {
		if kept == t.tab.Len() && kept*4 >= t.tab.Size() {
			return t.tab.Size()
		}
		if kept == 0 {
			return 0
		}
		return coldSize(max(kept*3/2, 16))
	})
	t.n = t.tab.Len()
	if t.hasZero {
		t.n++
	}
}
