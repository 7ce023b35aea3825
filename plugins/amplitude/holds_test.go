package amplitude

import (
	"fmt"
	"testing"
	"time"
)

func TestHolds(t *testing.T) {
	h := newHolds()
	t0 := time.Unix(1000, 0)
	h.hold([]idKey{deviceKey("a"), userKey("b")}, t0, t0.Add(30*time.Second), false)
	h.hold([]idKey{deviceKey("a")}, t0, t0.Add(10*time.Second), false) // never shortens
	h.hold([]idKey{userKey("q")}, t0, nextHourlyStep(t0), true)

	cases := []struct {
		keys  [2]idKey
		at    time.Duration
		held  bool
		quota bool
		till  time.Time
	}{
		{[2]idKey{deviceKey("a")}, time.Second, true, false, t0.Add(30 * time.Second)},
		{[2]idKey{deviceKey("x"), userKey("b")}, time.Second, true, false, t0.Add(30 * time.Second)},
		{[2]idKey{deviceKey("b")}, time.Second, false, false, time.Time{}}, // a device is not the user of that name
		{[2]idKey{deviceKey("x"), userKey("q")}, time.Minute, true, true, time.Unix(3600, 0)},
		{[2]idKey{deviceKey("a")}, 30 * time.Second, false, false, time.Time{}}, // expired, forgotten
	}
	for _, tc := range cases {
		until, quota, held := h.heldUntil(tc.keys, t0.Add(tc.at))
		if held != tc.held || quota != tc.quota || !until.Equal(tc.till) {
			t.Errorf("%v at %v: held %v quota %v until %v", tc.keys, tc.at, held, quota, until)
		}
	}
	if _, ok := h.until[deviceKey("a")]; ok {
		t.Error("expired hold kept")
	}
	if snap := h.snapshot(t0); len(snap) != 1 || !snap[userKey("q")].Equal(time.Unix(3600, 0)) {
		t.Errorf("snapshot %v", snap)
	}
	// Holds never looked up again are swept once there are many.
	for i := range sweepAbove + 1 {
		h.hold([]idKey{deviceKey(fmt.Sprint(i))}, t0, t0.Add(time.Second), false)
	}
	h.hold([]idKey{deviceKey("new")}, t0.Add(2*time.Hour), t0.Add(3*time.Hour), false)
	if len(h.until) != 1 {
		t.Fatalf("%d holds after the sweep, want 1", len(h.until))
	}
}

func TestSilencedSet(t *testing.T) {
	var s silencedSet
	if s.has("a") {
		t.Fatal("empty set has a")
	}
	s.add([]string{"a", "b"})
	if !s.has("a") || !s.has("b") || s.has("c") || s.has("") {
		t.Fatal("membership")
	}
}
