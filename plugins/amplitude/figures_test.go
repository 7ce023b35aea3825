package amplitude

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	_ "github.com/opencurrents/currents-amplitude/plugins/ratelimit" // device_rate_limit, the figures' "before"
)

// pacingWorkload is the figure's workload: devices×perDevice valid events
// (all of a device's events as fast as they come, in batches of 100 as Braze
// sends them) and invalid events without event_type mixed in.
func pacingWorkload(devices, perDevice, invalid int) (batches [][]string, valid int) {
	var all []string
	for i := range perDevice {
		for d := range devices {
			all = append(all, evt(fmt.Sprintf("ev-%d-%d", d, i), fmt.Sprintf("device-%03d", d)))
		}
	}
	for i := range invalid {
		at := (i + 1) * len(all) / (invalid + 1)
		all = append(all[:at], append([]string{fmt.Sprintf(`{"insert_id":"bad-%d","device_id":"device-000"}`, i)}, all[at:]...)...)
	}
	for len(all) > 0 {
		n := min(100, len(all))
		batches = append(batches, all[:n])
		all = all[n:]
	}
	return batches, devices * perDevice
}

// pacingFaults are the faults of the figure: 5xx, 500 after ingest, cut
// connections and hangs (no bare 429: the figure counts 429 answers).
var pacingFaults = []amplitudetest.FaultKind{amplitudetest.Fault500, amplitudetest.Fault502, amplitudetest.Fault503,
	amplitudetest.FaultDrop, amplitudetest.FaultHang}

// pacedOutput is the paced output of the figure; beforeOutput the same
// without pacing, behind device_rate_limit (delay) on 16 threads, as the
// shipped pipelines were before pacing moved into the output.
const (
	pacedOutput = `
amplitude:
  api_key: %s
  url: %s
  max_in_flight: 32
  backoff: { initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0s }
  dead_letter:
    file:
      path: %s
      codec: lines
`
	beforeOutput = pacedOutput + "  pacing: false\n"
)

// runPacingFigure sends the workload through a stream to a strict fake Amplitude
// and, paced, checks the figure's invariants: every valid event in
// Amplitude, exactly the invalid ones dead-lettered once, no 429. Before
// (device_rate_limit and an unpaced output) it only measures, giving up
// after limit. It returns the elapsed time and the dead-lettered count.
func runPacingFigure(tb testing.TB, devices, perDevice, invalid int, faults float64, hang time.Duration, before bool, limit time.Duration) (time.Duration, int, *amplitudetest.Server) {
	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: testKey, FaultRate: faults, FaultKinds: pacingFaults, HangFor: hang, Seed: 13})
	tb.Cleanup(srv.Close)
	dlq := filepath.Join(tb.TempDir(), "dlq.jsonl")
	batches, valid := pacingWorkload(devices, perDevice, invalid)
	sb := service.NewStreamBuilder()
	output := pacedOutput
	if before {
		output = beforeOutput
		sb.SetThreads(16)
		if err := sb.AddProcessorYAML("device_rate_limit: { preset: http_v2, on_limit: delay }"); err != nil {
			tb.Fatal(err)
		}
	}
	start := time.Now()
	err := runStreamWithin(tb, sb, fmt.Sprintf(output, testKey, srv.HTTPV2URL(), dlq), batches, limit)
	elapsed := time.Since(start)
	dead := readDeadLetters(tb, dlq, "event.insert_id", "reason")
	if before {
		return elapsed, len(dead), srv
	}
	if err != nil {
		tb.Errorf("batch not acknowledged: %v", err)
	}
	if srv.Count() != valid {
		tb.Errorf("%d of %d valid events in Amplitude", srv.Count(), valid)
	}
	if n := srv.StatusCounts()[429]; n != 0 {
		tb.Errorf("Amplitude answered 429 %d times", n)
	}
	if len(dead) != invalid {
		tb.Errorf("%d events dead-lettered, want the %d invalid ones: %v", len(dead), invalid, dead)
	}
	return elapsed, len(dead), srv
}

// TestPacingFiguresShort holds the delivery figures of BENCHMARKS.md in short form: 300
// events of 10 devices (30 each) and 2 invalid, with 30% faults (hangs of
// 3 s, hedged after 2 s): all delivered, the invalid ones dead-lettered, no
// 429.
func TestPacingFiguresShort(t *testing.T) {
	_, _, srv := runPacingFigure(t, 10, 30, 2, 0.3, 3*time.Second, false, 2*time.Minute)
	t.Logf("faults %v statuses %v", srv.FaultCounts(), srv.StatusCounts())
}

// BenchmarkPacingFigures is the delivery figure of BENCHMARKS.md: 3000 events of 30 devices (100
// each) and 5 invalid, with 30%% faults including 12-second hangs, and
// without faults; paced (the output alone) and before (device_rate_limit in
// delay mode on 16 threads in front of the unpaced output, given up after
// 3 minutes), side by side. It runs in real time (minutes), so not with
// -short.
func BenchmarkPacingFigures(b *testing.B) {
	if testing.Short() {
		b.Skip("real-time benchmark")
	}
	for _, tc := range []struct {
		name   string
		faults float64
	}{{"no_faults", 0}, {"faults_30pct_hangs_12s", 0.3}} {
		for _, mode := range []string{"paced", "before"} {
			b.Run(tc.name+"/"+mode, func(b *testing.B) {
				for range b.N {
					elapsed, dead, srv := runPacingFigure(b, 30, 100, 5, tc.faults, 12*time.Second, mode == "before", 3*time.Minute)
					b.ReportMetric(elapsed.Seconds(), "s/run")
					b.ReportMetric(float64(srv.Count()), "delivered")
					b.ReportMetric(float64(dead), "dead_lettered")
					b.ReportMetric(float64(srv.StatusCounts()[429]), "429s")
					b.ReportMetric(float64(srv.Requests()), "requests")
					b.Logf("%s/%s: %v, %d delivered, %d dead-lettered, faults %v, statuses %v", tc.name, mode, elapsed, srv.Count(), dead, srv.FaultCounts(), srv.StatusCounts())
				}
			})
		}
	}
}

// hotDeviceRun sends, for dur, 1000 events/s of 1000 cold devices and, when
// hot, 300 events/s of one hot device, in batches of 10 ms, and returns the
// cold events' delivery latencies (arrival at Amplitude minus creation) and
// the hot device's delivered count.
func hotDeviceRun(tb testing.TB, dur time.Duration, hot bool) (cold []time.Duration, hotDelivered, hotSent int, elapsed time.Duration) {
	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: testKey})
	tb.Cleanup(srv.Close)
	var batches [][]string
	start := time.Now()
	ticks := int(dur / (10 * time.Millisecond))
	for i := range ticks {
		var b []string
		for j := range 10 {
			b = append(b, fmt.Sprintf(`{"event_type":"open","insert_id":"cold-%d-%d","device_id":"cold-device-%04d","tick":%d}`, i, j, (i*10+j)%1000, i))
		}
		if hot {
			for j := range 3 {
				b = append(b, fmt.Sprintf(`{"event_type":"open","insert_id":"hot-%d-%d","device_id":"hot-device","tick":%d}`, i, j, i))
				hotSent++
			}
		}
		batches = append(batches, b)
	}
	runStreamPaced(tb, fmt.Sprintf(`
amplitude:
  api_key: %s
  url: %s
  max_in_flight: 512
`, testKey, srv.HTTPV2URL()), batches, 10*time.Millisecond, start)
	elapsed = time.Since(start)
	for _, e := range srv.Events() {
		if e.DeviceID == "hot-device" {
			hotDelivered++
			continue
		}
		tick := gjson.Get(e.Raw, "tick").Int()
		cold = append(cold, e.Arrived.Sub(start.Add(time.Duration(tick)*10*time.Millisecond)))
	}
	return cold, hotDelivered, hotSent, elapsed
}

func p99(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)*99/100]
}

// BenchmarkHotDevice: one hot device at 300 events/s among 1000 cold devices
// (1000 events/s): the cold devices' p99 delivery latency beside a run
// without the hot device (three rounds of both, interleaved, medians
// reported, since a shared machine's load moves the p99 more than the hot
// device does), and the hot device delivered at its limit with nothing
// lost. Real time (the hot device needs 22 s to drain 2 s of events), so
// not with -short.
func BenchmarkHotDevice(b *testing.B) {
	if testing.Short() {
		b.Skip("real-time benchmark")
	}
	const rounds = 3
	for range b.N {
		var base, with, rate []float64
		for r := range rounds {
			cold, _, _, _ := hotDeviceRun(b, 2*time.Second, false)
			hotCold, delivered, sent, elapsed := hotDeviceRun(b, 2*time.Second, true)
			if delivered != sent {
				b.Errorf("hot device: %d of %d delivered", delivered, sent)
			}
			base = append(base, float64(p99(cold).Microseconds())/1000)
			with = append(with, float64(p99(hotCold).Microseconds())/1000)
			rate = append(rate, float64(delivered)/elapsed.Seconds())
			b.Logf("round %d: cold p99 %.2f ms without the hot device, %.2f ms with it; hot device %.1f events/s", r, base[r], with[r], rate[r])
		}
		b.ReportMetric(median(base), "cold_p99_ms_without_hot")
		b.ReportMetric(median(with), "cold_p99_ms_with_hot")
		b.ReportMetric(median(rate), "hot_events/s")
	}
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// runStreamPaced is runStream sending one batch every interval from start,
// each without waiting for the acknowledgement of the others.
func runStreamPaced(tb testing.TB, outputYAML string, batches [][]string, interval time.Duration, start time.Time) {
	tb.Helper()
	send, strm := buildStream(tb, service.NewStreamBuilder(), outputYAML)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	go func() { _ = strm.Run(ctx) }()
	var wg sync.WaitGroup
	for i, raws := range batches {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		batch := make(service.MessageBatch, len(raws))
		for j, r := range raws {
			batch[j] = service.NewMessage([]byte(r))
		}
		wg.Go(func() {
			if err := send(ctx, batch); err != nil {
				tb.Errorf("batch not acknowledged: %v", err)
			}
		})
	}
	wg.Wait()
	_ = strm.Stop(ctx)
}
