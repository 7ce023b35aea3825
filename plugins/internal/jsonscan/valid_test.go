package jsonscan

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
)

// flatDescend flattens user and properties objects and list arrays, as
// sameFlat does.
func flatDescend(k string, array bool) bool {
	return k == "user" || k == "properties" || array && k == "list"
}

// wantValid is what a Scanner must say about raw: gjson.Valid, valid UTF-8,
// an object or array at the top, nested at most max levels deep, and
// descents nested at most MaxDescend levels deep.
func wantValid(raw string, max int) bool {
	root := gjson.Parse(raw)
	return gjson.Valid(raw) && utf8.ValidString(raw) && (root.IsObject() || root.IsArray()) &&
		max >= 1 && jsonlimit.Depth(raw, max) <= max && descents(root) <= MaxDescend
}

// descents returns the deepest nesting of descended containers in v (the
// root counts as one), as flatDescend descends.
func descents(v gjson.Result) int {
	deepest := 1
	if v.IsObject() {
		v.ForEach(func(k, m gjson.Result) bool {
			if (m.IsObject() || m.IsArray()) && flatDescend(k.Str, m.IsArray()) {
				deepest = max(deepest, 1+descents(m))
			}
			return true
		})
	}
	return deepest
}

// checkValid checks a Scanner against wantValid and, on valid input, its
// members against ForEachFlat's.
func checkValid(t *testing.T, raw string, max int) {
	t.Helper()
	var want, got []string
	ForEachFlat(raw, flatDescend, func(k, v gjson.Result) bool {
		want = append(want, memberString(k, v))
		return true
	})
	var s Scanner
	s.Reset(raw, max)
	for s.Next(flatDescend) {
		got = append(got, memberString(s.Key, s.Value))
	}
	if ok := s.Valid(); ok != wantValid(raw, max) {
		t.Fatalf("Scanner on %q (max depth %d): valid %v, want %v", raw, max, ok, !ok)
	}
	if s.Valid() && strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Scanner on %q:\n%v\nForEachFlat:\n%v", raw, got, want)
	}
	if s.Next(flatDescend) {
		t.Fatalf("Scanner on %q: Next true after the end", raw)
	}

	// Unescaping into a buffer (that starts small, so that it grows): the
	// members, kept until the end, are still what ForEachFlat yields.
	var kept []gjson.Result
	buf := make([]byte, 1, 2)
	s.Reset(raw, max)
	s.Unescaped = &buf
	for s.Next(flatDescend) {
		kept = append(kept, s.Key, s.Value)
	}
	got = got[:0]
	for i := 0; i+1 < len(kept); i += 2 {
		got = append(got, memberString(kept[i], kept[i+1]))
	}
	if s.Valid() && strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Scanner unescaping into a buffer on %q:\n%v\nForEachFlat:\n%v", raw, got, want)
	}
}

// memberString shows every field of a member.
func memberString(k, v gjson.Result) string { return fmt.Sprintf("%#v=%#v", k, v) }

var invalidSeeds = []string{
	``, ` `, `{`, `[`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{"a":1 "b":2}`, `{"a" 1}`, `{'a':1}`,
	`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`, `{"a":+1}`, `{"a":tru}`, `{"a":nul}`,
	`{"a":falsey}`, `{"a":"\x01"}`, `{"a":"\q"}`, `{"a":"\u12g4"}`, `{"a":"\u12"}`, `{"a":"\xff"}`, `{"\xc3":1}`,
	`{"a":"ab`, `{"a":"ab\`, `{"a":[1,{"b":2]}}`, `{"a":[1}`, `{"a":1}}`, `{"a":1} x`, "{\"a\":1}\f", "\v{}",
	`{"a":{"b":{"c":[[[1]]]}}}`, `"str"`, `12`, `null`, `{"a":"\ud800"}`, `{"user":{"a":"é","b":"` + "\xed\xa0\x80" + `"}}`,
	`{"properties":{"list":[1,2,`, `{"a":"0123456789abcdef0123456789` + "\x1f" + `"}`, `{"a":"0123456789abcdef\"01234\\\"56789"}`,
}

func TestScanner(t *testing.T) {
	for _, s := range append(append([]string(nil), seeds...), invalidSeeds...) {
		for _, max := range []int{0, 1, 2, 3, 4, 64} {
			checkValid(t, s, max)
		}
	}
	for _, n := range []int{MaxDescend - 1, MaxDescend, MaxDescend + 1, 70} {
		descended := strings.Repeat(`{"user":`, n) + `1` + strings.Repeat(`}`, n)
		nested := strings.Repeat(`{"a":`, n) + `1` + strings.Repeat(`}`, n)
		for _, max := range []int{n - 1, n, n + 1} {
			checkValid(t, descended, max)
			checkValid(t, nested, max)
		}
	}
}

// TestScannerStringBytes puts every byte value, alone and after a
// backslash, and some UTF-8 sequences, at every offset of a string longer
// than two 8-byte words, so that each lane of the word-at-a-time check meets
// each of them.
func TestScannerStringBytes(t *testing.T) {
	const filler = "abcdefghijklmnopqrstuvwx"
	var inserts []string
	for c := range 256 {
		inserts = append(inserts, string([]byte{byte(c)}), string([]byte{'\\', byte(c)}))
	}
	inserts = append(inserts, "é", `\u00e9`, `\u00`, `\ud83d\ude00`, "€", "\xe2\x82", "\xf0\x9f\x98\x80", "\xed\xa0\x80", "\xc0\xaf")
	for _, ins := range inserts {
		for pos := range 17 {
			str := filler[:pos] + ins + filler[pos:]
			checkValid(t, `{"k":"`+str+`","k2":1}`, 64)
			checkValid(t, `{"`+str+`":"v"}`, 64)
		}
	}
}

// FuzzScanner checks that a Scanner accepts exactly the JSON that
// gjson.Valid, utf8.Valid and jsonlimit accept, and then yields what
// ForEachFlat yields.
func FuzzScanner(f *testing.F) {
	for _, s := range append(append([]string(nil), seeds...), invalidSeeds...) {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, raw string, max uint8) {
		checkValid(t, raw, int(max%8))
		checkValid(t, raw, 64)
	})
}

func BenchmarkScanner(b *testing.B) {
	raw := `{"event_type":"users.messages.email.Open","id":"9f3c1a2e-4b5d-4e6f-8a7b-0c1d2e3f4a5b","time":1700000000,` +
		`"user":{"user_id":"21b72250f1f039efbdef1ece","external_user_id":"usr_100006249","device_id":"ce4b7bc7-8e75-5241-43fc-55a395dbd748","timezone":"America/Sao_Paulo"},` +
		`"properties":{"app_group_id":"5e9e4cfe-2112-6a47-a166-08f210c396d1","campaign_name":"` + strings.Repeat("Winter sale ", 4) + `","url":"https://example.com/a/b/c?d=e&f=g","n":[1,2.5,{"x":true}]}}`
	noop := func(_, _ gjson.Result) bool { return true }
	b.Run("fused", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			var s Scanner
			s.Reset(raw, 64)
			for s.Next(flatDescend) {
			}
			if !s.Valid() {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("validate_then_walk", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if jsonlimit.Exceeds(raw, 64) || !utf8.ValidString(raw) || !gjson.Valid(raw) {
				b.Fatal("invalid")
			}
			ForEachFlat(raw, flatDescend, noop)
		}
	})
}
