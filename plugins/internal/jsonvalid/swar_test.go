package jsonvalid

import (
	"math/bits"
	"math/rand/v2"
	"testing"
)

// TestMasks checks that the lowest byte each mask flags is the first byte
// of the word its rule picks, on words built from the bytes that matter
// (and a few others) at random, and that Load64 reads a word of a string and
// of a byte slice the same way.
func TestMasks(t *testing.T) {
	alphabet := []byte{'"', '\\', 0x00, 0x1f, 0x20, 0x21, '#', 0x5b, 0x5d, 'a', 0x7f, 0x80, 0xa2, 0xdc, 0xff}
	for _, tc := range []struct {
		name string
		mask func(uint64) uint64
		stop func(byte) bool
	}{
		{"QuoteOrBackslash", QuoteOrBackslash, func(c byte) bool { return c == '"' || c == '\\' }},
		{"Special", Special, func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 }},
		{"SpecialOrNonASCII", SpecialOrNonASCII, func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 8))
			for range 200_000 {
				var w [8]byte
				for k := range w {
					if rng.IntN(4) == 0 {
						w[k] = byte(rng.IntN(256))
					} else {
						w[k] = alphabet[rng.IntN(len(alphabet))]
					}
				}
				want := 8
				for k, c := range w {
					if tc.stop(c) {
						want = k
						break
					}
				}
				x := Load64(w[:], 0)
				if s := Load64(string(w[:]), 0); s != x {
					t.Fatalf("Load64 of %q: string %#x, bytes %#x", w, s, x)
				}
				if got := bits.TrailingZeros64(tc.mask(x)) >> 3; got != want {
					t.Fatalf("%q: first flagged byte %d, want %d", w, got, want)
				}
			}
		})
	}
}
