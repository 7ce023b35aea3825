package currentsbody

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
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
