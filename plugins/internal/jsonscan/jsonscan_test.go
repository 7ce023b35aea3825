package jsonscan

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

type member struct{ key, value gjson.Result }

func collect(each func(func(k, v gjson.Result) bool)) []member {
	var out []member
	each(func(k, v gjson.Result) bool {
		out = append(out, member{k, v})
		return true
	})
	return out
}

// same reports whether ForEach yields what gjson's ForEach yields on raw.
func same(t *testing.T, raw string) {
	t.Helper()
	want := collect(gjson.Parse(raw).ForEach)
	got := collect(func(f func(k, v gjson.Result) bool) { ForEach(raw, f) })
	if len(got) != len(want) {
		t.Fatalf("%q: %d members, gjson %d", raw, len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.key.Raw != w.key.Raw || g.key.Str != w.key.Str || g.key.Type != w.key.Type || g.key.Num != w.key.Num ||
			g.value.Raw != w.value.Raw || g.value.Str != w.value.Str || g.value.Type != w.value.Type ||
			(g.value.Num != w.value.Num && g.value.Num == g.value.Num) || g.value.Index != w.value.Index {
			t.Fatalf("%q member %d: got %+v %+v, gjson %+v %+v", raw, i, g.key, g.value, w.key, w.value)
		}
	}
}

// sameFlat checks ForEachFlat against flattening with gjson.
func sameFlat(t *testing.T, raw string) {
	t.Helper()
	descend := func(k string, array bool) bool { return k == "user" || k == "properties" || array && k == "list" }
	var want []string
	var flatten func(r gjson.Result)
	flatten = func(r gjson.Result) {
		r.ForEach(func(k, v gjson.Result) bool {
			if r.IsObject() && (v.IsObject() || v.IsArray()) && descend(k.Str, v.IsArray()) {
				flatten(v)
				return true
			}
			want = append(want, k.Raw+"="+v.Raw)
			return true
		})
	}
	if root := gjson.Parse(raw); root.IsObject() || root.IsArray() {
		flatten(root)
	} else {
		want = append(want, "="+root.Raw)
	}
	var got []string
	ForEachFlat(raw, descend, func(k, v gjson.Result) bool { got = append(got, k.Raw+"="+v.Raw); return true })
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("ForEachFlat(%q):\n%v\ngjson:\n%v", raw, got, want)
	}
}

var seeds = []string{
	`{"list":[1,{"list":[2]},[3]],"user":[4],"n":[-0,0,-12,123456789012345,1234567890123456,1.5,-1e3,00]}`,
	`{"user":{"a":1,"properties":{"b":[{"user":{"c":2}}]}},"properties":"s","x":{"user":3}}`,
	`{}`, `[]`, ` { "a" : 1 , "b":[1,{"c":"]}"}],"d":"x\"y\\","e":true,"f":false,"g":null,"h":-1.5e3} `,
	`{"esc\u00e9":"\ud83d\ude00","k":"\\\\"}`, `[1,"a",{"b":2},[3]]`, `"str"`, `12`, `null`,
	`{"event_type":"users.messages.email.Open","id":"e-1","time":1700000000,"user":{"external_user_id":"u-1"},"properties":{"email_address":"a@b.c"}}`,
}

func TestForEach(t *testing.T) {
	for _, s := range seeds {
		same(t, s)
	}
	var flat []string
	ForEachFlat(`{"a":1,"user":{"b":2,"properties":{"c":3},"d":[4]},"e":{"f":5},"user":null}`,
		func(k string, array bool) bool { return !array && (k == "user" || k == "properties") },
		func(k, v gjson.Result) bool { flat = append(flat, k.Str+"="+v.Raw); return true })
	if got := strings.Join(flat, " "); got != `a=1 b=2 c=3 d=[4] e={"f":5} user=null` {
		t.Fatalf("ForEachFlat: %s", got)
	}
	n := 0
	ForEach(`{"a":1,"b":2,"c":3}`, func(_, _ gjson.Result) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("iteration went on after false: %d calls", n)
	}
}

// FuzzForEach checks ForEach against gjson on valid JSON, and that it never
// panics nor hangs on anything else.
func FuzzForEach(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add(`{"a":"unterminated`)
	f.Add(`{"a":[{"b":`)
	f.Fuzz(func(t *testing.T, raw string) {
		if gjson.Valid(raw) {
			same(t, raw)
			sameFlat(t, raw)
			return
		}
		ForEach(raw, func(_, v gjson.Result) bool {
			if v.Type == gjson.JSON {
				ForEach(v.Raw, func(_, _ gjson.Result) bool { return true })
			}
			return true
		})
	})
}

func BenchmarkForEach(b *testing.B) {
	raw := `{"event_type":"users.messages.email.Open","id":"9f3c1a2e-4b5d-4e6f-8a7b-0c1d2e3f4a5b","time":1700000000,` +
		`"user":{"user_id":"21b72250f1f039efbdef1ece","external_user_id":"usr_100006249","device_id":"ce4b7bc7-8e75-5241-43fc-55a395dbd748","timezone":"America/Sao_Paulo"},` +
		`"properties":{"app_group_id":"5e9e4cfe-2112-6a47-a166-08f210c396d1","campaign_name":"` + strings.Repeat("Winter sale ", 4) + `","url":"https://example.com/a/b/c?d=e&f=g"}}`
	walk := func(each func(string, func(k, v gjson.Result) bool)) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				each(raw, func(_, v gjson.Result) bool {
					if v.Type == gjson.JSON {
						each(v.Raw, func(_, _ gjson.Result) bool { return true })
					}
					return true
				})
			}
		}
	}
	b.Run("jsonscan", walk(ForEach))
	b.Run("gjson", walk(func(s string, f func(k, v gjson.Result) bool) { gjson.Parse(s).ForEach(f) }))
}

// BenchmarkSplit iterates a request body's events (skipping each), as the
// body split does.
func BenchmarkSplit(b *testing.B) {
	ev := `{"event_type":"users.canvas.Entry","id":"a9fd683b-4738-d496-3966-2d8511276bb7","time":1767225600,"user":{"user_id":"21b72250f1f039efbdef1ece","external_user_id":"usr_100006249","device_id":"ce4b7bc7-8e75-5241-43fc-55a395dbd748","timezone":"America/Sao_Paulo"},"properties":{"app_group_id":"5e9e4cfe-2112-6a47-a166-08f210c396d1","canvas_id":"05bb15c8-f3f2-60c5-4b47-b4901fdc0307","canvas_name":"Journey: Re-engagement 2026","canvas_variation_id":"3f6dcbf3-00ed-e1e8-6fe0-013ad48a577e","canvas_variation_name":"Control","canvas_step_id":"a7e6ba43-dba3-08cf-82c8-bb8ac81f84be"}}`
	list := "[" + strings.Repeat(ev+",", 99) + ev + "]"
	b.Run("jsonscan", func(b *testing.B) {
		for b.Loop() {
			ForEach(list, func(_, _ gjson.Result) bool { return true })
		}
	})
	b.Run("gjson", func(b *testing.B) {
		for b.Loop() {
			gjson.Parse(list).ForEach(func(_, _ gjson.Result) bool { return true })
		}
	})
}
