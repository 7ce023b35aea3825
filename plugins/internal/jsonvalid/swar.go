package jsonvalid

// The string scans of this project's JSON code (Value here, jsonscan's
// validating Scanner, the amplitude output's reading of marked events) look
// at eight bytes at a time: a word is loaded with Load64 and one of the
// masks below flags, in the high bit of each byte, the bytes a scan must
// stop at. Only the lowest flag of a mask is exact (a borrow may flag bytes
// above it), which is the one the scans use (bits.TrailingZeros64(m) / 8 is
// its byte's index); TestMasks checks each against a byte-by-byte rule.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// Load64 returns b[i:i+8] as a little-endian integer (one load).
func Load64[T string | []byte](b T, i int) uint64 {
	w := b[i : i+8] // one bounds check
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

// QuoteOrBackslash flags the bytes of x that are a quote or a backslash: for
// b (the byte xor '"', or xor '\\'), b-1 has the high bit set, where b
// itself has not, only when b is 0.
func QuoteOrBackslash(x uint64) uint64 {
	q, s := x^(ones*'"'), x^(ones*'\\')
	return ((q-ones)&^q | (s-ones)&^s) & highs
}

// Special flags the bytes of x that end a run of plain string content in
// JSON: a quote, a backslash or a control character (below 0x20).
func Special(x uint64) uint64 {
	q, s := x^(ones*'"'), x^(ones*'\\')
	return ((q-ones)&^q | (s-ones)&^s | (x-ones*0x20)&^x) & highs
}

// SpecialOrNonASCII is Special that also flags the bytes of x that are not
// ASCII (their own high bit), for a scan that checks UTF-8 as it goes; it
// needs no masking of the borrows' high bits, which x's own cover.
func SpecialOrNonASCII(x uint64) uint64 {
	q, s := x^(ones*'"'), x^(ones*'\\')
	return ((q - ones) | (s - ones) | (x - ones*0x20) | x) & highs
}
