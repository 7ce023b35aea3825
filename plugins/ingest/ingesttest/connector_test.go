package ingesttest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

// receiver answers each request with the status answer returns for its
// event ids, and records what it accepted.
type receiver struct {
	mu       sync.Mutex
	calls    int
	accepted map[string]int
	answer   func(call int, ids []string) int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ids []string
	for _, id := range gjson.GetBytes(body, "events.#.id").Array() {
		ids = append(ids, id.String())
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.calls++
	if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Braze-Currents-Version") != "1" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	status := rc.answer(rc.calls, ids)
	if status == http.StatusOK {
		for _, id := range ids {
			rc.accepted[id]++
		}
	}
	w.WriteHeader(status)
}

func TestConnectorFollowsBrazeRetryContract(t *testing.T) {
	events := Generate(GenConfig{Seed: 3, Devices: 50}, 250)
	bad := events[7].ID
	rc := &receiver{accepted: map[string]int{}, answer: func(call int, ids []string) int {
		switch {
		case call%3 == 0:
			return http.StatusServiceUnavailable // transient: retried
		case call%5 == 0:
			return http.StatusTooManyRequests
		case len(ids) > 60:
			return http.StatusRequestEntityTooLarge // split
		}
		for _, id := range ids {
			if id == bad {
				return http.StatusBadRequest // split, then dropped alone
			}
		}
		return http.StatusOK
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	c := NewConnector(srv.URL, "tok")
	c.MaxBackoff = 20 * time.Millisecond
	var acked sync.Map
	c.OnAcked = func(b []Event) {
		for _, ev := range b {
			acked.Store(ev.ID, true)
		}
	}
	require.NoError(t, c.SendAll(context.Background(), events, 3))

	require.Len(t, c.Dropped(), 1)
	assert.Equal(t, bad, c.Dropped()[0].ID)
	for _, ev := range events {
		if ev.ID == bad {
			continue
		}
		assert.Equal(t, 1, rc.accepted[ev.ID], ev.ID)
		_, ok := acked.Load(ev.ID)
		assert.True(t, ok, ev.ID)
	}
	st := c.Statuses()
	assert.Positive(t, st[http.StatusServiceUnavailable])
	assert.Positive(t, st[http.StatusRequestEntityTooLarge])
}

func TestConnectorStopsOnAuthErrors(t *testing.T) {
	rc := &receiver{accepted: map[string]int{}, answer: func(int, []string) int { return http.StatusOK }}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	c := NewConnector(srv.URL, "wrong")
	err := c.SendAll(context.Background(), Generate(GenConfig{Seed: 1}, 10), 1)
	require.ErrorContains(t, err, "401")
	assert.Equal(t, 1, rc.calls)
}

func TestGenerateDescribesEvents(t *testing.T) {
	events := Generate(GenConfig{Seed: 9}, 500)
	seen := map[string]bool{}
	for _, ev := range events {
		raw := gjson.ParseBytes(ev.Raw)
		require.Equal(t, ev.ID, raw.Get("id").String())
		require.Equal(t, ev.Type, raw.Get("event_type").String())
		require.Equal(t, ev.Time, raw.Get("time").Int())
		require.Equal(t, ev.ExternalUserID, raw.Get("user.external_user_id").String())
		require.Equal(t, ev.DeviceID, raw.Get("user.device_id").String())
		if ev.Type == "users.behaviors.CustomEvent" {
			require.NotEmpty(t, ev.CustomName)
			require.Equal(t, ev.CustomName, raw.Get("properties.name").String())
		}
		require.False(t, seen[ev.ID], "duplicate id %s", ev.ID)
		seen[ev.ID] = true
	}
	body := gjson.ParseBytes(Body(events[:3]))
	require.Len(t, body.Get("events").Array(), 3)
}
