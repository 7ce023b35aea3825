package ratelimit

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHotTableMatchesMap runs random inserts, removals and compactions
// against a Go map. Hashes share their low bits often, so that probe
// sequences collide and wrap around the index.
func TestHotTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var tab hotTable
	want := map[uint64]uint32{} // hash -> secTotal, used as a payload
	key := func() uint64 { return rng.Uint64N(3000)<<20 | rng.Uint64N(4) }
	for step := range 200_000 {
		h := key()
		switch op := rng.IntN(10); {
		case op < 5:
			if st := tab.get(h); st != nil {
				st.secTotal++
				want[h]++
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
	for h, n := range want {
		st := tab.get(h)
		require.NotNil(t, st, "%x", h)
		assert.Equal(t, n, st.secTotal, "%x", h)
	}
	assert.Nil(t, tab.get(1<<63))
}

func TestSizes(t *testing.T) {
	assert.Equal(t, uintptr(152), unsafe.Sizeof(keyState{}))
	assert.Equal(t, uintptr(128), unsafe.Sizeof(shard{}))
}
