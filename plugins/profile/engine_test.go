package profile

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/redact"
	"github.com/opencurrents/currents-amplitude/plugins/profile/profiletest"
)

const testSecret = "amp-s3cret"

var testDefault = []byte(`{"source":"default","recommendations":[{"items":["bestseller"]}]}`)

// newTestEngine returns an engine calling amp, on clk, with the processor's
// default settings changed by mod.
func newTestEngine(t testing.TB, amp *profiletest.Amplitude, clk clock.Clock, mod func(*engineConfig)) *engine {
	t.Helper()
	cfg := engineConfig{
		client: &client{base: amp.URL, auth: authHeader("", testSecret), params: params{getRecs: true}, http: amp.Client()},
		clock:  clk, ttl: time.Hour, emptyTTL: 10 * time.Minute, staleWhileRevalidate: 15 * time.Minute,
		staleIfError: 24 * time.Hour, timeout: 1500 * time.Millisecond, upstreamTimeout: 10 * time.Second,
		perMinute: 500, burst: 10, prewarmKeep: 5, throttlePause: 10 * time.Second, maxEntries: 1000,
		defaultBody: testDefault,
	}
	if mod != nil {
		mod(&cfg)
	}
	e := newEngine(cfg, service.MockResources())
	t.Cleanup(e.flying.Wait)
	return e
}

// newTestAmplitude starts a fake with users u0.. (devices d0..), on clk (the
// system clock when nil).
func newTestAmplitude(t testing.TB, clk clock.Clock, users int) *profiletest.Amplitude {
	amp := profiletest.New(t, testSecret)
	if clk != nil {
		amp.Clock = clk
	}
	for i := 0; i < users; i++ {
		amp.AddUser(fmt.Sprintf("u%d", i), fmt.Sprintf("d%d", i), "rec1", fmt.Sprintf("item-%d", i))
	}
	return amp
}

func newFakeClock() *clock.Fake { return clock.NewFake(time.Unix(1700000000, 0)) }

// fakeSetup returns a fake clock, a fake Amplitude with users u0.. on it,
// and an engine calling it.
func fakeSetup(t *testing.T, users int, mod func(*engineConfig)) (*clock.Fake, *profiletest.Amplitude, *engine) {
	clk := newFakeClock()
	amp := newTestAmplitude(t, clk, users)
	return clk, amp, newTestEngine(t, amp, clk, mod)
}

// serveAsync runs e.serve(q) in the background.
func serveAsync(e *engine, q Query) <-chan answer {
	ch := make(chan answer, 1)
	go func() { ch <- e.serve(context.Background(), q) }()
	return ch
}

// waitForTimers waits until n timers wait on clk: the code under test is
// blocked on the clock.
func waitForTimers(t *testing.T, clk *clock.Fake, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.True(t, clk.WaitForTimers(ctx, n), "waiting for %d timers", n)
}

func TestServeFromCacheWithinTTL(t *testing.T) {
	clk, amp, e := fakeSetup(t, 1, nil)
	ctx := context.Background()
	q := Query{UserID: "u0", RecID: "rec1"}

	a := e.serve(ctx, q)
	assert.Equal(t, srcAmplitude, a.source)
	assert.Contains(t, string(a.body), `"items":["item-0"]`)
	assert.True(t, strings.HasPrefix(string(a.body), `{"source":"amplitude"`))

	clk.Advance(59 * time.Minute)
	a = e.serve(ctx, q)
	assert.Equal(t, srcCache, a.source)
	assert.EqualValues(t, 1, amp.Stats().Requests)

	// Another rec_id is another profile.
	assert.Equal(t, srcAmplitude, e.serve(ctx, Query{UserID: "u0", RecID: "rec2"}).source)
	assert.EqualValues(t, 2, amp.Stats().Requests)
}

func TestServeStaleWhileRevalidate(t *testing.T) {
	clk, amp, e := fakeSetup(t, 1, nil)
	ctx := context.Background()
	q := Query{UserID: "u0"}
	require.Equal(t, srcAmplitude, e.serve(ctx, q).source)

	clk.Advance(time.Hour + time.Minute) // past ttl, within stale_while_revalidate
	a := e.serve(ctx, q)
	assert.Equal(t, srcStale, a.source, "served at once")
	assert.Empty(t, a.reason)
	e.flying.Wait()
	assert.EqualValues(t, 2, amp.Stats().Requests, "refreshed in the background")
	assert.Equal(t, srcCache, e.serve(ctx, q).source, "the refresh is fresh again")
}

func TestServeStaleIfErrorThenDefault(t *testing.T) {
	clk, amp, e := fakeSetup(t, 1, nil)
	ctx := context.Background()
	q := Query{UserID: "u0"}
	require.Equal(t, srcAmplitude, e.serve(ctx, q).source)

	clk.Advance(2 * time.Hour) // past stale_while_revalidate: Amplitude is asked first
	amp.FailNext(1, 503)
	a := e.serve(ctx, q)
	assert.Equal(t, srcStale, a.source)
	assert.Equal(t, reasonUpstream, a.reason)
	assert.Contains(t, string(a.body), "item-0")

	clk.Advance(24 * time.Hour) // past ttl + stale_if_error: nothing left to serve
	amp.FailNext(1, 500)
	a = e.serve(ctx, q)
	assert.Equal(t, srcDefault, a.source)
	assert.Equal(t, reasonUpstream, a.reason)
	assert.Equal(t, testDefault, a.body)
}

func TestServeNotSeenIsCachedEmpty(t *testing.T) {
	for _, status := range []int{200, 400} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			clk := newFakeClock()
			amp := newTestAmplitude(t, clk, 0)
			amp.NotSeenStatus = status
			e := newTestEngine(t, amp, clk, nil)
			ctx := context.Background()
			q := Query{DeviceID: "nobody"}
			for i := 0; i < 3; i++ {
				a := e.serve(ctx, q)
				assert.Equal(t, srcEmpty, a.source)
				assert.Equal(t, testDefault, a.body)
			}
			assert.EqualValues(t, 1, amp.Stats().NotSeen)
			clk.Advance(10*time.Minute + time.Second) // empty_ttl
			e.serve(ctx, q)
			assert.EqualValues(t, 2, amp.Stats().NotSeen)
		})
	}
}

func TestServeCoalescesIdenticalLookups(t *testing.T) {
	clk, amp, e := fakeSetup(t, 1, nil)
	amp.Hold()
	const n = 50
	var answers []<-chan answer
	for i := 0; i < n; i++ {
		answers = append(answers, serveAsync(e, Query{UserID: "u0"}))
	}
	waitForTimers(t, clk, n) // every lookup waits
	amp.Release()
	for _, a := range answers {
		assert.Equal(t, srcAmplitude, (<-a).source)
	}
	assert.EqualValues(t, 1, amp.Stats().Requests)
}

func TestServeDefaultAtTheDeadline(t *testing.T) {
	clk, amp, e := fakeSetup(t, 1, nil)
	amp.Hold()
	answers := serveAsync(e, Query{UserID: "u0"})
	waitForTimers(t, clk, 1)
	clk.Advance(1500 * time.Millisecond)
	a := <-answers
	assert.Equal(t, srcDefault, a.source)
	assert.Equal(t, reasonTimeout, a.reason)

	// The late answer still fills the cache for the next lookup.
	amp.Release()
	e.flying.Wait()
	assert.Equal(t, srcCache, e.serve(context.Background(), Query{UserID: "u0"}).source)
}

func TestServeEarlierContextDeadline(t *testing.T) {
	amp := newTestAmplitude(t, clock.System, 1)
	amp.Hold()
	defer amp.Release()
	e := newTestEngine(t, amp, clock.System, func(c *engineConfig) { c.timeout = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	a := e.serve(ctx, Query{UserID: "u0"})
	assert.Equal(t, srcDefault, a.source)
	assert.Equal(t, reasonTimeout, a.reason)
}

func TestServeOutOfBudget(t *testing.T) {
	clk := newFakeClock()
	amp := newTestAmplitude(t, clk, 10)
	e := newTestEngine(t, amp, clk, func(c *engineConfig) { c.perMinute, c.burst = 12, 2 }) // then one call per 6 s
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		assert.Equal(t, srcAmplitude, e.serve(ctx, Query{UserID: fmt.Sprint("u", i)}).source)
	}
	a := e.serve(ctx, Query{UserID: "u2"}) // the next call is 6 s away, past the deadline: answered at once
	assert.Equal(t, srcDefault, a.source)
	assert.Equal(t, reasonBudget, a.reason)
	assert.EqualValues(t, 2, amp.Stats().Requests)
	// A call within the deadline is waited for.
	clk.Advance(5 * time.Second)
	answers := serveAsync(e, Query{UserID: "u2"})
	waitForTimers(t, clk, 2) // the lookup's deadline and the call's start
	clk.Advance(time.Second)
	assert.Equal(t, srcAmplitude, (<-answers).source)
}

func TestServeUnauthorizedPausesCalls(t *testing.T) {
	clk, amp, e := fakeSetup(t, 3, nil)
	amp.SecretKey = "another key"
	ctx := context.Background()
	a := e.serve(ctx, Query{UserID: "u0"})
	assert.Equal(t, srcDefault, a.source)
	assert.Equal(t, reasonUnauthorized, a.reason)
	a = e.serve(ctx, Query{UserID: "u1"})
	assert.Equal(t, reasonPaused, a.reason)
	assert.EqualValues(t, 1, amp.Stats().Unauthorized, "no call while paused")
	clk.Advance(time.Minute)
	amp.SecretKey = testSecret
	assert.Equal(t, srcAmplitude, e.serve(ctx, Query{UserID: "u1"}).source)
}

func TestServeThrottledPausesCalls(t *testing.T) {
	clk, amp, e := fakeSetup(t, 3, nil)
	amp.Limit = 1 // another client spent the organisation's budget
	ctx := context.Background()
	require.Equal(t, srcAmplitude, e.serve(ctx, Query{UserID: "u0"}).source)
	a := e.serve(ctx, Query{UserID: "u1"})
	assert.Equal(t, reasonThrottled, a.reason)
	assert.Equal(t, reasonPaused, e.serve(ctx, Query{UserID: "u2"}).reason)
	assert.EqualValues(t, 2, amp.Stats().Requests)
	clk.Advance(time.Minute) // the fake's window has room again
	assert.Equal(t, srcAmplitude, e.serve(ctx, Query{UserID: "u2"}).source)
}

func TestWarmSpendsTheBudgetEvenly(t *testing.T) {
	clk := newFakeClock()
	amp := newTestAmplitude(t, clk, 20)
	e := newTestEngine(t, amp, clk, func(c *engineConfig) { c.perMinute, c.burst = 70, 10 }) // one call a second
	start := clk.Now()
	done := make(chan map[warmOutcome]int)
	go func() {
		got := map[warmOutcome]int{}
		for i := 0; i < 20; i++ {
			out, err := e.warm(context.Background(), Query{UserID: fmt.Sprint("u", i)})
			if err != nil {
				panic(err)
			}
			got[out]++
		}
		done <- got
	}()
	// Move the clock a second each time prewarm waits, until it is done.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got map[warmOutcome]int
	go func() { got = <-done; cancel() }()
	for clk.WaitForTimers(ctx, 1) {
		clk.Advance(time.Second)
	}
	<-ctx.Done()
	require.NotNil(t, got, "prewarm did not end")
	assert.Equal(t, map[warmOutcome]int{warmFetched: 20}, got)
	// 5 calls of the burst at once (5 kept for live lookups), then one a second.
	assert.Equal(t, 15*time.Second, clk.Now().Sub(start))
	// The kept calls serve a live lookup at once while prewarm waits.
	assert.Equal(t, srcAmplitude, e.serve(context.Background(), Query{UserID: "u0", RecID: "live"}).source)
	out, err := e.warm(context.Background(), Query{UserID: "u3"})
	require.NoError(t, err)
	assert.Equal(t, warmFresh, out)
	for i := 0; i < 20; i++ {
		assert.Equal(t, srcCache, e.serve(context.Background(), Query{UserID: fmt.Sprint("u", i)}).source)
	}
}

func TestCacheEvictsBeyondMaxEntries(t *testing.T) {
	_, _, e := fakeSetup(t, 0, func(c *engineConfig) { c.maxEntries = 64; c.perMinute = 100000; c.burst = 5000 })
	var wg sync.WaitGroup
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.serve(context.Background(), Query{UserID: fmt.Sprint("x", i)})
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, e.cache.len(), 64+cacheShards)
}

// TestLogsNeverHoldTheKey makes Amplitude echo the key in a 500 and a 401 and
// checks the log lines: the answer is quoted, the key is not; the 401 is an
// error (it needs a person), the 500 a warning.
func TestLogsNeverHoldTheKey(t *testing.T) {
	// The lines are written by the calls' goroutines before the lookups
	// are answered (they land after logging): read after both, no race.
	var buf bytes.Buffer
	log := service.NewLoggerFromSlog(slog.New(slog.NewTextHandler(&buf, nil)))
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := 500
		if r.URL.Query().Get("user_id") == "bad-key" {
			status = 401
		}
		http.Error(w, "oops "+r.Header.Get("Authorization"), status)
	}))
	defer echo.Close()
	cfg := engineConfig{
		client: &client{base: echo.URL, auth: authHeader("", testSecret), http: echo.Client()},
		clock:  newFakeClock(), ttl: time.Hour, timeout: time.Minute, upstreamTimeout: time.Minute,
		perMinute: 500, burst: 10, throttlePause: time.Second, maxEntries: 10, defaultBody: testDefault,
		redact: redact.New(testSecret),
	}
	e := newEngine(cfg, service.MockResources(service.MockResourcesOptUseLogger(log)))
	assert.Equal(t, reasonUpstream, e.serve(context.Background(), Query{UserID: "u1"}).reason)
	assert.Equal(t, reasonUnauthorized, e.serve(context.Background(), Query{UserID: "bad-key"}).reason)
	out := buf.String()
	assert.Contains(t, out, "level=WARN")
	assert.Contains(t, out, "level=ERROR")
	assert.Contains(t, out, "oops Api-Key "+redact.Marker)
	assert.NotContains(t, out, testSecret)
}
