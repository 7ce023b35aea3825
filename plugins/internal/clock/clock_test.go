package clock

import (
	"context"
	"testing"
	"time"
)

func TestFakeFiresInOrder(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	f := NewFake(start)
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(time.Second)
	c := f.NewTimer(3 * time.Second)
	if !c.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	f.Advance(1500 * time.Millisecond)
	select {
	case got := <-b.C():
		if !got.Equal(start.Add(1500 * time.Millisecond)) {
			t.Fatalf("fired at %v", got)
		}
	default:
		t.Fatal("1 s timer did not fire after 1.5 s")
	}
	select {
	case <-a.C():
		t.Fatal("2 s timer fired after 1.5 s")
	default:
	}
	f.Advance(time.Second)
	select {
	case <-a.C():
	default:
		t.Fatal("2 s timer did not fire after 2.5 s")
	}
	if f.Pending() != 0 {
		t.Fatalf("%d timers pending, want 0 (the stopped one must not count)", f.Pending())
	}
	if a.Stop() {
		t.Fatal("Stop of a fired timer reported true")
	}
}

func TestSleepOnFake(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	done := make(chan error, 1)
	go func() { done <- Sleep(context.Background(), f, time.Minute) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !f.WaitForTimers(ctx, 1) {
		t.Fatal("Sleep never waited on the clock")
	}
	f.Advance(59 * time.Second)
	select {
	case <-done:
		t.Fatal("Sleep returned before its minute")
	default:
	}
	f.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSleepCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, NewFake(time.Unix(0, 0)), time.Hour); err == nil {
		t.Fatal("Sleep on an ended context returned nil")
	}
	if err := Sleep(ctx, System, 0); err == nil {
		t.Fatal("zero Sleep on an ended context returned nil")
	}
	if OrSystem(nil) != System {
		t.Fatal("OrSystem(nil) is not System")
	}
}

func TestSetNeverGoesBack(t *testing.T) {
	start := time.Unix(100, 0)
	f := NewFake(start)
	f.Set(start.Add(-time.Hour))
	if !f.Now().Equal(start) {
		t.Fatal("Set moved the clock backwards")
	}
	f.NewTimer(time.Second)
	if d, ok := f.NextDeadline(); !ok || !d.Equal(start.Add(time.Second)) {
		t.Fatalf("NextDeadline = %v %v", d, ok)
	}
}

// TestAfterFunc: f runs once its time has passed, on the fake clock and on
// the system one, unless stop came first; stop reports whether it
// prevented the call, as time.Timer.Stop does.
func TestAfterFunc(t *testing.T) {
	fake := NewFake(time.Unix(1_700_000_000, 0))
	for _, tc := range []struct {
		name    string
		c       Clock
		advance func(time.Duration)
	}{
		{"fake", fake, fake.Advance},
		{"system", System, func(time.Duration) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := make(chan struct{}, 2)
			stop := AfterFunc(tc.c, time.Hour, func() { called <- struct{}{} })
			if !stop() {
				t.Fatal("stop before the time reported false")
			}
			if stop() {
				t.Fatal("a second stop reported true")
			}
			tc.advance(2 * time.Hour)
			d := time.Duration(0) // the system clock: due at once
			if tc.c != System {
				d = time.Second
			}
			fired := AfterFunc(tc.c, d, func() { called <- struct{}{} })
			tc.advance(time.Second)
			<-called // the second AfterFunc's call: the stopped one must not come
			if fired() {
				t.Fatal("stop after the call reported true")
			}
			select {
			case <-called:
				t.Fatal("the stopped call ran")
			default:
			}
		})
	}
}
