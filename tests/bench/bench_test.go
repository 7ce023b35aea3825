package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hamba/avro/v2/ocf"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
)

// benchData is the stream the in-process benchmarks share: 10,000 events
// over 10,000 devices, generated once into the system temp folder.
var benchData = Dataset{Events: 10000, Devices: 10000, Seed: 1}

func dataDir(tb testing.TB) string {
	dir := filepath.Join(os.TempDir(), "currents-amplitude-bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}

func readLines(tb testing.TB, path string) [][]byte {
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
}

func currentsLines(tb testing.TB) [][]byte {
	path, err := EnsureData(dataDir(tb), benchData)
	if err != nil {
		tb.Fatal(err)
	}
	return readLines(tb, path)
}

// processor builds the processor described by yaml (one component, no
// label) on the global environment.
func processor(tb testing.TB, yaml string) (run func(service.MessageBatch) []service.MessageBatch) {
	tb.Helper()
	rb := service.NewResourceBuilder()
	if err := rb.AddProcessorYAML("label: p\n" + yaml); err != nil {
		tb.Fatal(err)
	}
	res, closeFn, err := rb.Build()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = closeFn(context.Background()) })
	ctx := context.Background()
	return func(batch service.MessageBatch) (out []service.MessageBatch) {
		if err := res.AccessProcessor(ctx, "p", func(p *service.ResourceProcessor) {
			if out, err = p.ProcessBatch(ctx, batch); err != nil {
				tb.Fatal(err)
			}
		}); err != nil {
			tb.Fatal(err)
		}
		return out
	}
}

// benchProcessor feeds lines to the processor in batches of InputBatch,
// fresh messages each time; one op is one event.
func benchProcessor(b *testing.B, yaml string, lines [][]byte) {
	run := processor(b, yaml)
	batch := make(service.MessageBatch, InputBatch)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	next := 0
	for done := 0; done < b.N; done += InputBatch {
		for i := range batch {
			batch[i] = service.NewMessage(lines[next])
			next = (next + 1) % len(lines)
		}
		for _, out := range run(batch) {
			for _, m := range out {
				if err := m.GetError(); err != nil {
					b.Fatalf("event failed: %v", err)
				}
				if _, err := m.AsBytes(); err != nil { // what an output does
					b.Fatal(err)
				}
			}
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

func scenario(tb testing.TB, group, side string) Scenario {
	for _, s := range Scenarios() {
		if s.Group == group && s.Side == side {
			return s
		}
	}
	tb.Fatalf("no scenario %s / %s", group, side)
	return Scenario{}
}

func skipMissing(b *testing.B, s Scenario) {
	root, err := RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	if missing := s.Missing(root); len(missing) > 0 {
		b.Skipf("missing %v", missing)
	}
}

func bloblangMapping(b *testing.B) string {
	return bloblangFile(b, BloblangPath)
}

// bloblangFile reads the Bloblang mapping at path (from the repository
// root), skipping b when it is absent.
func bloblangFile(b *testing.B, path string) string {
	root, err := RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		b.Skipf("no Bloblang mapping: %v", err)
	}
	return string(raw)
}

// BenchmarkMapping compares the mapping alone, in process: the
// braze_to_amplitude processor against the same mapping in idiomatic
// Bloblang (and the processor's line-by-line twin), each given batches of
// 100 fresh messages whose output is serialised. One op is one event.
func BenchmarkMapping(b *testing.B) {
	lines := currentsLines(b)
	b.Run("ours", func(b *testing.B) {
		skipMissing(b, scenario(b, "mapping", Ours))
		benchProcessor(b, oursMapping(Params{})[2:], lines)
	})
	b.Run("bloblang", func(b *testing.B) {
		benchProcessor(b, plainMapping(Params{Bloblang: bloblangMapping(b)})[2:], lines)
	})
	b.Run("bloblang_twin", func(b *testing.B) {
		benchProcessor(b, plainMapping(Params{Bloblang: bloblangFile(b, TwinBloblangPath)})[2:], lines)
	})
}

// BenchmarkNoop is the floor of BenchmarkMapping and BenchmarkLimiter: the
// same message creation and processor call with Benthos' noop processor.
func BenchmarkNoop(b *testing.B) {
	benchProcessor(b, "noop: {}", currentsLines(b))
}

// BenchmarkLimiter measures device_rate_limit alone on Amplitude events of
// 10,000 devices, none over its limit. One op is one event.
func BenchmarkLimiter(b *testing.B) {
	if missing := HasComponents("braze_to_amplitude", "device_rate_limit"); len(missing) > 0 {
		b.Skipf("missing %v", missing)
	}
	mapEvents := processor(b, "braze_to_amplitude: {}")
	var amp [][]byte
	for _, l := range currentsLines(b) {
		for _, out := range mapEvents(service.MessageBatch{service.NewMessage(l)}) {
			for _, m := range out {
				raw, err := m.AsBytes()
				if err != nil {
					b.Fatal(err)
				}
				amp = append(amp, raw)
			}
		}
	}
	// The stream repeats, so raise the limits: this measures the pass path.
	benchProcessor(b, "device_rate_limit:\n  per_second: 65535\n  per_day: 1000000000", amp)
}

// BenchmarkAvroDecode compares the currents_avro scanner with a generic
// decode by hamba/avro into maps, then encoding/json: the straightforward
// way to turn Avro into JSON in Go. One op is one record.
func BenchmarkAvroDecode(b *testing.B) {
	globs, err := EnsureAvro(dataDir(b), benchData)
	if err != nil {
		b.Fatal(err)
	}
	files, _ := filepath.Glob(globs[0])
	var blobs [][]byte
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		blobs = append(blobs, raw)
	}
	perPass := benchData.Events
	b.Run("ours", func(b *testing.B) {
		if missing := HasComponents("currents_avro"); len(missing) > 0 {
			b.Skipf("missing %v", missing)
		}
		spec := service.NewConfigSpec().Field(service.NewScannerField("s"))
		pc, err := spec.ParseYAML("s:\n  currents_avro: {}", nil)
		if err != nil {
			b.Fatal(err)
		}
		creator, err := pc.FieldScanner("s")
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for done := 0; done < b.N; done += perPass {
			for _, blob := range blobs {
				sc, err := creator.Create(io.NopCloser(bytes.NewReader(blob)), func(context.Context, error) error { return nil },
					service.NewScannerSourceDetails())
				if err != nil {
					b.Fatal(err)
				}
				for {
					_, ack, err := sc.NextBatch(ctx)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					_ = ack(ctx, nil)
				}
				_ = sc.Close(ctx)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
	b.Run("hamba_generic_json", func(b *testing.B) {
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for done := 0; done < b.N; done += perPass {
			for _, blob := range blobs {
				dec, err := ocf.NewDecoder(bytes.NewReader(blob))
				if err != nil {
					b.Fatal(err)
				}
				for dec.HasNext() {
					var rec map[string]any
					if err := dec.Decode(&rec); err != nil {
						b.Fatal(err)
					}
					if _, err := json.Marshal(rec); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
}

// BenchmarkEndToEnd runs the two end-to-end pipelines in process, from the
// generated file to a loopback fake Amplitude. One op is one pass over
// 10,000 events; events/s is the figure to compare. The child-process
// harness (TestReport) adds CPU time and peak RSS.
func BenchmarkEndToEnd(b *testing.B) {
	path, err := EnsureData(dataDir(b), benchData)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range []Scenario{scenario(b, "end to end", Ours), scenario(b, "end to end", Plain)} {
		b.Run(s.Side, func(b *testing.B) {
			skipMissing(b, s)
			var blobl string
			if s.Side == Plain {
				blobl = bloblangMapping(b)
			}
			b.ReportAllocs()
			var total time.Duration
			for b.Loop() {
				srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: APIKey})
				sb := service.NewStreamBuilder()
				if err := sb.SetYAML(s.Config(Params{InputPaths: []string{path}, URL: srv.HTTPV2URL(), Bloblang: blobl})); err != nil {
					b.Fatal(err)
				}
				strm, err := sb.Build()
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := strm.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				if srv.Count() != benchData.Events {
					b.Fatalf("server ingested %d events, want %d", srv.Count(), benchData.Events)
				}
				srv.Close()
			}
			b.ReportMetric(float64(b.N*benchData.Events)/total.Seconds(), "events/s")
		})
	}
}
