package amplitude

import (
	"fmt"
	"testing"
	"time"
)

func TestHolds(t *testing.T) {
	h := newHolds()
	t0 := time.Unix(1000, 0)
	h.hold([]string{"d:a", "u:b"}, t0, t0.Add(30*time.Second))
	h.hold([]string{"d:a"}, t0, t0.Add(10*time.Second)) // never shortens

	cases := []struct {
		keys []string
		at   time.Duration
		held bool
		till time.Duration
	}{
		{[]string{"d:a"}, time.Second, true, 30 * time.Second},
		{[]string{"d:x", "u:b"}, time.Second, true, 30 * time.Second},
		{[]string{"d:x"}, time.Second, false, 0},
		{[]string{"d:a"}, 30 * time.Second, false, 0}, // expired, forgotten
	}
	for _, tc := range cases {
		until, held := h.heldUntil(tc.keys, t0.Add(tc.at))
		if held != tc.held || (held && !until.Equal(t0.Add(tc.till))) {
			t.Errorf("%v at %v: held %v until %v", tc.keys, tc.at, held, until)
		}
	}
	if _, ok := h.until["d:a"]; ok {
		t.Error("expired hold kept")
	}
	// Holds never looked up again are swept once there are many.
	for i := range sweepAbove + 1 {
		h.hold([]string{fmt.Sprintf("d:%d", i)}, t0, t0.Add(time.Second))
	}
	h.hold([]string{"d:new"}, t0.Add(time.Minute), t0.Add(2*time.Minute))
	if len(h.until) != 1 {
		t.Fatalf("%d holds after the sweep, want 1", len(h.until))
	}
}
