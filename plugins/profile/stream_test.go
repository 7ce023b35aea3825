package profile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	_ "github.com/opencurrents/currents-amplitude/plugins/cohort" // amplitude_cohort, for the cohort prewarm
	"github.com/opencurrents/currents-amplitude/plugins/cohort/cohorttest"
	_ "github.com/opencurrents/currents-amplitude/plugins/prometheus"
)

const testToken = "braze-t0ken"

// freeAddr returns a loopback address with a free port.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// runStream starts the stream of yaml, stopped at test end, and returns the
// mux serving Benthos' own endpoints (/metrics).
func runStream(t testing.TB, yaml string) *http.ServeMux {
	t.Helper()
	b := service.NewStreamBuilder()
	mux := http.NewServeMux()
	b.SetHTTPMux(mux)
	require.NoError(t, b.SetYAML(yaml))
	stream, err := b.Build()
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- stream.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = stream.Stop(ctx)
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("the stream failed: %v", err)
		}
	})
	return mux
}

// get calls the endpoint and returns the status, source header and body.
func get(t testing.TB, c *http.Client, url, auth string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("X-Profile-Source"), string(body)
}

// waitListening waits until addr accepts connections (the input listens once
// the stream has connected it).
func waitListening(t testing.TB, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
}

func profilesYAML(addr, ampURL, extra string) string {
	return strings.NewReplacer("ADDR", addr, "AMP", ampURL, "TOKEN", testToken, "SECRET", testSecret, "EXTRA", extra).Replace(`
input:
  connected_content_http:
    address: ADDR
    token: TOKEN
    timeout: 5s
pipeline:
  processors:
    - amplitude_profile:
        secret_key: SECRET
        url: AMP
        get_recs: true
        rec_id: '${! json("rec_id").or("rec1") }'
        default_answer: '{"recommendations":[{"items":["bestseller"]}]}'
EXTRA
output:
  sync_response: {}
metrics:
  prometheus: {}
logger: { level: none }
`)
}

// TestStreamConnectedContent runs the endpoint as Braze calls it: the answers
// shaped for Liquid, the cache, the token, bad requests, Amplitude failing,
// and the metrics of every decision.
func TestStreamConnectedContent(t *testing.T) {
	amp := newTestAmplitude(t, nil, 3)
	addr := freeAddr(t)
	mux := runStream(t, profilesYAML(addr, amp.URL, ""))
	waitListening(t, addr)
	c := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + addr + "/profiles"
	bearer := "Bearer " + testToken

	status, src, body := get(t, c, base+"?user_id=u1", bearer)
	require.Equal(t, 200, status, body)
	assert.Equal(t, srcAmplitude, src)
	assert.Equal(t, "item-1", gjson.Get(body, "recommendations.0.items.0").String(), "connected.recommendations[0].items")
	assert.Equal(t, "amplitude", gjson.Get(body, "source").String())

	status, src, _ = get(t, c, base+"?user_id=u1", bearer)
	assert.Equal(t, 200, status)
	assert.Equal(t, srcCache, src)
	assert.EqualValues(t, 1, amp.RequestsFor("u1"))

	// Basic auth with the token as password (a Braze Connected Content credential).
	req, _ := http.NewRequest(http.MethodGet, base+"?device_id=d2", nil)
	req.SetBasicAuth("braze", testToken)
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	for _, tc := range []struct {
		name, url, auth string
		status          int
		source          string
		bodyHas         string
	}{
		{"no token", base + "?user_id=u1", "", 401, "", "unauthorized"},
		{"wrong token", base + "?user_id=u1", "Bearer nope", 401, "", "unauthorized"},
		{"the Amplitude key is not the token", base + "?user_id=u1", "Bearer " + testSecret, 401, "", "unauthorized"},
		{"no id", base + "?rec_id=x", bearer, 400, "", "neither a user_id nor a device_id"},
		{"wrong path", "http://" + addr + "/other?user_id=u1", bearer, 404, "", ""},
		{"unknown user", base + "?user_id=nobody", bearer, 200, srcEmpty, `"bestseller"`},
		{"long query", base + "?user_id=" + strings.Repeat("x", 9000), bearer, 400, "", "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, src, body := get(t, c, tc.url, tc.auth)
			assert.Equal(t, tc.status, status, body)
			assert.Equal(t, tc.source, src)
			assert.Contains(t, body, tc.bodyHas)
		})
	}
	assert.EqualValues(t, 0, amp.Stats().Unauthorized, "refused requests never reach Amplitude")

	// Amplitude down: the default answer, at once, with status 200.
	amp.FailNext(1, 503)
	status, src, body = get(t, c, base+"?user_id=u0", bearer)
	assert.Equal(t, 200, status)
	assert.Equal(t, srcDefault, src)
	assert.JSONEq(t, `{"source":"default","recommendations":[{"items":["bestseller"]}]}`, body)

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	metrics := rec.Body.String()
	for _, want := range []string{
		`amplitude_profile_answers_total{label="",path="root.pipeline.processors.0",reason="",source="amplitude"} 2`,
		`amplitude_profile_answers_total{label="",path="root.pipeline.processors.0",reason="",source="cache"} 1`,
		`amplitude_profile_answers_total{label="",path="root.pipeline.processors.0",reason="upstream_error",source="default"} 1`,
		`amplitude_profile_answers_total{label="",path="root.pipeline.processors.0",reason="",source="empty"} 1`,
		`amplitude_profile_cache_total{decision="hit",label="",path="root.pipeline.processors.0"} 1`,
		`amplitude_profile_budget_total{decision="granted",label="",path="root.pipeline.processors.0"} 4`,
		`amplitude_profile_upstream_total{label="",outcome="server_error",path="root.pipeline.processors.0"} 1`,
		`amplitude_profile_upstream_total{label="",outcome="not_seen",path="root.pipeline.processors.0"} 1`,
		`connected_content_requests_total{label="",path="root.input",status="401"} 3`,
		`connected_content_requests_total{label="",path="root.input",status="400"} 2`,
		`connected_content_requests_pending{label="",path="root.input"} 0`,
		`connected_content_requests_total{label="",path="root.input",status="200"} 5`,
	} {
		assert.Contains(t, metrics, want)
	}
}

// TestStreamPrewarm fills the cache from a file of user ids in the input's own
// branch, sharing the cache with the serving processor by name.
func TestStreamPrewarm(t *testing.T) {
	amp := newTestAmplitude(t, nil, 30)
	dir := t.TempDir()
	list := filepath.Join(dir, "users.txt")
	var ids []string
	for i := 0; i < 30; i++ {
		ids = append(ids, fmt.Sprint("u", i))
	}
	require.NoError(t, os.WriteFile(list, []byte(strings.Join(ids, "\n")+"\n\n"), 0o600))
	addr := freeAddr(t)
	yaml := strings.NewReplacer("ADDR", addr, "AMP", amp.URL, "TOKEN", testToken, "SECRET", testSecret, "LIST", list).Replace(`
input:
  broker:
    inputs:
      - connected_content_http:
          address: ADDR
          token: TOKEN
      - file:
          paths: [ LIST ]
          scanner: { lines: {} }
        processors:
          - mapping: 'root = if content().string().trim() == "" { deleted() } else { {"user_id": content().string().trim()} }'
          - resource: warm
          - mapping: root = deleted()
pipeline:
  processors:
    - resource: serve
output:
  sync_response: {}
processor_resources:
  - label: serve
    amplitude_profile: { name: shared, mode: serve, secret_key: SECRET, url: AMP, requests_per_minute: 6000, burst: 100 }
  - label: warm
    amplitude_profile: { name: shared, mode: prewarm, secret_key: SECRET, url: AMP, requests_per_minute: 6000, burst: 100 }
logger: { level: none }
`)
	runStream(t, yaml)
	require.Eventually(t, func() bool { return amp.Stats().OK == 30 }, 10*time.Second, 5*time.Millisecond)
	waitListening(t, addr)
	c := &http.Client{Timeout: 5 * time.Second}
	for _, id := range ids {
		status, src, _ := get(t, c, "http://"+addr+"/profiles?user_id="+id, "Bearer "+testToken)
		assert.Equal(t, 200, status)
		assert.Equal(t, srcCache, src, id)
	}
	assert.EqualValues(t, 30, amp.Stats().Requests, "served from the prewarmed cache")
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"EU", `amplitude_profile: { secret_key: x, region: EU }`, "not available in the EU"},
		{"no key", `amplitude_profile: { secret_key: "" }`, "secret_key is empty"},
		{"bad default", `amplitude_profile: { secret_key: x, default_answer: "[1]" }`, "must be a JSON object"},
		{"burst", `amplitude_profile: { secret_key: x, requests_per_minute: 10, burst: 10 }`, "burst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := service.NewStreamBuilder()
			err := b.AddProcessorYAML(tc.yaml)
			if err == nil {
				require.NoError(t, b.AddInputYAML(`generate: { mapping: 'root = {}', count: 1 }`))
				require.NoError(t, b.AddOutputYAML(`drop: {}`))
				var s *service.Stream
				if s, err = b.Build(); err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					err = s.Run(ctx)
				}
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestSharedNameNeedsSameSettings(t *testing.T) {
	mk := func() *engine { return nil }
	_, rel, err := sharedEngine("n", "a", mk)
	require.NoError(t, err)
	_, _, err = sharedEngine("n", "b", mk)
	assert.ErrorContains(t, err, "different settings")
	_, rel2, err := sharedEngine("n", "a", mk)
	require.NoError(t, err)
	assert.False(t, rel())
	assert.True(t, rel2())
	_, rel3, err := sharedEngine("n", "b", mk) // released: a new one
	require.NoError(t, err)
	assert.True(t, rel3())
}

// TestStreamMissesDoNotHoldHits keeps 20 lookups waiting for a slow Amplitude
// and checks that a cached profile is still answered at once: each waiting
// lookup holds one pipeline thread, so the pipeline needs enough threads.
func TestStreamMissesDoNotHoldHits(t *testing.T) {
	amp := newTestAmplitude(t, nil, 30)
	addr := freeAddr(t)
	yaml := strings.Replace(profilesYAML(addr, amp.URL, "        timeout: 30s\n  threads: 64"), "timeout: 5s", "timeout: 30s", 1)
	runStream(t, yaml)
	waitListening(t, addr)
	c := &http.Client{Timeout: time.Minute}
	base, bearer := "http://"+addr+"/profiles", "Bearer "+testToken
	status, _, _ := get(t, c, base+"?user_id=u0", bearer)
	require.Equal(t, 200, status)

	amp.Hold()
	const waiting = 20
	sources := make(chan string, waiting)
	for i := 1; i <= waiting; i++ {
		go func() {
			_, src, _ := get(t, c, fmt.Sprintf("%s?user_id=u%d", base, i), bearer)
			sources <- src
		}()
	}
	require.Eventually(t, func() bool { return amp.Stats().Requests == 1+waiting }, 10*time.Second, time.Millisecond)
	for i := 0; i < 10; i++ {
		status, src, _ := get(t, c, base+"?user_id=u0", bearer)
		assert.Equal(t, 200, status)
		assert.Equal(t, srcCache, src)
	}
	assert.Empty(t, sources, "the waiting lookups are still waiting")
	amp.Release()
	for i := 0; i < waiting; i++ {
		assert.Equal(t, srcAmplitude, <-sources)
	}
}

// TestStreamBurstStaysWithinBudget sends requests for 500 users for 2 s, as
// fast as 8 clients can, through the whole pipeline, with a budget of 60 calls a
// minute (5 at once): Amplitude gets no more calls than the budget allows in
// the time the burst took, every request is answered 200, and the answers are
// real data or the default.
func TestStreamBurstStaysWithinBudget(t *testing.T) {
	amp := newTestAmplitude(t, nil, 500)
	addr := freeAddr(t)
	// The input's deadline (5 s) is far beyond the processor's timeout
	// (1.5 s), so that a slow moment of a shared machine cannot turn an
	// answer into a 503.
	yaml := profilesYAML(addr, amp.URL, "        requests_per_minute: 60\n        burst: 5\n        prewarm_reserve: 2\n  threads: 64")
	runStream(t, yaml)
	waitListening(t, addr)
	start := time.Now()
	lat, statuses, sources := load(t, 8, 2*time.Second, func(i int) string {
		return fmt.Sprintf("http://%s/profiles?user_id=u%d", addr, i%500)
	}, "Bearer "+testToken, false)
	elapsed := time.Since(start)
	calls := amp.Stats().Requests
	allowed := int64(5 + elapsed.Seconds()*55/60 + 1)
	t.Logf("%d requests in %v: %d calls to Amplitude (budget allows %d), answers %v", len(lat), elapsed, calls, allowed, sources)
	assert.LessOrEqual(t, calls, allowed)
	assert.GreaterOrEqual(t, calls, int64(5), "the burst is spent")
	assert.Zero(t, amp.Stats().Throttled)
	assert.Equal(t, map[int]int{200: len(lat)}, statuses)
	assert.Equal(t, len(lat), sources[srcAmplitude]+sources[srcCache]+sources[srcDefault])
	assert.Positive(t, sources[srcDefault])
}

// TestProcessorBatch answers every message of a batch (looked up
// concurrently) and flags only the one naming no user.
func TestProcessorBatch(t *testing.T) {
	amp := newTestAmplitude(t, nil, 2)
	conf, err := amplitudeProfileSpec().ParseYAML(strings.NewReplacer("AMP", amp.URL, "SECRET", testSecret).Replace(
		`{secret_key: SECRET, url: AMP, get_recs: true, rec_id: rec1, user_id: '${! meta("uid").or("") }'}`), nil)
	require.NoError(t, err)
	p, err := newProcessorFromParsed(conf, service.MockResources(), nil)
	require.NoError(t, err)
	defer p.Close(context.Background())
	var batch service.MessageBatch
	for _, uid := range []string{"u1", "nobody", "", "u1"} {
		m := service.NewMessage([]byte(`{}`))
		m.MetaSetMut("uid", uid)
		batch = append(batch, m)
	}
	out, err := p.ProcessBatch(context.Background(), batch)
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Len(t, out[0], 4)
	for i, want := range []string{srcAmplitude, srcEmpty, "", srcAmplitude} {
		m := out[0][i]
		src, _ := m.MetaGet(MetaSource)
		if (i == 0 || i == 3) && src == srcCache {
			// The lookups of u1 run concurrently: the later one may be
			// answered from the cache the earlier one's call filled. Either
			// way there is one call (asserted below).
			src = srcAmplitude
		}
		assert.Equal(t, want, src, i)
		if want == "" {
			assert.ErrorIs(t, m.GetError(), errNoID)
			continue
		}
		assert.NoError(t, m.GetError())
		b, _ := m.AsBytes()
		assert.True(t, gjson.ValidBytes(b))
	}
	assert.EqualValues(t, 1, amp.RequestsFor("u1"), "the two lookups of u1 share one call")
}

// TestShippedPipeline runs config/connected_content_profiles.yaml as shipped,
// against the fake Amplitude: the prewarm file fills the shared cache, Braze's
// requests are answered from it, shaped for Liquid.
func TestShippedPipeline(t *testing.T) {
	raw, err := os.ReadFile("../../config/connected_content_profiles.yaml")
	require.NoError(t, err)
	amp := newTestAmplitude(t, nil, 5)
	list := filepath.Join(t.TempDir(), "campaign.txt")
	require.NoError(t, os.WriteFile(list, []byte("u0\nu1\n\nu2\nu3\nu4\n"), 0o600))
	addr := freeAddr(t)
	for k, v := range map[string]string{"PROFILES_TOKEN": testToken, "AMPLITUDE_SECRET_KEY": testSecret,
		"AMPLITUDE_PROFILE_API_URL": amp.URL, "AMPLITUDE_REC_ID": "rec1", "PROFILES_ADDRESS": addr,
		"PROFILES_PREWARM_FILE": list} {
		t.Setenv(k, v)
	}
	runStream(t, string(raw)+"\nlogger: { level: none }\n")
	require.Eventually(t, func() bool { return amp.Stats().OK == 5 }, 10*time.Second, 5*time.Millisecond, "prewarmed")
	waitListening(t, addr)
	c := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 5; i++ {
		status, src, body := get(t, c, fmt.Sprintf("http://%s/profiles?user_id=u%d", addr, i), "Bearer "+testToken)
		assert.Equal(t, 200, status)
		assert.Equal(t, srcCache, src)
		assert.Equal(t, fmt.Sprint("item-", i), gjson.Get(body, "recommendations.0.items.0").String())
		assert.Equal(t, "pro", gjson.Get(body, "amp_props.plan").String())
	}
	status, src, body := get(t, c, "http://"+addr+"/profiles?user_id=stranger", "Bearer "+testToken)
	assert.Equal(t, 200, status)
	assert.Equal(t, srcEmpty, src)
	assert.JSONEq(t, `{"source":"default","recommendations":[{"items":[]}],"amp_props":{},"cohort_ids":[]}`, body)
	assert.EqualValues(t, 6, amp.Stats().Requests)
}

// TestStreamPrewarmFromCohort runs the cohort prewarm of docs/profiles.md: the
// amplitude_cohort input's members become prewarmed profiles.
func TestStreamPrewarmFromCohort(t *testing.T) {
	amp := newTestAmplitude(t, nil, 40)
	cohorts := cohorttest.NewAmplitude(t, "ak", "sk")
	var members []string
	for i := 0; i < 40; i++ {
		members = append(members, fmt.Sprint("u", i))
	}
	cohorts.SetCohort("c1", cohorttest.Cohort{Name: "Campaign", LastComputed: 1, UserIDs: members})
	yaml := strings.NewReplacer("COHORTS", cohorts.URL, "AMP", amp.URL, "SECRET", testSecret, "STATE", filepath.Join(t.TempDir(), "cohorts.db")).Replace(`
input:
  amplitude_cohort:
    url: COHORTS
    api_key: ak
    secret_key: sk
    cohort_ids: [ c1 ]
    schedule: 1h
    poll_interval: 1ms
    state_path: STATE
  processors:
    - mapping: 'root = this.added.map_each(id -> {"user_id": id})'
    - unarchive: { format: json_array }
    - amplitude_profile: { name: cohort_test, mode: prewarm, secret_key: SECRET, url: AMP, requests_per_minute: 6000, burst: 100 }
    - mapping: root = deleted()
output:
  drop: {}
logger: { level: none }
`)
	runStream(t, yaml)
	require.Eventually(t, func() bool { return amp.Stats().OK == 40 }, 10*time.Second, 5*time.Millisecond)
	for _, id := range members {
		assert.EqualValues(t, 1, amp.RequestsFor(id), id)
	}
}
