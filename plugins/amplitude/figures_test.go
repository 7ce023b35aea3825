package amplitude

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/metricstest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/proctime"
	"github.com/opencurrents/currents-amplitude/plugins/internal/ratelimited"
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
// after limit. It returns the elapsed time, the dead-lettered count, the
// fake and the stream's metrics.
func runPacingFigure(tb testing.TB, devices, perDevice, invalid int, faults float64, hang time.Duration, before bool, limit time.Duration) (time.Duration, int, *amplitudetest.Server, *metricstest.Recorder) {
	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: testKey, FaultRate: faults, FaultKinds: pacingFaults, HangFor: hang, Seed: 13})
	tb.Cleanup(srv.Close)
	dlq := filepath.Join(tb.TempDir(), "dlq.jsonl")
	batches, valid := pacingWorkload(devices, perDevice, invalid)
	sb := service.NewStreamBuilder()
	rec := metricstest.New(tb)
	if err := sb.SetMetricsYAML(rec.YAML()); err != nil {
		tb.Fatal(err)
	}
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
		return elapsed, len(dead), srv, rec
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
	return elapsed, len(dead), srv, rec
}

// TestPacingFiguresShort holds the delivery figures of BENCHMARKS.md in short form: 300
// events of 10 devices (30 each) and 2 invalid, with 30% faults (hangs of
// 3 s, hedged after 2 s): all delivered, the invalid ones dead-lettered, no
// 429.
func TestPacingFiguresShort(t *testing.T) {
	_, _, srv, rec := runPacingFigure(t, 10, 30, 2, 0.3, 3*time.Second, false, 2*time.Minute)
	t.Logf("faults %v statuses %v; %s", srv.FaultCounts(), srv.StatusCounts(), hedgeNote(srv, rec))
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
					elapsed, dead, srv, rec := runPacingFigure(b, 30, 100, 5, tc.faults, 12*time.Second, mode == "before", 3*time.Minute)
					b.ReportMetric(elapsed.Seconds(), "s/run")
					b.ReportMetric(float64(srv.Count()), "delivered")
					b.ReportMetric(float64(dead), "dead_lettered")
					b.ReportMetric(float64(srv.StatusCounts()[429]), "429s")
					b.ReportMetric(float64(srv.Requests()), "requests")
					b.ReportMetric(float64(srv.Duplicates()), "duplicates")
					b.Logf("%s/%s: %v, %d delivered, %d dead-lettered, faults %v, statuses %v; %s", tc.name, mode, elapsed, srv.Count(), dead,
						srv.FaultCounts(), srv.StatusCounts(), hedgeNote(srv, rec))
				}
			})
		}
	}
}

// hedgeNote tells the copies the output sent and where the duplicates at
// the fake Amplitude came from.
func hedgeNote(srv *amplitudetest.Server, rec *metricstest.Recorder) string {
	return fmt.Sprintf("hedges %d (won %d), events retried %d, events sent %d for %d ingested, %d duplicates at Amplitude",
		rec.Get("amplitude_hedges_total"), rec.Get("amplitude_hedge_wins_total"), rec.Get("amplitude_events_retried_total"),
		rec.Get("amplitude_events_sent_total"), rec.Get("amplitude_events_ingested_total"), srv.Duplicates())
}

// hotDeviceResult is one run of the hot-device figure.
type hotDeviceResult struct {
	// cold are the cold events' delivery latencies: arrival at the fake
	// Amplitude minus the moment their batch was handed to the stream, both
	// read from the same clock (time.Now in this process).
	cold []time.Duration
	// hotArrivals are the hot device's arrivals at the fake, in order.
	hotArrivals []time.Time
	hotSent     int
	// redelivered is how many messages the input delivered again after a
	// nack (the hot device's events deferred by pacing_id_share).
	redelivered int64
	status429   int
	// cpu is the CPU time (user + system) of the process during the run:
	// the stream and the fake Amplitude together.
	cpu time.Duration
}

// hotRate is the hot device's delivery rate: its events per second between
// its first and last arrival at the fake Amplitude.
func (r hotDeviceResult) hotRate() float64 {
	n := len(r.hotArrivals)
	if n < 2 {
		return 0
	}
	return float64(n-1) / r.hotArrivals[n-1].Sub(r.hotArrivals[0]).Seconds()
}

// hotDeviceRun sends, for dur, 1000 events/s of 1000 cold devices and, when
// hot, 300 events/s of one hot device, one batch every 10 ms (10 cold
// events and 3 hot) each sent without waiting for the others, through an
// amplitude output with maxInFlight writes, and waits until every batch is
// acknowledged (the hot device's backlog drains at its limit).
func hotDeviceRun(tb testing.TB, dur time.Duration, hot bool, maxInFlight int) hotDeviceResult {
	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: testKey})
	tb.Cleanup(srv.Close)
	var res hotDeviceResult
	ticks := int(dur / (10 * time.Millisecond))
	if hot {
		res.hotSent = 3 * ticks
	}
	batch := func(i int) []string {
		sent := time.Now().UnixNano()
		var b []string
		for j := range 10 {
			b = append(b, fmt.Sprintf(`{"event_type":"open","insert_id":"cold-%d-%d","device_id":"cold-device-%04d","sent_ns":%d}`, i, j, (i*10+j)%1000, sent))
		}
		if hot {
			for j := range 3 {
				b = append(b, fmt.Sprintf(`{"event_type":"open","insert_id":"hot-%d-%d","device_id":"hot-device","sent_ns":%d}`, i, j, sent))
			}
		}
		return b
	}
	cpu := proctime.CPU()
	res.redelivered = runStreamPaced(tb, fmt.Sprintf(`
amplitude:
  api_key: %s
  url: %s
  max_in_flight: %d
  pacing_id_share: 0.25
`, testKey, srv.HTTPV2URL(), maxInFlight), ticks, batch, 10*time.Millisecond)
	res.cpu = proctime.CPU() - cpu
	for _, e := range srv.Events() {
		if e.DeviceID == "hot-device" {
			res.hotArrivals = append(res.hotArrivals, e.Arrived)
			continue
		}
		res.cold = append(res.cold, e.Arrived.Sub(time.Unix(0, gjson.Get(e.Raw, "sent_ns").Int())))
	}
	if res.status429 = srv.StatusCounts()[429]; res.status429 != 0 {
		tb.Errorf("Amplitude answered 429 %d times", res.status429)
	}
	if n := len(res.cold); n != 10*ticks {
		tb.Errorf("%d of %d cold events delivered", n, 10*ticks)
	}
	return res
}

func p99(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)*99/100]
}

// BenchmarkHotDevice: one hot device at 300 events/s among 1000 cold devices
// (1000 events/s, 2 s of traffic): the cold devices' p99 delivery latency
// with the hot device beside runs without it, and the hot device delivered
// at its limit with nothing lost.
//
// The p99 of a few milliseconds moves with the machine's load more than with
// anything the output does, so each round runs without the hot device (A),
// with it (B) and without it again (A'), back to back; the figure is the
// median over the rounds of B/A, beside the median of A'/A: the ratio two
// identical runs differ by on this machine at this moment (the noise floor).
// The hot device changes the cold p99 only if B/A stands out of A'/A.
// Latencies are from the moment a batch is handed to the stream to its
// events' arrival at the fake Amplitude, on one clock. CPU time (stream and
// fake together) is reported per run: what the hot device costs the
// machine, which is what it could take from the cold devices.
//
// max_in_flight 512 holds the hot device's whole backlog of writes (each
// waits for its 3 hot events); 64 is the live pipeline's default, where
// the backlog fills every write slot. Real time (the hot device needs 22 s
// to drain 2 s of events), so not with -short.
func BenchmarkHotDevice(b *testing.B) {
	if testing.Short() {
		b.Skip("real-time benchmark")
	}
	const rounds = 5
	const dur = 2 * time.Second
	for _, inFlight := range []int{512, 64} {
		b.Run(fmt.Sprintf("max_in_flight_%d", inFlight), func(b *testing.B) {
			for range b.N {
				var ratio, floor, base, with, rate, cpuA, cpuB, again []float64
				for r := range rounds {
					a := hotDeviceRun(b, dur, false, inFlight)
					h := hotDeviceRun(b, dur, true, inFlight)
					a2 := hotDeviceRun(b, dur, false, inFlight)
					if len(h.hotArrivals) != h.hotSent {
						b.Errorf("hot device: %d of %d delivered", len(h.hotArrivals), h.hotSent)
					}
					pa, ph, pa2 := ms(p99(a.cold)), ms(p99(h.cold)), ms(p99(a2.cold))
					base, with = append(base, pa), append(with, ph)
					ratio, floor = append(ratio, ph/pa), append(floor, pa2/pa)
					rate = append(rate, h.hotRate())
					again = append(again, float64(h.redelivered))
					cpuA, cpuB = append(cpuA, a.cpu.Seconds()), append(cpuB, h.cpu.Seconds())
					b.Logf("round %d: cold p99 %.2f ms (A), %.2f ms with the hot device (B), %.2f ms (A'); B/A %.2f, A'/A %.2f; hot device %d/%d at %.2f events/s, %d redelivered after a nack (deferred); CPU %.2f s (A), %.2f s (B); 429s %d",
						r, pa, ph, pa2, ph/pa, pa2/pa, len(h.hotArrivals), h.hotSent, h.hotRate(), h.redelivered, a.cpu.Seconds(), h.cpu.Seconds(), h.status429)
				}
				b.ReportMetric(median(base), "cold_p99_ms_A")
				b.ReportMetric(median(with), "cold_p99_ms_B")
				b.ReportMetric(median(ratio), "B/A")
				b.ReportMetric(median(floor), "A'/A")
				b.ReportMetric(median(rate), "hot_events/s")
				b.ReportMetric(median(cpuA), "cpu_s_A")
				b.ReportMetric(median(cpuB), "cpu_s_B")
				b.ReportMetric(median(again), "redelivered_B")
			}
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// runStreamPaced sends n batches, batch(i) every interval, through a stream
// to outputYAML, each without waiting for the acknowledgement of the
// others, and waits until every message is acknowledged. Its input
// redelivers what a write nacks, as kafka_franz does: only the messages a
// batch error names (all of them when it names none), after a back-off of
// 10 ms doubling per attempt up to 1 s, or the nack's hint if longer. It returns the messages redelivered.
func runStreamPaced(tb testing.TB, outputYAML string, n int, batch func(i int) []string, interval time.Duration) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in := &redeliverInput{ch: make(chan redelivery), ctx: ctx}
	env := service.NewEnvironment()
	if err := env.RegisterBatchInput("figures_redeliver", service.NewConfigSpec(),
		func(*service.ParsedConfig, *service.Resources) (service.BatchInput, error) { return in, nil }); err != nil {
		tb.Fatal(err)
	}
	sb := env.NewStreamBuilder()
	if err := sb.SetLoggerYAML("level: none"); err != nil {
		tb.Fatal(err)
	}
	if err := sb.AddInputYAML("figures_redeliver: {}"); err != nil {
		tb.Fatal(err)
	}
	if err := sb.AddOutputYAML(outputYAML); err != nil {
		tb.Fatal(err)
	}
	strm, err := sb.Build()
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = strm.Run(ctx) }()
	start := time.Now()
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		raws := batch(i)
		msgs := make(service.MessageBatch, len(raws))
		for j, r := range raws {
			msgs[j] = service.NewMessage([]byte(r))
		}
		in.pending.Add(len(msgs))
		go in.deliver(redelivery{batch: msgs, idx: msgs.Index()})
	}
	acked := make(chan struct{})
	go func() { in.pending.Wait(); close(acked) }()
	select {
	case <-acked:
	case <-ctx.Done():
		tb.Errorf("messages not all acknowledged: %v", ctx.Err())
	}
	_ = strm.Stop(ctx)
	return in.redelivered.Load()
}

// redeliverInput is runStreamPaced's input.
type redeliverInput struct {
	ctx         context.Context // the run's
	ch          chan redelivery
	pending     sync.WaitGroup // one per message not yet acknowledged
	redelivered atomic.Int64
}

// redelivery is a batch to deliver and how many times it was delivered.
type redelivery struct {
	batch    service.MessageBatch
	idx      *service.Indexer // batch.Index(), taken before it is delivered
	attempts int
}

func (r *redeliverInput) deliver(d redelivery) {
	select {
	case r.ch <- d:
	case <-r.ctx.Done():
	}
}

func (r *redeliverInput) Connect(context.Context) error { return nil }

func (r *redeliverInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	select {
	case d := <-r.ch:
		return d.batch, func(_ context.Context, err error) error {
			r.ack(d, err)
			return nil
		}, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// ack counts the acknowledged messages and schedules the others again.
func (r *redeliverInput) ack(d redelivery, err error) {
	if err == nil {
		r.pending.Add(-len(d.batch))
		return
	}
	again := d.batch
	var berr *service.BatchError
	if errors.As(err, &berr) {
		again = nil
		berr.WalkMessagesIndexedBy(d.idx, func(i int, _ *service.Message, err error) bool {
			if err != nil {
				raw, _ := d.batch[i].AsBytes()
				again = append(again, service.NewMessage(raw))
			}
			return true
		})
	}
	r.pending.Add(len(again) - len(d.batch))
	if len(again) == 0 {
		return
	}
	r.redelivered.Add(int64(len(again)))
	pause := max(min(10*time.Millisecond<<min(d.attempts, 10), time.Second), ratelimited.After(err))
	time.AfterFunc(pause, func() { r.deliver(redelivery{batch: again, idx: again.Index(), attempts: d.attempts + 1}) })
}

func (r *redeliverInput) Close(context.Context) error { return nil }
