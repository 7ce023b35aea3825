package amplitude

import (
	"math/rand/v2"
	"testing"
)

// TestHourSketch: the bound of an id is at least every count written for it
// in the hour, counts of other hours are not kept, and a new hour starts
// from nothing.
func TestHourSketch(t *testing.T) {
	type write struct {
		h               uint64
		hour, countHour int32
		count           uint32
	}
	const a, b = 0x0123456789abcdef, 0xfedcba9876543210
	for _, c := range []struct {
		name   string
		writes []write
		h      uint64
		hour   int32
		want   uint32
	}{
		{"nothing written", nil, a, 10, 0},
		{"one count", []write{{a, 10, 10, 7}}, a, 10, 7},
		{"the larger of two", []write{{a, 10, 10, 7}, {a, 10, 10, 3}}, a, 10, 7},
		{"a later, larger count", []write{{a, 10, 10, 3}, {a, 10, 10, 9}}, a, 10, 9},
		{"asked in another hour", []write{{a, 10, 10, 7}}, a, 11, 0},
		{"a count of a past hour", []write{{a, 11, 10, 7}}, a, 11, 0},
		{"a new hour clears", []write{{a, 10, 10, 7}, {b, 11, 11, 1}}, a, 11, 0},
		{"a write of a past hour after a new one", []write{{b, 11, 11, 1}, {a, 10, 10, 7}}, a, 10, 0},
		{"saturates", []write{{a, 10, 10, 1 << 20}}, a, 10, sketchMax},
	} {
		t.Run(c.name, func(t *testing.T) {
			var s hourSketch
			for _, w := range c.writes {
				s.record(w.h, w.hour, w.countHour, w.count)
			}
			if got := s.bound(c.h, c.hour); got != c.want {
				t.Fatalf("bound %d, want %d", got, c.want)
			}
		})
	}
}

// TestHourSketchNeverUnderCounts: with many more ids than counters, every
// id's bound is at least the count it wrote last, and ids that sent little
// mostly get bounds close to it.
func TestHourSketchNeverUnderCounts(t *testing.T) {
	var s hourSketch
	rng := rand.New(rand.NewPCG(7, 7))
	const ids = 200_000
	hashes, counts := make([]uint64, ids), make([]uint32, ids)
	for i := range hashes {
		hashes[i] = rng.Uint64() | 1
		counts[i] = uint32(1 + rng.IntN(20))
		if i%1000 == 0 {
			counts[i] = 900 // a few busier ids
		}
		s.record(hashes[i], 5, 5, counts[i])
	}
	over := 0
	for i, h := range hashes {
		got := s.bound(h, 5)
		if got < counts[i] {
			t.Fatalf("id %d: bound %d under its count %d", i, got, counts[i])
		}
		if got >= 900 && counts[i] < 900 {
			over++
		}
	}
	if over > ids/1000 {
		t.Fatalf("%d of %d quiet ids bounded at a busy id's count", over, ids)
	}
}
