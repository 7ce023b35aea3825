package outcome

import "testing"

func TestSinceAndTotal(t *testing.T) {
	Add(Dropped, "filtered", 2)
	base := Snapshot()
	Add(DeadLettered, "unmappable", 3)
	Add(DeadLettered, "unmappable", 1)
	Add(DeadLettered, "refused", 2)
	Add(Dropped, "filtered", 5)
	Add(Dropped, "ignored", 0)
	Add(Dropped, "negative", -4)

	d := Snapshot().Since(base)
	for _, tc := range []struct {
		kind   Kind
		reason string
		want   int64
	}{
		{DeadLettered, "unmappable", 4},
		{DeadLettered, "refused", 2},
		{Dropped, "filtered", 5},
	} {
		if got := d[tc.kind][tc.reason]; got != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.kind, tc.reason, got, tc.want)
		}
	}
	if _, ok := d[Dropped]["ignored"]; ok {
		t.Error("a reason with no events is listed")
	}
	if got := d.Total(DeadLettered); got != 6 {
		t.Errorf("Total(DeadLettered) = %d, want 6", got)
	}
	base[Dropped]["filtered"] = 99 // a snapshot is a copy
	if Snapshot()[Dropped]["filtered"] == 99 {
		t.Error("Snapshot shares its maps with the live counts")
	}
}
