package amplitude

import (
	"encoding/json"
	"fmt"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestPrepare(t *testing.T) {
	b := newRequestBuilder("key", 5, maxEventsPerRequest, 2000)
	cases := []struct {
		name   string
		in     string
		reason deadletter.Reason // "" = accepted
		user   string
		device string
		out    string // expected raw JSON when rewritten; "" = unchanged
		gone   string // expected event.removed
	}{
		{name: "ok", in: `{"event_type":"open","user_id":"user-1","device_id":"device-1","time":1700000000000}`, user: "user-1", device: "device-1"},
		{name: "device only", in: `{"event_type":"open","device_id":"device-1"}`, device: "device-1"},
		{name: "short user dropped", in: `{"event_type":"open","user_id":"ab","device_id":"device-1"}`, device: "device-1",
			out: `{"event_type":"open","device_id":"device-1"}`, gone: "user_id: shorter than min_id_length 5"},
		{name: "placeholder dropped", in: `{"user_id":"user-1","device_id":"NULL","event_type":"open"}`, user: "user-1",
			out: `{"user_id":"user-1","event_type":"open"}`, gone: "device_id: a placeholder"},
		{name: "zero idfa dropped", in: `{"event_type":"open","user_id":"user-1","device_id":"00000000-0000-0000-0000-000000000000"}`, user: "user-1",
			out: `{"event_type":"open","user_id":"user-1"}`, gone: "device_id: all zeros"},
		{name: "numeric id dropped", in: `{"event_type":"open","user_id":123456,"device_id":"device-1"}`, device: "device-1",
			out: `{"event_type":"open","device_id":"device-1"}`, gone: "user_id: not a string"},
		{name: "no usable id", in: `{"event_type":"open","user_id":"undefined","device_id":"abc"}`, reason: reasonMissingFields},
		{name: "no id", in: `{"event_type":"open"}`, reason: reasonMissingFields},
		{name: "no event_type", in: `{"user_id":"user-1"}`, reason: reasonMissingFields},
		{name: "empty event_type", in: `{"event_type":"","user_id":"user-1"}`, reason: reasonMissingFields},
		{name: "float time", in: `{"event_type":"x","user_id":"user-1","time":1.5}`, reason: reasonInvalidFields},
		{name: "string time", in: `{"event_type":"x","user_id":"user-1","time":"2024-01-01"}`, reason: reasonInvalidFields},
		{name: "not json", in: `{"event_type":`, reason: reasonInvalidEvent},
		{name: "array", in: `[1,2]`, reason: reasonInvalidEvent},
		{name: "too large", in: `{"event_type":"x","user_id":"user-1","p":"` + strings.Repeat("a", 2000) + `"}`, reason: reasonTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := &event{}
			err := b.prepare(ev, 7, []byte(tc.in))
			if tc.reason != "" {
				if err == nil || err.Reason != tc.reason {
					t.Fatalf("got %v, want reason %s", err, tc.reason)
				}
				if !strings.HasPrefix(err.Error(), string(tc.reason)+": ") {
					t.Fatalf("error text %q", err.Error())
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected %v", err)
			}
			want := tc.out
			if want == "" {
				want = tc.in
			}
			if string(ev.raw) != want || ev.userID != tc.user || ev.deviceID != tc.device || ev.index != 7 || ev.removed != tc.gone {
				t.Fatalf("got %+v (%s)", ev, ev.raw)
			}
		})
	}
}

func testEvents(n, size int) []*event {
	evs := make([]*event, n)
	for i := range evs {
		raw := fmt.Sprintf(`{"event_type":"e","insert_id":"id-%d","device_id":"device-%d","p":"%s"}`, i, i%10, strings.Repeat("x", size))
		evs[i] = &event{index: i, raw: []byte(raw), deviceID: fmt.Sprintf("device-%d", i%10)}
	}
	return evs
}

func TestSplitAndBuild(t *testing.T) {
	cases := []struct {
		name      string
		n, size   int
		maxEvents int
		maxBytes  int
	}{
		{"one request", 10, 10, 2000, 1_000_000},
		{"by count", 4500, 10, 2000, 1_000_000},
		{"by bytes", 300, 10_000, 2000, 1_000_000},
		{"exact fits", 7, 100, 3, 10_000},
		{"one per request", 5, 900, 2000, 1100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newRequestBuilder(`k"ey`, 3, tc.maxEvents, tc.maxBytes)
			evs := testEvents(tc.n, tc.size)
			reqs := b.split(evs)
			next := 0
			for _, r := range reqs {
				body := b.build(nil, r)
				if len(r) == 0 || len(r) > tc.maxEvents || len(body) > tc.maxBytes {
					t.Fatalf("request of %d events, %d bytes", len(r), len(body))
				}
				var decoded struct {
					APIKey  string            `json:"api_key"`
					Events  []json.RawMessage `json:"events"`
					Options map[string]int    `json:"options"`
				}
				if err := json.Unmarshal(body, &decoded); err != nil {
					t.Fatal(err)
				}
				if decoded.APIKey != `k"ey` || decoded.Options["min_id_length"] != 3 || len(decoded.Events) != len(r) {
					t.Fatalf("decoded %+v", decoded)
				}
				for _, e := range r {
					if e.index != next {
						t.Fatalf("order: got %d want %d", e.index, next)
					}
					next++
				}
				// A request is full: adding the next event would break a limit.
				if next < tc.n {
					bigger := b.build(nil, append(r[:len(r):len(r)], evs[next]))
					if len(r)+1 <= tc.maxEvents && len(bigger) <= tc.maxBytes {
						t.Fatalf("request of %d events could hold one more", len(r))
					}
				}
			}
			if next != tc.n {
				t.Fatalf("%d events in requests, want %d", next, tc.n)
			}
		})
	}
}

func FuzzPrepare(f *testing.F) {
	for _, s := range []string{
		`{"event_type":"open","user_id":"ab","device_id":"device-1"}`,
		`{"event_type":"x","user_id":"user-1","time":1.5}`,
		`{"a":{"b":[1,2,{"c":"\u00e9"}]},"event_type":"x","device_id":"null","user_id":"u\"ser-1"}`,
		`[]`, `"x"`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	b := newRequestBuilder("key", 5, maxEventsPerRequest, maxBytesHTTPV2Request)
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev := &event{}
		if err := b.prepare(ev, 0, raw); err != nil {
			if err.Reason == "" || err.Err == nil || err.Err.Error() == "" {
				t.Fatalf("error without reason: %v", err)
			}
			return
		}
		body := b.build(nil, []*event{ev})
		if !gjson.ValidBytes(body) {
			t.Fatalf("invalid body %s", body)
		}
		e := gjson.GetBytes(body, "events.0")
		if e.Get("event_type").Str == "" || (e.Get("user_id").Str == "" && e.Get("device_id").Str == "") {
			t.Fatalf("accepted %s", ev.raw)
		}
	})
}

// BenchmarkBuildRequest measures checking 500 events and writing their
// request body.
func BenchmarkBuildRequest(b *testing.B) {
	bld := newRequestBuilder("0123456789abcdef0123456789abcdef", 5, maxEventsPerRequest, maxBytesHTTPV2Request)
	raws := make([][]byte, 500)
	total := 0
	for i := range raws {
		raws[i] = fmt.Appendf(nil, `{"event_type":"purchase","insert_id":"ins-%08d","user_id":"user-%06d","device_id":"dev-%06d","time":1700000000000,"event_properties":{"product_id":"sku-1","price":9.99,"currency":"USD"},"platform":"ios","os_name":"iOS"}`, i, i, i%97)
		total += len(raws[i])
	}
	store := make([]event, len(raws))
	evs := make([]*event, 0, len(raws))
	var buf []byte
	b.ReportAllocs()
	b.SetBytes(int64(total))
	for b.Loop() {
		evs = evs[:0]
		for i, r := range raws {
			if err := bld.prepare(&store[i], i, r); err != nil {
				b.Fatal(err)
			}
			evs = append(evs, &store[i])
		}
		for _, req := range bld.split(evs) {
			buf = bld.build(buf[:0], req)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(raws)), "ns/event")
}
