package currents

import (
	"encoding/json"
	"testing"

	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
)

// FuzzAppendEvent feeds arbitrary bytes to the decoder: it must never panic,
// and whatever it emits must be one valid JSON object appended to dst.
func FuzzAppendEvent(f *testing.F) {
	for _, tc := range mappingCases {
		f.Add([]byte(tc.flat), tc.typ)
	}
	for _, seed := range []string{
		`{"event_type":"users.behaviors.CustomEvent","id":"i","time":1,"user":{"external_user_id":"u"},"properties":{"name":"n","custom_properties":{"a\"b":[1,{"c":null}]}}}`,
		`{"events":[{"id":"a"}]}`,
		`{"id":"i","time":1,"device_id":"d","properties":"{\"\\u00e9\":1e400}"}`,
		`{"id":"i","time":1e3,"external_user_id":"\ud800"}`,
		`{"id":"i","time":1,"external_user_id":"u","price":-0.0,"product_id":"p","latitude":1e-46}`,
		`{`, `null`, ``,
	} {
		f.Add([]byte(seed), TypePurchase)
	}
	m := mustMapper(f, func(o *Options) { o.UnknownEvents, o.DeviceFields = PolicyDerive, true })
	f.Fuzz(func(t *testing.T, event []byte, hint string) {
		out, res, err := m.AppendEvent([]byte("x"), event, hint)
		if string(out[:1]) != "x" {
			t.Fatalf("dst prefix lost: %q", out)
		}
		if err != nil || res.Dropped != "" {
			if len(out) != 1 {
				t.Fatalf("output written for an error or drop: %q", out)
			}
			return
		}
		var v map[string]any
		if jerr := json.Unmarshal(out[1:], &v); jerr != nil {
			t.Fatalf("invalid output for %q: %v\n%s", event, jerr, out[1:])
		}
		if v["event_type"] == nil || v["insert_id"] == nil || v["time"] == nil {
			t.Fatalf("required fields missing: %s", out[1:])
		}
	})
}

// FuzzSplitEvents feeds arbitrary bodies to currentsbody.SplitEvents: it must never panic,
// and the events of a body must be valid JSON objects that map the same
// without validation (AppendValidEvent) as with it (AppendEvent).
func FuzzSplitEvents(f *testing.F) {
	for _, seed := range []string{
		`{"events":[{"event_type":"users.behaviors.CustomEvent","id":"a","time":1,"user":{"external_user_id":"u"},"properties":{"name":"n"}}]}`,
		`{"events":[{"id":"a"},{"id":"b","time":2,"device_id":"d"}]}`,
		`{"events":[1]}`, `{"events":[{"id":"a"}`, `{"events":{}}`, `{"events":[],"event_type":"x"}`, `[{"events":[]}]`,
		`{"id":"i","events":"not a list"}`,
	} {
		f.Add([]byte(seed))
	}
	m := mustMapper(f, func(o *Options) { o.UnknownEvents = PolicyDerive })
	f.Fuzz(func(t *testing.T, data []byte) {
		events, isBody, err := currentsbody.SplitEvents(data)
		if err != nil || !isBody {
			if len(events) != 0 {
				t.Fatalf("events returned with isBody=%v, err=%v", isBody, err)
			}
			return
		}
		for _, ev := range events {
			var v map[string]any
			if jerr := json.Unmarshal(ev, &v); jerr != nil {
				t.Fatalf("event %q of body %q is not a JSON object: %v", ev, data, jerr)
			}
			want, wantRes, wantErr := m.AppendEvent(nil, ev, TypePurchase)
			got, gotRes, gotErr := m.AppendValidEvent(nil, ev, TypePurchase)
			if string(got) != string(want) || gotRes != wantRes || (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("AppendValidEvent differs on %q: %q %v %v, AppendEvent: %q %v %v",
					ev, got, gotRes, gotErr, want, wantRes, wantErr)
			}
		}
	})
}
