package tests

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/ingest/ingesttest"
)

const httpPipeline = "currents_http_to_amplitude.yaml"

// ackChecker is a Connector.OnAcked hook that records every event whose
// Braze request was answered 2xx and counts those Amplitude did not have at
// that moment: a 2xx must mean delivered.
type ackChecker struct {
	amp          *amplitudetest.Server
	acked        sync.Map
	n            atomic.Int64
	undelivered  atomic.Int64
	firstMissing atomic.Value
}

func (a *ackChecker) onAcked(batch []ingesttest.Event) {
	for _, ev := range batch {
		if _, ok := a.amp.Event(ev.ID); !ok {
			a.undelivered.Add(1)
			a.firstMissing.CompareAndSwap(nil, ev.ID)
		}
		a.acked.Store(ev.ID, true)
		a.n.Add(1)
	}
}

func (a *ackChecker) check(t *testing.T) {
	t.Helper()
	assert.Zero(t, a.undelivered.Load(), "events answered 2xx before reaching Amplitude (first: %v)", a.firstMissing.Load())
}

// liveSetup starts a fake Amplitude with opts and the live pipeline pointing
// at it (tweak adjusts the environment first), and returns a Braze connector
// whose 2xx answers are checked against Amplitude.
func liveSetup(t *testing.T, opts amplitudetest.Options, tweak func(env map[string]string)) (*amplitudetest.Server, map[string]string, *pipeline, *ingesttest.Connector, *ackChecker) {
	t.Helper()
	opts.APIKey = "e2e-amplitude-key"
	amp := amplitudetest.NewServer(opts)
	t.Cleanup(amp.Close)
	env := httpEnv(t, amp)
	if tweak != nil {
		tweak(env)
	}
	p := startPipeline(t, httpPipeline, env, nil)
	waitListening(t, currentsURL(env))
	acks := &ackChecker{amp: amp}
	c := ingesttest.NewConnector(currentsURL(env), e2eToken)
	c.OnAcked = acks.onAcked
	return amp, env, p, c, acks
}

// TestE2EMixedStreamExactlyOnce: 10,000 events of a realistic mix, posted as
// Braze does, all reach Amplitude once, correctly mapped.
func TestE2EMixedStreamExactlyOnce(t *testing.T) {
	amp, env, _, c, acks := liveSetup(t, amplitudetest.Options{}, nil)
	events := ingesttest.Generate(ingesttest.GenConfig{Seed: 1, Devices: 5000}, 10000)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	require.NoError(t, c.SendAll(ctx, events, 8))

	acks.check(t)
	assert.Equal(t, map[int]int{200: len(events) / ingesttest.BatchSize}, c.Statuses(), "no fault: every request answered 200 at once")
	assert.Equal(t, len(events), amp.Count())
	assert.Zero(t, amp.Duplicates(), "no fault, no re-send")
	for _, ev := range events {
		checkMapped(t, amp, ev)
	}
	assert.Empty(t, readLines(t, env["DLQ_PATH"]))
}

// TestE2EAmplitudeFaults: with 30% of Amplitude requests failing (5xx, 429,
// timeouts, dropped connections), the pipeline's retries absorb the faults:
// Braze only ever gets 200, and every event is in Amplitude once.
func TestE2EAmplitudeFaults(t *testing.T) {
	amp, env, _, c, acks := liveSetup(t, amplitudetest.Options{FaultRate: 0.3, Seed: 7},
		func(env map[string]string) { env["AMPLITUDE_TIMEOUT"] = "1s" })
	events := ingesttest.Generate(ingesttest.GenConfig{Seed: 2, Devices: 5000}, 5000)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	require.NoError(t, c.SendAll(ctx, events, 8))

	acks.check(t)
	faults := 0
	for _, n := range amp.FaultCounts() {
		faults += n
	}
	assert.Greater(t, faults, 10, "faults were injected: %v", amp.FaultCounts())
	assert.Equal(t, map[int]int{200: len(events) / ingesttest.BatchSize}, c.Statuses(),
		"transient faults are retried inside the pipeline, Braze need not retry")
	assert.Equal(t, len(events), amp.Count(), "nothing lost")
	for _, ev := range events {
		checkMapped(t, amp, ev)
	}
	assert.Empty(t, readLines(t, env["DLQ_PATH"]), "transient faults never dead-letter an event")
}

// TestE2EAmplitudeOutage: while Amplitude is down, Braze's requests get 5xx
// (after the pipeline's own retries) and nothing is acknowledged; after the
// outage Braze's retries deliver everything exactly once.
func TestE2EAmplitudeOutage(t *testing.T) {
	var proxy *faultProxy
	amp, env, _, c, acks := liveSetup(t, amplitudetest.Options{}, func(env map[string]string) {
		// The pipeline's Amplitude goes through a proxy that can fail everything.
		proxy = newFaultProxy(t, strings.TrimSuffix(env["AMPLITUDE_URL"], amplitudetest.PathHTTPV2), 1)
		proxy.set(modeOutage)
		env["AMPLITUDE_URL"] = proxy.URL + amplitudetest.PathHTTPV2
		env["AMPLITUDE_RETRY_FOR"] = "1s"
		// No hedged copies: this test proves that failed requests ingest
		// nothing, and a hedge under a loaded machine is a second arrival.
		env["AMPLITUDE_HEDGE_AFTER"] = "0s"
	})
	events := ingesttest.Generate(ingesttest.GenConfig{Seed: 3, Devices: 5000}, 2000)
	c.MaxBackoff = 200 * time.Millisecond

	// Amplitude comes back once Braze has seen a few failures.
	go func() {
		for faultMode(proxy.mode.Load()) == modeOutage {
			st := c.Statuses()
			if st[http.StatusBadGateway]+st[http.StatusTooManyRequests] >= 8 {
				assert.Zero(t, acks.n.Load(), "nothing is acknowledged while Amplitude is down")
				proxy.set(modePass)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	require.NoError(t, c.SendAll(ctx, events, 4))

	acks.check(t)
	st := c.Statuses()
	assert.GreaterOrEqual(t, st[http.StatusBadGateway]+st[http.StatusTooManyRequests], 8, "%v", st)
	assert.Equal(t, len(events), amp.Count(), "nothing lost")
	// A failed request ingests nothing, but one Braze request may go out as
	// several Amplitude requests (a device's second event waits for its
	// budget): when the outage ends between them, the request is answered
	// 502 with some of its events in, and Braze's re-send repeats those
	// (Amplitude de-duplicates them by insert_id). A few such requests at
	// most, never the outage's whole backlog.
	assert.LessOrEqual(t, amp.Duplicates(), 2*ingesttest.BatchSize, "only requests the outage's end cut in two are repeated")
	assert.Empty(t, readLines(t, env["DLQ_PATH"]))
}

// TestE2ESaturatedAnswers429: when Amplitude is slower than the Braze
// request timeout, Braze gets 429 (retry later), never a 2xx for undelivered
// events.
func TestE2ESaturatedAnswers429(t *testing.T) {
	_, _, _, c, _ := liveSetup(t, amplitudetest.Options{Latency: 3 * time.Second}, func(env map[string]string) {
		env["CURRENTS_HTTP_TIMEOUT"] = "500ms"
		env["AMPLITUDE_TIMEOUT"] = "10s"
	})
	events := ingesttest.Generate(ingesttest.GenConfig{Seed: 4}, 100)
	status := c.Post(context.Background(), ingesttest.Body(events))
	assert.Equal(t, http.StatusTooManyRequests, status)
}

// TestE2ERestart: the pipeline is stopped twice mid-stream, once gracefully
// and once forcibly, and restarted on the same address. Every event
// acknowledged before a stop is in Amplitude at that moment, and at the end
// every event is there once.
func TestE2ERestart(t *testing.T) {
	amp, env, p, c, acks := liveSetup(t, amplitudetest.Options{Latency: 5 * time.Millisecond}, nil)
	events := ingesttest.Generate(ingesttest.GenConfig{Seed: 5, Devices: 5000}, 6000)
	c.MaxBackoff = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- c.SendAll(ctx, events, 6) }()

	for i, graceful := range []bool{true, false} {
		threshold := int64(len(events) * (i + 1) / 3)
		require.Eventually(t, func() bool { return acks.n.Load() >= threshold }, 2*time.Minute, 5*time.Millisecond)
		if graceful {
			p.stop(t, 30*time.Second)
		} else {
			p.stop(t, time.Millisecond) // the deadline passes at once: forced stop
		}
		// Everything acknowledged so far is in Amplitude.
		acks.acked.Range(func(k, _ any) bool {
			if _, ok := amp.Event(k.(string)); !ok {
				t.Errorf("event %v acknowledged but not in Amplitude after the stop", k)
			}
			return true
		})
		time.Sleep(200 * time.Millisecond) // Braze meets a closed port for a while
		p = startPipeline(t, httpPipeline, env, nil)
	}
	require.NoError(t, <-sent)

	acks.check(t)
	assert.Positive(t, c.Statuses()[0]+c.Statuses()[http.StatusServiceUnavailable], "the restarts were noticed by Braze: %v", c.Statuses())
	assert.Equal(t, len(events), amp.Count(), "nothing lost")
	for _, ev := range events {
		checkMapped(t, amp, ev)
	}
}

// TestE2EAuthAndBadRequests: wrong or missing tokens get 401 and forward
// nothing; malformed bodies get 400; an event the mapper refuses goes to the
// dead-letter file with its reason while its neighbours are delivered.
func TestE2EAuthAndBadRequests(t *testing.T) {
	amp, env, _, c, _ := liveSetup(t, amplitudetest.Options{}, nil)
	url := currentsURL(env)

	events := ingesttest.Generate(ingesttest.GenConfig{Seed: 6}, 10)
	good := ingesttest.Body(events)
	for _, tt := range []struct {
		name   string
		token  string
		body   string
		status int
	}{
		{"wrong token", "not-the-token", string(good), http.StatusUnauthorized},
		{"missing token", "", string(good), http.StatusUnauthorized},
		{"wrong token on an empty request", "not-the-token", "", http.StatusUnauthorized},
		{"truncated body", e2eToken, string(good[:len(good)/2]), http.StatusBadRequest},
		{"not an events envelope", e2eToken, `[{"id":"x"}]`, http.StatusBadRequest},
		{"events not objects", e2eToken, `{"events":["a","b"]}`, http.StatusBadRequest},
		{"empty request", e2eToken, "", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.status, ingesttest.NewConnector(url, tt.token).Post(context.Background(), []byte(tt.body)))
		})
	}
	assert.Zero(t, amp.Requests(), "nothing was forwarded to Amplitude")

	// One unmappable event (no time) among good ones.
	bad := ingesttest.Event{ID: "bad-1", Raw: []byte(`{"event_type":"users.messages.email.Open","id":"bad-1","user":{"external_user_id":"usr_bad"},"properties":{}}`)}
	require.Equal(t, http.StatusOK, c.Post(context.Background(), ingesttest.Body(append([]ingesttest.Event{bad}, events...))))
	assert.Equal(t, len(events), amp.Count())
	for _, ev := range events {
		checkMapped(t, amp, ev)
	}
	dlq := readLines(t, env["DLQ_PATH"])
	require.Len(t, dlq, 1)
	rec := gjson.Parse(dlq[0])
	assert.Equal(t, "bad-1", rec.Get("event.id").String())
	assert.Equal(t, "unmappable", rec.Get("reason").String())
	assert.Contains(t, rec.Get("error").String(), "missing field time")
	assert.NotEmpty(t, rec.Get("source.currents_request_id").String(), "the record names the Braze request")
}

// TestE2EInvalidUTF8: invalid UTF-8 in events is replaced by U+FFFD, the
// same way in the event Amplitude gets and in the dead-letter copy of an
// event that cannot be mapped.
func TestE2EInvalidUTF8(t *testing.T) {
	amp, env, _, c, acks := liveSetup(t, amplitudetest.Options{}, nil)
	good := []byte("{\"event_type\":\"users.messages.email.Open\",\"id\":\"utf8-good\",\"time\":1767225600,\"user\":{\"external_user_id\":\"usr_caf\xe9\"},\"properties\":{\"subject\":\"Caf\xc3\"}}")
	bad := []byte("{\"event_type\":\"users.messages.email.Open\",\"id\":\"utf8-bad\",\"user\":{\"external_user_id\":\"usr_caf\xe9\"}}") // no time
	require.Equal(t, http.StatusOK, c.Post(context.Background(), ingesttest.Body([]ingesttest.Event{{ID: "utf8-good", Raw: good}, {ID: "utf8-bad", Raw: bad}})))
	acks.check(t)

	sent, ok := amp.Event("utf8-good")
	require.True(t, ok)
	assert.Equal(t, "usr_caf\uFFFD", sent.UserID)
	assert.Equal(t, "Caf\uFFFD", gjson.Get(sent.Raw, "event_properties.subject").String())
	dlq := readLines(t, env["DLQ_PATH"])
	require.Len(t, dlq, 1)
	assert.True(t, utf8.ValidString(dlq[0]), "the dead-letter record is valid UTF-8")
	assert.Equal(t, "usr_caf\uFFFD", gjson.Get(dlq[0], "event.user.external_user_id").String())
}
