package secrettoken

import "testing"

func TestMatches(t *testing.T) {
	tok := New("s3cret")
	for _, tc := range []struct {
		got  string
		want bool
	}{{"s3cret", true}, {"s3cre", false}, {"s3cret ", false}, {"", false}} {
		if got := tok.Matches(tc.got); got != tc.want {
			t.Errorf("Matches(%q) = %v, want %v", tc.got, got, tc.want)
		}
	}
}
