package amplitude

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
)

// runStream sends batches through a stream built by sb whose output is
// outputYAML and waits until every batch is acknowledged.
func runStream(t testing.TB, sb *service.StreamBuilder, outputYAML string, batches [][]string) {
	t.Helper()
	if err := sb.SetLoggerYAML("level: none"); err != nil {
		t.Fatal(err)
	}
	send, err := sb.AddBatchProducerFunc()
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.AddOutputYAML(outputYAML); err != nil {
		t.Fatal(err)
	}
	strm, err := sb.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- strm.Run(ctx) }()

	var wg sync.WaitGroup
	work := make(chan []string)
	for range 4 {
		wg.Go(func() {
			for raws := range work {
				batch := make(service.MessageBatch, len(raws))
				for i, r := range raws {
					batch[i] = service.NewMessage([]byte(r))
				}
				if err := send(ctx, batch); err != nil {
					t.Errorf("batch not acknowledged: %v", err)
				}
			}
		})
	}
	for _, b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()
	if err := strm.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil && err != context.Canceled {
		t.Logf("stream ended: %v", err)
	}
}

// TestStreamFaultsAndDeadLetters: under 30% injected faults (5xx, bare 429,
// timeouts, dropped connections), every valid event is ingested exactly once
// by insert_id and every invalid one reaches the dead-letter file with its
// reason, through a YAML fallback. Metadata an output sets does not reach
// the next fallback tier (it gets a copy of the messages), so the dead-letter
// tier copies @fallback_error into @amplitude_error.
func TestStreamFaultsAndDeadLetters(t *testing.T) {
	srv := amplitudetest.NewServer(amplitudetest.Options{
		APIKey: testKey, FaultRate: 0.3, Seed: 42, SilencedDevices: []string{"muted-device"},
	})
	defer srv.Close()
	dlq := filepath.Join(t.TempDir(), "dlq.jsonl")

	wantReason := map[string]string{} // insert_id of invalid events -> reason
	var valid []string
	var batches [][]string
	for b := range 24 {
		var batch []string
		for i := range 40 {
			id := fmt.Sprintf("e-%d-%d", b, i)
			var raw string
			switch i % 20 {
			case 7:
				raw = `{"insert_id":"` + id + `","device_id":"device-1"}`
				wantReason[id] = reasonMissingFields
			case 13:
				raw = `{"insert_id":"` + id + `","event_type":"x","user_id":"abc","device_id":"null"}`
				wantReason[id] = reasonMissingFields
			case 17:
				raw = evt(id, "muted-device")
				wantReason[id] = reasonSilenced
			default:
				raw = evt(id, fmt.Sprintf("device-%d", i%37))
				valid = append(valid, id)
			}
			batch = append(batch, raw)
		}
		batches = append(batches, batch)
	}

	runStream(t, service.NewStreamBuilder(), fmt.Sprintf(`
fallback:
  - amplitude:
      api_key: %s
      url: %s
      timeout: 300ms
      max_in_flight: 4
      throttle_hold: 100ms
      backoff:
        initial_interval: 5ms
        max_interval: 50ms
        max_elapsed_time: 0s
  - file:
      path: %s
      codec: lines
    processors:
      - mapping: |
          meta amplitude_error = @fallback_error
      - mapping: |
          root = this
          root.dlq_error = @amplitude_error
`, testKey, srv.HTTPV2URL(), dlq), batches)

	if srv.Count() != len(valid) {
		t.Errorf("ingested %d distinct events, want %d", srv.Count(), len(valid))
	}
	for _, id := range valid {
		if _, ok := srv.Event(id); !ok {
			t.Errorf("valid event %s not ingested", id)
		}
	}
	f, err := os.Open(dlq)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		id := gjson.Get(line, "insert_id").Str
		if _, dup := got[id]; dup {
			t.Errorf("%s twice in the dead-letter file", id)
		}
		got[id] = gjson.Get(line, "dlq_error").Str
	}
	if len(got) != len(wantReason) {
		t.Errorf("%d events in the dead-letter file, want %d", len(got), len(wantReason))
	}
	for id, reason := range wantReason {
		if !strings.HasPrefix(got[id], "amplitude ("+reason+"): ") {
			t.Errorf("dead letter %s: error %q, want reason %s", id, got[id], reason)
		}
		if _, ok := srv.Event(id); ok {
			t.Errorf("invalid event %s was ingested", id)
		}
	}
	faults := srv.FaultCounts()
	t.Logf("requests %d, statuses %v, faults %v, duplicates %d", srv.Requests(), srv.StatusCounts(), faults, srv.Duplicates())
	for _, k := range amplitudetest.AllFaults {
		if faults[k] == 0 {
			t.Errorf("fault %s never injected; the test proves less than it claims", k)
		}
	}
}

// BenchmarkEndToEnd sends the same events through a stream to the loopback
// server, with the amplitude output and with Benthos' http_client output
// building the request body with Bloblang (no limits, no per-event errors).
func BenchmarkEndToEnd(b *testing.B) {
	const batchSize = 500
	outputs := map[string]string{
		"amplitude": `
amplitude:
  api_key: %s
  url: %s
  max_in_flight: 4
`,
		"http_client": `
http_client:
  url: %[2]s
  verb: POST
  headers:
    Content-Type: application/json
  max_in_flight: 4
  batching:
    count: 500
    period: 50ms
    processors:
      - archive:
          format: json_array
      - mapping: 'root = {"api_key": "%[1]s", "events": this}'
`,
	}
	for _, name := range []string{"amplitude", "http_client"} {
		b.Run(name, func(b *testing.B) {
			srv := amplitudetest.NewServer(amplitudetest.Options{EPSLimit: -1})
			defer srv.Close()
			var batches [][]string
			for i := 0; i < b.N; i += batchSize {
				var batch []string
				for j := i; j < min(i+batchSize, b.N); j++ {
					batch = append(batch, fmt.Sprintf(`{"event_type":"purchase","insert_id":"ins-%08d","user_id":"user-%06d","device_id":"dev-%06d","time":1700000000000,"event_properties":{"product_id":"sku-1","price":9.99,"currency":"USD"},"platform":"ios","os_name":"iOS"}`, j, j, j%997))
				}
				batches = append(batches, batch)
			}
			b.ReportAllocs()
			b.ResetTimer()
			runStream(b, service.NewStreamBuilder(), fmt.Sprintf(outputs[name], testKey, srv.HTTPV2URL()), batches)
			b.StopTimer()
			if srv.Count() != b.N {
				b.Fatalf("ingested %d of %d", srv.Count(), b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
