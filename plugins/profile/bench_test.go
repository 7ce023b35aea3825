package profile

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/profile/profiletest"
)

// BenchmarkServeHit measures a lookup answered from the cache (the engine
// alone, no HTTP), from parallel goroutines over 10,000 users.
func BenchmarkServeHit(b *testing.B) {
	amp := newTestAmplitude(b, nil, 10000)
	amp.Limit = 1 << 30
	e := newTestEngine(b, amp, clock.System, func(c *engineConfig) { c.perMinute, c.burst, c.maxEntries = 1<<30, 1<<20, 1<<20 })
	queries := make([]Query, 10000)
	for i := range queries {
		queries[i] = Query{UserID: fmt.Sprint("u", i), RecID: "rec1"}
		e.serve(context.Background(), queries[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(7919))
		for pb.Next() {
			i++
			if a := e.serve(context.Background(), queries[i%len(queries)]); a.source != srcCache {
				b.Fatal(a.source)
			}
		}
	})
}

// figures gates the long measurements of docs/profiles.md.
func figures(t *testing.T) {
	if os.Getenv("PROFILE_FIGURES") == "" {
		t.Skip("set PROFILE_FIGURES=1 to measure the figures of docs/profiles.md (about a minute)")
	}
}

// load sends GETs to url(i) from workers goroutines for d and returns the
// latencies, statuses and sources; gzip lets the client accept gzip answers
// (Go's default; Benthos' http_server then compresses every answer).
func load(t *testing.T, workers int, d time.Duration, url func(i int) string, auth string, gzip bool) (lat []time.Duration, statuses map[int]int, sources map[string]int) {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers, DisableCompression: !gzip}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var mu sync.Mutex
	statuses, sources = map[int]int{}, map[string]int{}
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	var seq atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			st, src := map[int]int{}, map[string]int{}
			for time.Now().Before(stop) {
				req, _ := http.NewRequest(http.MethodGet, url(int(seq.Add(1))), nil)
				req.Header.Set("Authorization", auth)
				start := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					st[-1]++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(start))
				st[resp.StatusCode]++
				src[resp.Header.Get("X-Profile-Source")]++
			}
			mu.Lock()
			lat = append(lat, mine...)
			for k, v := range st {
				statuses[k] += v
			}
			for k, v := range src {
				sources[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, statuses, sources
}

func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[int(float64(len(lat)-1)*p)]
}

// TestFiguresCacheHits measures requests/s and latency of answers served from
// the cache over HTTP on loopback, through this endpoint
// (connected_content_http) and through Benthos' http_server + sync_response
// with the same processor, and, for reference, calling the fake Amplitude
// directly (which allows 600 a minute).
func TestFiguresCacheHits(t *testing.T) {
	figures(t)
	const users, d = 10000, 5 * time.Second
	workers := 16
	if w, err := strconv.Atoi(os.Getenv("PROFILE_WORKERS")); err == nil {
		workers = w
	}
	amp := newTestAmplitude(t, nil, users)
	amp.Limit = 1 << 30 // filling the cache is not what is measured
	proc := `
    - amplitude_profile:
        secret_key: SECRET
        url: AMP
        user_id: UID
        requests_per_minute: 100000000
        burst: 100000`
	own := freeAddr(t)
	runStream(t, strings.NewReplacer("ADDR", own, "AMP", amp.URL, "TOKEN", testToken, "SECRET", testSecret).Replace(`
input:
  connected_content_http: { address: ADDR, token: TOKEN }
pipeline:
  processors:`+strings.Replace(proc, "UID", `'${! json("user_id") }'`, 1)+`
output:
  sync_response: {}
logger: { level: none }
`))
	core := freeAddr(t)
	runStream(t, strings.NewReplacer("ADDR", core, "AMP", amp.URL, "SECRET", testSecret).Replace(`
input:
  http_server: { address: ADDR, path: /profiles, allowed_verbs: [ GET ], sync_response: { headers: { Content-Type: application/json, X-Profile-Source: '${! @amplitude_profile_source }' } } }
pipeline:
  processors:`+strings.Replace(proc, "UID", `'${! @user_id }'`, 1)+`
output:
  sync_response: {}
logger: { level: none }
`))
	waitListening(t, own)
	waitListening(t, core)
	auth := "Bearer " + testToken
	c := &http.Client{Timeout: 10 * time.Second}
	for _, addr := range []string{own, core} { // fill both caches
		for u := 0; u < users; u++ {
			status, _, _ := get(t, c, fmt.Sprintf("http://%s/profiles?user_id=u%d", addr, u), auth)
			require.Equal(t, 200, status)
		}
	}
	row := func(name string, lat []time.Duration, st map[int]int, src map[string]int) {
		t.Logf("| %s | %d | %.0f | %v | %v | %v | statuses %v sources %v |", name, len(lat), float64(len(lat))/d.Seconds(),
			pct(lat, 0.5).Round(time.Microsecond), pct(lat, 0.99).Round(time.Microsecond), pct(lat, 0.999).Round(time.Microsecond), st, src)
	}
	t.Logf("| path | requests | req/s | p50 | p99 | p99.9 | answers |")
	for round := 0; round < 2; round++ { // interleaved: the machine is shared
		lat, st, src := load(t, workers, d, func(i int) string { return fmt.Sprintf("http://%s/profiles?user_id=u%d", own, i%users) }, auth, true)
		row("connected_content_http + amplitude_profile", lat, st, src)
		assert.Equal(t, len(lat), src[srcCache])
		for _, gz := range []bool{true, false} {
			lat, st, src = load(t, workers, d, func(i int) string { return fmt.Sprintf("http://%s/profiles?user_id=u%d", core, i%users) }, auth, gz)
			row(fmt.Sprintf("http_server + sync_response + amplitude_profile (client accepts gzip: %v)", gz), lat, st, src)
			assert.Equal(t, len(lat), src[srcCache])
		}
	}
	direct := profiletest.New(t, testSecret)
	direct.AddUser("u0", "", "rec1", "a")
	lat, st, _ := load(t, workers, d, func(int) string { return direct.URL + profiletest.Path + "?user_id=u0" }, "Api-Key "+testSecret, true)
	row("Amplitude directly (fake, 600/min)", lat, st, nil)
}

// scaledClock runs k times faster than the system clock, so that minutes of
// a campaign (budget windows, TTLs, deadlines) pass in seconds.
type scaledClock struct {
	start, real time.Time
	k           float64
}

func newScaledClock(k float64) *scaledClock {
	return &scaledClock{start: time.Unix(1700000000, 0), real: time.Now(), k: k}
}

func (c *scaledClock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.real)) * c.k))
}

func (c *scaledClock) NewTimer(d time.Duration) clock.Timer {
	return realTimer{time.NewTimer(time.Duration(float64(d) / c.k))}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// TestFiguresBurst sends a campaign of 100,000 lookups for 10,000 users (each
// 10 times, shuffled) over 10 simulated minutes, against the fake Amplitude
// and its 600 requests per minute, on a clock 60 times faster than real:
// straight to Amplitude, through a cold cache, and through a cache prewarmed
// with the 10,000 users. It checks that the budget is never exceeded and
// reports the share of real answers.
func TestFiguresBurst(t *testing.T) {
	figures(t)
	const users, perUser, campaign, k = 10000, 10, 10 * time.Minute, 60.0
	order := make([]int, 0, users*perUser)
	for i := 0; i < users*perUser; i++ {
		order = append(order, i%users)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

	// send runs the campaign: lookup i starts at i*campaign/len(order)
	// (simulated), from enough goroutines that a waiting lookup never delays
	// the next ones.
	send := func(clk *scaledClock, lookup func(user int) bool) (real int, took time.Duration) {
		var n atomic.Int64
		var wg sync.WaitGroup
		start := clk.Now()
		next := make(chan int, 1024)
		for w := 0; w < 512; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for u := range next {
					if lookup(u) {
						n.Add(1)
					}
				}
			}()
		}
		step := campaign / time.Duration(len(order))
		for i, u := range order {
			if ahead := start.Add(time.Duration(i) * step).Sub(clk.Now()); ahead > 0 {
				time.Sleep(time.Duration(float64(ahead) / k))
			}
			next <- u
		}
		close(next)
		wg.Wait()
		return int(n.Load()), clk.Now().Sub(start)
	}
	newAmp := func(clk clock.Clock) *profiletest.Amplitude {
		amp := newTestAmplitude(t, clk, users)
		amp.Latency = 2 * time.Millisecond // 120 ms simulated
		return amp
	}
	report := func(name string, amp *profiletest.Amplitude, real int, took time.Duration) {
		s := amp.Stats()
		t.Logf("| %s | %d | %d | %d | %d | %.1f%% | %.1f%% | %v |", name, s.Requests, s.MaxInWindow, s.OK+s.NotSeen, s.Throttled,
			100*float64(real)/float64(len(order)), 100-100*float64(real)/float64(len(order)), took.Round(time.Second))
	}
	t.Logf("| path | calls to Amplitude | most in any 60 s | answered | 429 | real data | default | simulated duration |")

	clk := newScaledClock(k)
	amp := newAmp(clk)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}, Timeout: 10 * time.Second}
	real, took := send(clk, func(u int) bool {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s%s?user_id=u%d&get_recs=true&rec_id=rec1", amp.URL, profiletest.Path, u), nil)
		req.Header.Set("Authorization", "Api-Key "+testSecret)
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	report("Amplitude directly", amp, real, took)

	for _, warm := range []bool{false, true} {
		clk := newScaledClock(k)
		amp := newAmp(clk)
		e := newTestEngine(t, amp, clk, func(c *engineConfig) {
			c.maxEntries = 100000
			c.client.http = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		})
		name := "amplitude_profile, cold cache"
		if warm {
			name = "amplitude_profile, prewarmed (10,000 users)"
			wstart := clk.Now()
			var wg sync.WaitGroup
			ids := make(chan int)
			for w := 0; w < 8; w++ { // a few prewarm workers (one per pipeline thread)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for u := range ids {
						_, err := e.warm(context.Background(), Query{UserID: fmt.Sprint("u", u), RecID: "rec1"})
						require.NoError(t, err)
					}
				}()
			}
			for u := 0; u < users; u++ {
				ids <- u
			}
			close(ids)
			wg.Wait()
			t.Logf("prewarm of %d users: %d calls, most in any 60 s %d, took %v simulated", users, amp.Stats().Requests,
				amp.Stats().MaxInWindow, clk.Now().Sub(wstart).Round(time.Second))
		}
		real, took := send(clk, func(u int) bool {
			a := e.serve(context.Background(), Query{UserID: fmt.Sprint("u", u), RecID: "rec1"})
			return a.source != srcDefault && a.source != srcEmpty
		})
		e.flying.Wait()
		report(name, amp, real, took)
		// The budget spaces the calls it starts (at most 500 in any 60 s);
		// Amplitude sees them with the scheduling jitter of this shared
		// machine, magnified 60 times by the clock: the test checks what
		// matters, that Amplitude's own limit is never reached.
		assert.LessOrEqual(t, amp.Stats().MaxInWindow, int64(profiletest.OrgLimit))
		assert.Zero(t, amp.Stats().Throttled)
	}
}
