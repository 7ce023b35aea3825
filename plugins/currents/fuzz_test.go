package currents

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonscan"
	"github.com/opencurrents/currents-amplitude/plugins/internal/trusted"
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
		checkPropertiesLast(t, out[1:])
	})
}

// FuzzFastPath checks the mapper's walks against the plain one (jsonlimit,
// gjson.Valid, the type looked up with gjson, then jsonscan.ForEachFlat:
// the mapper before the validating walk): the validating walk
// (appendUnchecked), whenever it accepts an event, and the trusted one
// (AppendValidEvent), on valid JSON, give its output, result and error; the
// validating walk declines only what the plain one rejects or may split as
// a request body (or descents deeper than jsonscan.MaxDescend).
func FuzzFastPath(f *testing.F) {
	for _, tc := range mappingCases {
		f.Add([]byte(tc.flat), tc.typ)
	}
	for _, ev := range generatedStream(50) {
		f.Add(ev, "")
	}
	for _, seed := range []string{
		`{"events":[{"id":"a"}]}`, `{"event_type":"users.messages.email.Open","properties":{"events":[1]}}`,
		`{"event_type":"users.UserDeleteRequest","id":"i","time":1,"device_id":"d"}`, `{"event_type":"x.Unknown"}`,
		`{"event_type":"users.messages.email.Open","id":"i","time":1,"user":{"external_user_id":"é\u00e9"}} `,
		`{"event_type":"users.messages.email.Open","id":"i","time":1,"user":{"external_user_id":"\xff"}}`,
		`{"event_type":"users.messages.email.Open","id":"i","time":"1","user":{"external_user_id":"u"}}`,
		`{"id":"i","time":1,"device_id":"d","properties":"{\"a\":[1,{\"b\":2}]}","user":{"user":{"device_id":"e"}}}`,
		`{"id":"i","time":1,"device_id":"d","event_type":"users.messages.email.Open"}`,
		`{"id":"i","time":1,"device_id":"d","event_type":null,"event_type":"users.messages.email.Open"}`,
		`{"user":5,"id":"i","time":1,"device_id":"d","event_type":"users.messages.email.Open"}`,
		`{"event_type":"users.messages.email.Op\u0065n","id":"i","time":1,"device_id":"d"}`, `[{"id":"i"}]`,
	} {
		f.Add([]byte(seed), TypeCustomEvent)
	}
	m := mustMapper(f, func(o *Options) { o.ExcludeEvents, o.DeviceFields = DefaultExcludeEvents, true })
	plain := func(event []byte, hint string) ([]byte, Result, error, bool) {
		if err := jsonlimit.Check(event, MaxDepth); err != nil {
			return []byte("x"), Result{}, err, false
		}
		if !gjson.ValidBytes(event) {
			return []byte("x"), Result{}, errors.New("event is not valid JSON"), false
		}
		event = bytes.ToValidUTF8(event, replacementChar)
		out, res, err := m.walkEvent([]byte("x"), string(event), hint)
		return out, res, err, true
	}
	f.Fuzz(func(t *testing.T, event []byte, hint string) {
		want, wantRes, wantErr, valid := plain(event, hint)
		same := func(walk string, got []byte, gotRes Result, gotErr error) {
			if string(got) != string(want) || gotRes != wantRes || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("%s walk on %q (hint %q): %q %+v %v; plain walk: %q %+v %v", walk, event, hint, got, gotRes, gotErr, want, wantRes, wantErr)
			}
		}
		if valid {
			checkTypeName(t, event, hint)
			got, gotRes, gotErr := m.AppendValidEvent([]byte("x"), event, hint)
			same("trusted", got, gotRes, gotErr)
		}
		got, gotRes, gotErr, ok := m.appendUnchecked([]byte("x"), event, hint)
		if ok {
			same("validating", got, gotRes, gotErr)
			return
		}
		if string(got) != "x" {
			t.Fatalf("validating walk declined %q but wrote %q", event, got)
		}
		if wantErr == nil && !bytes.Contains(event, []byte(`"events"`)) && utf8.Valid(event) &&
			bytes.Count(event, []byte("{")) < jsonscan.MaxDescend {
			t.Fatalf("validating walk declined %q, which the plain walk maps to %q %+v", event, want, wantRes)
		}
	})
}

// checkTypeName checks eventTypeName's reading of the type of a valid event
// against gjson's.
func checkTypeName(t *testing.T, event []byte, hint string) {
	t.Helper()
	root := gjson.ParseBytes(event)
	if !root.IsObject() {
		return
	}
	want := hint
	if typ := root.Get("event_type"); typ.Exists() && typ.Type != gjson.Null {
		want = typ.Str
		if typ.Type != gjson.String || typ.Str == "" {
			want = ""
		}
	}
	got, _, err := eventTypeName(string(event), hint, true)
	if got != want || (err == nil) != (want != "") {
		t.Fatalf("eventTypeName(%q, %q) = %q, %v; gjson: %q", event, hint, got, err, want)
	}
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

// FuzzTrustedHandOff checks the processor's side of the validate-once
// hand-off against forged marks: a string under the mark's key (what a
// sender's query parameter or a mapping can set), a real mark copied from
// another message, and a marked message whose bytes were replaced afterwards
// all vouch for nothing, so arbitrary bytes are validated: never a panic,
// and every message out is either errored or a valid JSON object that
// carries the processor's own mark (which lets the amplitude output skip its
// validation).
func FuzzTrustedHandOff(f *testing.F) {
	for _, seed := range []string{procEmailOpen, `{"events":[` + procEmailOpen + `]}`, `{"id"`, `{"event_type":"users.messages.email.Open","id":"e","time":1,"user":{"external_user_id":"u"},"properties":{"a":[}}`, ``} {
		for how := range uint8(3) {
			f.Add([]byte(seed), how)
		}
	}
	p := newTestProcessor(f, `{}`)
	f.Fuzz(func(t *testing.T, data []byte, how uint8) {
		valid := []byte(procEmailOpen)
		msg := service.NewMessage(data)
		switch how % 3 {
		case 0:
			msg.MetaSetMut(trusted.MetaKey, "validated")
		case 1:
			trusted.Set(msg, trusted.MarkSlices(valid, [][]byte{valid}, MaxDepth))
		case 2:
			msg = service.NewMessage(valid)
			trusted.Set(msg, trusted.MarkSlices(valid, [][]byte{valid}, MaxDepth))
			msg.SetBytes(data)
		}
		batches, err := p.ProcessBatch(context.Background(), service.MessageBatch{msg})
		if err != nil {
			t.Fatalf("batch error: %v", err)
		}
		for _, b := range batches {
			for _, m := range b {
				raw, _ := m.AsBytes()
				if m.GetError() != nil {
					continue
				}
				if !json.Valid(raw) || !gjson.ParseBytes(raw).IsObject() {
					t.Fatalf("%q (forgery %d) came out unflagged as invalid JSON: %q", data, how%3, raw)
				}
				mark := trusted.Of(m, raw)
				if mark == nil || !mark.PropertiesLast() {
					t.Fatalf("mapped event without the processor's mark: %q", raw)
				}
				checkPropertiesLast(t, raw)
			}
		}
	})
}

// checkPropertiesLast checks the layout trusted.Mark.PropertiesLast
// promises for an Amplitude event: scalar top-level fields, then
// event_properties, last, first found as trusted.PropertiesKey.
func checkPropertiesLast(t *testing.T, raw []byte) {
	t.Helper()
	i := bytes.Index(raw, trusted.PropertiesKey)
	if i < 0 {
		t.Fatalf("no event_properties key: %s", raw)
	}
	n := 0
	gjson.ParseBytes(raw).ForEach(func(k, v gjson.Result) bool {
		n++
		if k.Str == "event_properties" {
			if !v.IsObject() || v.Index+len(v.Raw) != len(raw)-1 || v.Index != i+len(trusted.PropertiesKey)-1 {
				t.Fatalf("event_properties is not the last key at %d: %s", i, raw)
			}
			return true
		}
		if v.IsObject() || v.IsArray() {
			t.Fatalf("top-level field %s is not a scalar: %s", k.Raw, raw)
		}
		return true
	})
}

// FuzzEncodedProperties checks the one validating pass over JSON-encoded
// custom properties (the storage shape) against the three it replaced:
// jsonlimit's depth, gjson.Valid, then gjson's ForEach over an object. The
// properties are written after one already there, so that a rejected
// string must also leave what was written before it untouched.
func FuzzEncodedProperties(f *testing.F) {
	for _, seed := range []string{
		`{"a":1}`, ` {"s":"a \"q\" é","n":null,"o":{"x":[1,"\u00e9"]}} `, `{"\u00e9":"\ud83d\ude00"}`, `[1]`, `"s"`, `1`,
		`{"a":`, `{"a":1} x`, `{"a":1,}`, `{"a":"\ud800"}`, `{"a":"` + "\xff" + `"}`, `{}`, ` `,
		strings.Repeat(`{"a":`, MaxDepth) + `1` + strings.Repeat(`}`, MaxDepth),
		strings.Repeat(`{"a":`, MaxDepth+1) + `1` + strings.Repeat(`}`, MaxDepth+1),
	} {
		f.Add(seed)
	}
	m := mustMapper(f, nil)
	info := m.types[TypeCustomEvent]
	plain := func(enc string) (out string, props int, err string) {
		switch {
		case jsonlimit.Exceeds(enc, MaxDepth):
			return "x", 1, "nests JSON deeper than"
		case !gjson.Valid(enc):
			return "x", 1, "is not a valid JSON-encoded object"
		case !gjson.Parse(enc).IsObject():
			return "x", 1, "must be an object"
		}
		out, props = "x", 1
		gjson.Parse(enc).ForEach(func(k, v gjson.Result) bool {
			if v.Type != gjson.Null {
				out += `,"` + string(m.customPropPrefix) + k.Raw[1:] + ":" + v.Raw
				props++
			}
			return true
		})
		return out, props, ""
	}
	f.Fuzz(func(t *testing.T, enc string) {
		if enc == "" {
			return // no properties
		}
		want, wantProps, wantErr := plain(enc)
		text := []byte("t")
		w := walker{m: m, info: info, dst: []byte("x"), text: &text}
		w.f.props = 1
		ok := w.customProperties(&gjson.Result{Type: gjson.String, Str: enc}, "properties")
		switch {
		case string(w.dst) != want || w.f.props != wantProps:
			t.Fatalf("properties %q written as %q (%d), want %q (%d)", enc, w.dst, w.f.props, want, wantProps)
		case ok != (wantErr == ""), wantErr != "" && !strings.Contains(fmt.Sprint(w.err), wantErr):
			t.Fatalf("properties %q: ok %v, error %v; want error %q", enc, ok, w.err, wantErr)
		}
	})
}
