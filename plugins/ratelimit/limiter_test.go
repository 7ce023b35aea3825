package ratelimit

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/idtable"
)

// t0 is an arbitrary start time (unix nanoseconds), in the middle of an hour.
var t0 = time.Date(2026, 11, 29, 13, 27, 41, 123456789, time.UTC).UnixNano()

// maxInWindow returns the largest number of times in any window [t, t+w).
func maxInWindow(times []int64, w int64) int {
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	best, lo := 0, 0
	for hi := range times {
		for times[hi]-times[lo] >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

func TestLimiterWindows(t *testing.T) {
	tests := []struct {
		name           string
		perSec, perDay uint32
		meanGap        time.Duration // mean gap between attempts (exponential)
		span           time.Duration
	}{
		{"bursty at 30/s", 30, 1 << 30, 5 * time.Millisecond, 20 * time.Second},
		{"just over 30/s", 30, 1 << 30, 30 * time.Millisecond, 60 * time.Second},
		{"one per second", 1, 1 << 30, 300 * time.Millisecond, 60 * time.Second},
		{"batch 1000/s", 1000, 1 << 30, 200 * time.Microsecond, 5 * time.Second},
		{"daily 500 over 3 days", 30, 500, 90 * time.Second, 72 * time.Hour},
		{"daily with bursts", 5, 2000, 5 * time.Second, 50 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			l := newLimiter(tt.perSec, tt.perDay, t0)
			hs := []uint64{rng.Uint64()}
			var passed []int64
			for now := t0; now < t0+int64(tt.span); now += int64(rng.ExpFloat64() * float64(tt.meanGap)) {
				v := l.take(now, hs)
				if v.reason == reasonNone {
					passed = append(passed, now)
					continue
				}
				assert.Greater(t, v.retryAt, now, "retry time must be in the future")
			}
			require.NotEmpty(t, passed)
			assert.LessOrEqual(t, maxInWindow(passed, int64(time.Second)), int(tt.perSec), "per second")
			assert.LessOrEqual(t, maxInWindow(passed, int64(24*time.Hour)), int(tt.perDay), "per day")
		})
	}
}

func TestLimiterThroughputNotTooStrict(t *testing.T) {
	// Attempting every ms for 60 s, a key at 30/s must pass at least
	// 30/1.1 per second on average.
	l := newLimiter(30, 1<<30, t0)
	hs := []uint64{42}
	n := 0
	for now := t0; now < t0+int64(60*time.Second); now += int64(time.Millisecond) {
		if l.take(now, hs).reason == reasonNone {
			n++
		}
	}
	assert.GreaterOrEqual(t, n, 60*30*10/11)
	assert.LessOrEqual(t, n, 60*30)
}

func TestLimiterRetryAt(t *testing.T) {
	tests := []struct {
		name           string
		perSec, perDay uint32
		gap            time.Duration
		want           reason
	}{
		{"per second", 3, 1000, 10 * time.Millisecond, reasonPerSecond},
		{"per day", 1000, 5, time.Minute, reasonPerDay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(tt.perSec, tt.perDay, t0)
			hs := []uint64{7}
			now := t0
			var v verdict
			for v = l.take(now, hs); v.reason == reasonNone; v = l.take(now, hs) {
				now += int64(tt.gap)
			}
			require.Equal(t, tt.want, v.reason)
			assert.Equal(t, tt.want, l.take(v.retryAt-1, hs).reason, "one ns before the retry time")
			assert.Equal(t, reasonNone, l.take(v.retryAt, hs).reason, "at the retry time")
		})
	}
}

func TestLimiterEveryKeyMustHaveRoom(t *testing.T) {
	l := newLimiter(2, 100, t0)
	device, user1, user2 := uint64(1), uint64(2)<<58|2, uint64(3)<<58|3
	require.Equal(t, reasonNone, l.take(t0, []uint64{device, user1}).reason)
	require.Equal(t, reasonNone, l.take(t0, []uint64{device, user2}).reason)
	v := l.take(t0, []uint64{user1, device})
	assert.Equal(t, reasonPerSecond, v.reason)
	assert.Equal(t, 1, v.key, "the device is the key over the limit")
	// The refused event counted against no key: user1 still has one slot.
	assert.Equal(t, reasonNone, l.take(t0, []uint64{user1}).reason)
	assert.Equal(t, reasonPerSecond, l.take(t0, []uint64{user1}).reason)
	// Same shard twice (and the same key twice) must not deadlock.
	assert.Equal(t, reasonNone, l.take(t0, []uint64{5, 6, 5 | 1<<58, 6}).reason)
}

func TestLimiterSweep(t *testing.T) {
	l := newLimiter(30, 640, t0)
	quiet, busy := []uint64{1}, []uint64{2}
	for i := range 10 {
		require.Equal(t, reasonNone, l.take(t0, quiet).reason)
		require.Equal(t, reasonNone, l.take(t0+int64(i)*int64(time.Second), busy).reason)
	}
	require.Equal(t, 2, l.sweep(t0+int64(9*time.Second)))
	s := l.shardOf(1)
	_, cold := s.cold.get(1)
	assert.True(t, cold, "quiet key is idle with a small count: cold")
	assert.NotNil(t, s.hot.get(2), "busy key is still hot")

	// A cold key keeps its daily count: 640-10 more events pass, then no more.
	now := t0 + int64(time.Hour)
	n := 0
	for ; l.take(now, quiet).reason == reasonNone; now += int64(time.Second) {
		n++
	}
	assert.Equal(t, 630, n)

	// Once the daily window is empty, keys are forgotten and the maps released.
	assert.Equal(t, 0, l.sweep(now+int64(26*time.Hour)))
}

func TestLimiterClockStepsBack(t *testing.T) {
	l := newLimiter(2, 640, t0)
	hs := []uint64{9}
	require.Equal(t, reasonNone, l.take(t0, hs).reason)
	require.Equal(t, reasonNone, l.take(t0-int64(time.Hour), hs).reason)
	assert.Equal(t, reasonPerSecond, l.take(t0-int64(2*time.Hour), hs).reason)

	// A sweep with the clock an hour back keeps the (now cold) key.
	require.Equal(t, 1, l.sweep(t0+int64(5*time.Second)))
	require.Equal(t, 1, l.sweep(t0-int64(time.Hour)))
	_, cold := l.shardOf(9).cold.get(9)
	require.True(t, cold)
}

func TestLimiterConcurrent(t *testing.T) {
	// Workers hammer a few keys at the same instant, round after round (each
	// round 1.1 s after the previous, so the per-second window is empty).
	// Single-key events must pass exactly perSec times per key and round;
	// two-key events at most perSec; the daily limit holds across rounds.
	const perSec, perDay, workers, attempts, rounds = 20, 150, 8, 400, 10
	l := newLimiter(perSec, perDay, t0)
	for r := range rounds {
		now := t0 + int64(r)*int64(1100*time.Millisecond)
		var mu sync.Mutex
		passed := map[uint64]int{}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), uint64(r)))
				for range attempts {
					hs := []uint64{rng.Uint64N(4)}
					if r%2 == 1 {
						hs = append(hs, 1<<58|rng.Uint64N(4))
					}
					if l.take(now, hs).reason == reasonNone {
						mu.Lock()
						for _, h := range hs {
							passed[h]++
						}
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		for h, n := range passed {
			if r%2 == 0 && r < 6 {
				assert.Equal(t, perSec, n, "round %d key %x", r, h)
			}
			assert.LessOrEqual(t, n, perSec, "round %d key %x", r, h)
		}
	}
	// Keys 0-3 passed up to 20 per round until the daily limit of 150
	// stopped them.
	for h := range uint64(4) {
		v := l.take(t0+int64(rounds)*int64(1100*time.Millisecond), []uint64{h})
		assert.Equal(t, reasonPerDay, v.reason, "key %d", h)
	}
}

// The sizing rule documented in the processor's spec: the most bytes per
// key (a device id or a user id) while it is active (a 64-byte slot at a
// load of 1/2 at the least), and once idle with a daily count (a 16-byte
// slot at 53% at the least), heap and table memory outside it together.
const (
	sizingActiveBytes = 128
	sizingIdleBytes   = 31
)

// TestLimiterMemory checks the documented sizing rule with distinct keys:
// 10^6 (2 seconds), 10^5 under -short or the race detector, or
// CURRENTS_RATELIMIT_MEMORY_KEYS (the long form, e.g. 10000000). It also
// checks that the memory is released once the keys are forgotten.
func TestLimiterMemory(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 100_000
	}
	if v := os.Getenv("CURRENTS_RATELIMIT_MEMORY_KEYS"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(t, err, "CURRENTS_RATELIMIT_MEMORY_KEYS")
	}
	heap := func() int64 { // with the tables held outside the heap
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc) + idtable.Mapped()
	}
	base := heap()
	l := newLimiter(30, 500000, t0)
	fill := func(start int64, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed))
		hs := make([]uint64, 1)
		for i := range n {
			hs[0] = rng.Uint64()
			require.Equal(t, reasonNone, l.take(start+int64(i)*100, hs).reason)
		}
	}
	fill(t0, 1)
	hot := heap() - base
	require.Equal(t, n, l.sweep(t0+int64(5*time.Second)))
	cold := heap() - base
	require.Equal(t, 0, l.sweep(t0+int64(26*time.Hour)))
	idle := heap() - base
	t.Logf("%d keys: %d bytes/key while active, %d bytes/key idle (compact), %d bytes total once forgotten",
		n, hot/int64(n), cold/int64(n), idle)
	// The rule's bounds hold whatever the tables' fill; the tables are not
	// much emptier than their lowest load.
	assert.LessOrEqual(t, float64(hot)/float64(n), float64(sizingActiveBytes), "bytes per active key")
	assert.GreaterOrEqual(t, float64(hot)/float64(n), float64(sizingActiveBytes)/2, "bytes per active key")
	assert.LessOrEqual(t, float64(cold)/float64(n), float64(sizingIdleBytes), "bytes per idle key")
	assert.GreaterOrEqual(t, float64(cold)/float64(n), float64(sizingIdleBytes)/2, "bytes per idle key")
	assert.Less(t, idle, int64(n), "memory released after the keys went idle")

	// A second wave of new devices does not grow the heap beyond the first.
	fill(t0+int64(27*time.Hour), 2)
	assert.Less(t, heap()-base, hot*11/10, "no growth")
	runtime.KeepAlive(l)
}

func TestLimiterHeavyKeyRing(t *testing.T) {
	l := newLimiter(1000, 640, t0) // demoteMax: 10
	hs := []uint64{3}
	tab := &l.shardOf(3).hot
	pass := func(now int64, n int) {
		t.Helper()
		for i := range n {
			require.Equal(t, reasonNone, l.take(now, hs).reason, "event %d", i)
		}
	}
	_, h0 := l.buckets(t0)
	pass(t0, 10)
	require.Nil(t, tab.ring(tab.get(3)), "a small daily count stays compact")

	// Past demoteMax the key gets an hourly ring; the compact events stay
	// in their hour, later ones go to theirs.
	pass(t0+hourNs, 630)
	r := tab.ring(tab.get(3))
	require.NotNil(t, r)
	assert.Equal(t, uint32(10), r[h0%daySlots])
	assert.Equal(t, uint32(630), r[(h0+1)%daySlots])

	v := l.take(t0+hourNs, hs)
	require.Equal(t, reasonPerDay, v.reason)
	assert.Equal(t, int64(h0+daySlots)*hourNs, v.retryAt, "the first hour's events free room first")
	pass(v.retryAt, 10)
	h25 := h0 + daySlots
	v = l.take(v.retryAt, hs)
	require.Equal(t, reasonPerDay, v.reason)
	assert.Equal(t, int64(h25+1)*hourNs, v.retryAt, "then the second hour's")

	// Idle with a small count: compact in the cold table, ring released.
	require.Equal(t, 1, l.sweep(v.retryAt))
	c, _ := l.shardOf(3).cold.get(3)
	assert.Equal(t, packCold(h25, 10), c)
	assert.Zero(t, tab.rings.live())

	// Back from the cold table past demoteMax: a ring again. Once the count
	// of the still active key is small again, the sweep folds it back.
	pass(v.retryAt, 1)
	require.NotNil(t, tab.ring(tab.get(3)))
	pass(int64(h25+daySlots)*hourNs, 1)
	require.Equal(t, 1, l.sweep(int64(h25+daySlots)*hourNs))
	st := tab.get(3)
	require.NotNil(t, st, "still active: hot")
	assert.Nil(t, tab.ring(st))
	assert.Equal(t, uint32(2), st.dayTotal)
	assert.Equal(t, h25+daySlots, st.dayLast)
	assert.Zero(t, tab.rings.live())
	assert.Nil(t, tab.rings.chunks, "ring memory released")
}

// TestLimiterTakeBatchMatchesTake: taking a batch's messages together gives
// every message the verdict of taking them one by one, messages without
// keys (n = -1) included, in batches below and above prefetchMin and across
// chunks; with tables small and large enough for their probes to be walked
// together (idtable's Large: 50,000 keys tracked before).
func TestLimiterTakeBatchMatchesTake(t *testing.T) {
	for _, tracked := range []int{0, 50_000} {
		t.Run(fmt.Sprintf("tracked=%d", tracked), func(t *testing.T) {
			l, ref := newLimiter(5, 40, t0), newLimiter(5, 40, t0)
			rng := rand.New(rand.NewPCG(9, 9))
			old := make([]uint64, tracked)
			for i := range old {
				old[i] = rng.Uint64() | 1
				l.take(t0, old[i:i+1])
				ref.take(t0, old[i:i+1])
			}
			if large := l.shards[0].hot.tab.Large(); large != (tracked > 0) {
				t.Fatalf("%d keys tracked: Large is %v", tracked, large)
			}
			batch := make([]msgKeys, 300)
			for i := range batch {
				k := &batch[i]
				k.n = rng.IntN(3) - 1
				for j := range max(k.n, 0) {
					k.hs[j] = rng.Uint64N(60) << 58 // few keys, spread over the shards
					if tracked > 0 && rng.IntN(2) == 0 {
						k.hs[j] = old[rng.IntN(len(old))]
					}
				}
			}
			vs := make([]verdict, len(batch))
			now := t0
			for round := range 30 {
				part := batch[:[]int{1, prefetchMin - 1, batchChunk + 7, len(batch)}[round%4]]
				l.takeBatch(now, part, vs)
				for i := range part {
					k := &part[i]
					if k.n < 0 {
						continue
					}
					require.Equal(t, ref.take(now, k.hs[:k.n]), vs[i], "round %d, message %d", round, i)
				}
				now += int64(400 * time.Millisecond)
			}
		})
	}
	// A chunk whose first keys are new and grow a shard's table, moving
	// every entry after prefetch found the chunk's other keys: the takes
	// that follow must not use the slots it found.
	t.Run("grown mid-chunk", func(t *testing.T) {
		l, ref := newLimiter(5, 40, t0), newLimiter(5, 40, t0)
		rng := rand.New(rand.NewPCG(9, 10))
		shard0 := func() uint64 { return rng.Uint64()>>6 | 1 } // top 6 bits 0: shard 0
		var old []uint64
		for i := 0; i < 50_000 || (l.shards[0].hot.tab.Len()+3)*4 <= l.shards[0].hot.tab.Size()*3; i++ {
			h := rng.Uint64() | 1
			if i >= 50_000 {
				h = shard0()
			}
			l.take(t0, []uint64{h})
			ref.take(t0, []uint64{h})
			if h>>58 == 0 {
				old = append(old, h)
			}
		}
		tab := &l.shards[0].hot.tab
		if !tab.Large() {
			t.Fatal("shard 0's table is not Large")
		}
		size := tab.Size()
		batch := make([]msgKeys, 100)
		for i := range batch {
			batch[i].n = 1
			batch[i].hs[0] = old[rng.IntN(len(old))]
			if i < 4 {
				batch[i].hs[0] = shard0() // new keys: the table grows
			}
		}
		vs := make([]verdict, len(batch))
		now := t0 + int64(time.Second)
		l.takeBatch(now, batch, vs)
		if tab.Size() == size {
			t.Fatalf("shard 0's table did not grow (%d slots, %d keys)", size, tab.Len())
		}
		for i := range batch {
			require.Equal(t, ref.take(now, batch[i].hs[:1]), vs[i], "message %d", i)
		}
		for _, h := range old {
			require.Equal(t, ref.take(now, []uint64{h}), l.take(now, []uint64{h}), "key %x after the batch", h)
		}
	})
}
