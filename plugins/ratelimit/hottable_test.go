package ratelimit

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHotTableMatchesMap runs random inserts, removals, ring allocations and
// compactions against a Go map. Hashes share their low bits often, half of them at the
// end of the index, so that probe sequences collide and wrap around it.
func TestHotTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var tab hotTable
	want := map[uint64]uint32{} // hash -> secTotal, used as a payload
	key := func() uint64 {      // the home is the low 32 bits times the size, over 2^32
		low := rng.Uint64N(4) << 24
		if rng.IntN(2) == 0 {
			low = 1<<32 - 1 - low
		}
		return rng.Uint64N(300)<<32 | low
	}
	for step := range 10_000 {
		h := key()
		switch op := rng.IntN(10); {
		case op < 5:
			if st := tab.get(h); st != nil {
				st.secTotal++
				want[h]++
				if r := tab.ring(st); r != nil || rng.IntN(4) == 0 {
					tab.spread(st)[0] = st.secTotal // the ring mirrors the payload
				}
			} else {
				_, ok := want[h]
				require.False(t, ok, "step %d: %x lost", step, h)
				tab.insert(h).secTotal = 1
				want[h] = 1
			}
		case op < 9:
			drop := map[uint64]bool{h: true, key(): true}
			tab.sweep(func(st *keyState) bool { return !drop[st.hash] })
			for d := range drop {
				delete(want, d)
			}
		default:
			if rng.IntN(100) == 0 {
				tab.compact()
			}
		}
		require.Equal(t, len(want), tab.n)
	}
	rings := 0
	for h, n := range want {
		st := tab.get(h)
		require.NotNil(t, st, "%x", h)
		assert.Equal(t, n, st.secTotal, "%x", h)
		if r := tab.ring(st); r != nil {
			rings++
			assert.Equal(t, n, r[0], "%x", h)
		}
	}
	assert.NotZero(t, rings)
	assert.Equal(t, rings, tab.rings.live(), "removed keys released their rings")
	assert.Nil(t, tab.get(1<<63))
}

func TestSizes(t *testing.T) {
	assert.Equal(t, uintptr(56), unsafe.Sizeof(keyState{}))
	assert.Zero(t, unsafe.Sizeof(shard{})%64, "shards fill whole cache lines")
}

// TestHotTableWrap removes entries of a probe run that wraps around the end
// of the index (homes 63 and 0 of 64 slots), in every order.
func TestHotTableWrap(t *testing.T) {
	// The low 32 bits of a hash times the size, over 2^32, are its home
	// slot.
	homed := func(id, home uint64) uint64 { return id<<32 | home<<26 }
	keys := []uint64{homed(1, 0), homed(2, 63), homed(3, 63), homed(4, 0), homed(5, 62)}
	for del := range keys {
		var tab hotTable
		for _, h := range keys {
			tab.insert(h)
		}
		require.Equal(t, minSlots, tab.tab.Size())
		tab.sweep(func(st *keyState) bool { return st.hash != keys[del] })
		for i, h := range keys {
			if i != del {
				assert.NotNil(t, tab.get(h), "removing %x lost %x", keys[del], h)
			}
		}
		assert.Nil(t, tab.get(keys[del]))
	}
}

// TestHotTableHomes: the keys of TestHotTableWrap home where it says.
func TestHotTableHomes(t *testing.T) {
	var tab hotTable
	for _, home := range []uint64{0, 62, 63} {
		h := 7<<32 | home<<26
		tab.insert(h)
		j, ok := tab.tab.Find(h)
		require.True(t, ok)
		assert.Equal(t, int(home), j)
	}
}
