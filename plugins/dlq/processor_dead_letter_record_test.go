package dlq

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
)

func TestDeadLetterRecord(t *testing.T) {
	p := &deadLetterRecord{component: "quickstart", clock: clock.NewFake(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))}
	failed := service.NewMessage([]byte(`{"id":"e-1"}`))
	deadletter.Fail(failed, deadletter.ReasonUnmappable, errors.New("missing field time"))
	failed.MetaSetMut(deadletter.MetaLine, int64(7))
	untyped := service.NewMessage([]byte("not json"))
	untyped.SetError(errors.New("bloblang: expected object"))
	refused := service.NewMessage([]byte(`{"insert_id":"e-3"}`))
	refused.MetaSetMut("fallback_error", "amplitude outage (retries_exhausted): 503")
	fine := service.NewMessage([]byte(`{"id":"e-4"}`))

	out, err := p.ProcessBatch(context.Background(), service.MessageBatch{failed, untyped, refused, fine})
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Len(t, out[0], 4)
	for i, want := range []struct{ reason, error, event, line string }{
		{"unmappable", "missing field time", `{"id":"e-1"}`, "7"},
		{"processing_failed", "bloblang: expected object", `"not json"`, ""},
		{"delivery_failed", "amplitude outage (retries_exhausted): 503", `{"insert_id":"e-3"}`, ""},
	} {
		m := out[0][i]
		require.NoError(t, m.GetError(), "a record is not errored")
		raw, _ := m.AsBytes()
		g := gjson.ParseBytes(raw)
		assert.Equal(t, want.reason, g.Get("reason").String(), "%s", raw)
		assert.Contains(t, g.Get("error").String(), want.error)
		assert.Equal(t, want.event, g.Get("event").Raw)
		assert.Equal(t, want.line, g.Get("source.currents_line").String())
		assert.Equal(t, "quickstart", g.Get("component").String())
		assert.Equal(t, "2026-12-01T10:00:00.000Z", g.Get("failed_at").String())
	}
	raw, _ := out[0][3].AsBytes()
	assert.Equal(t, `{"id":"e-4"}`, string(raw), "a message that did not fail passes unchanged")
}
