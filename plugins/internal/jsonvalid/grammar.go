package jsonvalid

// Text is what the grammar helpers read: a request body ([]byte) or an event
// already held as a string (jsonscan's Scanner). Each gets its own
// instantiation, so neither pays for the other.
type Text interface{ ~string | ~[]byte }

// Number validates the JSON number starting at b[i]
// (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, as gjson reads it) and
// returns the offset after it.
func Number[T Text](b T, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b) || !isDigit(b[i]):
		return i, false
	case b[i] == '0':
		i++
	default:
		i = digits(b, i)
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) || !isDigit(b[i]) {
			return i, false
		}
		i = digits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return i, false
		}
		i = digits(b, i)
	}
	return i, true
}

// SkipSpace skips JSON's whitespace (the four bytes RFC 8259 and gjson
// accept) from b[i] and returns the offset of the next other byte.
func SkipSpace[T Text](b T, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// IsHex reports whether c is a hexadecimal digit (of a \u escape).
func IsHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digits[T Text](b T, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}
