package metricstest

import (
	"context"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResourcesRecord(t *testing.T) {
	res, rec := Resources(t)
	other, otherRec := Resources(t)
	m := res.Metrics()
	m.NewCounter("sent_total", "reason").Incr(2, "ok")
	m.NewCounter("sent_total", "reason").Incr(3, "ok")
	m.NewCounter("plain_total").Incr(1)
	m.NewGauge("depth").Set(7)
	m.NewGauge("depth").Set(4)
	tm := m.NewTimer("latency_seconds", "status")
	tm.Timing(100, "200")
	tm.Timing(50, "200")
	other.Metrics().NewCounter("sent_total", "reason").Incr(9, "ok")

	assert.Equal(t, int64(5), rec.Get("sent_total{reason=ok}"))
	assert.Equal(t, int64(1), rec.Get("plain_total"))
	assert.Equal(t, int64(4), rec.Get("depth"), "a gauge keeps its last value")
	assert.Equal(t, int64(150), rec.Get("latency_seconds{status=200}"), "timings are summed")
	assert.Equal(t, int64(2), rec.Count("latency_seconds{status=200}"))
	assert.Equal(t, int64(0), rec.Get("missing"))
	assert.Equal(t, []string{"depth", "latency_seconds{status=200}", "plain_total", "sent_total{reason=ok}"}, rec.Keys())
	assert.Equal(t, int64(9), otherRec.Get("sent_total{reason=ok}"), "recorders are separate")
}

func TestStreamRecords(t *testing.T) {
	rec := New(t)
	sb := service.NewStreamBuilder()
	require.NoError(t, sb.SetMetricsYAML(rec.YAML()))
	require.NoError(t, sb.SetLoggerYAML("level: none"))
	require.NoError(t, sb.AddInputYAML(`generate: { count: 3, interval: "", mapping: 'root = "x"' }`))
	require.NoError(t, sb.AddOutputYAML(`drop: {}`))
	stream, err := sb.Build()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, stream.Run(ctx))
	assert.Equal(t, int64(3), rec.Get("input_received"), "component labels are left out: %v", rec.Keys())
}

func TestUnknownRecorder(t *testing.T) {
	rb := service.NewResourceBuilder()
	require.NoError(t, rb.SetMetricsYAML(ExporterName+`: { id: "nope" }`))
	_, _, err := rb.Build()
	assert.ErrorContains(t, err, `no metricstest recorder "nope"`)
}
