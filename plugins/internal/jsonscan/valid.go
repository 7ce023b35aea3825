package jsonscan

import (
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonvalid"
	"math/bits"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Scanner iterates JSON not known to be valid, as ForEachFlat iterates
// valid JSON, validating it in the same pass: untrusted input is read once
// instead of being validated first (gjson.Valid, utf8.Valid, jsonlimit) and
// walked afterwards. It is a pull iterator, so that a caller that keeps it
// on its stack and reads its members by pointer neither copies nor
// allocates them:
//
//	var s jsonscan.Scanner
//	s.Reset(raw, maxDepth)
//	for s.Next(descend) {
//		use(&s.Key, &s.Value)
//	}
//	if !s.Valid() {
//		// not valid: discard what use did, read raw the slow way
//	}
//
// Valid is true once Next has returned false at the end of an object or
// array (whitespace around it allowed) that gjson.Valid accepts, that holds
// valid UTF-8 and that nests objects and arrays at most maxDepth levels deep
// (as jsonlimit.Depth counts): then Next yielded exactly what ForEachFlat
// passes its f. Next returns false as soon as it finds raw invalid, and also
// for a scalar at the top level and for descents (see ForEachFlat) nested
// more than MaxDescend levels deep. It never panics, and recurses at most
// maxDepth levels deep.
type Scanner struct {
	// Key and Value are the member Next found, until its next call.
	Key, Value gjson.Result

	// Unescaped, when set after Reset, is where Next writes the text of
	// the strings that hold escapes: their Str is appended to *Unescaped
	// and points into it, instead of each being allocated. Such a Str stays
	// valid until the bytes it points to are written over, so a caller that
	// reuses the buffer (truncates it and appends again) must not keep one
	// past that point. When nil, each is allocated (by gjson).
	Unescaped *[]byte

	raw     string
	b       []byte // raw's bytes (read-only), for 8-byte loads
	max     int
	i       int // where reading goes on
	frames  [MaxDescend]frame
	nframes int
	failed  bool
	valid   bool
}

// MaxDescend bounds the nesting of the containers a Scanner descends into.
const MaxDescend = 16

// frame is an object or array being iterated.
type frame struct {
	closer byte
	n      int // members read
	depth  int // its nesting level (the root is 1)
}

// Reset starts reading raw, nested at most maxDepth levels deep.
func (s *Scanner) Reset(raw string, maxDepth int) {
	*s = Scanner{raw: raw, b: unsafe.Slice(unsafe.StringData(raw), len(raw)), max: maxDepth}
	i := jsonvalid.SkipSpace(raw, 0)
	if i >= len(raw) || (raw[i] != '{' && raw[i] != '[') || maxDepth < 1 {
		s.failed = true
		return
	}
	s.frames[0] = frame{closer: closerOf(raw[i]), depth: 1}
	s.nframes, s.i = 1, i+1
}

// Depth is the nesting of the member Next found in the descended
// containers: 1 for a member of the root.
func (s *Scanner) Depth() int { return s.nframes }

// Valid reports whether raw was read to its end and is valid.
func (s *Scanner) Valid() bool { return s.valid }

// Next reads the next member, into Key and Value: members of containers for
// which descend(key, isArray) is true (object members only; descend may be
// nil) are read in their place, as ForEachFlat does. It returns false at the
// end of raw, and as soon as raw is found invalid.
func (s *Scanner) Next(descend func(key string, array bool) bool) bool {
	if s.failed {
		return false
	}
	raw := s.raw
	for s.nframes > 0 {
		fr := &s.frames[s.nframes-1]
		i := jsonvalid.SkipSpace(raw, s.i)
		if i >= len(raw) {
			return s.fail()
		}
		if fr.n > 0 {
			switch raw[i] {
			case ',':
				if i = jsonvalid.SkipSpace(raw, i+1); i >= len(raw) {
					return s.fail()
				}
			case fr.closer:
				s.i, s.nframes = i+1, s.nframes-1
				continue
			default:
				return s.fail()
			}
		} else if raw[i] == fr.closer {
			s.i, s.nframes = i+1, s.nframes-1
			continue
		}
		obj := fr.closer == '}'
		if obj {
			if raw[i] != '"' {
				return s.fail()
			}
			end, escaped, ok := s.str(i)
			if !ok {
				return s.fail()
			}
			// Field by field: Indexes stays nil, as Reset left it.
			k := &s.Key
			k.Type, k.Raw, k.Str, k.Num, k.Index = gjson.String, raw[i:end], s.unquote(raw[i:end], escaped), 0, i
			if i = jsonvalid.SkipSpace(raw, end); i >= len(raw) || raw[i] != ':' {
				return s.fail()
			}
			if i = jsonvalid.SkipSpace(raw, i+1); i >= len(raw) {
				return s.fail()
			}
		} else {
			k := &s.Key
			k.Type, k.Raw, k.Str, k.Num, k.Index = gjson.Number, "", "", float64(fr.n), 0
		}
		fr.n++
		if c := raw[i]; obj && (c == '{' || c == '[') && descend != nil && descend(s.Key.Str, c == '[') {
			if fr.depth >= s.max || s.nframes == MaxDescend {
				return s.fail()
			}
			s.frames[s.nframes] = frame{closer: closerOf(c), depth: fr.depth + 1}
			s.nframes, s.i = s.nframes+1, i+1
			continue
		}
		end, ok := s.readValue(i, fr.depth, &s.Value)
		if !ok {
			return s.fail()
		}
		s.i = end
		return true
	}
	if jsonvalid.SkipSpace(raw, s.i) != len(raw) {
		return s.fail()
	}
	s.valid = true
	return false
}

func (s *Scanner) fail() bool {
	s.failed = true
	return false
}

func closerOf(opener byte) byte {
	if opener == '{' {
		return '}'
	}
	return ']'
}

// readValue validates the value at raw[i], inside a container at nesting level
// depth, sets *r to it as parseValue reads it, and returns the offset after
// it.
func (s *Scanner) readValue(i, depth int, r *gjson.Result) (int, bool) {
	raw := s.raw
	// Field by field: Indexes is never set (nil in any Result r a caller
	// zeroed).
	r.Str, r.Num, r.Index = "", 0, i
	switch c := raw[i]; {
	case c == '"':
		end, escaped, ok := s.str(i)
		if !ok {
			return end, false
		}
		r.Type, r.Raw = gjson.String, raw[i:end]
		r.Str = s.unquote(r.Raw, escaped)
		return end, true
	case c == '{' || c == '[':
		end, ok := s.container(i, depth+1)
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
		end, ok := jsonvalid.Number(raw, i)
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
func (s *Scanner) skip(i, depth int) (int, bool) {
	switch c := s.raw[i]; {
	case c == '"':
		end, _, ok := s.str(i)
		return end, ok
	case c == '{' || c == '[':
		return s.container(i, depth+1)
	}
	var r gjson.Result
	return s.readValue(i, depth, &r)
}

// container validates the object or array at raw[i], at nesting level
// depth, and returns the offset after it.
func (s *Scanner) container(i, depth int) (int, bool) {
	if depth > s.max {
		return i, false
	}
	raw := s.raw
	obj := raw[i] == '{'
	closer := byte(']')
	if obj {
		closer = '}'
	}
	i = jsonvalid.SkipSpace(raw, i+1)
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
			if i, _, ok = s.str(i); !ok {
				return i, false
			}
			if i = jsonvalid.SkipSpace(raw, i); i >= len(raw) || raw[i] != ':' {
				return i, false
			}
			if i = jsonvalid.SkipSpace(raw, i+1); i >= len(raw) {
				return i, false
			}
		}
		if i, ok = s.skip(i, depth); !ok {
			return i, false
		}
		if i = jsonvalid.SkipSpace(raw, i); i >= len(raw) {
			return i, false
		}
		switch raw[i] {
		case ',':
			i = jsonvalid.SkipSpace(raw, i+1)
		case closer:
			return i + 1, true
		default:
			return i, false
		}
	}
}

// str validates the string whose opening quote is raw[i] (as gjson does:
// no control characters, only JSON's escapes, and valid UTF-8) and returns
// the offset after its closing quote and whether it holds escapes. Eight
// bytes are checked at a time.
func (s *Scanner) str(i int) (end int, escaped, ok bool) {
	raw, b := s.raw, s.b
	j := i + 1
	for {
		for j+8 <= len(b) {
			if m := jsonvalid.SpecialOrNonASCII(jsonvalid.Load64(b, j)); m != 0 {
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
				if j+6 > len(raw) || !jsonvalid.IsHex(raw[j+2]) || !jsonvalid.IsHex(raw[j+3]) || !jsonvalid.IsHex(raw[j+4]) || !jsonvalid.IsHex(raw[j+5]) {
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

// unquote returns the text of a valid quoted JSON string: its inside when
// it holds no escapes, else its unescaped text, in *s.Unescaped when set.
func (s *Scanner) unquote(quoted string, escaped bool) string {
	inner := quoted[1 : len(quoted)-1]
	switch {
	case !escaped:
		return inner
	case s.Unescaped == nil:
		return gjson.Parse(quoted).Str
	}
	buf := *s.Unescaped
	start := len(buf)
	buf = AppendUnescaped(buf, inner)
	*s.Unescaped = buf
	if len(buf) == start {
		return ""
	}
	return unsafe.String(&buf[start], len(buf)-start)
}
