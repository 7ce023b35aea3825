package currents

import (
	"errors"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
)

// nest returns value wrapped in n levels of {"a": ...}.
func nest(n int, value string) string {
	return strings.Repeat(`{"a":`, n) + value + strings.Repeat(`}`, n)
}

// TestMapperDepthLimit: JSON nested deeper than MaxDepth fails with
// ReasonTooLarge before it is parsed, in the event and in a JSON-encoded
// property string; MaxDepth levels are mapped.
func TestMapperDepthLimit(t *testing.T) {
	m := mustMapper(t, nil)
	head := `{"event_type":"users.behaviors.CustomEvent","id":"e-1","time":1700000000,"user":{"external_user_id":"u-1"},"properties":{"name":"n","custom_properties":`
	for _, tc := range []struct {
		name   string
		event  string
		reason deadletter.Reason // "" when mapped
	}{
		{"at the limit", head + nest(MaxDepth-2, "1") + `}}`, ""},
		{"one level too deep", head + nest(MaxDepth-1, "1") + `}}`, deadletter.ReasonTooLarge},
		{"five million levels", head + strings.Repeat(`[`, 5_000_000), deadletter.ReasonTooLarge},
		{"deep JSON-encoded properties", `{"id":"e-1","time":1700000000,"external_user_id":"u-1","name":"n","properties":` +
			string(mustJSON(t, nest(MaxDepth+1, "1"))) + `}`, deadletter.ReasonTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := m.AppendEvent(nil, []byte(tc.event), TypeCustomEvent)
			if tc.reason == "" {
				require.NoError(t, err)
				assert.True(t, gjson.ValidBytes(out))
				return
			}
			r, ok := deadletter.ReasonOf(err)
			assert.True(t, ok && r == tc.reason, "err %v", err)
			assert.Contains(t, err.Error(), "deeper than 64 levels")
		})
	}
}

// TestInvalidUTF8 documents the choice: invalid UTF-8 is replaced by U+FFFD
// in the event sent to Amplitude and in the dead-letter copy of an event
// that fails, so both hold the same valid JSON text.
func TestInvalidUTF8(t *testing.T) {
	p := newTestProcessor(t, `{}`)
	good := "{\"event_type\":\"users.messages.email.Open\",\"id\":\"e-1\",\"time\":1700000000,\"user\":{\"external_user_id\":\"u-\xff1\"},\"properties\":{\"subject\":\"caf\xc3\"}}"
	bad := "{\"event_type\":\"users.messages.email.Open\",\"id\":\"e-2\",\"user\":{\"external_user_id\":\"u-\xff2\"}}" // no time
	out := processAll(t, p, service.NewMessage([]byte(good)), service.NewMessage([]byte(bad)))
	require.Len(t, out, 2)

	sent, err := out[0].AsBytes()
	require.NoError(t, err)
	require.NoError(t, out[0].GetError())
	ev := gjson.ParseBytes(sent)
	assert.Equal(t, "u-\uFFFD1", ev.Get("user_id").String())
	assert.Equal(t, "caf\uFFFD", ev.Get("event_properties.subject").String())

	reason, _, ok := deadletter.Of(out[1])
	require.True(t, ok)
	assert.Equal(t, deadletter.ReasonUnmappable, reason)
	raw, err := out[1].AsBytes()
	require.NoError(t, err)
	rec := deadletter.Record{Reason: reason, Event: raw}
	dl := gjson.ParseBytes(rec.Encode(nil))
	assert.Equal(t, "u-\uFFFD2", dl.Get("event.user.external_user_id").String(), "the dead-letter copy replaces it too: %s", rec.Encode(nil))
}

// TestProcessorReasons: every failure carries its dead-letter reason.
func TestProcessorReasons(t *testing.T) {
	p := newTestProcessor(t, `{unknown_events: reject}`)
	for _, tc := range []struct {
		name, body string
		reason     deadletter.Reason
	}{
		{"no time", `{"event_type":"users.messages.email.Open","id":"e-1","user":{"external_user_id":"u-1"}}`, deadletter.ReasonUnmappable},
		{"unknown type rejected", `{"event_type":"users.messages.pigeon.Send","id":"e-1","time":1,"user":{"external_user_id":"u-1"}}`, deadletter.ReasonUnmappable},
		{"not JSON", `{"id"`, deadletter.ReasonUnmappable},
		{"body not JSON", `{"events":[{"id":1}`, deadletter.ReasonUnreadable},
		{"deep body", `{"events":[` + nest(70, "1") + `]}`, deadletter.ReasonTooLarge},
		{"deep event of a body", `{"events":[{"properties":` + nest(MaxDepth, "1") + `}]}`, deadletter.ReasonTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := processAll(t, p, service.NewMessage([]byte(tc.body)))
			require.Len(t, out, 1)
			r, err, ok := deadletter.Of(out[0])
			require.True(t, ok, "the message is errored")
			assert.Equal(t, tc.reason, r, "%v", err)
			assert.NotContains(t, err.Error(), string(tc.reason)+": "+string(tc.reason), "the reason is not repeated")
			meta, _ := out[0].MetaGet(deadletter.MetaReason)
			assert.Equal(t, string(tc.reason), meta)
		})
	}
}

// TestProcessorKeepsUpstreamFailures: a message an input failed for its own
// reason (a replayed line too long) passes unchanged, keeping its reason.
func TestProcessorKeepsUpstreamFailures(t *testing.T) {
	p := newTestProcessor(t, `{}`)
	m := service.NewMessage([]byte(`{"id":"huge","pad":"xxx`))
	deadletter.Fail(m, deadletter.ReasonTooLarge, errors.New("line 3 is 11000000 bytes long"))
	out := processAll(t, p, m)
	require.Len(t, out, 1)
	r, err, ok := deadletter.Of(out[0])
	require.True(t, ok)
	assert.Equal(t, deadletter.ReasonTooLarge, r)
	assert.Contains(t, err.Error(), "11000000 bytes")
	raw, _ := out[0].AsBytes()
	assert.Equal(t, `{"id":"huge","pad":"xxx`, string(raw))
}
