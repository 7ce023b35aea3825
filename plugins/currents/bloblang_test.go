package currents

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"testing"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/currentsgen"
	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
)

const (
	blobPath          = "testdata/braze_to_amplitude.blobl"
	idiomaticBlobPath = "testdata/braze_to_amplitude_idiomatic.blobl"
)

// newOwnedProcessor builds a processor from its YAML config, the way a
// pipeline does, so that ours and the Bloblang mapping run in the same
// harness.
func newOwnedProcessor(tb testing.TB, yaml string) *service.OwnedProcessor {
	tb.Helper()
	conf, err := service.NewConfigSpec().Field(service.NewProcessorField("p")).ParseYAML(yaml, nil)
	require.NoError(tb, err)
	p, err := conf.FieldProcessor("p")
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func bloblangProcessor(tb testing.TB) *service.OwnedProcessor {
	tb.Helper()
	return bloblangFileProcessor(tb, blobPath)
}

// bloblangFileProcessor is a mapping processor running the Bloblang file at
// path.
func bloblangFileProcessor(tb testing.TB, path string) *service.OwnedProcessor {
	tb.Helper()
	mapping, err := os.ReadFile(path)
	require.NoError(tb, err)
	quoted, _ := json.Marshal(string(mapping))
	return newOwnedProcessor(tb, "p:\n  mapping: "+string(quoted))
}

func process(tb testing.TB, p *service.OwnedProcessor, event []byte, hint string) []byte {
	tb.Helper()
	msg := service.NewMessage(event)
	if hint != "" {
		msg.MetaSetMut(currentsbody.MetaEventType, hint)
	}
	batch, err := p.Process(context.Background(), msg)
	require.NoError(tb, err)
	require.Len(tb, batch, 1)
	require.NoError(tb, batch[0].GetError())
	out, err := batch[0].AsBytes()
	require.NoError(tb, err)
	return out
}

// equivalenceFixtures are the events both implementations must map alike:
// every catalogue type in both shapes, and the hand-written cases whose
// floats survive Bloblang's 6-decimal rounding.
func equivalenceFixtures(tb testing.TB) (events [][]byte, hints []string) {
	for _, et := range catalogue {
		flat := syntheticEvent(et)
		events = append(events, mustJSON(tb, flat), mustJSON(tb, flatToHTTP(tb, et.Type, flat)))
		hints = append(hints, et.Type, "")
	}
	for _, tc := range mappingCases {
		if tc.typ == "users.behaviors.Location" {
			continue // float32 coordinates: see the mapping's header
		}
		var flat map[string]any
		require.NoError(tb, json.Unmarshal([]byte(tc.flat), &flat))
		events = append(events, []byte(tc.flat), mustJSON(tb, flatToHTTP(tb, tc.typ, flat)))
		hints = append(hints, tc.typ, "")
	}
	return events, hints
}

func TestBloblangMappingMatchesProcessor(t *testing.T) {
	ours := newOwnedProcessor(t, "p:\n  braze_to_amplitude: { exclude_events: [] }")
	blobl := bloblangProcessor(t)
	events, hints := equivalenceFixtures(t)
	for i, ev := range events {
		want := process(t, ours, ev, hints[i])
		got := process(t, blobl, ev, hints[i])
		assert.JSONEq(t, string(want), string(got), "event %d: %s", i, ev)
	}
}

// generatedStream returns n events of the benchmark's generated stream
// (tests/bench: seed 1, 10,000 devices, HTTP connector shape).
func generatedStream(n int) [][]byte {
	g := currentsgen.New(currentsgen.Config{Seed: 1, Devices: 10000})
	events := make([][]byte, n)
	for i := range events {
		events[i] = g.Append(nil, currentsgen.HTTP)
	}
	return events
}

// mapEach runs p on events one batch of len(events) and returns what
// each event became: its JSON, or nil when dropped.
func mapEach(tb testing.TB, p *service.OwnedProcessor, events [][]byte) [][]byte {
	tb.Helper()
	out := make([][]byte, len(events))
	for i, ev := range events {
		batch, err := p.Process(context.Background(), service.NewMessage(ev))
		require.NoError(tb, err)
		require.LessOrEqual(tb, len(batch), 1)
		if len(batch) == 1 {
			require.NoError(tb, batch[0].GetError(), "event %d", i)
			out[i], err = batch[0].AsBytes()
			require.NoError(tb, err)
		}
	}
	return out
}

// TestIdiomaticBloblangMatchesProcessor checks the independent Bloblang
// mapping (the baseline of the mapping benchmarks) against the processor
// with its defaults on the benchmark's stream: same events dropped, same
// output for the others.
func TestIdiomaticBloblangMatchesProcessor(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 2000
	}
	events := generatedStream(n)
	want := mapEach(t, newOwnedProcessor(t, "p:\n  braze_to_amplitude: {}"), events)
	got := mapEach(t, bloblangFileProcessor(t, idiomaticBlobPath), events)
	mapped := 0
	for i := range events {
		if want[i] == nil || got[i] == nil {
			assert.Equal(t, want[i] == nil, got[i] == nil, "event %d dropped by one side only: %s", i, events[i])
			continue
		}
		mapped++
		if !assert.JSONEq(t, string(want[i]), string(got[i]), "event %d: %s", i, events[i]) {
			return
		}
	}
	assert.Greater(t, mapped, n*9/10, "most events are mapped")
}

// BenchmarkMappingStream compares, in one run, the processor and the
// independent Bloblang mapping on the benchmark's generated stream, in
// batches of 100 fresh messages whose output is serialised (what an output
// does). One op is one event.
func BenchmarkMappingStream(b *testing.B) {
	events := generatedStream(10000)
	for _, side := range []struct {
		name string
		p    *service.OwnedProcessor
	}{
		{"ours", newOwnedProcessor(b, "p:\n  braze_to_amplitude: {}")},
		{"bloblang_idiomatic", bloblangFileProcessor(b, idiomaticBlobPath)},
		{"bloblang_twin", bloblangProcessor(b)},
	} {
		b.Run(side.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			batch := make(service.MessageBatch, 100)
			next := 0
			for done := 0; done < b.N; done += len(batch) {
				for i := range batch {
					batch[i] = service.NewMessage(events[next])
					next = (next + 1) % len(events)
				}
				out, err := side.p.ProcessBatch(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				for _, m := range out[0] {
					if _, err := m.AsBytes(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkBrazeToAmplitude compares, in one run, the raw mapper, the
// braze_to_amplitude processor and the same mapping in Bloblang (a `mapping`
// processor), on a push send (HTTP shape) and a purchase (flat shape).
func BenchmarkBrazeToAmplitude(b *testing.B) {
	push := []byte(`{"event_type":"users.messages.pushnotification.Send","id":"a1b2c3d4-e5f6-4a5b-8c7d-9e0f1a2b3c4d","time":1700000000,` +
		`"user":{"user_id":"5f0000000000000000000001","external_user_id":"user-42","device_id":"fedcba87-6543-210f-edcb-a9876543210f","timezone":"America/Chicago"},` +
		`"properties":{"app_id":"5f0000000000000000000002","platform":"ios","campaign_id":"5f0000000000000000000003","campaign_name":"Spring Sale",` +
		`"message_variation_id":"5f0000000000000000000004","message_variation_name":"Variant A","send_id":"send-1","dispatch_id":"5f0000000000000000000005",` +
		`"ad_id":"ad-1","ad_id_type":"ios_idfa","ad_tracking_enabled":true,"app_group_id":"5f0000000000000000000006"}}`)
	purchase := []byte(`{"id":"f47ac10b-58cc-4372-a567-0e02b2c3d479","user_id":"639a35d192b0df004d06514c","external_user_id":"user-42",` +
		`"app_id":"f47ac10b-58cc-4372-a567-0e02b2c3d479","time":1700000000,"platform":"android","os_version":"14","device_model":"Pixel 8",` +
		`"device_id":"dev-1","product_id":"sku-9","price":3.140000104904175,"currency":"USD",` +
		`"properties":"{\"color\": \"red\", \"size\": 42, \"tags\": [\"a\"]}","ad_id":"gaid","ad_id_type":"google_ad_id",` +
		`"ad_tracking_enabled":true,"app_group_id":"f47ac10b-58cc-4372-a567-0e02b2c3d479"}`)
	inputs := []struct {
		name, hint string
		event      []byte
	}{{"http_push_send", "", push}, {"flat_purchase", TypePurchase, purchase}}

	m := mustMapper(b, nil)
	procs := map[string]*service.OwnedProcessor{
		"processor": newOwnedProcessor(b, "p:\n  braze_to_amplitude: {}"),
		"bloblang":  bloblangProcessor(b),
		"noop":      newOwnedProcessor(b, "p:\n  noop: {}"),
	}
	for _, in := range inputs {
		b.Run(in.name+"/mapper", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.event)))
			buf := make([]byte, 0, 4096)
			for b.Loop() {
				var err error
				if buf, _, err = m.AppendEvent(buf[:0], in.event, in.hint); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, name := range []string{"processor", "bloblang", "noop"} {
			for _, size := range []int{1, 100} {
				b.Run(fmt.Sprintf("%s/%s/batch=%d", in.name, name, size), func(b *testing.B) {
					benchProcessor(b, procs[name], in.event, in.hint, size)
				})
			}
		}
	}
}

// benchProcessor runs p on batches of size copies of event and reports the
// time and allocations per event (an op is one batch).
func benchProcessor(b *testing.B, p *service.OwnedProcessor, event []byte, hint string, size int) {
	b.ReportAllocs()
	b.SetBytes(int64(len(event) * size))
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		batch := make(service.MessageBatch, size)
		for i := range batch {
			batch[i] = service.NewMessage(event)
			if hint != "" {
				batch[i].MetaSetMut(currentsbody.MetaEventType, hint)
			}
		}
		out, err := p.ProcessBatch(ctx, batch)
		if err != nil || len(out) != 1 || len(out[0]) != size {
			b.Fatalf("unexpected output: %v", err)
		}
		for _, m := range out[0] {
			if _, err := m.AsBytes(); err != nil {
				b.Fatal(err)
			}
		}
	}
	runtime.ReadMemStats(&after)
	events := float64(b.N * size)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
}
