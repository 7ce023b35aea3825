package jsonlimit

import (
	"errors"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestDepth(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want int
	}{
		{"scalar", `1`, 0},
		{"empty object", `{}`, 1},
		{"body", `{"events":[{"user":{"a":[1]}}]}`, 5},
		{"brackets in strings", `{"a":"[[[{{{","b":"\"[[["}`, 1},
		{"escaped backslash before quote", `{"a":"\\","b":[[]]}`, 3},
		{"siblings do not add", `[[],[],[[]]]`, 3},
		{"unbalanced", `]]]][[`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Depth([]byte(tc.doc), 100); got != tc.want {
				t.Fatalf("Depth(%s) = %d, want %d", tc.doc, got, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	deep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	if err := Check([]byte(deep), 64); !errors.Is(err, ErrTooDeep) || err.Error() != "JSON nested deeper than 64 levels" {
		t.Fatalf("Check(65 levels) = %v", err)
	}
	if err := Check([]byte(deep[1:len(deep)-1]), 64); err != nil {
		t.Fatalf("Check(64 levels) = %v", err)
	}
	// Many brackets, shallow: past the count, the scan decides.
	wide := "[" + strings.Repeat("[],", 100) + "[]]"
	if Exceeds(wide, 64) || !Exceeds(deep, 64) || Exceeds(`{"a":"[[[[[[[[[["}`, 2) {
		t.Fatal("Exceeds disagrees with Depth")
	}
}

// TestFiveMillionLevels: a 5-million-level document is refused in one pass
// without allocating.
func TestFiveMillionLevels(t *testing.T) {
	doc := []byte(`{"events":[` + strings.Repeat(`{"a":`, 5_000_000))
	if allocs := testing.AllocsPerRun(3, func() {
		if Check(doc, DefaultMaxDepth) == nil {
			t.Fatal("accepted")
		}
	}); allocs > 1 {
		t.Fatalf("%v allocations", allocs)
	}
}

// FuzzDepth checks Depth against gjson's own walk on valid documents.
func FuzzDepth(f *testing.F) {
	for _, s := range []string{`{}`, `[1,[2,{"a":"]"}]]`, `"\\"`, `{"a":{"b":{"c":[]}}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 || !gjson.Valid(s) {
			return
		}
		want := gjsonDepth(gjson.Parse(s))
		if got := Depth([]byte(s), 1<<20); got != want {
			t.Fatalf("Depth(%q) = %d, gjson says %d", s, got, want)
		}
		for _, max := range []int{0, 1, 2, 5} {
			if Exceeds(s, max) != (want > max) {
				t.Fatalf("Exceeds(%q, %d) = %v, depth %d", s, max, !(want > max), want)
			}
		}
	})
}

func gjsonDepth(v gjson.Result) int {
	if !v.IsObject() && !v.IsArray() {
		return 0
	}
	deepest := 0
	v.ForEach(func(_, c gjson.Result) bool {
		deepest = max(deepest, gjsonDepth(c))
		return true
	})
	return deepest + 1
}

func BenchmarkExceedsEvent(b *testing.B) {
	ev := []byte(`{"event_type":"users.messages.email.Open","id":"0f6b3c1e-1c1b-4c7e-9d1a","time":1700000000,"user":{"external_user_id":"usr_1","device_id":"dev_1"},"properties":{"campaign_name":"Winter sale [EU]","n":[1,2,3]}}`)
	b.SetBytes(int64(len(ev)))
	b.ReportAllocs()
	for b.Loop() {
		Exceeds(ev, DefaultMaxDepth)
	}
}

func BenchmarkDepth(b *testing.B) {
	doc := []byte(`{"events":[` + strings.Repeat(`{"id":"0f6b3c1e-1c1b-4c7e-9d1a","user":{"external_user_id":"usr_1","device_id":"dev_1"},"properties":{"campaign_name":"Winter sale [EU]","n":[1,2,3]}},`, 99) + `{}]}`)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		Depth(doc, DefaultMaxDepth)
	}
}

// BenchmarkGjsonValid is the validation every body already pays, for
// comparison with BenchmarkDepth.
func BenchmarkGjsonValid(b *testing.B) {
	doc := []byte(`{"events":[` + strings.Repeat(`{"id":"0f6b3c1e-1c1b-4c7e-9d1a","user":{"external_user_id":"usr_1","device_id":"dev_1"},"properties":{"campaign_name":"Winter sale [EU]","n":[1,2,3]}},`, 99) + `{}]}`)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		gjson.ValidBytes(doc)
	}
}
