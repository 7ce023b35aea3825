package jsonscan

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// AppendUnescaped appends to dst the text of inner, the inside of a valid
// JSON string (between its quotes), decoding its escapes as gjson does: a
// surrogate pair becomes its rune and a lone surrogate U+FFFD. Reading
// into a caller's buffer spares the allocation gjson makes for each
// escaped string. On a string that is not valid it stops at the first
// malformed escape; it never panics.
func AppendUnescaped(dst []byte, inner string) []byte {
	for {
		k := strings.IndexByte(inner, '\\')
		if k < 0 {
			return append(dst, inner...)
		}
		dst = append(dst, inner[:k]...)
		if k+1 >= len(inner) {
			return dst
		}
		c := inner[k+1]
		inner = inner[k+2:]
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case '"', '\\', '/':
			dst = append(dst, c)
		case 'u':
			r, ok := hexRune(inner)
			if !ok {
				return dst
			}
			inner = inner[4:]
			if utf16.IsSurrogate(r) && r < 0xDC00 && len(inner) >= 6 && inner[0] == '\\' && inner[1] == 'u' {
				if r2, ok := hexRune(inner[2:]); ok && r2 >= 0xDC00 && r2 < 0xE000 {
					r, inner = utf16.DecodeRune(r, r2), inner[6:]
				}
			}
			dst = utf8.AppendRune(dst, r) // U+FFFD for a lone surrogate
		default:
			return dst
		}
	}
}

// hexRune reads the four hexadecimal digits that s starts with.
func hexRune(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	r, err := strconv.ParseUint(s[:4], 16, 16)
	return rune(r), err == nil
}
