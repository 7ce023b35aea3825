package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
	"github.com/opencurrents/currents-amplitude/plugins/internal/logtest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/trusted"
)

const testToken = "s3cr3t-token"

func testConfig() httpConfig {
	return httpConfig{
		address:     "127.0.0.1:0",
		path:        "/currents",
		token:       testToken,
		versions:    []string{"1"},
		maxBody:     1 << 16,
		maxEvents:   100,
		maxDepth:    jsonlimit.DefaultMaxDepth,
		maxInFlight: 8,
		timeout:     5 * time.Second,
		retryAfter:  3 * time.Second,
	}
}

// startInput connects an input on a loopback port and closes it at the end.
func startInput(t *testing.T, c httpConfig) (*brazeCurrentsHTTP, string) {
	t.Helper()
	in, err := newBrazeCurrentsHTTP(c, service.MockResources())
	require.NoError(t, err)
	require.NoError(t, in.Connect(context.Background()))
	t.Cleanup(func() { _ = in.Close(context.Background()) })
	return in, "http://" + in.Addr().String() + c.path
}

// reader consumes batches from the input and acks each with ackErr, or
// with what nack returns for it when set.
type reader struct {
	nack    func(service.MessageBatch) error
	mu      sync.Mutex
	batches []service.MessageBatch
}

func (rd *reader) run(ctx context.Context, in *brazeCurrentsHTTP, ackErr error) {
	for {
		b, ack, err := in.ReadBatch(ctx)
		if err != nil {
			return
		}
		rd.mu.Lock()
		rd.batches = append(rd.batches, b)
		rd.mu.Unlock()
		if rd.nack != nil {
			_ = ack(ctx, rd.nack(b))
			continue
		}
		_ = ack(ctx, ackErr)
	}
}

func (rd *reader) count() int {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return len(rd.batches)
}

type req struct {
	method  string
	body    string
	gzip    bool
	chunked bool // no Content-Length
	headers map[string]string
}

func post(t *testing.T, url string, r req) (*http.Response, string) {
	t.Helper()
	body := []byte(r.body)
	if r.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		require.NoError(t, zw.Close())
		body = buf.Bytes()
	}
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	var rd io.Reader = bytes.NewReader(body)
	if r.chunked {
		rd = io.MultiReader(rd) // hides the length: chunked transfer encoding
	}
	hr, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Braze-Currents-Version", "1")
	hr.Header.Set("Authorization", "Bearer "+testToken)
	if r.gzip {
		hr.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range r.headers {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(hr)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

const (
	ev1 = `{"event_type":"users.messages.email.Open","id":"e-1","time":1700000000,"user":{"external_user_id":"u1"},"properties":{"email_address":"a@b.c"}}`
	ev2 = `{"event_type":"users.behaviors.CustomEvent","id":"e-2","time":1700000001,"user":{"device_id":"d2"},"properties":{"name":"x","custom_properties":{"k":[1,2]}}}`
)

func TestRequestStatuses(t *testing.T) {
	big := `{"events":[` + ev1 + `,{"pad":"` + strings.Repeat("x", 1<<16) + `"}]}`
	// noise does not compress: under max_body_bytes (1<<16) itself, over it
	// once gzipped.
	rnd := rand.New(rand.NewPCG(1, 2))
	var noise strings.Builder
	for noise.Len() < 1<<16-16 {
		noise.WriteByte(byte(rnd.Uint32()))
	}
	tests := []struct {
		name       string
		req        req
		wantStatus int
		wantEvents int // events forwarded to the pipeline
	}{
		{"two events", req{body: `{"events":[` + ev1 + `,` + ev2 + `]}`}, 200, 2},
		{"gzip body", req{body: `{"events":[` + ev1 + `]}`, gzip: true}, 200, 1},
		{"no version header", req{body: `{"events":[` + ev1 + `]}`, headers: map[string]string{"Braze-Currents-Version": ""}}, 200, 1},
		{"lower-case bearer scheme", req{body: `{"events":[` + ev1 + `]}`, headers: map[string]string{"Authorization": "bearer " + testToken}}, 200, 1},
		{"empty body", req{body: ``}, 200, 0},
		{"empty object", req{body: ` {} `}, 200, 0},
		{"zero events", req{body: `{"events":[]}`}, 200, 0},
		{"null events", req{body: `{"events":null}`}, 200, 0},
		{"missing token", req{body: `{"events":[` + ev1 + `]}`, headers: map[string]string{"Authorization": ""}}, 401, 0},
		{"wrong token", req{body: `{"events":[` + ev1 + `]}`, headers: map[string]string{"Authorization": "Bearer nope"}}, 401, 0},
		{"token prefix only", req{body: `{"events":[` + ev1 + `]}`, headers: map[string]string{"Authorization": "Bearer " + testToken[:4]}}, 401, 0},
		{"basic auth", req{body: `{"events":[` + ev1 + `]}`, headers: map[string]string{"Authorization": "Basic " + testToken}}, 401, 0},
		{"wrong token on empty body", req{body: ``, headers: map[string]string{"Authorization": "Bearer nope"}}, 401, 0},
		{"truncated JSON", req{body: `{"events":[` + ev1}, 400, 0},
		{"nested too deep", req{body: `{"events":[{"properties":` + strings.Repeat(`{"a":`, 62) + `1` + strings.Repeat(`}`, 62) + `}]}`}, 400, 0},
		{"nested at the limit", req{body: `{"events":[` + strings.Repeat(`{"a":`, 61) + `1` + strings.Repeat(`}`, 61) + `]}`}, 200, 1},
		{"not an object", req{body: `[` + ev1 + `]`}, 400, 0},
		{"events not an array", req{body: `{"events":{}}`}, 400, 0},
		{"event not an object", req{body: `{"events":[` + ev1 + `,42]}`}, 400, 0},
		{"no events field", req{body: `{"event":[` + ev1 + `]}`}, 400, 0},
		{"invalid gzip", req{body: `{"events":[]}`, headers: map[string]string{"Content-Encoding": "gzip"}}, 400, 0},
		{"too large", req{body: big}, 413, 0},
		{"too large once decompressed", req{body: big, gzip: true}, 413, 0},
		{"too large without length", req{body: big, chunked: true}, 413, 0},
		{"compressed too large without length", req{body: noise.String(), gzip: true, chunked: true}, 413, 0},
		{"unsupported encoding", req{body: `{"events":[]}`, headers: map[string]string{"Content-Encoding": "br"}}, 415, 0},
		{"unknown version", req{body: `{"events":[` + ev1 + `]}`, headers: map[string]string{"Braze-Currents-Version": "2"}}, 501, 0},
		{"GET", req{method: http.MethodGet}, 405, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, url := startInput(t, testConfig())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var rd reader
			go rd.run(ctx, in, nil)

			resp, body := post(t, url, tt.req)
			assert.Equal(t, tt.wantStatus, resp.StatusCode, body)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.True(t, json.Valid([]byte(body)), body)
			assert.NotContains(t, body, testToken)
			n := 0
			rd.mu.Lock()
			for _, b := range rd.batches {
				n += len(b)
			}
			assert.LessOrEqual(t, len(rd.batches), 1, "one request is one batch")
			rd.mu.Unlock()
			assert.Equal(t, tt.wantEvents, n)
			if tt.wantStatus == 401 {
				assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
			}
			if tt.wantStatus == 501 {
				assert.Equal(t, "3", resp.Header.Get("Retry-After"))
			}
		})
	}
}

func TestBatchContentAndMetadata(t *testing.T) {
	in, url := startInput(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rd reader
	go rd.run(ctx, in, nil)

	resp, _ := post(t, url+"?workspace=acme", req{body: "{\n \"events\" : [ " + ev1 + " ,\n" + ev2 + "]}"})
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, 1, rd.count())
	b := rd.batches[0]
	require.Len(t, b, 2)
	for i, want := range []string{ev1, ev2} {
		got, err := b[i].AsBytes()
		require.NoError(t, err)
		assert.Equal(t, want, string(got))
		v, _ := b[i].MetaGet(MetaVersion)
		assert.Equal(t, "1", v)
		id, _ := b[i].MetaGet(deadletter.MetaRequestID)
		assert.Len(t, id, 16)
		assert.Equal(t, resp.Header.Get(requestIDHeader), id, "the answer names the request id of its events")
		ws, _ := b[i].MetaGet("workspace")
		assert.Equal(t, "acme", ws)
	}
}

// TestMetadataPerMessage checks the metadata of a request's events: the
// trusted mark vouches for every event, and a write to one message's
// metadata changes no other.
func TestMetadataPerMessage(t *testing.T) {
	in, url := startInput(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rd reader
	go rd.run(ctx, in, nil)

	resp, _ := post(t, url+"?workspace=acme", req{body: `{"events":[` + ev1 + `,` + ev2 + `,` + ev1 + `]}`})
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, 1, rd.count())
	b := rd.batches[0]
	require.Len(t, b, 3)
	for i := range b {
		raw, err := b[i].AsBytes()
		require.NoError(t, err)
		assert.NotNil(t, trusted.Of(b[i], raw), "event %d is marked validated", i)
	}
	b[0].MetaSetMut("workspace", "changed")
	b[1].MetaSetMut("added", "x")
	b[2].MetaDelete(MetaVersion)
	for i := range b {
		ws, _ := b[i].MetaGet("workspace")
		assert.Equal(t, i == 0, ws == "changed", "event %d", i)
		_, added := b[i].MetaGetMut("added")
		assert.Equal(t, i == 1, added, "event %d", i)
		_, version := b[i].MetaGetMut(MetaVersion)
		assert.Equal(t, i != 2, version, "event %d", i)
	}
}

// TestGzipReadersReused checks gzip bodies answered one after another by
// the same input, whose gzip readers are reused: a truncated or invalid
// gzip body between them changes nothing for the next.
func TestGzipReadersReused(t *testing.T) {
	in, url := startInput(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rd reader
	go rd.run(ctx, in, nil)

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"events":[` + ev1 + `]}`))
	require.NoError(t, zw.Close())
	truncated := gz.String()[:gz.Len()/2]
	gzipped := map[string]string{"Content-Encoding": "gzip"}
	for i, tc := range []struct {
		r    req
		want int
	}{
		{req{body: `{"events":[` + ev2 + `]}`, gzip: true}, 200},
		{req{body: "not gzip", headers: gzipped}, 400},
		{req{body: `{"events":[` + ev1 + `,` + ev2 + `]}`, gzip: true}, 200},
		{req{body: truncated, headers: gzipped}, 400},
		{req{body: `{"events":[` + ev1 + `]}`, gzip: true}, 200},
	} {
		resp, _ := post(t, url, tc.r)
		assert.Equal(t, tc.want, resp.StatusCode, "request %d", i)
	}
	require.Equal(t, 3, rd.count())
	for i, want := range [][]string{{ev2}, {ev1, ev2}, {ev1}} {
		require.Len(t, rd.batches[i], len(want))
		for j, ev := range want {
			got, err := rd.batches[i][j].AsBytes()
			require.NoError(t, err)
			assert.Equal(t, ev, string(got))
		}
	}
}

// TestGzipConcurrent posts gzip bodies from several clients at once (run
// with -race: the pooled readers share no state between requests).
func TestGzipConcurrent(t *testing.T) {
	in, url := startInput(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rd reader
	go rd.run(ctx, in, nil)

	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				resp, _ := post(t, url, req{body: `{"events":[` + ev1 + `,` + ev2 + `]}`, gzip: true})
				if codes[i] = resp.StatusCode; codes[i] != 200 {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, code := range codes {
		assert.Equal(t, 200, code, "client %d", i)
	}
	assert.Equal(t, 40, rd.count())
}

func TestNackAnswers502(t *testing.T) {
	in, url := startInput(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rd reader
	go rd.run(ctx, in, errors.New("amplitude unavailable"))

	resp, body := post(t, url, req{body: `{"events":[` + ev1 + `]}`})
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.NotContains(t, body, "amplitude unavailable", "internal errors stay in the logs")
}

// rateLimitedErr is a nack marked as a rate limit (plugins/internal/ratelimited),
// as the amplitude output's deferred and throttled nacks are.
type rateLimitedErr struct{}

func (rateLimitedErr) Error() string     { return "amplitude outage (deferred)" }
func (rateLimitedErr) RateLimited() bool { return true }

// rateLimitedWait is a rate limit's nack that says how long to wait.
type rateLimitedWait time.Duration

func (e rateLimitedWait) Error() string             { return "over the rate: wait " + time.Duration(e).String() }
func (rateLimitedWait) RateLimited() bool           { return true }
func (e rateLimitedWait) RetryAfter() time.Duration { return time.Duration(e) }

// A batch nacked only for its ids' rate is answered 429 with Retry-After
// (Braze retries later, no outage on the dashboards); any other nack in it
// makes it 502.
func TestNackAnswersByReason(t *testing.T) {
	for _, tc := range []struct {
		name       string
		nack       func(service.MessageBatch) error
		want       int
		retryAfter string // "": any
	}{
		{"an outage", func(service.MessageBatch) error { return errors.New("amplitude unavailable") }, http.StatusBadGateway, ""},
		{"over the rate limit", func(service.MessageBatch) error { return rateLimitedErr{} }, http.StatusTooManyRequests, "3"},
		{"over the rate limit until later than retry_after", func(b service.MessageBatch) error {
			return service.NewBatchError(b, errors.New("2 of 2 not delivered")).
				Failed(0, rateLimitedWait(7200*time.Millisecond)).Failed(1, rateLimitedWait(9*time.Second))
		}, http.StatusTooManyRequests, "8"},
		{"over the rate limit until sooner than retry_after", func(service.MessageBatch) error { return rateLimitedWait(time.Second) }, http.StatusTooManyRequests, "3"},
		{"some events over the rate limit, the others delivered", func(b service.MessageBatch) error {
			return service.NewBatchError(b, errors.New("1 of 2 not delivered")).Failed(1, rateLimitedErr{})
		}, http.StatusTooManyRequests, "3"},
		{"one over the rate limit, one in an outage", func(b service.MessageBatch) error {
			return service.NewBatchError(b, errors.New("2 of 2 not delivered")).
				Failed(0, rateLimitedErr{}).Failed(1, errors.New("503"))
		}, http.StatusBadGateway, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, url := startInput(t, testConfig())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go (&reader{nack: tc.nack}).run(ctx, in, nil)
			resp, _ := post(t, url, req{body: `{"events":[` + ev1 + `,` + ev2 + `]}`})
			assert.Equal(t, tc.want, resp.StatusCode)
			if tc.want == http.StatusTooManyRequests {
				assert.NotEmpty(t, resp.Header.Get("Retry-After"), "Braze is told when to retry")
			}
			if tc.retryAfter != "" {
				assert.Equal(t, tc.retryAfter, resp.Header.Get("Retry-After"))
			}
		})
	}
}

func TestTooManyEvents(t *testing.T) {
	c := testConfig()
	c.maxEvents = 1
	in, url := startInput(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rd reader
	go rd.run(ctx, in, nil)

	resp, _ := post(t, url, req{body: `{"events":[` + ev1 + `,` + ev2 + `]}`})
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Zero(t, rd.count())
}

func TestSaturatedPipelineAnswers429(t *testing.T) {
	c := testConfig()
	c.timeout = 200 * time.Millisecond
	_, url := startInput(t, c) // nobody reads: the pipeline is saturated

	resp, _ := post(t, url, req{body: `{"events":[` + ev1 + `]}`})
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "3", resp.Header.Get("Retry-After"))
}

func TestUnacknowledgedBatchAnswers429(t *testing.T) {
	c := testConfig()
	c.timeout = 200 * time.Millisecond
	in, url := startInput(t, c)
	taken := make(chan struct{})
	go func() {
		_, _, err := in.ReadBatch(context.Background()) // taken, never acked
		if err == nil {
			close(taken)
		}
	}()
	resp, _ := post(t, url, req{body: `{"events":[` + ev1 + `]}`})
	<-taken
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
}

func TestMaxInFlight(t *testing.T) {
	c := testConfig()
	c.maxInFlight = 1
	in, url := startInput(t, c)

	first := make(chan int)
	go func() {
		resp, _ := post(t, url, req{body: `{"events":[` + ev1 + `]}`})
		first <- resp.StatusCode
	}()
	b, ack, err := in.ReadBatch(context.Background()) // the first request now waits for its ack
	require.NoError(t, err)
	require.Len(t, b, 1)

	resp, _ := post(t, url, req{body: `{"events":[` + ev2 + `]}`})
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	require.NoError(t, ack(context.Background(), nil))
	assert.Equal(t, http.StatusOK, <-first)
}

func TestGracefulShutdown(t *testing.T) {
	in, url := startInput(t, testConfig())

	// A request whose batch is in the pipeline gets its real answer...
	answered := make(chan int)
	go func() {
		resp, _ := post(t, url, req{body: `{"events":[` + ev1 + `]}`})
		answered <- resp.StatusCode
	}()
	_, ack, err := in.ReadBatch(context.Background())
	require.NoError(t, err)

	// ...the stream stopping cancels ReadBatch: new requests get 503...
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = in.ReadBatch(ctx)
	require.ErrorIs(t, err, context.Canceled)
	resp, _ := post(t, url, req{body: `{"events":[` + ev2 + `]}`})
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	require.NoError(t, ack(context.Background(), nil))
	assert.Equal(t, http.StatusOK, <-answered)

	// ...and Close stops the listener.
	require.NoError(t, in.Close(context.Background()))
	_, err = http.Post(url, "application/json", strings.NewReader(`{}`))
	assert.Error(t, err)
	_, _, err = in.ReadBatch(context.Background())
	assert.ErrorIs(t, err, service.ErrEndOfInput)
}

func TestCloseAnswersDiscardedBatches(t *testing.T) {
	in, url := startInput(t, testConfig())
	answered := make(chan int)
	go func() {
		resp, _ := post(t, url, req{body: `{"events":[` + ev1 + `]}`})
		answered <- resp.StatusCode
	}()
	// Benthos may drop a batch read during shutdown without acking it.
	_, _, err := in.ReadBatch(context.Background())
	require.NoError(t, err)
	require.NoError(t, in.Close(context.Background()))
	assert.Equal(t, http.StatusServiceUnavailable, <-answered)
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*httpConfig)
		want   string
	}{
		{"path", func(c *httpConfig) { c.path = "currents" }, "must start with /"},
		{"max body", func(c *httpConfig) { c.maxBody = 0 }, "max_body_bytes"},
		{"max events", func(c *httpConfig) { c.maxEvents = -1 }, "max_events"},
		{"in flight", func(c *httpConfig) { c.maxInFlight = 0 }, "max_in_flight"},
		{"timeout", func(c *httpConfig) { c.timeout = 0 }, "timeout"},
		{"retry after", func(c *httpConfig) { c.retryAfter = time.Millisecond }, "retry_after"},
		{"tls pair", func(c *httpConfig) { c.certFile = "x.crt" }, "cert_file and key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.mutate(&c)
			_, err := newBrazeCurrentsHTTP(c, service.MockResources())
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestSpecParsesDefaults(t *testing.T) {
	conf, err := brazeCurrentsHTTPSpec().ParseYAML(`token: abc`, nil)
	require.NoError(t, err)
	in, err := newBrazeCurrentsHTTPFromParsed(conf, service.MockResources())
	require.NoError(t, err)
	assert.Equal(t, "0.0.0.0:8080", in.conf.address)
	assert.Equal(t, "/currents", in.conf.path)
	assert.Equal(t, []string{"1"}, in.conf.versions)
	assert.Equal(t, 30*time.Second, in.conf.timeout)
}

// TestThroughStream runs the input in a real stream: a consumer failing on
// one request's events makes exactly that request get 502.
func TestThroughStream(t *testing.T) {
	port := freePort(t)
	sb := service.NewStreamBuilder()
	require.NoError(t, sb.SetLoggerYAML(`level: none`))
	require.NoError(t, sb.AddInputYAML(`
braze_currents_http:
  address: 127.0.0.1:`+port+`
  token: `+testToken+`
`))
	var mu sync.Mutex
	seen := map[string]int{}
	require.NoError(t, sb.AddBatchConsumerFunc(func(_ context.Context, b service.MessageBatch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range b {
			raw, _ := m.AsBytes()
			if bytes.Contains(raw, []byte(`"e-2"`)) {
				return errors.New("refused")
			}
			seen[string(raw)]++
		}
		return nil
	}))
	stream, err := sb.Build()
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- stream.Run(context.Background()) }()

	url := "http://127.0.0.1:" + port + "/currents"
	waitListening(t, url)
	resp, _ := post(t, url, req{body: `{"events":[` + ev1 + `]}`})
	assert.Equal(t, 200, resp.StatusCode)
	resp, _ = post(t, url, req{body: `{"events":[` + ev2 + `]}`})
	assert.Equal(t, 502, resp.StatusCode)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, stream.Stop(ctx))
	<-done
	mu.Lock()
	assert.Equal(t, map[string]int{ev1: 1}, seen)
	mu.Unlock()
}

// TestFiveMillionLevelsDeep: a body nesting JSON 5 million levels deep (the
// 10 MiB default limit allows it) is answered 400 at once, with memory
// bounded by the body itself, instead of being parsed recursively.
func TestFiveMillionLevelsDeep(t *testing.T) {
	c := testConfig()
	c.maxBody = 10 << 20
	in, url := startInput(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rd reader
	go rd.run(ctx, in, nil)

	body := `{"events":[` + strings.Repeat(`[`, 5_000_000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	resp, answer := post(t, url, req{body: body})
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, answer, "nested deeper than 64 levels")
	assert.Zero(t, rd.count())
	// The request and response buffers of both sides: a few bodies, not the
	// gigabytes of stack a recursive parse takes.
	grown := int64(after.StackSys) - int64(before.StackSys)
	assert.Less(t, grown, int64(16<<20), "stack grew by %d bytes", grown)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "allocated %d bytes", after.TotalAlloc-before.TotalAlloc)
	t.Logf("answered in %v, %d bytes allocated", elapsed, after.TotalAlloc-before.TotalAlloc)
}

// TestInvalidUTF8Replaced: invalid UTF-8 in a body is replaced by U+FFFD
// before the events are split, so the pipeline sees (and maps, and
// dead-letters) valid text.
func TestInvalidUTF8Replaced(t *testing.T) {
	in, url := startInput(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rd reader
	go rd.run(ctx, in, nil)

	resp, _ := post(t, url, req{body: "{\"events\":[{\"id\":\"e-\xff\",\"name\":\"caf\xc3\"}," + ev1 + "]}"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 1, rd.count())
	got, err := rd.batches[0][0].AsBytes()
	require.NoError(t, err)
	assert.Equal(t, "{\"id\":\"e-\uFFFD\",\"name\":\"caf\uFFFD\"}", string(got))
	got, err = rd.batches[0][1].AsBytes()
	require.NoError(t, err)
	assert.Equal(t, ev1, string(got), "valid events are untouched")
}

// TestRefusalsLogged: every 429/5xx answer is logged with its reason, once
// per period per reason with the count.
func TestRefusalsLogged(t *testing.T) {
	var logs logtest.Buffer
	res := service.MockResources(service.MockResourcesOptUseLogger(logtest.Logger(&logs)))
	in, err := newBrazeCurrentsHTTP(testConfig(), res)
	require.NoError(t, err)
	require.NoError(t, in.Connect(context.Background()))
	t.Cleanup(func() { _ = in.Close(context.Background()) })
	url := "http://" + in.Addr().String() + "/currents"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&reader{}).run(ctx, in, errors.New("amplitude (retries_exhausted): 503"))

	for range 3 {
		resp, _ := post(t, url, req{body: `{"events":[` + ev1 + `]}`})
		require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	}
	resp, _ := post(t, url, req{body: `{"events":[]}`, headers: map[string]string{"Braze-Currents-Version": "9"}})
	require.Equal(t, http.StatusNotImplemented, resp.StatusCode)
	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "answered 1 request(s) 502 (events not delivered, retry later: amplitude (retries_exhausted): 503)"), out)
	assert.Equal(t, 1, strings.Count(out, "answered 1 request(s) 501 (unsupported Braze-Currents-Version"), out)
	assert.Equal(t, 2, strings.Count(out, "level=WARN"), "the second and third 502 wait for the next period: %s", out)
}
