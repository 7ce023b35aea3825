package avroscan

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// allTypesSchema uses every Avro type, nested, including a recursive record.
const allTypesSchema = `{"type":"record","name":"All","namespace":"t","fields":[
 {"name":"n","type":"null"},
 {"name":"b","type":"boolean"},
 {"name":"i","type":"int"},
 {"name":"l","type":"long"},
 {"name":"f","type":"float"},
 {"name":"d","type":"double"},
 {"name":"s","type":"string"},
 {"name":"by","type":"bytes"},
 {"name":"fx","type":{"type":"fixed","name":"F2","size":2}},
 {"name":"e","type":{"type":"enum","name":"E","symbols":["ios","android"]}},
 {"name":"a","type":{"type":"array","items":["null","string"]}},
 {"name":"m","type":{"type":"map","values":"long"}},
 {"name":"u","type":["null","string","long"]},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"next","type":["null","All"],"default":null}
]}`

func TestDecodeAllTypes(t *testing.T) {
	schema, err := avro.ParseWithCache(allTypesSchema, "", &avro.SchemaCache{})
	require.NoError(t, err)
	root, err := compile(schema)
	require.NoError(t, err)

	// The binary encoding is written by hand, so that the test does not
	// depend on another library's choices.
	data := []byte{
		// n: nothing; b: true
		0x01,
		// i: -2 (zig-zag 3); l: 1<<40
		0x03, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40,
		// f: 3.14 as float32 (0x4048F5C3 little-endian)
		0xC3, 0xF5, 0x48, 0x40,
		// d: 0.1 (0x3FB999999999999A little-endian)
		0x9A, 0x99, 0x99, 0x99, 0x99, 0x99, 0xB9, 0x3F,
		// s: "a\"é" (4 bytes)
		0x08, 'a', '"', 0xC3, 0xA9,
		// by: {0x00, 0xff}
		0x04, 0x00, 0xFF,
		// fx: {'h', 'i'}
		'h', 'i',
		// e: android
		0x02,
		// a: one block of 2 items: null, "x"; then a block of -1 items with
		// a byte size (2), "y"; then the end
		0x04, 0x00, 0x02, 0x02, 'x', 0x01, 0x04, 0x02, 0x02, 'y', 0x00,
		// m: {"k": 5}
		0x02, 0x02, 'k', 0x0A, 0x00,
		// u: branch 2 (long) = -1
		0x04, 0x01,
		// ts: 1700000000000
		0x80, 0xA0, 0xAB, 0xFE, 0xF9, 0x62,
		// next: branch 1: a nested All with empty values and next = null
		0x02,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	}
	r := binReader{b: data, outLimit: 1 << 20}
	got, err := root.decode(&r, nil, 0)
	require.NoError(t, err)
	assert.Equal(t, len(data), r.p, "every byte consumed")
	want := `{"n":null,"b":true,"i":-2,"l":1099511627776,"f":3.14,"d":0.1,"s":"a\"é","by":"\u0000ÿ","fx":"hi","e":"android",` +
		`"a":[null,"x","y"],"m":{"k":5},"u":-1,"ts":1700000000000,` +
		`"next":{"n":null,"b":false,"i":0,"l":0,"f":0,"d":0,"s":"","by":"","fx":"\u0000\u0000","e":"ios","a":[],"m":{},"u":null,"ts":0,"next":null}}`
	assert.Equal(t, want, string(got))
	assert.True(t, json.Valid(got))
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		schema  string
		data    []byte
		wantErr string
	}{
		{"short string", `"string"`, []byte{0x08, 'a'}, "runs past the end"},
		{"negative length", `"bytes"`, []byte{0x01}, "negative length"},
		{"bad boolean", `"boolean"`, []byte{0x07}, "invalid boolean"},
		{"int out of range", `"int"`, []byte{0x80, 0x80, 0x80, 0x80, 0x20}, "out of 32-bit range"},
		{"long varint", `"long"`, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "varint"},
		{"enum index", `{"type":"enum","name":"E","symbols":["a"]}`, []byte{0x02}, "enum index 1 out of range"},
		{"union branch", `["null","string"]`, []byte{0x04}, "union branch 2 out of range"},
		{"short float", `"float"`, []byte{0, 0}, "runs past the end"},
		{"short fixed", `{"type":"fixed","name":"F","size":4}`, []byte{0}, "runs past the end"},
		{"array of nulls too large", `{"type":"array","items":"null"}`, []byte{0x80, 0x80, 0x80, 0x80, 0x10}, "decoded JSON of the block exceeds"},
		{"deep recursion", `{"type":"record","name":"R","fields":[{"name":"r","type":["null","R"]}]}`, deep(200), "nested deeper than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := avro.ParseWithCache(tt.schema, "", &avro.SchemaCache{})
			require.NoError(t, err)
			root, err := compile(s)
			require.NoError(t, err)
			r := binReader{b: tt.data, outLimit: 1 << 16}
			_, err = root.decode(&r, nil, 0)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// deep encodes n nested records of {"r": ["null", R]}.
func deep(n int) []byte {
	b := make([]byte, n+1)
	for i := range n {
		b[i] = 0x02
	}
	return b
}

func TestAppendFloat(t *testing.T) {
	tests := []struct {
		f    float64
		bits int
		want string
	}{
		{float64(float32(3.14)), 32, "3.14"},
		{3.140000104904175, 32, "3.14"},
		{float64(float32(0.1)), 32, "0.1"},
		{float64(float32(19.99)), 32, "19.99"},
		{float64(float32(100000000)), 32, "100000000"},
		{float64(float32(123456789)), 32, "123456790"},
		{float64(float32(1e-7)), 32, "1e-7"},
		{float64(float32(2.5e21)), 32, "2.5e+21"},
		{float64(float32(-0.5)), 32, "-0.5"},
		{0, 32, "0"},
		{0.1, 64, "0.1"},
		{3.140000104904175, 64, "3.140000104904175"},
		{1e21, 64, "1e+21"},
		{1e-9, 64, "1e-9"},
		{math.NaN(), 64, `"NaN"`},
		{math.Inf(1), 32, `"Infinity"`},
		{math.Inf(-1), 64, `"-Infinity"`},
	}
	for _, tt := range tests {
		got := string(appendFloat(nil, tt.f, tt.bits))
		assert.Equal(t, tt.want, got, "appendFloat(%v, %d)", tt.f, tt.bits)
		assert.True(t, json.Valid([]byte(got)), got)
	}
}
