// Package jsonlimit bounds the nesting of JSON documents before they are
// parsed.
//
// gjson (like most JSON parsers) validates and walks nested values
// recursively: a request nesting JSON five million levels deep costs
// seconds and gigabytes of goroutine stack before it is refused. Depth
// counts the nesting in one iterative pass over the bytes, without
// allocating, so that inputs and the mapper can refuse such documents first.
package jsonlimit

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// DefaultMaxDepth is the deepest nesting of objects and arrays accepted by
// default. A Braze Currents request body uses three levels
// ({"events": [{...}]}) and an event two more for its user and properties
// objects; custom event properties may nest further, never this deep in
// practice.
const DefaultMaxDepth = 64

// ErrTooDeep is returned (wrapped) by Check for a document nested deeper
// than the limit.
var ErrTooDeep = errors.New("JSON nested too deep")

// Depth returns the deepest nesting of objects and arrays in b, stopping as
// soon as it exceeds max (returning max+1). Brackets inside strings do not
// count. b need not be valid JSON: Depth only counts.
func Depth[T string | []byte](b T, max int) int {
	depth, deepest := 0, 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{', '[':
			depth++
			if depth > deepest {
				deepest = depth
				if deepest > max {
					return deepest
				}
			}
		case '}', ']':
			if depth > 0 {
				depth--
			}
		case '"':
			i = stringEnd(b, i+1)
		}
	}
	return deepest
}

// stringEnd returns the index of the quote closing the string whose
// content starts at i (len(b) when it is not closed).
func stringEnd[T string | []byte](b T, i int) int {
	for {
		j := indexQuote(b[i:])
		if j < 0 {
			return len(b)
		}
		q := i + j
		bs := 0 // backslashes right before the quote
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			return q
		}
		i = q + 1
	}
}

func indexQuote[T string | []byte](b T) int {
	switch v := any(b).(type) {
	case string:
		return strings.IndexByte(v, '"')
	case []byte:
		return bytes.IndexByte(v, '"')
	}
	panic("unreachable")
}

// Exceeds reports whether b nests objects and arrays deeper than max
// levels. A document with at most max opening brackets cannot, which two
// vectorised counts tell before any scan: the common case of small events.
func Exceeds[T string | []byte](b T, max int) bool {
	if countBrackets(b) <= max {
		return false
	}
	return Depth(b, max) > max
}

func countBrackets[T string | []byte](b T) int {
	switch v := any(b).(type) {
	case string:
		return strings.Count(v, "{") + strings.Count(v, "[")
	case []byte:
		return bytes.Count(v, []byte("{")) + bytes.Count(v, []byte("["))
	}
	panic("unreachable")
}

// Check returns an error wrapping ErrTooDeep when b nests objects and arrays
// deeper than max levels.
func Check[T string | []byte](b T, max int) error {
	if Exceeds(b, max) {
		return &depthError{max: max}
	}
	return nil
}

type depthError struct{ max int }

func (e *depthError) Error() string {
	return "JSON nested deeper than " + strconv.Itoa(e.max) + " levels"
}

func (e *depthError) Unwrap() error { return ErrTooDeep }
