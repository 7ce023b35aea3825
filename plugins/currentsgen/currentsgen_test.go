package currentsgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestDeterministic(t *testing.T) {
	cfg := Config{Seed: 42, Devices: 500}
	for _, s := range []Shape{HTTP, Flat} {
		a, b := Generate(cfg, 2000, s), Generate(cfg, 2000, s)
		for i := range a {
			if !bytes.Equal(a[i], b[i]) {
				t.Fatalf("shape %d event %d differs between runs:\n%s\n%s", s, i, a[i], b[i])
			}
		}
	}
	other := Generate(Config{Seed: 43, Devices: 500}, 1, HTTP)[0]
	if bytes.Equal(other, Generate(cfg, 1, HTTP)[0]) {
		t.Fatal("different seeds gave the same first event")
	}
}

type httpEvent struct {
	EventType string `json:"event_type"`
	ID        string `json:"id"`
	Time      int64  `json:"time"`
	User      struct {
		UserID         string `json:"user_id"`
		ExternalUserID string `json:"external_user_id"`
		DeviceID       string `json:"device_id"`
		Timezone       string `json:"timezone"`
	} `json:"user"`
	Properties map[string]any `json:"properties"`
}

func TestHTTPShape(t *testing.T) {
	const n, devices = 20000, 1000
	g := New(Config{Seed: 1, Devices: devices, AnonymousPercent: 20})
	ids := map[string]bool{}
	deviceIDs := map[string]bool{}
	types := map[string]int{}
	anon, size := 0, 0
	var lastTime int64
	var buf []byte
	for i := 0; i < n; i++ {
		buf = g.Next().AppendHTTP(buf[:0])
		size += len(buf)
		var e httpEvent
		if err := json.Unmarshal(buf, &e); err != nil {
			t.Fatalf("event %d is not valid JSON: %v\n%s", i, err, buf)
		}
		if ids[e.ID] {
			t.Fatalf("duplicate id %s", e.ID)
		}
		ids[e.ID] = true
		if len(e.ID) != 36 || len(e.User.UserID) != 24 {
			t.Fatalf("bad id or user id: %s", buf)
		}
		if e.Time < lastTime || e.Time < 1767225600 {
			t.Fatalf("time went backwards or before start: %d after %d", e.Time, lastTime)
		}
		lastTime = e.Time
		if e.User.ExternalUserID == "" && e.User.DeviceID == "" {
			t.Fatalf("event has neither external_user_id nor device_id: %s", buf)
		}
		if e.User.ExternalUserID == "" {
			anon++
		}
		if e.User.DeviceID != "" {
			deviceIDs[e.User.DeviceID] = true
		}
		if e.Properties == nil {
			t.Fatalf("no properties: %s", buf)
		}
		switch e.EventType {
		case "users.behaviors.CustomEvent":
			if _, ok := e.Properties["custom_properties"].(map[string]any); !ok || e.Properties["name"] == nil {
				t.Fatalf("custom event without name or custom_properties object: %s", buf)
			}
		case "users.behaviors.Purchase":
			if _, ok := e.Properties["purchase_properties"].(map[string]any); !ok {
				t.Fatalf("purchase without purchase_properties object: %s", buf)
			}
			if _, ok := e.Properties["price"].(float64); !ok || e.Properties["product_id"] == nil {
				t.Fatalf("purchase without numeric price or product_id: %s", buf)
			}
		}
		types[e.EventType]++
	}
	if len(deviceIDs) > devices {
		t.Errorf("%d distinct devices, configured %d", len(deviceIDs), devices)
	}
	if len(deviceIDs) < devices*9/10 {
		t.Errorf("only %d of %d devices used in %d events", len(deviceIDs), devices, n)
	}
	if share := float64(anon) / n; share < 0.10 || share > 0.30 {
		t.Errorf("anonymous share %.2f, want about 0.20", share)
	}
	if avg := size / n; avg < 400 || avg > 1500 {
		t.Errorf("average event size %d bytes, want a realistic 400-1500", avg)
	}
	total := 0
	for _, w := range DefaultMix {
		total += w.Weight
	}
	for _, w := range DefaultMix {
		want := float64(w.Weight) / float64(total) * n
		if got := float64(types[w.Type]); math.Abs(got-want) > 5*math.Sqrt(want)+5 {
			t.Errorf("%s: %v events, want about %.0f", w.Type, got, want)
		}
	}
}

func TestFlatShape(t *testing.T) {
	g := New(Config{Seed: 7, Devices: 100})
	seen := map[string]bool{}
	var buf []byte
	for i := 0; i < 5000; i++ {
		e := g.Next()
		buf = e.AppendFlat(buf[:0])
		var m map[string]any
		if err := json.Unmarshal(buf, &m); err != nil {
			t.Fatalf("event %d is not valid JSON: %v\n%s", i, err, buf)
		}
		if m["user"] != nil || m["event_type"] != e.Type || m["id"] != e.ID || m["user_id"] != e.UserID {
			t.Fatalf("flat event does not carry its identity at the top level: %s", buf)
		}
		if e.CustomKey != "" {
			s, ok := m["properties"].(string)
			var inner map[string]any
			if !ok || json.Unmarshal([]byte(s), &inner) != nil || len(inner) != len(e.Custom) {
				t.Fatalf("flat %s properties is not a JSON-encoded object of %d keys: %s", e.Type, len(e.Custom), buf)
			}
		}
		seen[e.Type] = true
	}
	if len(seen) != len(DefaultMix) {
		t.Errorf("saw %d types, want %d", len(seen), len(DefaultMix))
	}
}

func TestBodyAndLines(t *testing.T) {
	cfg := Config{Seed: 3, Devices: 50}
	var body struct {
		Events []httpEvent `json:"events"`
	}
	if err := json.Unmarshal(New(cfg).AppendBody(nil, 100), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Events) != 100 {
		t.Fatalf("body holds %d events, want 100", len(body.Events))
	}
	var out bytes.Buffer
	if err := New(cfg).WriteLines(&out, 100, HTTP); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 100 {
		t.Fatalf("%d lines, want 100", len(lines))
	}
	for i, l := range lines {
		var e httpEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if e.ID != body.Events[i].ID {
			t.Fatalf("line %d id %s, body event id %s: same config must give the same stream", i, e.ID, body.Events[i].ID)
		}
	}
}

func TestMixAndSkew(t *testing.T) {
	g := New(Config{Seed: 1, Devices: 100000, Skew: 1.2, Mix: []Weight{{"users.behaviors.Purchase", 1}}})
	counts := map[string]int{}
	for i := 0; i < 5000; i++ {
		e := g.Next()
		if e.Type != "users.behaviors.Purchase" {
			t.Fatalf("type %s outside the configured mix", e.Type)
		}
		counts[e.DeviceID]++
	}
	top := 0
	for _, c := range counts {
		top = max(top, c)
	}
	if top < 100 {
		t.Errorf("hottest device has %d of 5000 events; a Zipf skew should concentrate them", top)
	}
	if len(Types()) != len(kinds) {
		t.Errorf("Types() lists %d types, want %d", len(Types()), len(kinds))
	}
	defer func() {
		if recover() == nil {
			t.Error("unknown event type in the mix did not panic")
		}
	}()
	New(Config{Mix: []Weight{{"users.nope", 1}}})
}

func BenchmarkNextHTTP(b *testing.B) {
	g := New(Config{Seed: 1, Devices: 1000000})
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = g.Next().AppendHTTP(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func ExampleGenerator_AppendBody() {
	g := New(Config{Seed: 1, Devices: 1000})
	body := g.AppendBody(nil, 100) // one HTTP connector request
	var req struct{ Events []json.RawMessage }
	_ = json.Unmarshal(body, &req)
	fmt.Println(len(req.Events), g.Count())
	// Output: 100 100
}
