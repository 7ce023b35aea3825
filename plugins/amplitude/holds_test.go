package amplitude

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/ratelimited"
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

// TestPacedEventsTakeTurns: events of one id waiting for its budget, in one
// write or several, are held until the instant the pacer has room, up to
// wakeTogether of them, and the others until successive turns one pacer
// interval apart; a turn past the write's deadline nacks the event; nothing
// stays counted once the events stop waiting or their write ends.
func TestPacedEventsTakeTurns(t *testing.T) {
	o := &amplitudeOutput{pacer: newPacer(endpointHTTPV2, 0.1), metrics: newOutputMetrics(nil)}
	t0 := time.Unix(1_700_000_000, 0)
	iv := time.Duration(o.pacer.interval)
	w1, w2, w3 := newDelivery(o), newDelivery(o), newDelivery(o)
	w3.deadline = t0.Add(3*iv - time.Nanosecond)
	hot := func() *event { return &event{deviceID: "hot-device", userID: "hot-user"} }
	for range wakeTogether - 1 {
		w1.holdPaced(hot(), t0)
	}
	w2.holdPaced(hot(), t0) // the last to wake at t0
	w2.holdPaced(hot(), t0)
	w1.holdPaced(hot(), t0)
	w3.holdPaced(hot(), t0) // its turn, t0+3iv, is past its deadline
	w2.holdPaced(&event{userID: "cold-user"}, t0)
	turns := map[time.Duration]int{}
	for _, d := range []*delivery{w1, w2} {
		for _, h := range d.held {
			turns[h.until.Sub(t0)]++
		}
	}
	if want := map[time.Duration]int{0: wakeTogether + 1, iv: 1, 2 * iv: 1}; fmt.Sprint(turns) != fmt.Sprint(want) {
		t.Errorf("events per turn %v, want %v", turns, want)
	}
	if len(w3.held) != 0 || len(w3.errs) != 1 {
		t.Errorf("the event whose turn is past the deadline: held %d, failed %d; want nacked", len(w3.held), len(w3.errs))
	}
	h := idHash(deviceKey("hot-device"))
	if n := o.waiting.add(h, 0); n != wakeTogether+2 {
		t.Errorf("%d events counted waiting for hot-device, want %d", n, wakeTogether+2)
	}
	w1.unwait(w1.held[0])
	w1.held = w1.held[1:]
	if n := o.waiting.add(h, 0); n != wakeTogether+1 {
		t.Errorf("%d events counted after one stopped waiting, want %d", n, wakeTogether+1)
	}
	w1.endWaits()
	w2.endWaits()
	w3.endWaits()
	for i := range o.waiting.shards {
		if s := &o.waiting.shards[i]; len(s.n) != 0 {
			t.Errorf("ids still counted after every write ended: %v", s.n)
		}
	}
}

// TestPacedIDClaims: the waiting events of one id hold at most idWrites
// writes; a write already holding the id adds more; a write that cannot
// claim it defers the event (nacked, not held) while its events of other
// ids wait; claims end with their write.
func TestPacedIDClaims(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	o := &amplitudeOutput{pacer: newPacer(endpointHTTPV2, 0.1), metrics: newOutputMetrics(nil), idWrites: 2, clock: clock.NewFake(t0)}
	hot := func(i int) *event { return &event{index: i, deviceID: "hot-device"} }
	w1, w2, w3 := newDelivery(o), newDelivery(o), newDelivery(o)
	w1.holdPaced(hot(0), t0)
	w2.holdPaced(hot(0), t0)
	w1.holdPaced(hot(1), t0) // w1 holds the id already
	w3.holdPaced(hot(0), t0)
	w3.holdPaced(&event{index: 1, deviceID: "cold-device"}, t0)
	if len(w1.held) != 2 || len(w2.held) != 1 || len(w1.errs)+len(w2.errs) != 0 {
		t.Fatalf("the 2 writes within the share: held %d and %d, failed %v %v", len(w1.held), len(w2.held), w1.errs, w2.errs)
	}
	var oe *OutageError
	if !errors.As(w3.errs[0], &oe) || oe.Reason != OutageDeferred || len(w3.held) != 1 || w3.held[0].ev.deviceID != "cold-device" {
		t.Fatalf("the third write: failed %v, held %d; want its hot event deferred and its cold one held", w3.errs, len(w3.held))
	}
	// Its hint: the id's 3 waiting events and itself, at the pacer's rate;
	// the next deferred event's, one interval later.
	iv := time.Duration(o.pacer.interval)
	if want := 4 * iv; oe.RetryAfter() != want || ratelimited.After(w3.errs[0]) != want {
		t.Fatalf("deferred with a hint of %v, want %v", oe.RetryAfter(), want)
	}
	w4 := newDelivery(o)
	w4.holdPaced(hot(0), t0)
	if got := ratelimited.After(w4.errs[0]); got != 5*iv {
		t.Fatalf("the next deferred event's hint %v, want %v", got, 5*iv)
	}
	w4.endWaits()
	w1.endWaits()
	w3.holdPaced(hot(2), t0) // w1's claim is free again
	if len(w3.held) != 2 || len(w3.errs) != 1 {
		t.Fatalf("after a write ended: held %d, failed %v; want the hot event held", len(w3.held), w3.errs)
	}
	w2.endWaits()
	w3.endWaits()
	for i := range o.waiting.shards {
		if s := &o.waiting.shards[i]; len(s.writes) != 0 || len(s.n) != 0 {
			t.Errorf("claims left after every write ended: %v %v", s.writes, s.n)
		}
	}
}

// TestDeferTurns: an id's deferred events get turns one interval apart,
// after its waiting events; past turns do not hold later ones back, and a
// shard forgets them once it has maxTurns ids.
func TestDeferTurns(t *testing.T) {
	var w waiters
	const iv, now = int64(10), int64(1_000_000)
	h := uint64(7)
	w.add(h, 3)
	for i, want := range []int64{now + 4*iv, now + 5*iv, now + 6*iv} {
		if got := w.deferTurn(h, now, iv); got != want {
			t.Fatalf("deferred event %d: turn %d, want %d", i, got, want)
		}
	}
	later := now + 100*iv // the turns given are past
	if got, want := w.deferTurn(h, later, iv), later+4*iv; got != want {
		t.Fatalf("after the turns: %d, want %d", got, want)
	}
	for i := range 2 * maxTurns { // ids of the same shard (top bits 0)
		w.deferTurn(uint64(i+100), later+int64(i)*1000, iv)
	}
	if n := len(w.shards[0].turns); n > maxTurns {
		t.Fatalf("%d turns kept, at most %d", n, maxTurns)
	}
}
