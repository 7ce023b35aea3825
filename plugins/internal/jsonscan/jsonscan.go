// Package jsonscan iterates JSON that is already known to be valid (checked
// by gjson, or written by this project) faster than gjson.Result.ForEach:
// strings are skipped with a vectorised byte search instead of byte by
// byte, which is where gjson spends its time on Currents events (long ids,
// names and URLs).
//
// ForEach yields the same keys and values as gjson's ForEach on valid JSON
// (FuzzForEach checks it). On invalid JSON its results are meaningless, but
// it never panics and always ends. A Scanner iterates JSON not known to be
// valid, validating it in the same pass (FuzzScanner checks it against
// gjson.Valid).
package jsonscan

import (
	"math"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// ForEach calls f for each member of the JSON object in raw (or each element
// of the array, with keys numbered from 0), in order, until f returns false.
// raw must be valid JSON; a value that is neither an object nor an array is
// passed to f once with an empty key, as gjson does. Value.Index is the
// value's offset in raw.
func ForEach(raw string, f func(key, value gjson.Result) bool) {
	ForEachFlat(raw, nil, f)
}

// ForEachFlat is ForEach, except that an object or array that is the value
// of an object member for which descend(key, isArray) is true is not passed
// to f: its members (or elements, with numbered keys) are, in its place, and
// so on inside it, so that it is read once instead of being skipped and then
// iterated. descend may be nil.
func ForEachFlat(raw string, descend func(key string, array bool) bool, f func(key, value gjson.Result) bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) {
		return
	}
	if c := raw[i]; c != '{' && c != '[' {
		f(gjson.Result{}, gjson.Parse(raw))
		return
	}
	members(raw, i, descend, f)
}

// members iterates the object or array starting at raw[i] and returns the
// offset after it, and false when f stopped the iteration (or raw is cut).
func members(raw string, i int, descend func(string, bool) bool, f func(key, value gjson.Result) bool) (int, bool) {
	var key gjson.Result
	obj := raw[i] == '{'
	if obj {
		key.Type = gjson.String
	} else {
		key.Type, key.Num = gjson.Number, -1
	}
	i++
	for {
		i = skipSpace(raw, i)
		if i >= len(raw) {
			return i, false
		}
		if raw[i] == '}' || raw[i] == ']' {
			return i + 1, true
		}
		if obj {
			if raw[i] != '"' {
				return i, false
			}
			end := stringEnd(raw, i)
			key.Raw, key.Str, key.Index = raw[i:end], stringValue(raw[i:end]), i
			i = skipSpace(raw, end)
			if i >= len(raw) || raw[i] != ':' {
				return i, false
			}
			i = skipSpace(raw, i+1)
		} else {
			key.Num++
		}
		if i >= len(raw) {
			return i, false
		}
		var end int
		if c := raw[i]; obj && (c == '{' || c == '[') && descend != nil && descend(key.Str, c == '[') {
			var ok bool
			if end, ok = members(raw, i, descend, f); !ok {
				return end, false
			}
		} else {
			var value gjson.Result
			value, end = parseValue(raw, i)
			if end <= i || !f(key, value) {
				return end, false
			}
		}
		i = skipSpace(raw, end)
		if i < len(raw) && raw[i] == ',' {
			i++
		}
	}
}

// Skip returns the offset after the value starting at raw[i] (len(raw) when
// it does not end). It reads iteratively, so a deep document costs no stack.
func Skip(raw string, i int) int {
	if i >= len(raw) {
		return len(raw)
	}
	_, end := parseValue(raw, i)
	return end
}

// parseValue returns the value starting at raw[i] and the offset after it.
func parseValue(raw string, i int) (gjson.Result, int) {
	v := gjson.Result{Index: i}
	var end int
	switch c := raw[i]; c {
	case '"':
		end = stringEnd(raw, i)
		v.Type, v.Raw = gjson.String, raw[i:end]
		v.Str = stringValue(v.Raw)
		return v, end
	case '{', '[':
		end = containerEnd(raw, i)
		v.Type, v.Raw = gjson.JSON, raw[i:end]
		return v, end
	case 't':
		v.Type, end = gjson.True, min(i+4, len(raw))
	case 'f':
		v.Type, end = gjson.False, min(i+5, len(raw))
	case 'n':
		v.Type, end = gjson.Null, min(i+4, len(raw))
	default:
		end = NumberEnd(raw, i)
		v.Type = gjson.Number
		v.Raw = raw[i:end]
		v.Num = parseNumber(v.Raw)
		return v, end
	}
	v.Raw = raw[i:end]
	return v, end
}

// parseNumber is strconv.ParseFloat(s, 64), without its cost for the
// integers of at most 15 digits most numbers are (exact in a float64).
func parseNumber(s string) float64 {
	digits, neg := s, false
	if len(digits) > 0 && digits[0] == '-' {
		digits, neg = digits[1:], true
	}
	if len(digits) == 0 || len(digits) > 15 {
		n, _ := strconv.ParseFloat(s, 64)
		return n
	}
	var n int64
	for j := 0; j < len(digits); j++ {
		c := digits[j]
		if c < '0' || c > '9' {
			f, _ := strconv.ParseFloat(s, 64)
			return f
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		if n == 0 {
			return math.Copysign(0, -1)
		}
		n = -n
	}
	return float64(n)
}

// NumberEnd returns the offset after the number starting at raw[i] in JSON
// already known to be valid.
func NumberEnd(raw string, i int) int {
	for i < len(raw) && isNumberByte(raw[i]) {
		i++
	}
	return i
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// stringValue returns the text of a quoted JSON string, unescaped by gjson
// when it holds escapes.
func stringValue(quoted string) string {
	if len(quoted) < 2 {
		return ""
	}
	inner := quoted[1 : len(quoted)-1]
	if strings.IndexByte(inner, '\\') < 0 {
		return inner
	}
	return gjson.Parse(quoted).Str
}

// stringEnd returns the offset after the string starting at raw[i] (a
// quote), or len(raw) when it does not end.
func stringEnd(raw string, i int) int {
	for j := i + 1; j < len(raw); j++ {
		k := strings.IndexByte(raw[j:], '"')
		if k < 0 {
			return len(raw)
		}
		j += k
		n := 0 // backslashes right before the quote
		for p := j - 1; p > i && raw[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
	}
	return len(raw)
}

// containerEnd returns the offset after the object or array starting at
// raw[i], or len(raw) when it does not end.
func containerEnd(raw string, i int) int {
	depth := 0
	for j := i; j < len(raw); j++ {
		switch raw[j] {
		case '"':
			j = stringEnd(raw, j) - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(raw)
}

func skipSpace(raw string, i int) int {
	for i < len(raw) && raw[i] <= ' ' {
		i++
	}
	return i
}
