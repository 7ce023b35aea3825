package runstatus

import (
	"errors"
	"testing"
)

func TestFailKeepsTheFirstError(t *testing.T) {
	if Err() != nil {
		t.Fatalf("Err = %v before any failure", Err())
	}
	Fail(nil)
	if Err() != nil {
		t.Fatal("Fail(nil) failed the run")
	}
	a, b := errors.New("a"), errors.New("b")
	Fail(a)
	Fail(b)
	if Err() != a {
		t.Fatalf("Err = %v, want the first error %v", Err(), a)
	}
}
