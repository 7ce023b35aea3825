package amplitude

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
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
//
// Stream tests run in real time, on purpose: Benthos builds the output from
// YAML with the system clock (there is no way to hand a fake one to a
// component a stream constructs), and what they exercise is real time too:
// request timeouts (a context deadline in net/http), amplitudetest's hangs
// and cut connections, Benthos' own batching and retries. The fake-clock
// tests of the same behaviour build the output directly (output_amplitude_test.go,
// send_test.go). The only wall-clock bound here is the 2-minute limit, far
// above the seconds these streams take; no assertion depends on timing.
func runStream(t testing.TB, sb *service.StreamBuilder, outputYAML string, batches [][]string) {
	t.Helper()
	if err := runStreamWithin(t, sb, outputYAML, batches, 2*time.Minute); err != nil {
		t.Errorf("batch not acknowledged: %v", err)
	}
}

// runStreamWithin is runStream giving up after limit; it returns the error
// of the last batch not acknowledged (nil when all were).
func runStreamWithin(t testing.TB, sb *service.StreamBuilder, outputYAML string, batches [][]string, limit time.Duration) error {
	t.Helper()
	send, strm := buildStream(t, sb, outputYAML)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- strm.Run(ctx) }()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	work := make(chan []string)
	for range 4 {
		wg.Go(func() {
			for raws := range work {
				batch := make(service.MessageBatch, len(raws))
				for i, r := range raws {
					batch[i] = newMsg(r)
				}
				if err := send(ctx, batch); err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}
		})
	}
	for _, b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()
	stopCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := strm.Stop(stopCtx); err != nil && failed == nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil && err != context.Canceled {
		t.Logf("stream ended: %v", err)
	}
	return failed
}

// buildStream builds a stream from a batch producer to outputYAML, without
// logs.
func buildStream(t testing.TB, sb *service.StreamBuilder, outputYAML string) (service.MessageBatchHandlerFunc, *service.Stream) {
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
	return send, strm
}

// erroredPrefix marks, in the raw strings runStream sends, a message that a
// processor failed upstream (deadletter.Fail with ReasonUnmappable).
const erroredPrefix = "ERRORED:"

// newMsg builds a message from raw, failed upstream when raw starts with
// erroredPrefix.
func newMsg(raw string) *service.Message {
	if rest, ok := strings.CutPrefix(raw, erroredPrefix); ok {
		m := service.NewMessage([]byte(rest))
		deadletter.Fail(m, deadletter.ReasonUnmappable, errors.New("no user_id or device_id in the Currents event"))
		return m
	}
	return service.NewMessage([]byte(raw))
}

// faultWorkload is 24 batches of 40 events: valid ones, and invalid ones
// with the reason each must be dead-lettered with.
func faultWorkload() (batches [][]string, valid []string, wantReason map[string]string) {
	wantReason = map[string]string{}
	for b := range 24 {
		var batch []string
		for i := range 40 {
			id := fmt.Sprintf("e-%d-%d", b, i)
			var raw string
			switch i % 20 {
			case 3:
				raw = erroredPrefix + `{"insert_id":"` + id + `","braze":"event"}`
				wantReason[id] = string(deadletter.ReasonUnmappable)
			case 7:
				raw = `{"insert_id":"` + id + `","device_id":"device-1"}`
				wantReason[id] = string(reasonMissingFields)
			case 13:
				raw = `{"insert_id":"` + id + `","event_type":"x","user_id":"abc","device_id":"null"}`
				wantReason[id] = string(reasonMissingFields)
			case 17:
				raw = evt(id, "muted-device")
				wantReason[id] = string(reasonSilenced)
			default:
				raw = evt(id, fmt.Sprintf("device-%d", i%37))
				valid = append(valid, id)
			}
			batch = append(batch, raw)
		}
		batches = append(batches, batch)
	}
	return batches, valid, wantReason
}

// readDeadLetters reads a dead-letter file: insert_id -> reason, failing on
// a record written twice. key and reasonPath locate them in a line.
func readDeadLetters(t testing.TB, path, key, reasonPath string) map[string]string {
	t.Helper()
	got := map[string]string{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return got
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		id := gjson.Get(line, key).Str
		if _, dup := got[id]; dup {
			t.Errorf("%s twice in the dead-letter file", id)
		}
		got[id] = gjson.Get(line, reasonPath).Str
	}
	return got
}

// TestStreamFaultsAndDeadLetters: under 30% injected faults (5xx, bare 429,
// timeouts, dropped connections), every valid event is ingested exactly once
// by insert_id and every invalid one (including messages errored upstream)
// reaches the dead-letter file once with its reason, either through the
// output's dead_letter field or through a plain YAML fallback reading the
// typed error. The test's input cannot redeliver, so it keeps every wait in
// its write (pacing_id_share: 1); a plain fallback would route deferred
// events too (see the output's pacing_id_share).
func TestStreamFaultsAndDeadLetters(t *testing.T) {
	cases := []struct {
		name   string
		output string // with %[1]s key, %[2]s url, %[3]s dead-letter path
		key    string // where the insert_id is in a dead-letter line
		reason func(string) string
	}{
		{name: "dead_letter field", output: `
amplitude:
  api_key: %[1]s
  url: %[2]s
  timeout: 300ms
  max_in_flight: 4
  pacing_id_share: 1
  throttle_hold: 100ms
  backoff: { initial_interval: 5ms, max_interval: 50ms, max_elapsed_time: 0s }
  dead_letter:
    file:
      path: %[3]s
      codec: lines
`, key: "event.insert_id", reason: func(line string) string { return line }},
		{name: "plain fallback", output: `
fallback:
  - amplitude:
      api_key: %[1]s
      url: %[2]s
      timeout: 300ms
      max_in_flight: 4
      pacing_id_share: 1
      throttle_hold: 100ms
      backoff: { initial_interval: 5ms, max_interval: 50ms, max_elapsed_time: 0s }
  - file:
      path: %[3]s
      codec: lines
    processors:
      - mapping: |
          meta amplitude_error = @fallback_error
      - mapping: |
          root = this
          root.reason = @amplitude_error.split(":").index(0)
`, key: "insert_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := amplitudetest.NewServer(amplitudetest.Options{
				APIKey: testKey, FaultRate: 0.3, Seed: 42, SilencedDevices: []string{"muted-device"},
			})
			defer srv.Close()
			dlq := filepath.Join(t.TempDir(), "dlq.jsonl")
			batches, valid, wantReason := faultWorkload()
			runStream(t, service.NewStreamBuilder(), fmt.Sprintf(tc.output, testKey, srv.HTTPV2URL(), dlq), batches)

			if srv.Count() != len(valid) {
				t.Errorf("ingested %d distinct events, want %d", srv.Count(), len(valid))
			}
			for _, id := range valid {
				if _, ok := srv.Event(id); !ok {
					t.Errorf("valid event %s not ingested", id)
				}
			}
			got := readDeadLetters(t, dlq, tc.key, "reason")
			if len(got) != len(wantReason) {
				t.Errorf("%d events in the dead-letter file, want %d", len(got), len(wantReason))
			}
			for id, reason := range wantReason {
				if got[id] != reason {
					t.Errorf("dead letter %s: reason %q, want %s", id, got[id], reason)
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
		})
	}
}

// TestStreamOutagesAreNotDeadLettered: a phase in which every answer is a
// proxy's 403 page, a 401, a captive portal's HTML 200 or an invalid API key
// dead-letters nothing: the writes are nacked (the producer sees the error),
// and the events go in once the phase ends.
func TestStreamOutagesAreNotDeadLettered(t *testing.T) {
	for _, phase := range []struct {
		name  string
		kinds []amplitudetest.FaultKind
	}{
		{"proxy 403", []amplitudetest.FaultKind{amplitudetest.FaultProxy403}},
		{"401", []amplitudetest.FaultKind{amplitudetest.FaultUnauthorized}},
		{"html 200", []amplitudetest.FaultKind{amplitudetest.FaultHTML200}},
		{"5xx", []amplitudetest.FaultKind{amplitudetest.Fault503, amplitudetest.Fault502}},
	} {
		t.Run(phase.name, func(t *testing.T) {
			srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: testKey, FaultRate: 1, FaultKinds: phase.kinds})
			defer srv.Close()
			dlq := filepath.Join(t.TempDir(), "dlq.jsonl")
			out, _ := newTestOutput(t, srv.HTTPV2URL(), "backoff:\n  initial_interval: 1ms\n  max_interval: 2ms\n  max_elapsed_time: 30ms\n"+
				"dead_letter:\n  file:\n    path: "+dlq+"\n    codec: lines\n")
			events := []string{evt("a", "device-1"), evt("b", "device-2"), `{"insert_id":"bad","device_id":"device-3"}`}
			failed := write(t, context.Background(), out, events)
			if len(failed) != 2 || !IsOutage(failed[0]) || !IsOutage(failed[1]) {
				t.Fatalf("during the outage: failed %v, want the two valid events nacked as outages", failed)
			}
			if got := readDeadLetters(t, dlq, "event.insert_id", "reason"); len(got) != 1 || got["bad"] != string(reasonMissingFields) {
				t.Fatalf("dead letters during the outage: %v, want only the invalid event", got)
			}
			srv.SetFaults(0)
			if failed := write(t, context.Background(), out, events); len(failed) != 0 {
				t.Fatalf("after the outage: failed %v", failed)
			}
			if got := readDeadLetters(t, dlq, "event.insert_id", "reason"); len(got) != 1 {
				t.Fatalf("the re-sent invalid event was dead-lettered again: %v", got)
			}
			if srv.Count() != 2 {
				t.Fatalf("ingested %d, want 2", srv.Count())
			}
		})
	}
	t.Run("invalid api key", func(t *testing.T) {
		srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: "the-right-key"})
		defer srv.Close()
		dlq := filepath.Join(t.TempDir(), "dlq.jsonl")
		out, _ := newTestOutput(t, srv.HTTPV2URL(), "backoff:\n  initial_interval: 1ms\n  max_interval: 2ms\n  max_elapsed_time: 20ms\n"+
			"dead_letter:\n  file:\n    path: "+dlq+"\n    codec: lines\n")
		failed := write(t, context.Background(), out, manyEvents(20, 5))
		if len(failed) != 20 {
			t.Fatalf("failed %d, want all 20 nacked", len(failed))
		}
		if got := readDeadLetters(t, dlq, "event.insert_id", "reason"); len(got) != 0 {
			t.Fatalf("an invalid API key emptied the stream into the dead-letter output: %v", got)
		}
	})
}

// TestDeadLetterWriteFailureNacks: when the dead_letter output fails, the
// invalid events are nacked (an outage), not acknowledged.
func TestDeadLetterWriteFailureNacks(t *testing.T) {
	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: testKey})
	defer srv.Close()
	out, _ := newTestOutput(t, srv.HTTPV2URL(), "dead_letter:\n  reject: dead letters are down\n")
	failed := write(t, context.Background(), out, []string{evt("a", "device-1"), `{"insert_id":"bad","device_id":"device-3"}`})
	if len(failed) != 1 || !IsOutage(failed[1]) {
		t.Fatalf("failed %v, want the invalid event nacked", failed)
	}
	if srv.Count() != 1 {
		t.Fatalf("ingested %d, want 1", srv.Count())
	}
}

// BenchmarkEndToEnd sends the same events through a stream to the loopback
// server, with the amplitude output (paced, and unpaced for the transport's
// cost alone) and with Benthos' http_client output building the request body
// with Bloblang (no limits, no per-event errors).
func BenchmarkEndToEnd(b *testing.B) {
	const batchSize = 500
	outputs := map[string]string{
		"amplitude": `
amplitude:
  api_key: %s
  url: %s
  max_in_flight: 4
`,
		// Pacing off: the transport's cost alone, since with pacing the
		// run is held to Amplitude's 30 events/s per device (997 devices
		// here).
		"amplitude_unpaced": `
amplitude:
  api_key: %s
  url: %s
  max_in_flight: 4
  pacing: false
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
	for _, name := range []string{"amplitude", "amplitude_unpaced", "http_client"} {
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
