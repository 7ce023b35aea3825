package ratelimit

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestColdTableMatchesMap runs random puts, takes and retains against a Go
// map. Keys share their low 32 bits often (the same home slot), half of them
// home in the last slot (their probes wrap around), and 0 is one of them.
func TestColdTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var tab coldTable
	want := map[uint64]uint32{}
	key := func() uint64 {
		if rng.IntN(500) == 0 {
			return 0
		}
		low := rng.Uint64N(8) << 29
		if rng.IntN(2) == 0 {
			low = 1<<32 - 1 - rng.Uint64N(4)
		}
		return rng.Uint64N(5000)<<32 | low
	}
	for step := range 50_000 {
		h := key()
		switch op := rng.IntN(20); {
		case op < 10:
			v := rng.Uint32()
			tab.put(h, v)
			want[h] = v
		case op < 16:
			v, ok := tab.take(h)
			wv, wok := want[h]
			require.Equal(t, wok, ok, "step %d: take %x", step, h)
			require.Equal(t, wv, v, "step %d: take %x", step, h)
			delete(want, h)
		case op < 19:
			v, ok := tab.get(h)
			wv, wok := want[h]
			require.Equal(t, wok, ok, "step %d: get %x", step, h)
			require.Equal(t, wv, v, "step %d: get %x", step, h)
		default:
			drop := rng.Uint32N(4)
			tab.retain(func(_ uint64, v uint32) bool { return v%4 != drop })
			for k, v := range want {
				if v%4 == drop {
					delete(want, k)
				}
			}
		}
		require.Equal(t, len(want), tab.len(), "step %d", step)
		if tab.tab.Size() > 0 {
			require.LessOrEqual(t, tab.len()*5, tab.tab.Size()*4+5, "step %d: at most 80%% full", step)
		}
	}
	for k, v := range want {
		got, ok := tab.get(k)
		require.True(t, ok, "%x", k)
		assert.Equal(t, v, got, "%x", k)
	}

	tab.retain(func(uint64, uint32) bool { return false })
	assert.Zero(t, tab.len())
	assert.Zero(t, tab.tab.Size(), "memory given back")
	_, ok := tab.get(42)
	assert.False(t, ok)
}

func TestPackCold(t *testing.T) {
	const now = 493_000 // an hour in 2026
	tests := []struct {
		name         string
		hour, count  uint32
		wantHour     uint32
		wantCount    uint32
		resolvedWith uint32
	}{
		{"same hour", now, 1, now, 1, now},
		{"24 hours ago", now - 24, 7812, now - 24, 7812, now},
		{"clock stepped back an hour", now + 1, 3, now + 1, 3, now},
		{"2047 hours ago", now - 2047, 2, now - 2047, 2, now},
		{"largest count", now - 30, coldMaxCount, now - 30, coldMaxCount, now},
		{"hour across a 4096 boundary", 4095, 9, 4095, 9, 4096 + 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, c := unpackCold(packCold(tt.hour, tt.count), tt.resolvedWith)
			assert.Equal(t, tt.wantHour, h)
			assert.Equal(t, tt.wantCount, c)
		})
	}
}
