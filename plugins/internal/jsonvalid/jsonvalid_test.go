package jsonvalid_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonscan"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonvalid"
)

func TestValue(t *testing.T) {
	cases := []struct {
		in   string
		end  int // -1: invalid
		deep int // maxDepth (0: 64)
	}{
		{in: `{}`, end: 2},
		{in: `[]`, end: 2},
		{in: `{ }x`, end: 3},
		{in: `[ 1 , 2 ]`, end: 9},
		{in: `{"a":1,"b":[true,false,null,"x",-0.5e+3,{}]}`, end: 44},
		{in: `{"a" : "\"\\\/\b\f\n\r\t\u00e9"},`, end: 32},
		{in: `"a long string of more than eight bytes, \u0041 and é"`, end: len(`"a long string of more than eight bytes, \u0041 and é"`)},
		{in: "\"\xff\xfe\"", end: 4}, // UTF-8 is not checked, as gjson does not
		{in: `0`, end: 1},
		{in: `01`, end: 1}, // the value ends after 0; what follows is the caller's
		{in: `-`, end: -1},
		{in: `1.`, end: -1},
		{in: `1e`, end: -1},
		{in: `1e+`, end: -1},
		{in: `.5`, end: -1},
		{in: `+1`, end: -1},
		{in: `tru`, end: -1},
		{in: `nul`, end: -1},
		{in: `{"a":1,}`, end: -1},
		{in: `[1,]`, end: -1},
		{in: `{"a"}`, end: -1},
		{in: `{"a":}`, end: -1},
		{in: `{1:2}`, end: -1},
		{in: `{"a":1 "b":2}`, end: -1},
		{in: `[1 2]`, end: -1},
		{in: `{"a":[1}`, end: -1},
		{in: `"a` + "\x01" + `"`, end: -1},
		{in: `"a` + "\n" + `"`, end: -1},
		{in: `"\x"`, end: -1},
		{in: `"\u12g4"`, end: -1},
		{in: `"\u12`, end: -1},
		{in: `"abc`, end: -1},
		{in: `"abcdefghijklmnop\`, end: -1},
		{in: ` {}`, end: -1}, // no whitespace before the value
		{in: ``, end: -1},
		{in: `[[[]]]`, end: 6, deep: 3},
		{in: `[[[[]]]]`, end: -1, deep: 3},
		{in: `{"a":{"b":[1]}}`, end: -1, deep: 2},
		{in: `{"a":"[[[[[[["}`, end: 15, deep: 1},
	}
	for _, tc := range cases {
		deep := tc.deep
		if deep == 0 {
			deep = 64
		}
		end, ok := jsonvalid.Value([]byte(tc.in), 0, deep)
		if tc.end < 0 {
			if ok {
				t.Errorf("%q: accepted, ends at %d", tc.in, end)
			}
			continue
		}
		if !ok || end != tc.end {
			t.Errorf("%q: end %d, ok %v; want %d", tc.in, end, ok, tc.end)
		}
	}
	if _, ok := jsonvalid.Value([]byte(strings.Repeat("[", 1<<20)), 0, 64); ok {
		t.Error("a million levels accepted")
	}
	deep := strings.Repeat("[", 200) + strings.Repeat("]", 200)
	if end, ok := jsonvalid.Value([]byte(deep), 0, 200); !ok || end != len(deep) {
		t.Errorf("200 levels within a limit of 200 (beyond the fixed stack): end %d, ok %v", end, ok)
	}
}

// FuzzValue checks Value against the three passes it replaces: where
// jsonscan.Skip ends the value, gjson's validation of that span, and
// jsonlimit's depth; and that a valid document is accepted whole.
func FuzzValue(f *testing.F) {
	for _, seed := range []string{`{}`, `{"a":[1,2,{"b":"c\"d"}],"e":-1.5e3}`, `[true,false,null]`, `"\u00e9\\"`,
		`{"a":"12345678\u0041\n"}`, `[[[[[[1]]]]]]`, `{"a":01}`, `{"a" : [ ] , "b" : { } }`, "{\"a\":\"\x1f\"}"} {
		f.Add([]byte(seed), uint8(4))
	}
	f.Fuzz(func(t *testing.T, data []byte, depth uint8) {
		max := 1 + int(depth%70)
		end, ok := jsonvalid.Value(data, 0, max)
		if end < 0 || end > len(data) {
			t.Fatalf("%q: end %d out of range", data, end)
		}
		if ok {
			if !gjson.ValidBytes(data[:end]) || jsonlimit.Depth(data[:end], 1<<20) > max {
				t.Fatalf("%q (max %d): accepted %q, which gjson or the depth refuses", data, max, data[:end])
			}
		}
		if len(data) > 0 && (data[0] == '{' || data[0] == '[' || data[0] == '"') {
			skip := jsonscan.Skip(string(data), 0)
			want := gjson.ValidBytes(data[:skip]) && !jsonlimit.Exceeds(data[:skip], max)
			if ok != want || ok && end != skip {
				t.Fatalf("%q (max %d): ok %v end %d; the three passes: ok %v end %d", data, max, ok, end, want, skip)
			}
		}
		trimmed := bytes.TrimRight(data, " \t\r\n")
		if len(data) > 0 && !bytes.ContainsAny(data[:1], " \t\r\n") && gjson.ValidBytes(data) && jsonlimit.Depth(data, 1<<20) <= max {
			if !ok || end != len(trimmed) {
				t.Fatalf("%q (max %d): valid document, but ok %v end %d", data, max, ok, end)
			}
		}
	})
}

// BenchmarkValue compares Value with the three passes it replaces, on
// events of the shape Braze sends.
func BenchmarkValue(b *testing.B) {
	ev := []byte(`{"id":"5c1a7e93-0d2b-4f6e-8a41-93b7c2d4e601","time":1767225600,"event_type":"users.messages.pushnotification.Send","user":{"user_id":"66a1b2c3d4e5f60718293a4b","external_user_id":"usr_901","device_id":"0f5e2c7a-9b14-4d36-8e2f-6a7b8c9d0e1f","timezone":"Europe/Berlin"},"properties":{"app_id":"b7e2d9c4-1f6a-4e3b-8c5d-0a9f8e7d6c5b","platform":"android","campaign_id":"c0ffee00-1a2b-4c3d-8e9f-001122334455","campaign_name":"Welcome Series","send_id":"62b1f4c9e8d7a6b5c4d3e2f1","dispatch_id":"62b1f4c9e8d7a6b5c4d3e2f0","is_amp":false,"ad_id":"00000000-1111-2222-3333-444444444444","ad_id_type":"ios_idfa","ad_tracking_enabled":true}}`)
	b.Run("one_pass", func(b *testing.B) {
		b.SetBytes(int64(len(ev)))
		b.ReportAllocs()
		for b.Loop() {
			if end, ok := jsonvalid.Value(ev, 0, 62); !ok || end != len(ev) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("three_passes", func(b *testing.B) {
		b.SetBytes(int64(len(ev)))
		b.ReportAllocs()
		for b.Loop() {
			end := jsonscan.Skip(string(ev), 0)
			if jsonlimit.Exceeds(ev[:end], 62) || !gjson.ValidBytes(ev[:end]) {
				b.Fatal("refused")
			}
		}
	})
}
