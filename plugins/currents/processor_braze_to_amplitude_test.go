package currents

import (
	"context"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
	"github.com/opencurrents/currents-amplitude/plugins/internal/outcome"
	"github.com/opencurrents/currents-amplitude/plugins/internal/trusted"
)

func newTestProcessor(t testing.TB, yaml string) *brazeToAmplitude {
	t.Helper()
	conf, err := brazeToAmplitudeSpec().ParseYAML(yaml, nil)
	require.NoError(t, err)
	p, err := newBrazeToAmplitudeFromParsed(conf, service.MockResources())
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// processAll runs the processor on one batch and returns its output
// messages (zero or one output batch).
func processAll(t *testing.T, p *brazeToAmplitude, msgs ...*service.Message) service.MessageBatch {
	t.Helper()
	batches, err := p.ProcessBatch(context.Background(), msgs)
	require.NoError(t, err, "errors are reported per message")
	require.LessOrEqual(t, len(batches), 1)
	if len(batches) == 0 {
		return nil
	}
	return batches[0]
}

const (
	procEmailOpen = `{"event_type":"users.messages.email.Open","id":"e-1","time":1700000000,"user":{"external_user_id":"u-1"},"properties":{"email_address":"a@b.c"}}`
	procFlatPush  = `{"id":"p-1","user_id":"b","external_user_id":"u-2","time":1700000001,"platform":"ios","campaign_id":"c"}`
)

func TestProcessorSingleEvents(t *testing.T) {
	p := newTestProcessor(t, `{}`)
	cases := []struct {
		name, body, hint   string
		wantType, wantName string
		wantErr            string
		dropped            bool
	}{
		{name: "http shape", body: procEmailOpen, wantType: "users.messages.email.Open", wantName: "[Appboy] Email Open"},
		{name: "flat shape with metadata type", body: procFlatPush, hint: "users.messages.pushnotification.Send",
			wantType: "users.messages.pushnotification.Send", wantName: "[Appboy] Push Notification Send"},
		{name: "field wins over the metadata, which is rewritten", body: procEmailOpen, hint: "users.messages.pushnotification.Send",
			wantType: "users.messages.email.Open", wantName: "[Appboy] Email Open"},
		{name: "flat shape without type", body: procFlatPush, wantErr: "missing event type"},
		{name: "unknown type dropped", body: procFlatPush, hint: "users.messages.pigeon.Send", dropped: true},
		{name: "invalid JSON", body: `{"id"`, wantErr: "not valid JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := service.NewMessage([]byte(tc.body))
			if tc.hint != "" {
				msg.MetaSetMut(currentsbody.MetaEventType, tc.hint)
			}
			before := outcome.Snapshot()
			batch := processAll(t, p, msg)
			dropped := outcome.Snapshot().Since(before)[outcome.Dropped]
			if tc.dropped {
				assert.Empty(t, batch)
				assert.Equal(t, int64(1), dropped[string(DropUnknown)], "a drop is counted for the progress summary")
				return
			}
			assert.Empty(t, dropped, "only drops are counted as dropped")
			require.Len(t, batch, 1)
			if tc.wantErr != "" {
				require.ErrorContains(t, batch[0].GetError(), tc.wantErr)
				raw, _ := batch[0].AsBytes()
				assert.Equal(t, tc.body, string(raw), "a flagged message keeps its content")
				return
			}
			require.NoError(t, batch[0].GetError())
			b, err := batch[0].AsBytes()
			require.NoError(t, err)
			assert.Equal(t, tc.wantName, decode(t, b)["event_type"])
			typ, _ := batch[0].MetaGet(currentsbody.MetaEventType)
			assert.Equal(t, tc.wantType, typ)
		})
	}
}

// TestProcessorEventTypeMetadataIsAString checks that the type metadata
// comes out a string even when the input set it as another value.
func TestProcessorEventTypeMetadataIsAString(t *testing.T) {
	p := newTestProcessor(t, `{ event_names: { "7": "Seven" } }`)
	msg := service.NewMessage([]byte(procFlatPush))
	msg.MetaSetMut(currentsbody.MetaEventType, 7)
	batch := processAll(t, p, msg)
	require.Len(t, batch, 1)
	require.NoError(t, batch[0].GetError())
	typ, ok := batch[0].MetaGetMut(currentsbody.MetaEventType)
	require.True(t, ok)
	assert.Equal(t, "7", typ)
}

func TestProcessorExpandsRequestBody(t *testing.T) {
	p := newTestProcessor(t, `
exclude_events: [ "users.messages.email.*" ]
unidentified_events: reject
`)
	body := `{"events":[` +
		`{"event_type":"users.behaviors.app.SessionStart","id":"s-1","time":1700000000,"user":{"device_id":"d-1"},"properties":{"session_id":"x"}},` +
		procEmailOpen + `,` +
		`{"event_type":"users.behaviors.app.SessionEnd","id":"s-2","time":"late","user":{"device_id":"d-1"}},` +
		`{"event_type":"users.behaviors.app.SessionEnd","id":"s-3","time":1700000000,"user":{"user_id":"b"}}` +
		`]}`
	msg := service.NewMessage([]byte(body))
	msg.MetaSetMut("http_path", "/currents")
	batch := processAll(t, p, msg)
	require.Len(t, batch, 3, "the excluded email event is dropped")

	out, err := batch[0].AsBytes()
	require.NoError(t, err)
	got := decode(t, out)
	assert.Equal(t, "[Appboy] Session Start", got["event_type"])
	assert.Equal(t, "d-1", got["device_id"])
	assert.NoError(t, batch[0].GetError())
	path, _ := batch[0].MetaGet("http_path")
	assert.Equal(t, "/currents", path, "input metadata is kept")

	for i, want := range []string{"field time must be an integer", "neither external_user_id nor device_id"} {
		failed := batch[i+1]
		require.ErrorContains(t, failed.GetError(), want)
		raw, _ := failed.AsBytes()
		assert.Contains(t, string(raw), `"id":"s-`, "the failing event alone is kept for the dead-letter output")
		typ, _ := failed.MetaGet(currentsbody.MetaEventType)
		assert.Equal(t, "users.behaviors.app.SessionEnd", typ)
	}

	assert.Empty(t, processAll(t, p, service.NewMessage([]byte(`{"events":[]}`))))

	bad := processAll(t, p, service.NewMessage([]byte(`{"events":[1]}`)))
	require.Len(t, bad, 1)
	assert.ErrorContains(t, bad[0].GetError(), "must be a JSON object")
}

func TestProcessorBatchKeepsOrder(t *testing.T) {
	p := newTestProcessor(t, `{}`)
	dropped := service.NewMessage([]byte(procFlatPush))
	dropped.MetaSetMut(currentsbody.MetaEventType, "users.messages.pigeon.Send")
	hinted := service.NewMessage([]byte(procFlatPush))
	hinted.MetaSetMut(currentsbody.MetaEventType, "users.messages.pushnotification.Send")
	out := processAll(t, p,
		service.NewMessage([]byte(procEmailOpen)),
		dropped,
		service.NewMessage([]byte(`{"events":[`+procEmailOpen+`,`+procEmailOpen+`]}`)),
		service.NewMessage([]byte(`nope`)),
		hinted,
	)
	require.Len(t, out, 5)
	for i, want := range []string{"[Appboy] Email Open", "[Appboy] Email Open", "[Appboy] Email Open", "", "[Appboy] Push Notification Send"} {
		if want == "" {
			assert.Error(t, out[i].GetError())
			continue
		}
		b, _ := out[i].AsBytes()
		assert.Equal(t, want, decode(t, b)["event_type"], "message %d", i)
	}
	assert.Nil(t, processAll(t, p, dropped), "a batch of dropped events yields no batch")
}

func TestProcessorConfig(t *testing.T) {
	conf, err := brazeToAmplitudeSpec().ParseYAML(`{}`, nil)
	require.NoError(t, err)
	opts, err := optionsFromParsed(conf)
	require.NoError(t, err)
	want := DefaultOptions()
	want.IncludeEvents, want.EventNames = []string{}, map[string]string{}
	assert.Equal(t, want, opts, "the spec defaults are the mapper defaults")

	conf, err = brazeToAmplitudeSpec().ParseYAML(`
include_events: [ "users.[" ]
`, nil)
	require.NoError(t, err)
	_, err = newBrazeToAmplitudeFromParsed(conf, service.MockResources())
	assert.ErrorContains(t, err, `invalid event type pattern "users.["`)
}

// TestProcessorMarksOutput checks that every mapped event carries the
// processor's mark: in the metadata when currents_event_type was written
// (the map copied anyway), else in the message's context, leaving the
// metadata (shared with the input's copy) unwritten.
func TestProcessorMarksOutput(t *testing.T) {
	p := newTestProcessor(t, `{}`)
	cases := []struct {
		name, event, hint string
		inMeta            bool
	}{
		{"type written", procEmailOpen, "", true},
		{"type from the input", procFlatPush, "users.messages.pushnotification.Send", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := service.NewMessage([]byte(tc.event))
			if tc.hint != "" {
				in.MetaSetMut(currentsbody.MetaEventType, tc.hint)
			}
			batch := processAll(t, p, in.Copy()) // as Benthos hands messages to processors
			require.Len(t, batch, 1)
			require.NoError(t, batch[0].GetError())
			raw, err := batch[0].AsBytes()
			require.NoError(t, err)
			mark := trusted.Of(batch[0], raw)
			require.NotNil(t, mark, "mapped event without the processor's mark")
			assert.True(t, mark.PropertiesLast())
			_, inMeta := batch[0].MetaGetMut(trusted.MetaKey)
			assert.Equal(t, tc.inMeta, inMeta, "mark in the metadata")
			_, written := in.MetaGetMut(trusted.MetaKey)
			assert.False(t, written, "the input's metadata was written")
		})
	}
}
