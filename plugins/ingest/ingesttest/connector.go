// Package ingesttest plays Braze's side of the HTTP Currents connector in
// tests: it posts realistic generated events in {"events": [...]} batches
// with the connector's headers and follows Braze's retry contract (exponential
// backoff with jitter on 429, 5xx and connection errors; split on 400, with
// single events refused again dropped; split on 413; stop on 401, 403, 404).
//
// Typical use:
//
//	events := ingesttest.Generate(ingesttest.GenConfig{Seed: 1}, 10000)
//	c := ingesttest.NewConnector("http://127.0.0.1:8080/currents", "token")
//	err := c.SendAll(ctx, events, 8)
package ingesttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/currentsgen"
)

// BatchSize is the number of events per request, Braze's default.
const BatchSize = 100

// Event is one generated Currents event and what a test needs to check its
// mapping.
type Event struct {
	// ID is the Currents event id (the Amplitude insert_id).
	ID string
	// Type is the Currents event type.
	Type string
	// ExternalUserID is empty for anonymous users.
	ExternalUserID string
	// DeviceID may be empty.
	DeviceID string
	// CustomName is the name of a custom event, else empty.
	CustomName string
	// Time is the Unix time in seconds.
	Time int64
	// Raw is the event in the HTTP connector shape.
	Raw []byte
}

// GenConfig configures Generate; it is the event generator's configuration.
type GenConfig = currentsgen.Config

// Generate returns the first n events of the realistic mixed stream cfg
// describes, in the HTTP connector shape.
func Generate(cfg GenConfig, n int) []Event {
	g := currentsgen.New(cfg)
	out := make([]Event, n)
	for i := range out {
		e := g.Next()
		ev := Event{ID: e.ID, Type: e.Type, ExternalUserID: e.ExternalUserID, DeviceID: e.DeviceID, Time: e.Time}
		for _, f := range e.Props {
			if f.Key == "name" {
				ev.CustomName = gjson.ParseBytes(f.Value).String()
			}
		}
		ev.Raw = e.AppendHTTP(nil)
		out[i] = ev
	}
	return out
}

// Body returns the request body {"events": [...]} holding events.
func Body(events []Event) []byte {
	body := []byte(`{"events":[`)
	for i, ev := range events {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, ev.Raw...)
	}
	return append(body, "]}"...)
}

// Connector posts events like Braze's HTTP Currents connector. Its methods
// are safe for concurrent use.
type Connector struct {
	// URL is the receiver's endpoint.
	URL string
	// Token is sent as "Authorization: Bearer <Token>" when not empty.
	Token string
	// Client sends the requests.
	Client *http.Client
	// OnAcked, when set, is called with every batch answered 2xx before the
	// connector moves on: the place to check that acknowledged events were
	// delivered.
	OnAcked func(batch []Event)
	// MaxBackoff caps the wait between retries (default 1s).
	MaxBackoff time.Duration

	mu       sync.Mutex
	statuses map[int]int
	dropped  []Event
}

// NewConnector returns a Connector posting to url with token.
func NewConnector(url, token string) *Connector {
	return &Connector{URL: url, Token: token, Client: &http.Client{Timeout: 2 * time.Minute}}
}

// Post sends one request body and returns the answer's status, 0 for a
// connection error or timeout.
func (c *Connector) Post(ctx context.Context, body []byte) int {
	status := 0
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Braze-Currents-Version", "1")
		if c.Token != "" {
			req.Header.Set("Authorization", "Bearer "+c.Token)
		}
		if resp, err := c.Client.Do(req); err == nil {
			resp.Body.Close()
			status = resp.StatusCode
		}
	}
	c.mu.Lock()
	if c.statuses == nil {
		c.statuses = map[int]int{}
	}
	c.statuses[status]++
	c.mu.Unlock()
	return status
}

// Deliver sends batch until Braze would consider it done: delivered, or
// dropped after a 400 as a single event (see Dropped). It returns an error
// on 401, 403 or 404, on a single event refused with 413, or when ctx ends.
func (c *Connector) Deliver(ctx context.Context, batch []Event) error {
	body := Body(batch)
	maxWait := c.MaxBackoff
	if maxWait <= 0 {
		maxWait = time.Second
	}
	wait := 20 * time.Millisecond
	for {
		switch status := c.Post(ctx, body); {
		case status >= 200 && status < 300:
			if c.OnAcked != nil {
				c.OnAcked(batch)
			}
			return nil
		case status == http.StatusBadRequest && len(batch) == 1:
			c.mu.Lock()
			c.dropped = append(c.dropped, batch[0])
			c.mu.Unlock()
			return nil
		case status == http.StatusRequestEntityTooLarge && len(batch) == 1:
			return fmt.Errorf("event %s refused alone with 413", batch[0].ID)
		case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
			half := len(batch) / 2
			if err := c.Deliver(ctx, batch[:half]); err != nil {
				return err
			}
			return c.Deliver(ctx, batch[half:])
		case status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusNotFound:
			return fmt.Errorf("receiver refused the connector's configuration: status %d", status)
		}
		// 429, 5xx, any other status, connection errors: back off, retry.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait/2 + rand.N(wait)):
		}
		wait = min(2*wait, maxWait)
	}
}

// SendAll delivers events in batches of BatchSize from workers concurrent
// senders, and returns the first error.
func (c *Connector) SendAll(parent context.Context, events []Event, workers int) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	batches := make(chan []Event)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if err := c.Deliver(ctx, b); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
feed:
	for i := 0; i < len(events); i += BatchSize {
		select {
		case batches <- events[i:min(i+BatchSize, len(events))]:
		case <-ctx.Done():
			break feed
		}
	}
	close(batches)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) == 0 {
		return parent.Err()
	}
	return errors.Join(all...)
}

// Statuses returns the number of answers by status (0: connection errors).
func (c *Connector) Statuses() map[int]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.statuses)
}

// Dropped returns the events Braze would have dropped (refused with 400 as
// single events).
func (c *Connector) Dropped() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.dropped...)
}
