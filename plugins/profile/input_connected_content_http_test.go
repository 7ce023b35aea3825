package profile

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

func newTestInput(t *testing.T, yaml string) *ccInput {
	t.Helper()
	conf, err := connectedContentHTTPSpec().ParseYAML(yaml, nil)
	require.NoError(t, err)
	in, err := newCCInputFromParsed(conf, service.MockResources())
	require.NoError(t, err)
	return in
}

func serveOnce(in *ccInput, method, target, auth string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	in.ServeHTTP(w, r)
	return w
}

// TestInputStatuses drives the input without a stream: a fake pipeline reads
// its messages and acknowledges them as told.
func TestInputStatuses(t *testing.T) {
	in := newTestInput(t, `{token: tok, timeout: 50ms, max_in_flight: 1}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nack := make(chan bool, 1)
	go func() {
		for {
			msg, ack, err := in.Read(ctx)
			if err != nil {
				return
			}
			b, _ := msg.AsBytes()
			if gjson.GetBytes(b, "hold").Exists() {
				<-ctx.Done() // never answered
				return
			}
			if <-nack {
				_ = ack(ctx, errors.New("nacked"))
				continue
			}
			_ = msg.AddSyncResponse()
			_ = ack(ctx, nil)
		}
	}()
	bearer := "Bearer tok"

	nack <- false
	w := serveOnce(in, http.MethodGet, "/profiles?user_id=u%201&x=%22", bearer)
	assert.Equal(t, 200, w.Code)
	assert.JSONEq(t, `{"user_id":"u 1","x":"\""}`, w.Body.String(), "the echoed message: the query as JSON")
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))

	nack <- true
	assert.Equal(t, 503, serveOnce(in, http.MethodGet, "/profiles?user_id=u1", bearer).Code, "nacked")
	assert.Equal(t, 405, serveOnce(in, http.MethodPost, "/profiles?user_id=u1", bearer).Code)
	assert.Equal(t, 401, serveOnce(in, http.MethodGet, "/profiles?user_id=u1", "Bearer tok2").Code)
	assert.Equal(t, 401, serveOnce(in, http.MethodGet, "/profiles?user_id=u1", "Basic dTp0b2sy").Code) // u:tok2
	assert.Equal(t, 404, serveOnce(in, http.MethodGet, "/", bearer).Code)

	// A request the pipeline never answers: 503 shortly after the deadline,
	// and while it waits max_in_flight (1) is full: 429.
	held := make(chan int, 1)
	go func() { held <- serveOnce(in, http.MethodGet, "/profiles?hold=1", bearer).Code }()
	require.Eventually(t, func() bool { return len(in.slots) == 1 }, 5*time.Second, time.Millisecond)
	w = serveOnce(in, http.MethodGet, "/profiles?user_id=u1", bearer)
	assert.Equal(t, 429, w.Code)
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Equal(t, 503, <-held)

	require.NoError(t, in.Close(context.Background()))
	assert.Equal(t, 503, serveOnce(in, http.MethodGet, "/profiles?user_id=u1", bearer).Code, "closing")
	_, _, err := in.Read(context.Background())
	assert.ErrorIs(t, err, service.ErrEndOfInput)
}

func TestInputConfigErrors(t *testing.T) {
	for yaml, want := range map[string]string{
		`{token: ""}`:                  "token is empty",
		`{token: t, cert_file: a.crt}`: "both cert_file and key_file",
		`{token: t, max_in_flight: 0}`: "must be positive",
	} {
		conf, err := connectedContentHTTPSpec().ParseYAML(yaml, nil)
		require.NoError(t, err)
		_, err = newCCInputFromParsed(conf, service.MockResources())
		assert.ErrorContains(t, err, want, yaml)
	}
}

// FuzzQueryJSON checks that any query string becomes a valid JSON object.
func FuzzQueryJSON(f *testing.F) {
	f.Add("user_id=u1&rec_id=a,b")
	f.Add("a=%00%ff&a=2&=x&%22=%5C")
	f.Fuzz(func(t *testing.T, raw string) {
		r := &http.Request{URL: &url.URL{RawQuery: raw}}
		b := queryJSON(r)
		if !gjson.ValidBytes(b) || !gjson.ParseBytes(b).IsObject() {
			t.Fatalf("invalid JSON %q from %q", b, raw)
		}
	})
}
