package trusted

import (
	"fmt"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func TestOf(t *testing.T) {
	buf := []byte(`{"a":1}{"b":2}`)
	mark := MarkSlices(buf, [][]byte{buf[0:7], buf[7:14], []byte(`{"c":3}`)}, 5) // the last is elsewhere: left out
	if len(mark.spans) != 2 {
		t.Fatalf("%d spans, want 2 (a slice outside the buffer is left out)", len(mark.spans))
	}
	copied := append([]byte(nil), buf[0:7]...)
	cases := []struct {
		name  string
		raw   []byte
		meta  any // the value under MetaKey; nil: the mark
		noKey bool
		want  bool
	}{
		{name: "first span", raw: buf[0:7], want: true},
		{name: "second span", raw: buf[7:14], want: true},
		{name: "equal bytes elsewhere", raw: copied},
		{name: "part of a span", raw: buf[0:6]},
		{name: "span start, longer", raw: buf[0:8]},
		{name: "inside a span", raw: buf[1:7]},
		{name: "across spans", raw: buf[0:14]},
		{name: "empty", raw: buf[0:0]},
		{name: "no mark", raw: buf[0:7], noKey: true},
		{name: "forged string", raw: buf[0:7], meta: "validated"},
		{name: "forged nil mark", raw: buf[0:7], meta: (*Mark)(nil)},
		{name: "forged empty mark", raw: buf[0:7], meta: &Mark{}},
		{name: "forged value mark", raw: buf[0:7], meta: Mark{buf: buf, spans: []span{{0, 7}}}},
	}
	for _, tc := range cases {
		// The mark in the metadata (Set) and in the context (With).
		for _, inContext := range []bool{false, true} {
			if inContext && (tc.noKey || tc.meta != nil) {
				continue
			}
			t.Run(fmt.Sprintf("%s/context=%v", tc.name, inContext), func(t *testing.T) {
				msg := service.NewMessage(tc.raw)
				switch {
				case tc.noKey:
				case tc.meta != nil:
					msg.MetaSetMut(MetaKey, tc.meta)
				case inContext:
					msg = With(msg, mark)
					if _, ok := msg.MetaGetMut(MetaKey); ok {
						t.Fatal("With wrote the metadata")
					}
				default:
					Set(msg, mark)
				}
				got := Of(msg, tc.raw)
				if (got != nil) != tc.want {
					t.Fatalf("Of = %v, want vouching %v", got, tc.want)
				}
				// Whatever span OfAt looks at first, it finds what Of finds.
				for at := -1; at <= 3; at++ {
					if g := OfAt(msg, tc.raw, at); g != got {
						t.Fatalf("OfAt(%d) = %v, Of = %v", at, g, got)
					}
				}
				if got != nil && (got.Depth() != 5 || got.PropertiesLast()) {
					t.Fatalf("Depth %d, PropertiesLast %v", got.Depth(), got.PropertiesLast())
				}
			})
		}
	}
}

// TestWithThenSet checks that a context mark that does not vouch for the
// bytes leaves the metadata mark to be found, and that a copy of the
// message keeps the context mark.
func TestWithThenSet(t *testing.T) {
	buf := []byte(`{"a":1}{"b":2}`)
	first := MarkSlices(buf, [][]byte{buf[0:7]}, 1)
	second := MarkSlices(buf, [][]byte{buf[7:14]}, 2)
	msg := With(service.NewMessage(buf[7:14]), first) // vouches for other bytes
	Set(msg, second)
	if got := Of(msg, buf[7:14]); got != second {
		t.Fatalf("Of = %v, want the metadata mark", got)
	}
	copied := With(service.NewMessage(buf[0:7]), first).Copy()
	if got := Of(copied, buf[0:7]); got != first {
		t.Fatalf("Of of a copy = %v, want the context mark", got)
	}
}

// TestReplacedBytes checks that a mark stops vouching once the message's
// bytes are replaced, and survives a copy of the message.
func TestReplacedBytes(t *testing.T) {
	buf := []byte(`{"a":1}`)
	var b Builder
	b.Add(0, len(buf))
	msg := service.NewMessage(buf)
	Set(msg, b.AmplitudeMark(buf, 0))
	if m := Of(msg.Copy(), buf); m == nil || !m.PropertiesLast() {
		t.Fatalf("a copy of the message lost its mark: %v", m)
	}
	msg.SetBytes([]byte(`{"a":1}`))
	raw, _ := msg.AsBytes()
	if Of(msg, raw) != nil {
		t.Fatal("the mark vouches for replaced bytes")
	}
	s, _ := msg.MetaGet(MetaKey)
	if s != `"validated"` {
		t.Fatalf("the mark shows as %q in string metadata", s)
	}
}

func BenchmarkOf(b *testing.B) {
	buf := make([]byte, 100*700)
	var bld Builder
	for i := range 100 {
		bld.Add(i*700, i*700+700)
	}
	mark := bld.Mark(buf, 62)
	msg := service.NewMessage(buf[4200:4900])
	Set(msg, mark)
	raw, _ := msg.AsBytes()
	b.Run("Of", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if Of(msg, raw) == nil {
				b.Fatal("no mark")
			}
		}
	})
	b.Run("OfAt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if OfAt(msg, raw, 6) == nil { // buf[4200:4900] is span 6
				b.Fatal("no mark")
			}
		}
	})
}
