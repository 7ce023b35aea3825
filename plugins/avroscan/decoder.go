package avroscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/hamba/avro/v2"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
	"github.com/opencurrents/currents-amplitude/plugins/internal/unsafestr"
)

// maxNesting bounds how deep a value may nest (records in records, arrays of
// arrays...). Braze records are flat; the bound only stops a crafted file
// with a recursive schema from exhausting the stack.
const maxNesting = 64

// errShort is returned when a value runs past the end of its block.
var errShort = errors.New("value runs past the end of the block")

// errVarint is returned for a number encoded in more than 10 bytes.
var errVarint = errors.New("varint longer than 10 bytes")

// node decodes one Avro value of a given schema from its binary encoding and
// appends it to dst as JSON. Nodes are built once per file from the writer
// schema, so decoding does no schema look-ups and no reflection.
type node interface {
	decode(r *binReader, dst []byte, depth int) ([]byte, error)
}

// binReader reads Avro's binary encoding from one decompressed block.
type binReader struct {
	b []byte
	p int
	// outLimit caps the JSON produced from one block: a few bytes of Avro
	// (e.g. an array of a million nulls) can otherwise expand without bound.
	outLimit int
}

// long reads a zig-zag varint, as used for Avro int, long and all lengths.
func (r *binReader) long() (int64, error) {
	u, n := binary.Uvarint(r.b[r.p:])
	switch {
	case n == 0:
		return 0, errShort
	case n < 0:
		return 0, errVarint
	}
	r.p += n
	return unzigzag(u), nil
}

// unzigzag maps Avro's zig-zag encoding back to a signed number.
func unzigzag(u uint64) int64 {
	return int64(u>>1) ^ -int64(u&1)
}

// size reads a byte or item count and checks it against what remains.
func (r *binReader) size() (int, error) {
	n, err := r.long()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("negative length %d", n)
	}
	if n > int64(len(r.b)-r.p) {
		return 0, errShort
	}
	return int(n), nil
}

// next returns the next n bytes of the block.
func (r *binReader) next(n int) ([]byte, error) {
	if n > len(r.b)-r.p {
		return nil, errShort
	}
	b := r.b[r.p : r.p+n]
	r.p += n
	return b, nil
}

// checkOut fails once the JSON written for the block passes outLimit.
func (r *binReader) checkOut(dst []byte) error {
	if len(dst) > r.outLimit {
		return fmt.Errorf("decoded JSON of the block exceeds %d bytes", r.outLimit)
	}
	return nil
}

//------------------------------------------------------------------------------

// compile builds the decoder tree of a writer schema.
func compile(s avro.Schema) (node, error) {
	c := compiler{records: map[string]*recordNode{}}
	return c.compile(s)
}

// compiler holds the record nodes built so far, by full name, so that a
// recursive schema compiles to a cyclic tree instead of looping.
type compiler struct {
	records map[string]*recordNode
}

func (c *compiler) compile(s avro.Schema) (node, error) {
	switch s := s.(type) {
	case *avro.RecordSchema:
		if n, ok := c.records[s.FullName()]; ok {
			return n, nil
		}
		n := &recordNode{}
		c.records[s.FullName()] = n
		for i, f := range s.Fields() {
			fn, err := c.compile(f.Type())
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", f.Name(), err)
			}
			key := []byte{','}
			if i == 0 {
				key = key[:0]
			}
			n.fields = append(n.fields, recordField{key: jsonw.AppendKey(key, f.Name()), node: fn})
		}
		return n, nil
	case *avro.RefSchema:
		return c.compile(s.Schema())
	case *avro.UnionSchema:
		n := unionNode{}
		for _, t := range s.Types() {
			tn, err := c.compile(t)
			if err != nil {
				return nil, err
			}
			n = append(n, tn)
		}
		return n, nil
	case *avro.ArraySchema:
		items, err := c.compile(s.Items())
		if err != nil {
			return nil, err
		}
		return &containerNode{items: items}, nil
	case *avro.MapSchema:
		values, err := c.compile(s.Values())
		if err != nil {
			return nil, err
		}
		return &containerNode{items: values, isMap: true}, nil
	case *avro.EnumSchema:
		n := enumNode{}
		for _, sym := range s.Symbols() {
			n = append(n, jsonw.AppendString(nil, sym))
		}
		return n, nil
	case *avro.FixedSchema:
		return fixedNode(s.Size()), nil
	case *avro.PrimitiveSchema:
		return primitive(s.Type())
	case *avro.NullSchema:
		return nullNode{}, nil
	}
	return nil, fmt.Errorf("unsupported schema type %s", s.Type())
}

func primitive(t avro.Type) (node, error) {
	switch t {
	case avro.Null:
		return nullNode{}, nil
	case avro.Boolean:
		return boolNode{}, nil
	case avro.Int:
		return intNode{}, nil
	case avro.Long:
		return longNode{}, nil
	case avro.Float:
		return floatNode{}, nil
	case avro.Double:
		return doubleNode{}, nil
	case avro.String:
		return stringNode{}, nil
	case avro.Bytes:
		return bytesNode{}, nil
	}
	return nil, fmt.Errorf("unsupported primitive type %s", t)
}

//------------------------------------------------------------------------------

type nullNode struct{}

func (nullNode) decode(_ *binReader, dst []byte, _ int) ([]byte, error) {
	return append(dst, "null"...), nil
}

type boolNode struct{}

func (boolNode) decode(r *binReader, dst []byte, _ int) ([]byte, error) {
	b, err := r.next(1)
	if err != nil {
		return dst, err
	}
	switch b[0] {
	case 0:
		return append(dst, "false"...), nil
	case 1:
		return append(dst, "true"...), nil
	}
	return dst, fmt.Errorf("invalid boolean byte 0x%02x", b[0])
}

type intNode struct{}

func (intNode) decode(r *binReader, dst []byte, _ int) ([]byte, error) {
	n, err := r.long()
	if err != nil {
		return dst, err
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return dst, fmt.Errorf("int value %d out of 32-bit range", n)
	}
	return strconv.AppendInt(dst, n, 10), nil
}

type longNode struct{}

func (longNode) decode(r *binReader, dst []byte, _ int) ([]byte, error) {
	n, err := r.long()
	if err != nil {
		return dst, err
	}
	return strconv.AppendInt(dst, n, 10), nil
}

type floatNode struct{}

func (floatNode) decode(r *binReader, dst []byte, _ int) ([]byte, error) {
	b, err := r.next(4)
	if err != nil {
		return dst, err
	}
	return appendFloat(dst, float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), 32), nil
}

type doubleNode struct{}

func (doubleNode) decode(r *binReader, dst []byte, _ int) ([]byte, error) {
	b, err := r.next(8)
	if err != nil {
		return dst, err
	}
	return appendFloat(dst, math.Float64frombits(binary.LittleEndian.Uint64(b)), 64), nil
}

type stringNode struct{}

func (stringNode) decode(r *binReader, dst []byte, _ int) ([]byte, error) {
	n, err := r.size()
	if err != nil {
		return dst, err
	}
	b, _ := r.next(n)
	return jsonw.AppendString(dst, unsafestr.FromBytes(b)), nil
}

type bytesNode struct{}

func (bytesNode) decode(r *binReader, dst []byte, _ int) ([]byte, error) {
	n, err := r.size()
	if err != nil {
		return dst, err
	}
	b, _ := r.next(n)
	return appendLatin1(dst, b), nil
}

type fixedNode int

func (f fixedNode) decode(r *binReader, dst []byte, _ int) ([]byte, error) {
	b, err := r.next(int(f))
	if err != nil {
		return dst, err
	}
	return appendLatin1(dst, b), nil
}

type enumNode [][]byte

func (e enumNode) decode(r *binReader, dst []byte, _ int) ([]byte, error) {
	i, err := r.long()
	if err != nil {
		return dst, err
	}
	if i < 0 || i >= int64(len(e)) {
		return dst, fmt.Errorf("enum index %d out of range [0,%d)", i, len(e))
	}
	return append(dst, e[i]...), nil
}

// unionNode writes the value of the selected branch alone: ["null","string"]
// gives null or "text", never {"string":"text"}.
type unionNode []node

func (u unionNode) decode(r *binReader, dst []byte, depth int) ([]byte, error) {
	i, err := r.long()
	if err != nil {
		return dst, err
	}
	if i < 0 || i >= int64(len(u)) {
		return dst, fmt.Errorf("union branch %d out of range [0,%d)", i, len(u))
	}
	return u[i].decode(r, dst, depth)
}

type recordField struct {
	key  []byte // `"name":`, preceded by a comma for all but the first field
	node node
}

type recordNode struct {
	fields []recordField
}

func (n *recordNode) decode(r *binReader, dst []byte, depth int) ([]byte, error) {
	if depth > maxNesting {
		return dst, fmt.Errorf("values nested deeper than %d levels", maxNesting)
	}
	dst = append(dst, '{')
	var err error
	for _, f := range n.fields {
		dst = append(dst, f.key...)
		if dst, err = f.node.decode(r, dst, depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), r.checkOut(dst)
}

// containerNode decodes an Avro array (to a JSON array) or map (to a JSON
// object): both are a sequence of blocks of items, map items being keyed.
type containerNode struct {
	items node
	isMap bool
}

func (n *containerNode) decode(r *binReader, dst []byte, depth int) ([]byte, error) {
	open, closing := byte('['), byte(']')
	if n.isMap {
		open, closing = '{', '}'
	}
	dst = append(dst, open)
	first := true
	err := readBlocks(r, depth, func() error {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		var err error
		if n.isMap {
			if dst, err = (stringNode{}).decode(r, dst, depth); err != nil {
				return err
			}
			dst = append(dst, ':')
		}
		if dst, err = n.items.decode(r, dst, depth+1); err != nil {
			return err
		}
		return r.checkOut(dst)
	})
	return append(dst, closing), err
}

// readBlocks walks the blocks of an Avro array or map, calling item once per
// element.
func readBlocks(r *binReader, depth int, item func() error) error {
	if depth > maxNesting {
		return fmt.Errorf("values nested deeper than %d levels", maxNesting)
	}
	for {
		count, err := r.long()
		if err != nil {
			return err
		}
		if count == 0 {
			return nil
		}
		if count < 0 {
			if count == math.MinInt64 {
				return fmt.Errorf("invalid item count %d", count)
			}
			count = -count
			// The block's byte size follows a negative count; we decode the
			// items anyway, so it is only checked for sanity.
			if _, err := r.size(); err != nil {
				return err
			}
		}
		for ; count > 0; count-- {
			if err := item(); err != nil {
				return err
			}
		}
	}
}

//------------------------------------------------------------------------------

// appendFloat writes f in its shortest form for its Avro width (bits 32 or
// 64): a float 3.14 is written 3.14, not 3.140000104904175. It follows
// encoding/json's choice between plain and exponent notation. NaN and the
// infinities, which JSON cannot represent, are written as the strings "NaN",
// "Infinity" and "-Infinity" (as Jackson and avro-tools name them).
func appendFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// Shorten e-09 to e-9, as encoding/json does.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendLatin1 writes Avro bytes and fixed values as avro-tools does: a JSON
// string with one code point (U+0000 to U+00FF) per byte.
func appendLatin1(dst, b []byte) []byte {
	buf := make([]byte, 0, 2*len(b))
	for _, c := range b {
		buf = utf8.AppendRune(buf, rune(c))
	}
	return jsonw.AppendString(dst, unsafestr.FromBytes(buf))
}
