package unsafestr

import "testing"

func TestFromBytes(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
	}{{nil, ""}, {[]byte{}, ""}, {[]byte("héllo"), "héllo"}, {[]byte("a\x00b")[:2], "a\x00"}} {
		if got := FromBytes(tc.in); got != tc.want {
			t.Errorf("FromBytes(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	b := []byte("abc")
	s := FromBytes(b)
	b[0] = 'x'
	if s != "xbc" {
		t.Errorf("FromBytes must not copy: got %q after writing to b", s)
	}
}

func BenchmarkFromBytes(b *testing.B) {
	buf := []byte(`{"event_type":"users.messages.email.Open"}`)
	b.ReportAllocs()
	n := 0
	for i := 0; i < b.N; i++ {
		n += len(FromBytes(buf))
	}
	if n == 0 {
		b.Fatal("no bytes")
	}
}
