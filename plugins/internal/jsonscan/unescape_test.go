package jsonscan

import (
	"testing"

	"github.com/tidwall/gjson"
)

// checkUnescaped checks AppendUnescaped against gjson on the inside of a
// quoted JSON string that gjson.Valid accepts, appending after some bytes
// already in the buffer.
func checkUnescaped(t *testing.T, inner string) {
	t.Helper()
	quoted := `"` + inner + `"`
	if !gjson.Valid(quoted) {
		return
	}
	want := gjson.Parse(quoted).Str
	got := AppendUnescaped([]byte("x"), inner)
	if string(got) != "x"+want {
		t.Fatalf("AppendUnescaped(%q) = %q, gjson says %q", inner, got[1:], want)
	}
}

func TestAppendUnescaped(t *testing.T) {
	for _, tc := range []struct{ inner, want string }{
		{``, ``},
		{`plain`, `plain`},
		{`a\"b\\c\/d`, `a"b\c/d`},
		{`\b\f\n\r\t`, "\b\f\n\r\t"},
		{`\u00e9\u20AC`, "é€"},
		{`\ud83d\ude00!`, "😀!"},
		{`\ud83d`, "\uFFFD"},
		{`\ude00\ud83d`, "\uFFFD\uFFFD"},
		{`\ud83dx`, "\uFFFDx"},
		{`\ud83d\u0041`, "\uFFFDA"},
		{`é\"`, `é"`},
	} {
		if got := string(AppendUnescaped(nil, tc.inner)); got != tc.want {
			t.Errorf("AppendUnescaped(%q) = %q, want %q", tc.inner, got, tc.want)
		}
		checkUnescaped(t, tc.inner)
	}
	// Malformed escapes (never in a string a Scanner accepted) end the text.
	for _, inner := range []string{`a\`, `a\q`, `a\u12`, `a\u12g4`} {
		if got := string(AppendUnescaped(nil, inner)); got != "a" {
			t.Errorf("AppendUnescaped(%q) = %q, want %q", inner, got, "a")
		}
	}
}

// FuzzAppendUnescaped checks AppendUnescaped against gjson's unescaping on
// every valid JSON string.
func FuzzAppendUnescaped(f *testing.F) {
	for _, s := range []string{`a\"b`, `\u00e9`, `\ud83d\ude00`, `\ud83d\u0041`, `\udbff\udfff`, `x\/\\\n`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, inner string) {
		AppendUnescaped(nil, inner) // never panics
		checkUnescaped(t, inner)
	})
}
