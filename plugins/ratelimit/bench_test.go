package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/proctime"
)

// benchKeys returns n (device, user) hash pairs.
func benchKeys(n int) [][2]uint64 {
	rng := rand.New(rand.NewPCG(3, 4))
	keys := make([][2]uint64, n)
	for i := range keys {
		keys[i] = [2]uint64{rng.Uint64(), rng.Uint64()}
	}
	return keys
}

// benchTake times limiter.take for events with a device and a user key:
// n (device, user) pairs are tracked (2n ids), and the events draw from the
// first active of them in turn, all under their limits (the pass path).
//
// With batch, the events come in batches of 256, taken together
// (takeBatch), as ProcessBatch does.
func benchTake(b *testing.B, n, active int, batch bool) {
	keys := benchKeys(n)
	l := newLimiter(65535, 1<<31, t0)
	for i, k := range keys {
		l.take(t0+int64(i), k[:])
	}
	var mk []msgKeys
	var vs []verdict
	if batch {
		mk, vs = make([]msgKeys, active), make([]verdict, 256)
		for i := range mk {
			mk[i].n = 2
			mk[i].hs[0], mk[i].hs[1] = keys[i][0], keys[i][1]
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	now := t0
	for i := 0; b.Loop(); i++ {
		now += 1000
		j := i % active
		if !batch {
			if l.take(now, keys[j][:]).reason != reasonNone {
				b.Fatal("limited")
			}
			continue
		}
		if j%256 == 0 {
			chunk := mk[j:min(j+256, active)]
			l.takeBatch(now, chunk, vs)
			for _, v := range vs[:len(chunk)] {
				if v.reason != reasonNone {
					b.Fatal("limited")
				}
			}
		}
	}
}

// reportCPU reports the process CPU time per operation (cpu-ns/op) of the
// benchmark between its call and the call of the function it returns.
func reportCPU(b *testing.B) func() {
	start := proctime.CPU()
	return func() {
		if used := proctime.CPU() - start; used > 0 && b.N > 0 {
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

// BenchmarkLimiterTake times one event's take with 1,024, 5×10^5 (10^6
// ids) and 10^6 tracked (device, user) pairs: every event on a different
// pair (the worst case: each lookup misses the CPU caches), and 10^6 pairs
// tracked of which 10,000 are sending (a live stream: a day's devices
// tracked, a few thousand active at a time); each alone and in batches.
func BenchmarkLimiterTake(b *testing.B) {
	for _, c := range []struct{ n, active int }{{1024, 1024}, {500_000, 500_000}, {1_000_000, 1_000_000}, {1_000_000, 10_000}} {
		b.Run(fmt.Sprintf("keys=%d/active=%d", c.n, c.active), func(b *testing.B) { benchTake(b, c.n, c.active, false) })
		b.Run(fmt.Sprintf("keys=%d/active=%d/batch", c.n, c.active), func(b *testing.B) { benchTake(b, c.n, c.active, true) })
	}
}

func BenchmarkLimiterTakeParallel(b *testing.B) {
	keys := benchKeys(1 << 16)
	l := newLimiter(65535, 1<<31, t0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			l.take(t0, keys[rng.IntN(len(keys))][:])
		}
	})
}

// BenchmarkProcessor times the processor on one Amplitude event per batch:
// keys read with gjson (the default keys) against the same keys evaluated as
// Bloblang interpolations (what a plain Benthos config would do).
func BenchmarkProcessor(b *testing.B) {
	const ev = `{"event_type":"purchase","device_id":"%08d-F01A-4BD9-95C6-8E5357DF265D","user_id":"user-%d","time":1764421661123,` +
		`"insert_id":"9a3b7f0c-1c2d-4e5f-8a9b-0c1d2e3f4a5b","platform":"iOS","os_name":"ios","os_version":"18.1","device_model":"iPhone16,2",` +
		`"country":"FR","language":"fr","price":9.99,"quantity":1,"revenue":9.99,"event_properties":{"sku":"abc-123","campaign_id":"c-77"}}`
	for _, tt := range []struct{ name, yaml string }{
		{"gjson", ``},
		{"bloblang", `keys: [ '${! json("device_id").string() }', '${! json("user_id").string() }' ]`},
	} {
		b.Run(tt.name, func(b *testing.B) {
			conf, err := deviceRateLimitSpec().ParseYAML("per_second: 65535\nper_day: 2147483648\n"+tt.yaml, nil)
			if err != nil {
				b.Fatal(err)
			}
			p, err := newDeviceRateLimitFromParsed(conf, service.MockResources(), clock.System)
			if err != nil {
				b.Fatal(err)
			}
			batches := make([]service.MessageBatch, 4096)
			for i := range batches {
				batches[i] = service.MessageBatch{service.NewMessage(fmt.Appendf(nil, ev, i, i))}
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			for i := 0; b.Loop(); i++ {
				if _, err := p.ProcessBatch(ctx, batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
