// Package jsonvalid validates one JSON value, bounds its nesting and finds
// its end in a single pass.
//
// The braze_currents_http input checks each event of a request three ways
// before it trusts it: where it ends, how deep it nests, whether it is valid
// JSON. Done separately (jsonscan.Skip, jsonlimit.Exceeds, gjson.Valid) that
// is three passes, the last one recursive and byte by byte; Value does all
// three in one iterative pass, reading strings eight bytes at a time.
//
// Value accepts exactly the values gjson.Valid accepts (RFC 8259 grammar;
// strings are not checked for UTF-8, which the input repairs first) nested
// at most maxDepth levels, as jsonlimit.Depth counts them: FuzzValue checks
// it against both.
package jsonvalid

import "math/bits"

// stackSize is the nesting Value tracks without allocating.
const stackSize = 64

// Value reports whether b[i:] starts with a valid JSON value (b[i] is its
// first byte: no whitespace before it) nested at most maxDepth levels of
// objects and arrays deep, and returns the offset after it. It stops at the
// first byte that makes the value invalid or too deep, so a document nested
// millions of levels deep costs only maxDepth levels of work and memory.
func Value(b []byte, i, maxDepth int) (int, bool) {
	var buf [stackSize]byte
	open := buf[:0] // the opening bracket of each container entered
	ok := true
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return i, false
		}
		switch c := b[i]; c {
		case '{', '[':
			if len(open) >= maxDepth {
				return i, false
			}
			open = append(open, c)
			if i = SkipSpace(b, i+1); i < len(b) && b[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				open = open[:len(open)-1]
				i++
			} else if c == '[' {
				continue // the first element
			} else if i, ok = member(b, i); !ok {
				return i, false
			} else {
				continue // the first member's value
			}
		case '"':
			if i, ok = stringEnd(b, i+1); !ok {
				return i, false
			}
		case 't':
			if i, ok = literal(b, i, "true"); !ok {
				return i, false
			}
		case 'f':
			if i, ok = literal(b, i, "false"); !ok {
				return i, false
			}
		case 'n':
			if i, ok = literal(b, i, "null"); !ok {
				return i, false
			}
		default:
			if i, ok = Number(b, i); !ok {
				return i, false
			}
		}
		// After a value: close the containers it ends, up to a comma.
		for {
			if len(open) == 0 {
				return i, true
			}
			if i = SkipSpace(b, i); i >= len(b) {
				return i, false
			}
			top := open[len(open)-1]
			if b[i] == ',' {
				if i = SkipSpace(b, i+1); top == '{' {
					if i, ok = member(b, i); !ok {
						return i, false
					}
				}
				break // the next value
			}
			if b[i] != top+2 {
				return i, false
			}
			open = open[:len(open)-1]
			i++
		}
	}
}

// member reads an object member's key and colon at b[i] and returns the
// offset of its value.
func member(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	i, ok := stringEnd(b, i+1)
	if !ok {
		return i, false
	}
	if i = SkipSpace(b, i); i >= len(b) || b[i] != ':' {
		return i, false
	}
	return SkipSpace(b, i+1), true
}

// stringEnd validates the string whose content starts at b[i] and returns
// the offset after its closing quote.
func stringEnd(b []byte, i int) (int, bool) {
	for {
		for i+8 <= len(b) {
			if m := Special(Load64(b, i)); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(b) {
			return i, false
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= len(b) {
				return i + 1, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for k := i + 2; k < i+6; k++ {
					if k >= len(b) || !IsHex(b[k]) {
						return k, false
					}
				}
				i += 6
			default:
				return i + 1, false
			}
		case c < ' ':
			return i, false
		default:
			i++ // the last bytes, fewer than eight
		}
	}
}

// literal checks that b[i:] starts with word.
func literal(b []byte, i int, word string) (int, bool) {
	if len(b)-i < len(word) || string(b[i:i+len(word)]) != word {
		return i, false
	}
	return i + len(word), true
}
