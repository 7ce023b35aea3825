package profile

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBudgetNeverExceedsTheWindow offers calls far faster than the budget
// (1000/s for 5 minutes) and checks that no 60-second window holds more than
// requests_per_minute granted calls, and that the budget is spent fully.
func TestBudgetNeverExceedsTheWindow(t *testing.T) {
	for _, tc := range []struct{ perMinute, burst int }{{600, 20}, {500, 10}, {60, 1}, {12, 11}} {
		b := newBudget(tc.perMinute, tc.burst)
		start := time.Unix(1700000000, 0)
		var granted []time.Time
		for now := start; now.Before(start.Add(5 * time.Minute)); now = now.Add(time.Millisecond) {
			if at, ok := b.reserve(now, now, 0); ok {
				require.Equal(t, now, at)
				granted = append(granted, at)
			}
		}
		most := 0
		for i, j := 0, 0; j < len(granted); j++ {
			for granted[j].Sub(granted[i]) >= time.Minute {
				i++
			}
			most = max(most, j-i+1)
		}
		assert.LessOrEqual(t, most, tc.perMinute, "%+v", tc)
		// 5 minutes: the burst plus the steady rate, within one call.
		want := tc.burst + 5*(tc.perMinute-tc.burst)
		assert.InDelta(t, want, len(granted), 1, "%+v", tc)
	}
}

func TestBudgetReserveAhead(t *testing.T) {
	b := newBudget(70, 10) // one call a second after a burst of 10
	now := time.Unix(0, 0)
	for i := 0; i < 10; i++ {
		_, ok := b.reserve(now, now, 0)
		require.True(t, ok)
	}
	_, ok := b.reserve(now, now.Add(500*time.Millisecond), 0)
	assert.False(t, ok, "the next call is a second away")
	at, ok := b.reserve(now, now.Add(2*time.Second), 0)
	require.True(t, ok)
	assert.Equal(t, now.Add(time.Second), at)

	// keep: prewarm leaves 5 calls of the burst to serving lookups.
	b = newBudget(70, 10)
	n := 0
	for ; ; n++ {
		if _, ok := b.reserve(now, now, 5); !ok {
			break
		}
	}
	assert.Equal(t, 5, n)
	for i := 0; i < 5; i++ {
		_, ok := b.reserve(now, now, 0)
		assert.True(t, ok, "the kept calls are there for serving lookups")
	}
}

func TestBudgetPause(t *testing.T) {
	b := newBudget(500, 10)
	now := time.Unix(0, 0)
	b.pause(now.Add(10 * time.Second))
	b.pause(now.Add(time.Second)) // an earlier pause does not shorten it
	assert.True(t, b.paused(now.Add(9*time.Second)))
	at, ok := b.reserve(now, now.Add(time.Second), 0)
	assert.False(t, ok)
	assert.Equal(t, now.Add(10*time.Second), at)
	_, ok = b.reserve(now.Add(10*time.Second), now.Add(10*time.Second), 0)
	assert.True(t, ok)
}
