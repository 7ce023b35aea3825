package idtable

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"
)

// TestTableMatchesMap drives a table with random inserts, deletes, retains
// and resizes, at sizes on and off the heap and with line-aligned and
// unaligned sizes, and checks it against a Go map after each step.
func TestTableMatchesMap(t *testing.T) {
	for _, size := range []int{5, 64, 1000, 100_003, 1 << 17} { // 1<<17 slots: 2 MiB, on huge pages
		rng := rand.New(rand.NewPCG(uint64(size), 7))
		var tb Table[uint64]
		tb.Resize(size)
		want := map[uint64]uint64{}
		check := func(step string) {
			t.Helper()
			if tb.Len() != len(want) {
				t.Fatalf("size %d, %s: Len %d, want %d", size, step, tb.Len(), len(want))
			}
			for k, v := range want {
				j, ok := tb.Find(k)
				if !ok || tb.At(j).Val != v {
					t.Fatalf("size %d, %s: key %x lost", size, step, k)
				}
			}
		}
		// Keys whose low bits take 2×size values collide on their homes.
		key := func() uint64 {
			return rng.Uint64()&^0xffff_ffff | uint64(rng.IntN(2*size))*(1<<32/uint64(2*size)) | 1
		}
		rounds := 6
		if size > 50_000 {
			rounds = 2 // enough for the large table, in seconds under -race
		}
		for round := range rounds {
			for range tb.Size() * 3 / 5 {
				if tb.Len()+1 >= tb.Size() {
					break
				}
				k := key()
				j, ok := tb.Find(k)
				if !ok {
					tb.Fill(j, k)
				}
				tb.At(j).Val = k ^ 0x55
				want[k] = k ^ 0x55
			}
			check("insert")
			for k := range want {
				if rng.IntN(3) == 0 {
					j, ok := tb.Find(k)
					if !ok {
						t.Fatalf("key %x not found", k)
					}
					tb.Delete(j)
					delete(want, k)
				}
			}
			check("delete")
			seen := map[uint64]bool{}
			tb.DeleteFunc(func(s *Slot[uint64]) bool {
				if s.Key%7 == 0 {
					if seen[s.Key] {
						t.Fatalf("%x offered again after it was deleted", s.Key)
					}
					delete(want, s.Key)
				}
				seen[s.Key] = true
				return s.Key%7 == 0
			})
			for k := range want {
				if !seen[k] {
					t.Fatalf("DeleteFunc did not offer %x", k)
				}
			}
			check("delete func")
			if _, ok := tb.Find(2); ok { // even keys are never inserted
				t.Fatal("found an absent key")
			}
			calls := 0
			dropped := tb.Retain(func(s *Slot[uint64]) bool {
				calls++
				if s.Key%5 == 0 {
					return false
				}
				s.Val++
				return true
			}, func(kept int) int { return max(size, 2*kept+round) })
			n := 0
			for k, v := range want {
				if k%5 == 0 {
					delete(want, k)
					n++
				} else {
					want[k] = v + 1
				}
			}
			if dropped != n || calls != n+len(want) {
				t.Fatalf("Retain dropped %d (want %d) with %d calls (want %d)", dropped, n, calls, n+len(want))
			}
			check("retain")
		}
		tb.Free()
		if tb.Size() != 0 || tb.Len() != 0 {
			t.Fatal("Free left slots")
		}
	}
	if m := Mapped(); m != 0 {
		t.Fatalf("%d bytes still mapped after every table was freed", m)
	}
}

// TestFindReusable: the first reusable entry on the probe is offered, and
// the probe still finds a key past it.
func TestFindReusable(t *testing.T) {
	var tb Table[uint32]
	tb.Resize(64)
	// Keys with the same low 32 bits share a home.
	keys := []uint64{1<<32 | 9, 2<<32 | 9, 3<<32 | 9}
	for i, k := range keys {
		j, _ := tb.Find(k)
		tb.Fill(j, k).Val = uint32(i)
	}
	idle := func(s *Slot[uint32]) bool { return s.Val == 1 }
	j, found, reuse := tb.FindReusable(keys[2], idle)
	if !found || tb.At(j).Key != keys[2] {
		t.Fatal("the key past a reusable entry was not found")
	}
	if reuse < 0 || tb.At(reuse).Key != keys[1] {
		t.Fatalf("reuse %d, want the slot of the second key", reuse)
	}
	if _, found, reuse = tb.FindReusable(4<<32|9, idle); found || tb.At(reuse).Key != keys[1] {
		t.Fatal("an absent key's probe did not offer the reusable slot")
	}
}

// TestMappedAccounting: a large table is counted in Mapped (on Linux, where
// it lives outside the heap) until freed.
func TestMappedAccounting(t *testing.T) {
	before := Mapped()
	var tb Table[uint64]
	tb.Resize(1 << 20) // 16 MiB
	if offHeapMin < tb.Bytes() && Mapped()-before < int64(tb.Bytes()) {
		t.Fatalf("Mapped grew by %d for a table of %d bytes", Mapped()-before, tb.Bytes())
	}
	tb.Free()
	if Mapped() != before {
		t.Fatalf("Mapped %d after Free, was %d", Mapped(), before)
	}
}

// TestMappedAfterCollection: a table or an Array dropped without Free (as
// a stream's components are when it stops) is taken off Mapped once it is
// collected, as it is unmapped: a process that builds streams one after the
// other must not report the memory of those gone.
func TestMappedAfterCollection(t *testing.T) {
	before := Mapped()
	func() {
		var tb Table[uint64]
		tb.Resize(1 << 16) // 1 MiB
		a := NewArray[uint16](1 << 16)
		if offHeapMin < tb.Bytes() && Mapped()-before < int64(tb.Bytes())+int64(2*len(a.Items())) {
			t.Fatalf("Mapped grew by %d for a table of %d bytes and an Array of %d", Mapped()-before, tb.Bytes(), 2*len(a.Items()))
		}
	}()
	// Cleanups run on a goroutine of their own after the collection that
	// finds their object unreachable: collect and yield until they did.
	for range 1000 {
		if Mapped() == before {
			return
		}
		runtime.GC()
		runtime.Gosched()
	}
	t.Fatalf("Mapped %d once the table and the Array were collected, was %d", Mapped(), before)
}

// TestArray: an Array's values start at zero, keep what is written, and
// its memory is counted by Mapped, on and off the heap.
func TestArray(t *testing.T) {
	for _, n := range []int{10, 1 << 16} { // 20 bytes in the heap; 128 KiB outside it
		before := Mapped()
		a := NewArray[uint16](n)
		items := a.Items()
		if len(items) != n {
			t.Fatalf("%d values, want %d", len(items), n)
		}
		for i := range items {
			if items[i] != 0 {
				t.Fatalf("value %d is %d, want 0", i, items[i])
			}
			items[i] = uint16(i)
		}
		for i, v := range a.Items() {
			if v != uint16(i) {
				t.Fatalf("value %d reads %d", i, v)
			}
		}
		if grew := Mapped() - before; n*2 >= offHeapMin && grew < int64(n*2) {
			t.Fatalf("Mapped grew by %d for %d bytes", grew, n*2)
		}
	}
}

// BenchmarkGrow fills empty tables the way the pacer's shards grow (to
// twice the entries when three quarters full), one insert per op: the cost
// of a table's growth, mappings and first touches of its memory included;
// presized=true makes each table at its final size instead (the floor).
func BenchmarkGrow(b *testing.B) {
	type val [3]uint64 // a 32-byte slot, as the pacer's
	for _, n := range []int{2_500, 16_000} {
		for _, pre := range []bool{false, true} {
			b.Run(fmt.Sprintf("entries=%d/presized=%v", n, pre), func(b *testing.B) {
				b.ReportAllocs()
				rng := rand.New(rand.NewPCG(1, 2))
				var t Table[val]
				t.Resize(64)
				for i := 0; i < b.N; i++ {
					if t.Len() == n {
						t.Free()
						if pre {
							t.Resize(2*n + 4)
						} else {
							t.Resize(64)
						}
					}
					if 4*(t.Len()+1) > 3*t.Size() {
						t.Resize((2*(t.Len()+1) + 3) &^ 3)
					}
					h := rng.Uint64() | 1
					if j, ok := t.Find(h); !ok {
						t.Fill(j, h)
					}
				}
			})
		}
	}
}

// TestProbeLoad: Large tells tables of probeMinBytes and more from smaller
// ones; in a large table, a probe begun with Probe and walked a line at a
// time, as Load walks it, ends at the slot Find returns (the key's, or the
// empty slot that ends its probe), for keys present and absent, with slots
// of 16, 48 and 64 bytes (several to a line, straddling lines, one to a
// line), in tables whose probes wrap around their end; Load leaves every
// entry and every probe (reordered) where it was, and reports the slots of
// the keys it reached (all of them with enough rounds, none without); FindHinted is Find whatever its
// hint; Prefetch accepts only slots.
func TestProbeLoad(t *testing.T) {
	t.Run("16-byte slots", func(t *testing.T) { testProbeLoad[uint64](t) })
	t.Run("48-byte slots", func(t *testing.T) { testProbeLoad[[5]uint64](t) })
	t.Run("64-byte slots", func(t *testing.T) { testProbeLoad[[7]uint64](t) })
	var empty Table[uint64]
	if _, ok := empty.Probe(1, 0); ok {
		t.Fatal("a table without slots began a probe")
	}
	Load([]Probe[uint64]{}, 8) // nothing to walk
}

func testProbeLoad[V any](t *testing.T) {
	var small Table[V]
	small.Resize(probeMinBytes/int(unsafe.Sizeof(Slot[V]{})) - 8)
	if small.Large() {
		t.Fatalf("a table of %d bytes is Large", small.Bytes())
	}
	// The tables Large reports, with sizes that are and are not a multiple
	// of the slots in a line.
	minSlots := (probeMinBytes + int(unsafe.Sizeof(Slot[V]{})) - 1) / int(unsafe.Sizeof(Slot[V]{}))
	for _, size := range []int{minSlots, minSlots + 7, 3*minSlots + 1} {
		rng := rand.New(rand.NewPCG(uint64(size), 9))
		var tb Table[V]
		tb.Resize(size)
		if !tb.Large() {
			t.Fatalf("a table of %d bytes is not Large", tb.Bytes())
		}
		// One key in 8 has one of the last homes, so that probes run off
		// the end.
		key := func() uint64 {
			if rng.IntN(8) == 0 {
				return rng.Uint64()&^0xffff_ffff | (0xffff_ffff - uint64(rng.IntN(1<<24))) | 1
			}
			return rng.Uint64() | 1
		}
		var present []uint64
		for len(present) < size*3/4 {
			h := key()
			if j, ok := tb.Find(h); !ok {
				tb.Fill(j, h)
				present = append(present, h)
			}
		}
		keys := append(append([]uint64{}, present...), key(), key(), key())
		want := make(map[uint64]int, len(keys))
		for _, h := range keys {
			want[h], _ = tb.Find(h)
		}
		for _, h := range keys {
			p, ok := tb.Probe(h, 0)
			if !ok {
				t.Fatalf("size %d: no probe", size)
			}
			lines := 1
			for more, _ := tb.walkLine(&p); more; more, _ = tb.walkLine(&p) {
				if lines++; lines > size+1 {
					t.Fatalf("size %d: the probe of %x never ends", size, h)
				}
			}
			if int(p.j) != want[h] {
				t.Fatalf("size %d: the probe of %x ends at slot %d, Find at %d", size, h, p.j, want[h])
			}
		}
		for _, rounds := range []int{0, 1, 8, size} {
			ps := make([]Probe[V], 0, len(keys))
			found := make([]uint32, len(keys))
			for i, h := range keys {
				p, _ := tb.Probe(h, uint32(i))
				ps = append(ps, p)
				found[i] = NoHint
			}
			Load(ps, rounds)
			tags := make(map[uint32]bool, len(ps))
			for _, p := range ps {
				if tags[p.Tag()] || len(ps) != len(keys) {
					t.Fatalf("size %d, %d rounds: Load lost or doubled probe %d", size, rounds, p.Tag())
				}
				tags[p.Tag()] = true
				if j, ok := p.Found(); ok {
					found[p.Tag()] = j
				}
			}
			hits := 0
			for i, h := range keys {
				if j, _ := tb.Find(h); j != want[h] || tb.Len() != len(present) {
					t.Fatalf("size %d, %d rounds: Load moved %x", size, rounds, h)
				}
				switch {
				case found[i] == NoHint:
				case i >= len(present):
					t.Fatalf("size %d, %d rounds: Load found absent key %x in slot %d", size, rounds, h, found[i])
				case int(found[i]) != want[h]:
					t.Fatalf("size %d, %d rounds: Load found %x in slot %d, Find in %d", size, rounds, h, found[i], want[h])
				default:
					hits++
				}
			}
			if rounds > 0 && hits < len(present)/2 || rounds == 0 && hits > 0 || rounds == size && hits != len(present) {
				t.Fatalf("size %d, %d rounds: Load found %d of %d keys", size, rounds, hits, len(present))
			}
		}
		// FindHinted: a hint that holds the key is its slot; a stale, wrong,
		// out-of-range or absent hint is Find.
		for i, h := range keys {
			other := uint32(want[keys[(i+1)%len(keys)]])
			for _, hint := range []uint32{uint32(want[h]), other, NoHint, uint32(size), uint32(size) + 1<<20} {
				j, ok := tb.FindHinted(h, hint)
				if wj, wok := tb.Find(h); j != wj || ok != wok {
					t.Fatalf("size %d: FindHinted(%x, %d) = %d, %v; Find: %d, %v", size, h, hint, j, ok, wj, wok)
				}
			}
		}
		if tb.Prefetch(NoHint) || tb.Prefetch(uint32(size)) || !tb.Prefetch(uint32(size-1)) {
			t.Fatalf("size %d: Prefetch does not tell slots from others", size)
		}
	}
}
