// Package idtable is the per-id state table of the amplitude output's pacer
// and arrival guard and of device_rate_limit: an open-addressing hash table with linear
// probing, keyed by a non-zero 64-bit hash of the id (ids themselves are
// not stored), whose slots hold a fixed-size, pointer-free value.
//
// The slots live outside the Go heap where the platform allows it (mmap on
// Linux, mem_linux.go), so the collector neither scans them nor lets the
// heap grow to twice their size before collecting, and large tables are
// backed by transparent huge pages (MADV_HUGEPAGE: a lookup in a table larger
// than the caches then costs a cache miss without a TLB miss). Small tables,
// and every table on other platforms, are plain Go slices.
//
// A slot's home is chosen by multiplying the low 32 bits of the hash by the
// table's size, rounded down to a multiple of a cache line's worth of slots,
// so that a probe starts at a line boundary and a short probe stays in the
// line the lookup loads; the size need not be a power of two. Owners that
// look up many ids at once start their lookups with Probe and walk them
// together with Load, so that the misses of all their lines overlap; Load
// reports the slots it found, which FindHinted then reads first instead of
// walking the probes again (a hint is checked against the slot's key, so a
// stale one costs a lookup, never a wrong answer). A table
// is not safe for concurrent use: its owner locks around it.
package idtable

import (
	"sync/atomic"
	"unsafe"
)

// Slot is one id's entry: Key is the id's hash (0: the slot is empty) and
// Val its state, which must hold no Go pointers (the slots may live outside
// the heap, where the collector does not see them).
type Slot[V any] struct {
	Key uint64
	Val V
}

// Table is an open-addressing table of slots. The zero Table is empty and
// holds no memory; Resize gives it slots.
type Table[V any] struct {
	slots []Slot[V]
	n     int     // slots with a key
	mem   *region // the slots' memory when outside the heap, else nil
	line  uint32  // slots per cache line (a power of two), at least 1
}

// lineBytes is the cache line the probes are aligned to.
const lineBytes = 64

// Len returns the number of keys in t.
func (t *Table[V]) Len() int { return t.n }

// Size returns the number of slots of t.
func (t *Table[V]) Size() int { return len(t.slots) }

// Bytes returns the memory of t's slots.
func (t *Table[V]) Bytes() int { return len(t.slots) * int(unsafe.Sizeof(Slot[V]{})) }

// home returns the slot at which key h starts probing: the first slot of a
// cache line.
func (t *Table[V]) home(h uint64) int {
	j := uint32(uint64(uint32(h)) * uint64(len(t.slots)) >> 32)
	return int(j &^ (t.line - 1))
}

// next returns the slot after j.
func (t *Table[V]) next(j int) int {
	if j++; j == len(t.slots) {
		return 0
	}
	return j
}

// At returns slot j.
func (t *Table[V]) At(j int) *Slot[V] { return &t.slots[j] }

// Find returns the slot of key h (not 0) and true, or the empty slot that
// ends its probe and false; -1 when t has no slots. t must not be full.
func (t *Table[V]) Find(h uint64) (int, bool) { return t.FindHinted(h, NoHint) }

// NoHint is the hint of a key whose slot is not known (FindHinted).
const NoHint = ^uint32(0)

// FindHinted is Find for key h whose slot was hint when it was last looked
// up (Probe.Found; NoHint: not known): the slot is read first and, when it
// still holds h, is h's (a key is in one slot only), so that a lookup just
// walked by Load is not walked again; otherwise (the entries moved since, or
// no hint) it is Find.
func (t *Table[V]) FindHinted(h uint64, hint uint32) (int, bool) {
	if uint64(hint) < uint64(len(t.slots)) && t.slots[hint].Key == h {
		return int(hint), true
	}
	if len(t.slots) == 0 {
		return -1, false
	}
	for j := t.home(h); ; j = t.next(j) {
		switch t.slots[j].Key {
		case h:
			return j, true
		case 0:
			return j, false
		}
	}
}

// FindReusable is Find that also returns the first slot on h's probe, before
// the one returned, whose entry reusable says may be replaced (-1 when
// none): an owner that forgets idle ids overwrites that slot instead of
// filling a new one.
func (t *Table[V]) FindReusable(h uint64, reusable func(*Slot[V]) bool) (j int, found bool, reuse int) {
	reuse = -1
	if len(t.slots) == 0 {
		return -1, false, -1
	}
	for j = t.home(h); ; j = t.next(j) {
		switch t.slots[j].Key {
		case h:
			return j, true, reuse
		case 0:
			return j, false, reuse
		}
		if reuse < 0 && reusable(&t.slots[j]) {
			reuse = j
		}
	}
}

// Touch loads the home line of key h, so that the Find that follows (after
// other independent work, such as touching another table) finds it in the
// cache: the cache misses of several lookups then overlap. It must be
// called under the owner's lock, like any other method.
func (t *Table[V]) Touch(h uint64) {
	if len(t.slots) > 0 {
		_ = atomic.LoadUint64(&t.slots[t.home(h)].Key) // a load the compiler keeps
	}
}

// Fill puts key h into the empty slot j that Find returned and returns the
// slot, its value zero.
func (t *Table[V]) Fill(j int, h uint64) *Slot[V] {
	s := &t.slots[j]
	*s = Slot[V]{Key: h}
	t.n++
	return s
}

// Delete empties slot j, moving back the entries after it that could
// otherwise no longer be found from their home slot (Knuth's algorithm R):
// entries move, so slot pointers taken before are stale.
func (t *Table[V]) Delete(j int) {
	t.slots[j] = Slot[V]{}
	t.n--
	for k := t.next(j); t.slots[k].Key != 0; k = t.next(k) {
		hk := t.home(t.slots[k].Key)
		var stays bool
		if j <= k {
			stays = j < hk && hk <= k
		} else {
			stays = j < hk || hk <= k
		}
		if !stays {
			t.slots[j], t.slots[k] = t.slots[k], Slot[V]{}
			j = k
		}
	}
}

// DeleteFunc deletes, in place, the entries drop returns true for (drop may
// change the value of an entry it keeps). An entry that a deletion moves
// across the end of the table is offered twice, so drop must give the same
// answer for an entry it has kept. Unlike Retain, it never reallocates.
func (t *Table[V]) DeleteFunc(drop func(*Slot[V]) bool) {
	for j := 0; j < len(t.slots); {
		if s := &t.slots[j]; s.Key != 0 && drop(s) {
			t.Delete(j) // an entry after j may move into j: look again
			continue
		}
		j++
	}
}

// Retain calls keep once for every entry (keep may change the entry's
// value) and drops those it returns false for. Then, if any was dropped or
// size(kept) differs from the table's size, the kept entries move into a
// new table of size(kept) slots (which must exceed kept) and the old
// memory is released. It returns the number of entries dropped.
func (t *Table[V]) Retain(keep func(*Slot[V]) bool, size func(kept int) int) int {
	dropped := 0
	for j := range t.slots {
		if s := &t.slots[j]; s.Key != 0 && !keep(s) {
			s.Key = 0 // the table is rebuilt below, probes need not hold
			dropped++
		}
	}
	kept := t.n - dropped
	if n := size(kept); dropped > 0 || n != len(t.slots) {
		t.rebuild(n)
	}
	return dropped
}

// Resize moves every entry into a new table of size slots (more than Len,
// and less than 2^32: home, Probe and FindHinted number slots in 32 bits),
// releasing the old memory.
func (t *Table[V]) Resize(size int) { t.rebuild(size) }

func (t *Table[V]) rebuild(size int) {
	old, oldMem := t.slots, t.mem
	t.slots, t.mem = alloc[Slot[V]](size)
	t.line = max(1, uint32(lineBytes/unsafe.Sizeof(Slot[V]{})))
	if size < int(t.line) || size%int(t.line) != 0 {
		t.line = 1 // the homes must stay within the table
	}
	t.n = 0
	for i := range old {
		if s := &old[i]; s.Key != 0 {
			j, _ := t.Find(s.Key)
			t.slots[j] = *s
			t.n++
		}
	}
	oldMem.free()
}

// Free releases t's memory; t is then empty.
func (t *Table[V]) Free() {
	t.mem.free()
	*t = Table[V]{}
}

// mapped is the memory of all tables outside the Go heap.
var mapped atomic.Int64

// Mapped returns the bytes of table memory held outside the Go heap by the
// whole process (0 where tables live in the heap): what a memory figure
// must add to the heap's.
func Mapped() int64 { return mapped.Load() }

// Probe is a lookup in progress, for Load: its key, the slot it has
// reached, whose line has been asked for, and its owner's tag, with
// hitBit once Load has reached the key.
type Probe[V any] struct {
	t   *Table[V]
	h   uint64
	j   uint32
	tag uint32
}

// hitBit marks, in a Probe's tag, a probe that has reached its key.
const hitBit = 1 << 31

// Probe starts a lookup of key h (not 0) for Load, tagged tag (below
// 2^31: the owner's name for the lookup, such as the index of its key): it
// asks for h's home line without waiting for it. ok is false when t has no
// slots.
func (t *Table[V]) Probe(h uint64, tag uint32) (p Probe[V], ok bool) {
	if len(t.slots) == 0 {
		return Probe[V]{}, false
	}
	j := t.home(h)
	prefetch(unsafe.Pointer(&t.slots[j]))
	return Probe[V]{t: t, h: h, j: uint32(j), tag: tag &^ hitBit}, true
}

// Tag returns the tag p was begun with.
func (p *Probe[V]) Tag() uint32 { return p.tag &^ hitBit }

// Found returns the slot of p's key and true when Load reached it, for
// FindHinted; false when the key is absent or Load stopped before it.
func (p *Probe[V]) Found() (uint32, bool) { return p.j, p.tag&hitBit != 0 }

// Prefetch asks for the line of slot j without waiting for it, and reports
// whether j is a slot of t (NoHint is not): for an owner that keeps the
// slots Load found (FindHinted's hints) and will look them up again.
func (t *Table[V]) Prefetch(j uint32) bool {
	if uint64(j) >= uint64(len(t.slots)) {
		return false
	}
	prefetch(unsafe.Pointer(&t.slots[j]))
	return true
}

// Large reports whether t is large enough (probeMinBytes) for its lookups
// to be worth walking with Probe and Load: the lines of a smaller table stay
// in the caches, and walking its probes costs more than the misses it
// saves (Touch is enough). An owner of many tables of one kind, balanced by
// hash, can ask any one of them.
func (t *Table[V]) Large() bool { return t.Bytes() >= probeMinBytes }

// probeMinBytes is the smallest table Large reports.
const probeMinBytes = 64 << 10

// Rounds is the number of rounds the table's owners give Load: in a table
// 70% full with one slot per line (device_rate_limit's at 10^6 keys), 3.5%
// of keys are 8 lines or more past their home, and only those few then take
// the rest of their misses in turn.
const Rounds = 8

// Load walks the probes ps (begun with Table.Probe), for at most rounds
// lines each, until each has reached its key or an empty slot: every line
// a probe goes on to is asked for at once, and read in the next round,
// after the other probes' lines have been asked for too. The lines of all
// those lookups are then in the cache, having cost about one memory latency
// per round instead of one per line and lookup: with linear probing in a
// table larger than the caches, a third of the keys are not in their home
// line, and each line further would otherwise be a miss in turn. (This is
// group prefetching, as hash joins do it: Chen et al., "Improving Hash Join
// Performance through Prefetching", ICDE 2004.) On return, ps holds the
// same probes in another order, and Found tells the slots of the keys
// reached. The tables must not change between the Probe calls and Load.
func Load[V any](ps []Probe[V], rounds int) {
	for ; rounds > 0 && len(ps) > 0; rounds-- {
		k := 0 // ps[:k]: the probes going on to another round
		for i := range ps {
			p := &ps[i]
			switch more, hit := p.t.walkLine(p); {
			case more:
				ps[k], ps[i] = ps[i], ps[k]
				k++
			case hit:
				p.tag |= hitBit
			}
		}
		ps = ps[:k]
	}
}

// walkLine reads p's slots to the end of its line: it returns false when
// the probe ends there (hit: at p's key, in slot p.j), else moves p to the
// next line, which it asks for.
func (t *Table[V]) walkLine(p *Probe[V]) (more, hit bool) {
	for {
		switch t.slots[p.j].Key {
		case p.h:
			return false, true
		case 0:
			return false, false
		}
		p.j = uint32(t.next(int(p.j)))
		if uint32(p.j)&(t.line-1) == 0 {
			prefetch(unsafe.Pointer(&t.slots[p.j]))
			return true, false
		}
	}
}
