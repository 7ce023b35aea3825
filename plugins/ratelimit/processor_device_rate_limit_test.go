package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// newFakeClock returns a fake clock at t0: time moves only when the test
// moves it (or autoAdvance does).
func newFakeClock() *clock.Fake { return clock.NewFake(time.Unix(0, t0)) }

// autoAdvance moves clk to the deadline of each timer as soon as one is
// pending, so that a delayed batch runs through at once in fake time. It
// stops at the end of the test.
func autoAdvance(t testing.TB, clk *clock.Fake) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for clk.WaitForTimers(ctx, 1) {
			if at, ok := clk.NextDeadline(); ok {
				clk.Set(at)
			}
		}
	}()
}

func newTestProc(t testing.TB, yaml string, clk clock.Clock, opts ...service.MockResourcesOptFn) *deviceRateLimit {
	t.Helper()
	conf, err := deviceRateLimitSpec().ParseYAML(yaml, nil)
	require.NoError(t, err)
	p, err := newDeviceRateLimitFromParsed(conf, service.MockResources(opts...), clk)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func event(device, user string) *service.Message {
	return service.NewMessage(fmt.Appendf(nil, `{"event_type":"click","device_id":%q,"user_id":%q}`, device, user))
}

func process(t testing.TB, p *deviceRateLimit, msgs ...*service.Message) service.MessageBatch {
	t.Helper()
	out, err := p.ProcessBatch(context.Background(), msgs)
	require.NoError(t, err)
	if len(out) == 0 {
		return nil
	}
	require.Len(t, out, 1)
	return out[0]
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name           string
		yaml           string
		perSec, perDay uint32
		paths          []string
		err            string
	}{
		{name: "defaults", yaml: ``, perSec: 30, perDay: 500000, paths: []string{"device_id", "user_id"}},
		{name: "batch preset", yaml: `preset: batch`, perSec: 1000, perDay: 500000, paths: []string{"device_id", "user_id"}},
		{name: "overrides", yaml: "preset: batch\nper_second: 5\nper_day: 100", perSec: 5, perDay: 100, paths: []string{"device_id", "user_id"}},
		{
			name:  "fast and slow keys",
			yaml:  `keys: [ '${! this.user.id }', '${!json("a.b_c")}', '${! meta("k") }', '${! json("x").uppercase() }' ]`,
			paths: []string{"user.id", "a.b_c", "", ""}, perSec: 30, perDay: 500000,
		},
		{name: "per_second too high", yaml: `per_second: 70000`, err: "per_second must be between 1 and 65535, got 70000"},
		{name: "per_second zero", yaml: `per_second: 0`, err: "per_second must be between 1 and 65535, got 0"},
		{name: "per_day zero", yaml: `per_day: 0`, err: "per_day must be between"},
		{name: "no keys", yaml: `keys: []`, err: "keys must list between 1 and 8 keys, got 0"},
		{name: "unknown cache", yaml: `cache: nope`, err: `cache resource "nope" was not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := deviceRateLimitSpec().ParseYAML(tt.yaml, nil)
			require.NoError(t, err)
			p, err := newDeviceRateLimitFromParsed(conf, service.MockResources(), newFakeClock())
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.perSec, p.lim.perSec)
			assert.Equal(t, tt.perDay, p.lim.perDay)
			var paths []string
			for _, k := range p.keys {
				paths = append(paths, k.path)
			}
			assert.Equal(t, tt.paths, paths)
		})
	}
}

func TestExtractFastPathMatchesInterpolation(t *testing.T) {
	docs := []string{
		`{"device_id":"d1","user_id":"u1"}`,
		`{"device_id":"d\u00e9\"x","user_id":null}`,
		`{"device_id":12345,"user_id":""}`,
		`{"device_id":true}`,
		`{"user_id":"only-user"}`,
		`{"nested":{"id":"n"},"device_id":"d"}`,
		`{}`,
	}
	fast := newTestProc(t, `keys: [ '${! json("device_id") }', '${! this.user_id }', '${! json("nested.id") }' ]`, newFakeClock())
	slow := newTestProc(t, `keys: [ '${! json("device_id").string() }', '${! this.user_id.string() }', '${! json("nested.id").string() }' ]`, newFakeClock())
	require.NotEmpty(t, fast.keys[1].path)
	require.Empty(t, slow.keys[1].path)
	for _, doc := range docs {
		kf, err := fast.extract(service.NewMessage([]byte(doc)))
		require.NoError(t, err, doc)
		ks, err := slow.extract(service.NewMessage([]byte(doc)))
		require.NoError(t, err, doc)
		assert.Equal(t, ks.n, kf.n, doc)
		assert.Equal(t, ks.vals, kf.vals, doc)
		assert.Equal(t, ks.idx, kf.idx, doc)
	}
}

func TestExtractErrors(t *testing.T) {
	p := newTestProc(t, `on_limit: reject`, newFakeClock())
	out := process(t, p, service.NewMessage([]byte(`not json`)), service.NewMessage([]byte(`  `)), event("d", "u"))
	require.Len(t, out, 3)
	for _, m := range out[:2] {
		assert.ErrorContains(t, m.GetError(), "device rate limit: message is not a JSON object")
	}
	assert.NoError(t, out[2].GetError())

	p = newTestProc(t, `keys: [ '${! json("a").number() }' ]`, newFakeClock())
	out = process(t, p, service.NewMessage([]byte(`{"a":"x"}`)))
	assert.ErrorContains(t, out[0].GetError(), "evaluating key 0")
}

func TestReject(t *testing.T) {
	clk := newFakeClock()
	p := newTestProc(t, "per_second: 2\non_limit: reject", clk)
	out := process(t, p, event("hot", "u1"), event("hot", "u2"), event("hot", "u3"), event("cold", "u4"), event("other", "u1"))
	require.Len(t, out, 5)
	for i, m := range out {
		if i == 2 {
			continue
		}
		assert.NoError(t, m.GetError(), "message %d", i)
	}
	m := out[2]
	assert.ErrorContains(t, m.GetError(), `rate limit per_second exceeded for key "hot": retry at `)
	key, _ := m.MetaGet(metaKey)
	reason, _ := m.MetaGet(metaReason)
	at, _ := m.MetaGet(metaRetryAt)
	assert.Equal(t, "hot", key)
	assert.Equal(t, "per_second", reason)
	retry, err := time.Parse(time.RFC3339Nano, at)
	require.NoError(t, err)
	assert.WithinRange(t, retry, clk.Now().Add(time.Second), clk.Now().Add(1100*time.Millisecond))

	// At the advertised time the message passes.
	clk.Advance(retry.Sub(clk.Now()))
	assert.NoError(t, process(t, p, event("hot", "u9"))[0].GetError())
}

func TestRejectUserKey(t *testing.T) {
	p := newTestProc(t, "per_second: 1\non_limit: reject", newFakeClock())
	out := process(t, p, event("d1", "same"), event("d2", "same"), event("d3", ""))
	require.NoError(t, out[0].GetError())
	key, _ := out[1].MetaGet(metaKey)
	assert.Equal(t, "same", key)
	assert.NoError(t, out[2].GetError(), "an empty user_id is not limited")
}

func TestDrop(t *testing.T) {
	p := newTestProc(t, "per_second: 2\non_limit: drop", newFakeClock())
	out := process(t, p, event("hot", "a"), event("hot", "b"), event("hot", "c"), event("cold", "d"), event("hot", "e"))
	var users []string
	for _, m := range out {
		s, err := m.AsStructured()
		require.NoError(t, err)
		users = append(users, s.(map[string]any)["user_id"].(string))
	}
	assert.Equal(t, []string{"a", "b", "d"}, users)
	assert.Nil(t, process(t, p, event("hot", "f")), "all dropped: empty result")
}

func TestDropLeavesCallerBatchIntact(t *testing.T) {
	p := newTestProc(t, "per_second: 1\non_limit: drop", newFakeClock())
	in := service.MessageBatch{event("hot", "a"), event("hot", "b")}
	out := process(t, p, in...)
	require.Len(t, out, 1)
	assert.NotNil(t, in[1], "the caller's slice is not modified")
}

func TestErroredMessagesPassUntouched(t *testing.T) {
	for _, mode := range []string{"reject", "drop", "delay"} {
		t.Run(mode, func(t *testing.T) {
			p := newTestProc(t, "per_second: 1\non_limit: "+mode, newFakeClock())
			failed := service.NewMessage([]byte(`not json`))
			failed.SetError(errors.New("unmappable event"))
			out := process(t, p, failed, event("d1", "u1"))
			require.Len(t, out, 2)
			assert.EqualError(t, out[0].GetError(), "unmappable event", "the upstream reason is kept")
			assert.NoError(t, out[1].GetError(), "the errored message used none of the key's room")
		})
	}
}

func TestDelay(t *testing.T) {
	clk := newFakeClock()
	autoAdvance(t, clk)
	p := newTestProc(t, "per_second: 3\nper_day: 10", clk)
	start := clk.Now()
	var in service.MessageBatch
	for i := range 12 {
		in = append(in, event("hot", fmt.Sprint("u", i)))
	}
	in = append(in, event("cold", "x"))
	out := process(t, p, in...)
	require.Len(t, out, 13)
	for i, m := range out[:10] {
		assert.NoError(t, m.GetError(), "message %d passes after a wait", i)
	}
	for _, m := range out[10:12] {
		reason, _ := m.MetaGet(metaReason)
		assert.Equal(t, "per_day", reason, "over the daily limit: rejected, not held for hours")
	}
	assert.NoError(t, out[12].GetError())
	waited := clk.Now().Sub(start)
	assert.GreaterOrEqual(t, waited, 3*time.Second, "10 events at 3/s")
	assert.Less(t, waited, 5*time.Second)
}

// processAsync runs ProcessBatch in the background; the result arrives on
// the returned channel.
func processAsync(ctx context.Context, p *deviceRateLimit, msgs ...*service.Message) <-chan service.MessageBatch {
	out := make(chan service.MessageBatch, 1)
	go func() {
		res, err := p.ProcessBatch(ctx, msgs)
		if err != nil || len(res) != 1 {
			out <- nil
			return
		}
		out <- res[0]
	}()
	return out
}

// waitForDelay blocks until n timers wait on clk (the processor is holding
// messages), failing the test after a generous bound.
func waitForDelay(t *testing.T, clk *clock.Fake, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.True(t, clk.WaitForTimers(ctx, n), "the processor never waited on the clock")
}

func TestDelayInterrupted(t *testing.T) {
	clk := newFakeClock()
	p := newTestProc(t, "per_second: 1", clk)
	ctx, cancel := context.WithCancel(context.Background())
	res := processAsync(ctx, p, event("d", "a"), event("d", "b"))
	waitForDelay(t, clk, 1)
	cancel()
	out := <-res
	require.Len(t, out, 2)
	assert.NoError(t, out[0].GetError())
	assert.ErrorContains(t, out[1].GetError(), "rate limit per_second exceeded")
	assert.Equal(t, time.Unix(0, t0), clk.Now(), "released by the context, not by time")
}

func TestDelayReleasedOnClose(t *testing.T) {
	clk := newFakeClock()
	p := newTestProc(t, "per_second: 1", clk)
	res := processAsync(context.Background(), p, event("d", "a"), event("d", "b"))
	waitForDelay(t, clk, 1)
	require.NoError(t, p.Close(context.Background()))
	out := <-res
	require.Len(t, out, 2)
	assert.ErrorContains(t, out[1].GetError(), "rate limit per_second exceeded")
}

// TestDelayDoesNotHoldOtherKeys holds a batch of a hot device (which must
// wait about a second of fake time) and, meanwhile, processes batches of
// other devices, which must pass without the clock moving.
func TestDelayDoesNotHoldOtherKeys(t *testing.T) {
	clk := newFakeClock()
	p := newTestProc(t, "per_second: 2", clk)
	start := clk.Now()
	hot := processAsync(context.Background(), p, event("hot", "a"), event("hot", "b"), event("hot", "c"))
	waitForDelay(t, clk, 1)
	for i := range 20 {
		out := process(t, p, event(fmt.Sprint("cold", i), fmt.Sprint("u", i)))
		require.NoError(t, out[0].GetError())
	}
	assert.Equal(t, start, clk.Now(), "cold keys passed without waiting")
	select {
	case <-hot:
		t.Fatal("the hot key did not wait for room")
	default:
	}
	at, ok := clk.NextDeadline()
	require.True(t, ok)
	assert.GreaterOrEqual(t, at.Sub(start), 900*time.Millisecond, "the hot key waits for its window")
	assert.LessOrEqual(t, at.Sub(start), 1100*time.Millisecond)
	clk.Set(at)
	out := <-hot
	require.Len(t, out, 3)
	for i, m := range out {
		assert.NoError(t, m.GetError(), "hot message %d passes after the wait", i)
	}
}

func TestConcurrentThreads(t *testing.T) {
	clk := newFakeClock()
	p := newTestProc(t, "per_second: 10\non_limit: reject", clk)
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := map[string]int{}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				out := process(t, p, event(fmt.Sprint("d", i%3), fmt.Sprint("w", w, "-", i)))
				if out[0].GetError() == nil {
					mu.Lock()
					passed[fmt.Sprint("d", i%3)]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, map[string]int{"d0": 10, "d1": 10, "d2": 10}, passed)
}

func TestCachePersistsDailyCounts(t *testing.T) {
	clk := newFakeClock()
	res := service.MockResourcesOptAddCache("counts")
	conf := "per_day: 5\non_limit: reject\ncache: counts\nkeys: [ '${! json(\"device_id\") }' ]"
	resources := service.MockResources(res)
	parsed, err := deviceRateLimitSpec().ParseYAML(conf, nil)
	require.NoError(t, err)

	first, err := newDeviceRateLimitFromParsed(parsed, resources, clk)
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, process(t, first, event("d", ""))[0].GetError())
		clk.Advance(time.Second)
	}
	require.NoError(t, first.Close(context.Background()), "close writes the counts")

	var stored []byte
	require.NoError(t, resources.AccessCache(context.Background(), "counts", func(c service.Cache) {
		stored, err = c.Get(context.Background(), "device_rate_limit:0:d")
	}))
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprint(t0/int64(time.Hour), ":3"), string(stored))

	// A restarted instance continues from 3: two more pass, the third is over.
	second, err := newDeviceRateLimitFromParsed(parsed, resources, clk)
	require.NoError(t, err)
	defer second.Close(context.Background())
	clk.Advance(time.Hour)
	out := process(t, second, event("d", ""), event("d", ""), event("d", ""), event("e", ""))
	assert.NoError(t, out[0].GetError())
	assert.NoError(t, out[1].GetError())
	reason, _ := out[2].MetaGet(metaReason)
	assert.Equal(t, "per_day", reason)
	assert.NoError(t, out[3].GetError())
	second.maintain(context.Background())
	require.NoError(t, resources.AccessCache(context.Background(), "counts", func(c service.Cache) {
		stored, err = c.Get(context.Background(), "device_rate_limit:0:d")
	}))
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprint(t0/int64(time.Hour)+1, ":2,3"), string(stored))
}

// corruptCountsProc returns a processor whose cache resource "counts" of
// resources holds a corrupt entry for device "d".
func corruptCountsProc(t *testing.T, resources *service.Resources) *deviceRateLimit {
	t.Helper()
	require.NoError(t, resources.AccessCache(context.Background(), "counts", func(c service.Cache) {
		require.NoError(t, c.Set(context.Background(), "device_rate_limit:0:d", []byte("garbage"), nil))
	}))
	parsed, err := deviceRateLimitSpec().ParseYAML("cache: counts", nil)
	require.NoError(t, err)
	p, err := newDeviceRateLimitFromParsed(parsed, resources, newFakeClock())
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func TestCacheCorruptValue(t *testing.T) {
	p := corruptCountsProc(t, service.MockResources(service.MockResourcesOptAddCache("counts")))
	assert.NoError(t, process(t, p, event("d", "u"))[0].GetError(), "a bad cache entry does not stop events")
}

func TestSeedCapsAtPerDay(t *testing.T) {
	l := newLimiter(30, 1000, t0)
	hour := uint32(t0 / int64(time.Hour))
	var d dayCounts
	d.newest = hour
	for i := range d.counts {
		d.counts[i] = 1 << 31
	}
	l.seed(7, t0, d)
	got, ok := l.counts(7, t0)
	require.True(t, ok)
	assert.Equal(t, uint32(1000), got.counts[0])
	assert.Equal(t, reasonPerDay, l.take(t0, []uint64{7}).reason)
}

func TestCountsEncoding(t *testing.T) {
	tests := []struct {
		enc string
		err string
	}{
		{enc: "493000:1"},
		{enc: "493000:0"},
		{enc: "493000:5,0,7,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,9"},
		{enc: "garbage", err: "no hour"},
		{enc: "x:1", err: "malformed counts"},
		{enc: "1:1,,2", err: "malformed counts"},
		{enc: "1:" + "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1", err: "26 hours, at most 25"},
	}
	for _, tt := range tests {
		d, err := decodeCounts([]byte(tt.enc))
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err, tt.enc)
			continue
		}
		require.NoError(t, err, tt.enc)
		assert.Equal(t, tt.enc, string(d.encode()))
	}
}

func FuzzDecodeCounts(f *testing.F) {
	f.Add([]byte("493000:5,0,7"))
	f.Add([]byte("1:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeCounts(b)
		if err != nil {
			return
		}
		again, err := decodeCounts(d.encode())
		require.NoError(t, err)
		assert.Equal(t, d, again)
	})
}

func FuzzProcess(f *testing.F) {
	f.Add([]byte(`{"device_id":"d","user_id":"u"}`))
	f.Add([]byte(`{"device_id":{"a":[1,2]},"user_id":12}`))
	f.Add([]byte(`{"device_id":"d\u0000`))
	f.Add([]byte(`[1,2]`))
	p := newTestProc(f, "per_second: 1\non_limit: reject", newFakeClock())
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := p.ProcessBatch(context.Background(), service.MessageBatch{service.NewMessage(b)})
		require.NoError(t, err)
		require.Len(t, out, 1)
		require.Len(t, out[0], 1)
	})
}
