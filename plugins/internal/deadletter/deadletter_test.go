package deadletter

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

func TestReasonOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		reason Reason
		ok     bool
	}{
		{"typed", New(ReasonUnmappable, "no %s", "id"), ReasonUnmappable, true},
		{"wrapped", fmt.Errorf("mapping: %w", Wrap(ReasonTooLarge, errors.New("deep"))), ReasonTooLarge, true},
		{"outage", errors.New("amplitude (retries_exhausted): 503"), "", false},
		{"nil", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := ReasonOf(tc.err)
			if r != tc.reason || ok != tc.ok {
				t.Fatalf("ReasonOf = %q %v, want %q %v", r, ok, tc.reason, tc.ok)
			}
		})
	}
	if Wrap(ReasonUnreadable, nil) != nil {
		t.Fatal("Wrap(nil) is not nil")
	}
}

func TestOf(t *testing.T) {
	m := service.NewMessage([]byte(`{}`))
	if _, _, ok := Of(m); ok {
		t.Fatal("a message without error has a reason")
	}
	Fail(m, ReasonUnmappable, errors.New("no id"))
	if r, err, ok := Of(m); !ok || r != ReasonUnmappable || err == nil {
		t.Fatalf("Of = %q %v %v", r, err, ok)
	}
	if v, _ := m.MetaGet(MetaReason); v != string(ReasonUnmappable) {
		t.Fatalf("MetaReason = %q", v)
	}
	u := service.NewMessage([]byte(`x`))
	u.SetError(errors.New("bloblang failed"))
	if r, _, ok := Of(u); !ok || r != ReasonProcessingFailed {
		t.Fatalf("untyped error: %q %v", r, ok)
	}
}

func TestRecordEncode(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 5e6, time.UTC)
	for _, tc := range []struct {
		name  string
		event []byte
		want  string
	}{
		{"json", []byte(`{"id":"a"}`), `{"id":"a"}`},
		{"text", []byte("not json\n"), `"not json\n"`},
		{"invalid utf8", []byte("a\xffb"), `"a\ufffdb"`},
		{"invalid utf8 in JSON", []byte("{\"k\":\"a\xffb\"}"), "{\"k\":\"a\uFFFDb\"}"},
		{"empty", nil, `""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Record{Reason: ReasonUnreadable, Error: `bad "x"`, FailedAt: at, Component: "c",
				EventType: "users.messages.email.Send", Source: [][2]string{{"path", "/a.avro"}}, Event: tc.event}
			out := r.Encode(nil)
			if !gjson.ValidBytes(out) {
				t.Fatalf("invalid JSON: %s", out)
			}
			g := gjson.ParseBytes(out)
			if g.Get("reason").String() != "unreadable" || g.Get("error").String() != `bad "x"` ||
				g.Get("failed_at").String() != "2026-12-01T10:00:00.005Z" || g.Get("source.path").String() != "/a.avro" ||
				g.Get("currents_event_type").String() != "users.messages.email.Send" {
				t.Fatalf("record: %s", out)
			}
			if got := g.Get("event").Raw; got != tc.want {
				t.Fatalf("event = %s, want %s", got, tc.want)
			}
		})
	}
}

// captureOutput is a child output that records or refuses what it gets.
type captureOutput struct {
	mu   sync.Mutex
	got  []string
	keys []string // kafka_key metadata of each record
	fail error
}

func (c *captureOutput) Connect(context.Context) error { return nil }
func (c *captureOutput) Close(context.Context) error   { return nil }
func (c *captureOutput) WriteBatch(_ context.Context, b service.MessageBatch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	for _, m := range b {
		raw, _ := m.AsBytes()
		c.got = append(c.got, string(raw))
		k, _ := m.MetaGet("kafka_key")
		c.keys = append(c.keys, k)
	}
	return nil
}

func newTestWriter(t *testing.T, c *captureOutput) *Writer {
	t.Helper()
	env := service.NewEnvironment()
	name := fmt.Sprintf("dl_capture_%p", c)
	if err := env.RegisterBatchOutput(name, service.NewConfigSpec(),
		func(*service.ParsedConfig, *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			return c, service.BatchPolicy{}, 1, nil
		}); err != nil {
		t.Fatal(err)
	}
	spec := service.NewConfigSpec().Field(OutputField())
	conf, err := spec.ParseYAML(FieldDeadLetter+":\n  "+name+": {}\n", env)
	if err != nil {
		t.Fatal(err)
	}
	w, err := FromParsed(conf, service.MockResources(), "test")
	if err != nil || w == nil {
		t.Fatalf("FromParsed: %v %v", w, err)
	}
	w.clock = clock.NewFake(time.Unix(0, 0))
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w
}

func TestWriterWritesOnce(t *testing.T) {
	c := &captureOutput{}
	w := newTestWriter(t, c)
	ctx := context.Background()
	m1 := service.NewMessage([]byte(`{"id":"1"}`))
	m1.MetaSetMut(MetaRequestID, "req-1")
	m1.MetaSetMut("kafka_key", "device-1")
	m2 := service.NewMessage([]byte(`{"id":"2"}`))
	entries := []Entry{
		{Msg: m1, Reason: ReasonUnmappable, Err: errors.New("no id"), Key: "1"},
		{Msg: m2, Reason: ReasonUnmappable},
		{Msg: m2, Reason: ReasonUnmappable}, // same event twice in one write
	}
	if err := w.Write(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if len(c.got) != 2 {
		t.Fatalf("wrote %d records, want 2: %v", len(c.got), c.got)
	}
	if g := gjson.Parse(c.got[0]); g.Get("source.currents_request_id").String() != "req-1" || g.Get("error").String() != "unmappable: no id" && g.Get("error").String() != "no id" {
		t.Fatalf("record: %s", c.got[0])
	}
	if c.keys[0] != "device-1" {
		t.Fatalf("the record lost the message's metadata: kafka_key %q", c.keys[0])
	}
	// A re-send (Braze retrying the request) writes nothing again.
	if err := w.Write(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if len(c.got) != 2 {
		t.Fatalf("re-send wrote again: %d records", len(c.got))
	}
	// The same event for another reason is another record.
	if err := w.Write(ctx, []Entry{{Msg: m1, Reason: ReasonTooLarge, Key: "1"}}); err != nil {
		t.Fatal(err)
	}
	if len(c.got) != 3 {
		t.Fatalf("got %d records, want 3", len(c.got))
	}
}

func TestWriterFailureRemembersNothing(t *testing.T) {
	c := &captureOutput{fail: errors.New("disk full")}
	w := newTestWriter(t, c)
	e := []Entry{{Msg: service.NewMessage([]byte(`{}`)), Reason: ReasonUnreadable}}
	if err := w.Write(context.Background(), e); err == nil {
		t.Fatal("a failing child output reported no error")
	}
	c.fail = nil
	if err := w.Write(context.Background(), e); err != nil || len(c.got) != 1 {
		t.Fatalf("after the failure: err %v, %d records, want 1", err, len(c.got))
	}
}

func TestWriterForgetsOldest(t *testing.T) {
	c := &captureOutput{}
	w := newTestWriter(t, c)
	w.remember = 2
	ctx := context.Background()
	msg := func(id string) Entry {
		return Entry{Msg: service.NewMessage([]byte(`{}`)), Reason: ReasonUnreadable, Key: id}
	}
	for _, id := range []string{"a", "b", "c", "a"} {
		if err := w.Write(ctx, []Entry{msg(id)}); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.got) != 4 || len(w.seen) != 2 {
		t.Fatalf("%d records, %d remembered; want 4 and 2 (a was forgotten)", len(c.got), len(w.seen))
	}
}

func TestAbsentField(t *testing.T) {
	conf, err := service.NewConfigSpec().Field(OutputField()).ParseYAML("{}", nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := FromParsed(conf, service.MockResources(), "x")
	if w != nil || err != nil {
		t.Fatalf("absent field: %v %v", w, err)
	}
	if (*Writer)(nil).Close(context.Background()) != nil {
		t.Fatal("nil Close")
	}
}

// TestCloseNeverWritten: a writer whose child output never received a write
// closes at once (an owned output that was never started would make Close
// wait for ever).
func TestCloseNeverWritten(t *testing.T) {
	for _, written := range []bool{false, true} {
		w := newTestWriter(t, &captureOutput{})
		if written {
			if err := w.Write(context.Background(), []Entry{{Msg: service.NewMessage([]byte(`{}`)), Reason: ReasonUnreadable}}); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := w.Close(ctx)
		cancel()
		if err != nil {
			t.Fatalf("written=%v: Close: %v", written, err)
		}
	}
}

// TestWriterDurableAcrossRestarts: with dead_letter_state, an event
// dead-lettered by one process is not written again by the next one (a Kafka
// offset re-read after kill -9), while a new event is.
func TestWriterDurableAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "dl.db")
	entry := func(id string) Entry {
		return Entry{Msg: service.NewMessage([]byte(`{"id":"` + id + `"}`)), Reason: ReasonUnmappable, Key: id}
	}
	run := func(ids ...string) int {
		c := &captureOutput{}
		w := newTestWriter(t, c)
		require.NoError(t, w.openDurable(path))
		var es []Entry
		for _, id := range ids {
			es = append(es, entry(id))
		}
		require.NoError(t, w.Write(context.Background(), es))
		require.NoError(t, w.Close(context.Background()))
		w.durable = nil // closed: the cleanup must not close it again
		return len(c.got)
	}
	require.Equal(t, 2, run("a", "b"))
	require.Equal(t, 1, run("a", "b", "c"), "a restarted writer wrote a and b again")
	require.Equal(t, 0, run("c"))
}
