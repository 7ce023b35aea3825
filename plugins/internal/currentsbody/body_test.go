package currentsbody

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
)

func TestSplitEvents(t *testing.T) {
	body := []byte(`{"events":[{"id":"a"}, {"id":"b","x":[1,{"y":2}]}]}`)
	events, isBody, err := SplitEvents(body)
	require.NoError(t, err)
	require.True(t, isBody)
	require.Len(t, events, 2)
	assert.Equal(t, `{"id":"a"}`, string(events[0]))
	assert.Equal(t, `{"id":"b","x":[1,{"y":2}]}`, string(events[1]))
	assert.Same(t, &body[len(`{"events":[`)], &events[0][0], "events alias the body")

	for _, single := range []string{`{"event_type":"x","events":[]}`, `{"id":"a"}`, `[1]`, `nonsense`, ``, `{"events":{}}`} {
		events, isBody, err := SplitEvents([]byte(single))
		assert.NoError(t, err, single)
		assert.False(t, isBody, single)
		assert.Nil(t, events, single)
	}

	events, isBody, err = SplitEvents([]byte(`{"events":[]}`))
	assert.NoError(t, err)
	assert.True(t, isBody)
	assert.Empty(t, events)

	for in, want := range map[string]string{
		`{"events":[{"id":"a"},1]}`:       `item 1 of "events" must be a JSON object`,
		`{"events":["x"]}`:                `item 0 of "events" must be a JSON object`,
		`{"events":[{"id":"a"}`:           "not valid JSON",
		`{"events":[{"id":"a"}],"z":tru}`: "not valid JSON",
	} {
		events, isBody, err := SplitEvents([]byte(in))
		assert.ErrorContains(t, err, want, in)
		assert.True(t, isBody, in)
		assert.Nil(t, events, in)
	}
}

// FuzzSplitEvents: any input either is not a body, or is refused with an
// error and no events, or yields events that are each a valid JSON object.
func FuzzSplitEvents(f *testing.F) {
	for _, seed := range []string{``, `{"events":[]}`, `{"events":[{"a":1},{"b":[2]}]}`, `{"events":[1]}`,
		`{"events":[{}`, `{"event_type":"x","events":[]}`, "{\"events\":[{\"k\":\"\xff\"}]}"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if containsEventsKey(data) != bytes.Contains(data, eventsKey) {
			t.Fatalf("containsEventsKey(%q) = %v", data, !bytes.Contains(data, eventsKey))
		}
		events, isBody, err := SplitEvents(data)
		if err != nil || !isBody {
			if events != nil {
				t.Fatalf("events with isBody=%v err=%v", isBody, err)
			}
			return
		}
		for i, ev := range events {
			if !gjson.ValidBytes(ev) || !gjson.ParseBytes(ev).IsObject() {
				t.Fatalf("event %d is not a JSON object: %q", i, ev)
			}
		}
	})
}

// FuzzSplitValid checks the one-pass split of valid bodies against the same
// split done with gjson (first "events" member by Get, then its elements).
func FuzzSplitValid(f *testing.F) {
	for _, seed := range []string{`{"events":[]}`, `{"events":[{"a":1},{"b":[2]}]}`, `{"events":[{},1]}`,
		`{"events":{},"events":[{}]}`, `{"events":[{}],"event_type":"x"}`, `{"a":{"events":[{}]},"events":[{"c":"events"}]}`,
		`{"events":5}`, `{"events":null}`, ` {"events" : [ {} , {"x":"]"} ] } `} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		raw := string(data)
		if !gjson.Valid(raw) || !gjson.Parse(raw).IsObject() {
			return
		}
		events, isBody, err := splitValid(data, raw)
		root := gjson.Parse(raw)
		list := root.Get("events")
		wantBody := list.IsArray() && !root.Get("event_type").Exists()
		var want []string
		wantErr := false
		if wantBody {
			list.ForEach(func(_, v gjson.Result) bool {
				if !v.IsObject() {
					wantErr = true
					return false
				}
				want = append(want, v.Raw)
				return true
			})
		}
		if isBody != wantBody || (err != nil) != wantErr {
			t.Fatalf("%q: isBody %v err %v, gjson: isBody %v err %v", raw, isBody, err, wantBody, wantErr)
		}
		if wantErr {
			return
		}
		if len(events) != len(want) {
			t.Fatalf("%q: %d events, gjson %d", raw, len(events), len(want))
		}
		for i := range want {
			if string(events[i]) != want[i] || cap(events[i]) != len(events[i]) {
				t.Fatalf("%q: event %d %q, gjson %q", raw, i, events[i], want[i])
			}
		}
	})
}

func TestContainsEventsKey(t *testing.T) {
	for _, in := range []string{``, `"events"`, `x"events"`, `"events"x`, `"event"`, `events"`, `"vents"`, `"eevents"`,
		`vvvv"events`, `{"a":"v","events":[]}`, `{"event_type":"v"}`, `"ev"events"`, `v`, `"e`, `"ev`} {
		assert.Equal(t, bytes.Contains([]byte(in), eventsKey), containsEventsKey([]byte(in)), in)
	}
}

func BenchmarkContainsEventsKey(b *testing.B) {
	ev := []byte(`{"event_type":"users.messages.pushnotification.Send","id":"a1b2c3d4-e5f6-4a5b-8c7d-9e0f1a2b3c4d","time":1700000000,` +
		`"user":{"user_id":"5f0000000000000000000001","external_user_id":"user-42","device_id":"fedcba87-6543-210f-edcb-a9876543210f","timezone":"America/Chicago"},` +
		`"properties":{"app_id":"5f0000000000000000000002","platform":"ios","campaign_id":"5f0000000000000000000003","campaign_name":"Spring Sale",` +
		`"message_variation_id":"5f0000000000000000000004","message_variation_name":"Variant A","send_id":"send-1","dispatch_id":"5f0000000000000000000005",` +
		`"ad_id":"ad-1","ad_id_type":"ios_idfa","ad_tracking_enabled":true,"app_group_id":"5f0000000000000000000006"}}`)
	b.Run("bytes.Contains", func(b *testing.B) {
		for b.Loop() {
			if bytes.Contains(ev, eventsKey) {
				b.Fatal()
			}
		}
	})
	b.Run("containsEventsKey", func(b *testing.B) {
		for b.Loop() {
			if containsEventsKey(ev) {
				b.Fatal()
			}
		}
	})
}

func TestSplitChecked(t *testing.T) {
	for in, want := range map[string]int{ // events, or -1: not taken
		`{"events":[]}`: 0,
		` { "events" : [ {"a":1} , {"b":[2,{}]} ] } `: 2,
		`{"events":[{"a":"]},{"}]}`:                   1,
		`{"events":[{}{}]}`:                           -1, // no comma
		`{"events":[{},]}`:                            -1,
		`{"events":[{}],"x":1}`:                       -1, // another member: the slow path
		`{"event_type":"x","events":[{}]}`:            -1,
		`{"events":[1]}`:                              -1,
		`{"events":[{"a":tru}]}`:                      -1,
		`{"events":[{}]}x`:                            -1,
		`{"events":[{"a":[[[[1]]]]}]}`:                -1, // 7 levels with the envelope, over 6
		`{"events":[{"a":[[[1]]]}]}`:                  1,
	} {
		events, ok := SplitChecked(nil, []byte(in), 6)
		if want < 0 {
			assert.False(t, ok, in)
			assert.Nil(t, events, in)
			continue
		}
		require.True(t, ok, in)
		assert.Len(t, events, want, in)
	}
	deep := []byte(`{"events":[{"a":` + strings.Repeat("[", 1<<20) + `]}]}`)
	_, ok := SplitChecked(nil, deep, 64)
	assert.False(t, ok, "a body nested a million levels deep")
}

// FuzzSplitChecked: a body the fast path takes is valid JSON within the
// depth limit, and splits into the events SplitEvents returns.
func FuzzSplitChecked(f *testing.F) {
	for _, seed := range []string{`{"events":[]}`, `{"events":[{"a":1},{"b":[2]}]}`, `{"events":[{}{}]}`,
		`{"events":[{"x":"\"]}"}]}`, ` {"events":[{"a":[[[]]]}]} `, `{"events":[{"a":"\u00e9"}]`} {
		f.Add([]byte(seed), uint8(5))
	}
	f.Fuzz(func(t *testing.T, data []byte, depth uint8) {
		max := 3 + int(depth%64)
		events, ok := SplitChecked(nil, data, max)
		if !ok {
			return
		}
		if !gjson.ValidBytes(data) {
			t.Fatalf("invalid body taken: %q", data)
		}
		if d := jsonlimit.Depth(data, 1<<20); d > max {
			t.Fatalf("body nested %d levels taken with max %d: %q", d, max, data)
		}
		want, isBody, err := SplitEvents(data)
		if err != nil || !isBody || len(want) != len(events) {
			t.Fatalf("%q: SplitEvents %d events, isBody %v, %v; fast path %d", data, len(want), isBody, err, len(events))
		}
		for i := range want {
			if &want[i][0] != &events[i][0] || len(want[i]) != len(events[i]) {
				t.Fatalf("%q: event %d differs: %q, SplitEvents %q", data, i, events[i], want[i])
			}
		}
	})
}
