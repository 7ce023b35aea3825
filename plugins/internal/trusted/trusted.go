// Package trusted is the hand-off of validated JSON between the components
// of this project: bytes that one of them has validated (the
// braze_currents_http input's events) or written itself (the
// braze_to_amplitude processor's Amplitude events) carry a Mark, so that the
// next component does not validate them again.
//
// A Mark is a metadata value (key MetaKey) of a type only this package can
// make, covering exact spans of one buffer: it vouches for a message's bytes
// only while they are the very slice it recorded. A message whose bytes were
// replaced (a mapping, a SetBytes), a mark copied to another message, or a
// metadata value set by configuration or by a sender (a string under the
// same key) vouch for nothing, and the bytes are validated as untrusted
// input. Benthos forbids changing a message's bytes in place, so the
// recorded slice cannot change under the mark.
package trusted

import (
	"context"
	"slices"
	"unsafe"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// MetaKey is the metadata key holding a *Mark.
const MetaKey = "currents_trusted"

// Mark vouches that some spans of one buffer are each a valid JSON value
// holding valid UTF-8.
type Mark struct {
	buf   []byte
	spans []span // sorted by start, not overlapping
	// depth bounds the nesting of objects and arrays of every span; 0
	// when it was not checked.
	depth int
	// propsLast: see PropertiesLast.
	propsLast bool
}

// PropertiesKey is how braze_to_amplitude writes the last top-level key of
// an Amplitude event, after scalar fields only (see Mark.PropertiesLast).
var PropertiesKey = []byte(`,"event_properties":{`)

type span struct{ start, end int }

// Builder collects the spans of one buffer; the zero value is ready.
type Builder struct {
	spans []span
}

// Add records that buf[start:end] is valid JSON; spans are added in order.
func (b *Builder) Add(start, end int) {
	b.spans = append(b.spans, span{start, end})
}

// MarkSlices returns the mark of subs, sub-slices of buf that are each
// valid JSON nested at most depth levels deep (0: not checked), in order;
// one outside buf is left out (it is validated downstream).
func MarkSlices(buf []byte, subs [][]byte, depth int) *Mark {
	m := &Mark{buf: buf, spans: make([]span, 0, len(subs)), depth: depth}
	for _, sub := range subs {
		if start, ok := offset(buf, sub); ok {
			m.spans = append(m.spans, span{start, start + len(sub)})
		}
	}
	return m
}

// Mark returns the mark of the spans added, over buf; depth bounds their
// nesting (0: not checked). The Builder may be reused after Reset.
func (b *Builder) Mark(buf []byte, depth int) *Mark {
	return &Mark{buf: buf, spans: slices.Clone(b.spans), depth: depth}
}

// AmplitudeMark is Mark for Amplitude event objects whose event_properties
// come last (see Mark.PropertiesLast).
func (b *Builder) AmplitudeMark(buf []byte, depth int) *Mark {
	m := b.Mark(buf, depth)
	m.propsLast = true
	return m
}

// Reset forgets the spans added.
func (b *Builder) Reset() { b.spans = b.spans[:0] }

// Set puts the mark on msg (whose bytes must be one of its spans for it to
// vouch for them).
func Set(msg *service.Message, m *Mark) { msg.MetaSetMut(MetaKey, m) }

// ctxKey is the context key of a mark carried by With.
type ctxKey struct{}

// With returns msg carrying the mark m in its context rather than in its
// metadata (its bytes must be one of m's spans for it to vouch for them).
// It is for processors: the metadata of a message in a processor is shared
// with the copy its input keeps for a retry, so the first metadata write
// copies the whole map (about a third of braze_to_amplitude's cost on a
// backfill, whose messages hold eight keys), where this costs one context
// value and one message wrapper. Of finds either.
func With(msg *service.Message, m *Mark) *service.Message {
	ctx := msg.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return msg.WithContext(context.WithValue(ctx, ctxKey{}, m))
}

// Of returns the mark vouching for raw, the bytes of msg, or nil when none
// does: the mark of its context (With), else that of its metadata (Set).
func Of(msg *service.Message, raw []byte) *Mark { return OfAt(msg, raw, -1) }

// OfAt is Of for a message that is probably the at-th of the spans of its
// mark (its index in a batch whose marked messages are all in order): that
// span is looked at first, before a search of the others.
func OfAt(msg *service.Message, raw []byte, at int) *Mark {
	if ctx := msg.Context(); ctx != nil {
		if m, ok := ctx.Value(ctxKey{}).(*Mark); ok && m != nil && m.covers(raw, at) {
			return m
		}
	}
	v, ok := msg.MetaGetMut(MetaKey)
	if !ok {
		return nil
	}
	m, ok := v.(*Mark)
	if !ok || m == nil || !m.covers(raw, at) {
		return nil
	}
	return m
}

// covers reports whether raw is exactly one of the mark's spans of its
// buffer (the same memory, not equal bytes elsewhere), looking first at the
// span at (none when out of range).
func (m *Mark) covers(raw []byte, at int) bool {
	start, ok := offset(m.buf, raw)
	if !ok {
		return false
	}
	if at >= 0 && at < len(m.spans) && m.spans[at].start == start {
		return m.spans[at].end == start+len(raw)
	}
	i, found := slices.BinarySearchFunc(m.spans, start, func(s span, t int) int { return s.start - t })
	return found && m.spans[i].end == start+len(raw)
}

// Depth bounds the nesting of the marked JSON; 0 when it was not checked.
func (m *Mark) Depth() int { return m.depth }

// PropertiesLast says the marked bytes are Amplitude event objects written by
// braze_to_amplitude: scalar top-level fields (strings and numbers), then
// event_properties, the last key, written as PropertiesKey. Its first
// occurrence is therefore that key (in valid JSON, `,"` cannot occur inside a
// string nor close one), and the fields before it are read without scanning
// the properties.
func (m *Mark) PropertiesLast() bool { return m.propsLast }

// MarshalJSON shows the mark as a short string where metadata is
// serialised.
func (m *Mark) MarshalJSON() ([]byte, error) { return []byte(`"validated"`), nil }

// offset returns where sub starts in buf, when sub is a non-empty sub-slice
// of buf's memory.
func offset(buf, sub []byte) (int, bool) {
	if len(sub) == 0 || len(buf) == 0 {
		return 0, false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	if p < base || p-base > uintptr(len(buf)) || uintptr(len(sub)) > uintptr(len(buf))-(p-base) {
		return 0, false
	}
	return int(p - base), true
}
