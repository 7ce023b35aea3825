package jsonscan

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// ForEachFlatValid is ForEachFlat for raw not known to be valid: it
// validates raw in the same pass that iterates it, so that untrusted input
// is read once instead of being validated first (gjson.Valid, utf8.Valid,
// jsonlimit) and walked afterwards.
//
// It returns true when raw is an object or an array (whitespace around it
// allowed) that gjson.Valid accepts, that holds valid UTF-8 and that nests
// objects and arrays at most maxDepth levels deep (as jsonlimit.Depth
// counts), and f never returned false: then f saw exactly what ForEachFlat
// passes it, by pointer (to save copying them: they are valid during the
// call only). Otherwise it returns false as soon as it knows, having called f
// for members of a prefix of raw only; the caller discards what it did with
// them and checks raw the slow way, which says what is wrong. A scalar at
// the top level returns false. It never panics, and recurses at most
// maxDepth levels deep.
//
// It allocates the Validator it needs; callers on a hot path keep one
// (Validator.ForEachFlat).
func ForEachFlatValid(raw string, maxDepth int, descend func(key string, array bool) bool, f func(key, value *gjson.Result) bool) bool {
	var v Validator
	return v.ForEachFlat(raw, maxDepth, descend, f)
}

// Validator holds the state of ForEachFlatValid, for reuse: the members it
// passes to f by pointer are its own. Its zero value is ready; it is not
// safe for concurrent use.
type Validator struct {
	key, value gjson.Result
	raw        string
	b          []byte // raw's bytes (read-only), for 8-byte loads
	max        int
}

// ForEachFlat is ForEachFlatValid with v's storage.
func (v *Validator) ForEachFlat(raw string, maxDepth int, descend func(key string, array bool) bool, f func(key, value *gjson.Result) bool) bool {
	i := skipWS(raw, 0)
	if i >= len(raw) || (raw[i] != '{' && raw[i] != '[') || maxDepth < 1 {
		return false
	}
	v.raw, v.b, v.max = raw, unsafe.Slice(unsafe.StringData(raw), len(raw)), maxDepth
	end, ok := v.members(i, 1, descend, f)
	*v = Validator{} // retain nothing of raw
	return ok && skipWS(raw, end) == len(raw)
}

// members is the validating twin of the package's members: it iterates the
// object or array at raw[i], at nesting level depth, and returns the offset
// after it and whether it was valid (and f never stopped). v.key and
// v.value are shared by the levels: each member sets them afresh.
func (v *Validator) members(i, depth int, descend func(string, bool) bool, f func(key, value *gjson.Result) bool) (int, bool) {
	raw := v.raw
	obj := raw[i] == '{'
	closer := byte(']')
	if obj {
		closer = '}'
	}
	n := 0 // elements of an array
	i = skipWS(raw, i+1)
	if i < len(raw) && raw[i] == closer {
		return i + 1, true
	}
	for {
		if i >= len(raw) {
			return i, false
		}
		if obj {
			if raw[i] != '"' {
				return i, false
			}
			end, escaped, ok := v.str(i)
			if !ok {
				return end, false
			}
			v.key = gjson.Result{Type: gjson.String, Raw: raw[i:end], Str: unquote(raw[i:end], escaped), Index: i}
			i = skipWS(raw, end)
			if i >= len(raw) || raw[i] != ':' {
				return i, false
			}
			if i = skipWS(raw, i+1); i >= len(raw) {
				return i, false
			}
		} else {
			v.key = gjson.Result{Type: gjson.Number, Num: float64(n)}
			n++
		}
		var end int
		if c := raw[i]; obj && (c == '{' || c == '[') && descend != nil && descend(v.key.Str, c == '[') {
			if depth >= v.max {
				return i, false
			}
			var ok bool
			if end, ok = v.members(i, depth+1, descend, f); !ok {
				return end, false
			}
		} else {
			var ok bool
			if end, ok = v.readValue(i, depth, &v.value); !ok || !f(&v.key, &v.value) {
				return end, false
			}
		}
		if i = skipWS(raw, end); i >= len(raw) {
			return i, false
		}
		switch raw[i] {
		case ',':
			i = skipWS(raw, i+1)
		case closer:
			return i + 1, true
		default:
			return i, false
		}
	}
}

// readValue validates the value at raw[i], inside a container at nesting level
// depth, sets *r to it as parseValue reads it, and returns the offset after
// it.
func (v *Validator) readValue(i, depth int, r *gjson.Result) (int, bool) {
	raw := v.raw
	*r = gjson.Result{Index: i}
	switch c := raw[i]; {
	case c == '"':
		end, escaped, ok := v.str(i)
		if !ok {
			return end, false
		}
		r.Type, r.Raw = gjson.String, raw[i:end]
		r.Str = unquote(r.Raw, escaped)
		return end, true
	case c == '{' || c == '[':
		end, ok := v.container(i, depth+1)
		r.Type, r.Raw = gjson.JSON, raw[i:end]
		return end, ok
	case c == 't' || c == 'f' || c == 'n':
		lit, typ := "null", gjson.Null
		switch c {
		case 't':
			lit, typ = "true", gjson.True
		case 'f':
			lit, typ = "false", gjson.False
		}
		end := i + len(lit)
		if end > len(raw) || raw[i:end] != lit {
			return i, false
		}
		r.Type, r.Raw = typ, lit
		return end, true
	case c == '-' || c >= '0' && c <= '9':
		end, ok := number(raw, i)
		if !ok {
			return end, false
		}
		r.Type, r.Raw = gjson.Number, raw[i:end]
		r.Num = parseNumber(r.Raw)
		return end, true
	}
	return i, false
}

// skip validates the value at raw[i], inside a container at nesting level
// depth, and returns the offset after it.
func (v *Validator) skip(i, depth int) (int, bool) {
	switch c := v.raw[i]; {
	case c == '"':
		end, _, ok := v.str(i)
		return end, ok
	case c == '{' || c == '[':
		return v.container(i, depth+1)
	}
	var r gjson.Result
	return v.readValue(i, depth, &r)
}

// container validates the object or array at raw[i], at nesting level
// depth, and returns the offset after it.
func (v *Validator) container(i, depth int) (int, bool) {
	if depth > v.max {
		return i, false
	}
	raw := v.raw
	obj := raw[i] == '{'
	closer := byte(']')
	if obj {
		closer = '}'
	}
	i = skipWS(raw, i+1)
	if i < len(raw) && raw[i] == closer {
		return i + 1, true
	}
	for {
		if i >= len(raw) {
			return i, false
		}
		var ok bool
		if obj {
			if raw[i] != '"' {
				return i, false
			}
			if i, _, ok = v.str(i); !ok {
				return i, false
			}
			if i = skipWS(raw, i); i >= len(raw) || raw[i] != ':' {
				return i, false
			}
			if i = skipWS(raw, i+1); i >= len(raw) {
				return i, false
			}
		}
		if i, ok = v.skip(i, depth); !ok {
			return i, false
		}
		if i = skipWS(raw, i); i >= len(raw) {
			return i, false
		}
		switch raw[i] {
		case ',':
			i = skipWS(raw, i+1)
		case closer:
			return i + 1, true
		default:
			return i, false
		}
	}
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// str validates the string whose opening quote is raw[i] (as gjson does:
// no control characters, only JSON's escapes, and valid UTF-8) and returns
// the offset after its closing quote and whether it holds escapes. Eight
// bytes are checked at a time.
func (v *Validator) str(i int) (end int, escaped, ok bool) {
	raw, b := v.raw, v.b
	j := i + 1
	for {
		for j+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[j:])
			// The high bit of each byte that is a quote, a backslash, a
			// control character or non-ASCII: the lowest one is exact
			// (the others may be a borrow's false positives).
			q, bs := x^(lsb*'"'), x^(lsb*'\\')
			m := ((q-lsb)&^q | (bs-lsb)&^bs | (x-lsb*0x20)&^x | x) & msb
			if m != 0 {
				j += bits.TrailingZeros64(m) >> 3
				break
			}
			j += 8
		}
		if j >= len(raw) {
			return j, escaped, false
		}
		switch c := raw[j]; {
		case c == '"':
			return j + 1, escaped, true
		case c == '\\':
			escaped = true
			if j+1 >= len(raw) {
				return j, escaped, false
			}
			switch raw[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(raw) || !isHex(raw[j+2]) || !isHex(raw[j+3]) || !isHex(raw[j+4]) || !isHex(raw[j+5]) {
					return j, escaped, false
				}
				j += 6
			default:
				return j, escaped, false
			}
		case c < ' ':
			return j, escaped, false
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(raw[j:])
			if r == utf8.RuneError && size == 1 {
				return j, escaped, false
			}
			j += size
		default:
			j++
		}
	}
}

// number validates the number starting at raw[i] (JSON's grammar, as gjson
// reads it) and returns the offset after it.
func number(raw string, i int) (int, bool) {
	if raw[i] == '-' {
		i++
	}
	switch {
	case i >= len(raw) || raw[i] < '0' || raw[i] > '9':
		return i, false
	case raw[i] == '0':
		i++
	default:
		i = digits(raw, i)
	}
	if i < len(raw) && raw[i] == '.' {
		if i++; i >= len(raw) || raw[i] < '0' || raw[i] > '9' {
			return i, false
		}
		i = digits(raw, i)
	}
	if i < len(raw) && (raw[i] == 'e' || raw[i] == 'E') {
		if i++; i < len(raw) && (raw[i] == '+' || raw[i] == '-') {
			i++
		}
		if i >= len(raw) || raw[i] < '0' || raw[i] > '9' {
			return i, false
		}
		i = digits(raw, i)
	}
	return i, true
}

func digits(raw string, i int) int {
	for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// unquote returns the text of a valid quoted JSON string: its inside when
// it holds no escapes, else gjson's unescaping (as stringValue).
func unquote(quoted string, escaped bool) string {
	if !escaped {
		return quoted[1 : len(quoted)-1]
	}
	return gjson.Parse(quoted).Str
}

// skipWS skips JSON's whitespace (only the four bytes gjson accepts).
func skipWS(raw string, i int) int {
	for i < len(raw) {
		switch raw[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
