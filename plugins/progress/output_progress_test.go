package progress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/outcome"
)

// scripted is a child output that answers each WriteBatch with the next
// result of its script: nil, one error for the whole batch, or errors by
// index (a batch error).
type scripted struct {
	mu      sync.Mutex
	results []any
}

var sink = &scripted{}

func init() {
	err := service.RegisterBatchOutput("progress_test_sink", service.NewConfigSpec(),
		func(*service.ParsedConfig, *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			return sink, service.BatchPolicy{}, 1, nil
		})
	if err != nil {
		panic(err)
	}
}

func (s *scripted) Connect(context.Context) error { return nil }
func (s *scripted) Close(context.Context) error   { return nil }

func (s *scripted) WriteBatch(_ context.Context, b service.MessageBatch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.results) == 0 {
		return nil
	}
	r := s.results[0]
	s.results = s.results[1:]
	switch r := r.(type) {
	case error:
		return r
	case map[int]error:
		be := service.NewBatchError(b, errors.New("some failed"))
		for i, err := range r {
			be = be.Failed(i, err)
		}
		return be
	}
	return nil
}

// lines collects log lines.
type lines struct {
	mu  sync.Mutex
	all []string
	ch  chan string
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *lines) WithGroup(string) slog.Handler            { return l }
func (l *lines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.all = append(l.all, r.Message)
	l.mu.Unlock()
	l.ch <- r.Message
	return nil
}

func batchOf(n int) service.MessageBatch {
	b := make(service.MessageBatch, n)
	for i := range b {
		b[i] = service.NewMessage([]byte(`{}`))
	}
	return b
}

// fromFile sets the path metadata of every message of b, as the file input
// does.
func fromFile(b service.MessageBatch, path string) service.MessageBatch {
	for _, m := range b {
		m.MetaSetMut("path", path)
	}
	return b
}

func newTestOutput(t *testing.T, yaml string) (*output, *clock.Fake, *lines) {
	t.Helper()
	conf, err := outputSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := &lines{ch: make(chan string, 16)}
	fake := clock.NewFake(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	o, _, err := newOutput(conf, service.MockResources(service.MockResourcesOptUseLogger(service.NewLoggerFromSlog(slog.New(log)))), fake)
	if err != nil {
		t.Fatal(err)
	}
	return o, fake, log
}

func TestProgressLinesAndSummary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	outcome.Add(outcome.DeadLettered, "unmappable", 7) // before the run: not counted
	o, fake, log := newTestOutput(t, `
interval: 10s
total: 20
output:
  progress_test_sink: {}
`)
	// Processors may drop events before the output connects: counted.
	outcome.Add(outcome.Dropped, "unknown_event", 1)
	if err := o.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	sink.results = []any{
		nil,
		map[int]error{1: deadletter.New(deadletter.ReasonTooLarge, "big")},
		errors.New("amplitude: retries exhausted"),
	}
	for i, n := range []int{6, 4, 3} {
		err := o.WriteBatch(ctx, fromFile(batchOf(n), fmt.Sprintf("f%d.avro", i)))
		if (err != nil) != (i > 0) {
			t.Fatalf("batch %d: error %v", i, err)
		}
	}
	// 6 + 3 done; 1 too_large and 3 outage given back.
	outcome.Add(outcome.DeadLettered, "unmappable", 2)
	outcome.Add(outcome.Dropped, "filtered", 5)

	if !fake.WaitForTimers(ctx, 1) {
		t.Fatal("no reporting timer")
	}
	fake.Advance(10 * time.Second)
	got := <-log.ch
	// f2.avro's only batch was given back: its file is not counted.
	want := "progress: 9 of 20 events done (45.0%), 1 events/s, about 12s left; 2 dead-lettered, 4 given back; from 2 files"
	if got != want {
		t.Fatalf("progress line:\n got %q\nwant %q", got, want)
	}

	// The next interval: 11 more, all done.
	if !fake.WaitForTimers(ctx, 1) {
		t.Fatal("no reporting timer after the first line")
	}
	if err := o.WriteBatch(ctx, batchOf(11)); err != nil {
		t.Fatal(err)
	}
	fake.Advance(10 * time.Second)
	if got, want := <-log.ch, "progress: 20 of 20 events done (100.0%), 1 events/s; 2 dead-lettered, 4 given back; from 2 files"; got != want {
		t.Fatalf("second line:\n got %q\nwant %q", got, want)
	}

	fake.Advance(5 * time.Second)
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want = "progress: finished in 25s: 20 events done from 2 files, 18 delivered, 2 dead-lettered (unmappable=2); dropped: filtered=5 unknown_event=1; given back: outage=3 too_large=1"
	if got := <-log.ch; got != want {
		t.Fatalf("summary:\n got %q\nwant %q", got, want)
	}
}

func TestProgressWithoutTotal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, fake, log := newTestOutput(t, `
interval: 1m
output:
  progress_test_sink: {}
`)
	if err := o.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	sink.results = nil
	if err := o.WriteBatch(ctx, batchOf(120)); err != nil {
		t.Fatal(err)
	}
	if !fake.WaitForTimers(ctx, 1) {
		t.Fatal("no reporting timer")
	}
	fake.Advance(time.Minute)
	if got, want := <-log.ch, "progress: 120 events done, 2 events/s; 0 dead-lettered, 0 given back"; got != want {
		t.Fatalf("progress line:\n got %q\nwant %q", got, want)
	}
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := <-log.ch; !strings.HasPrefix(got, "progress: finished in 1m0s: 120 events done, 120 delivered, 0 dead-lettered (none); dropped: none; given back: none") {
		t.Fatalf("summary: %q", got)
	}
}

func TestProgressConfigErrors(t *testing.T) {
	for _, yaml := range []string{
		"interval: 0s\noutput: {progress_test_sink: {}}",
		"total: -1\noutput: {progress_test_sink: {}}",
		"max_in_flight: 0\noutput: {progress_test_sink: {}}",
	} {
		conf, err := outputSpec().ParseYAML(yaml, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := newOutput(conf, service.MockResources(), clock.System); err == nil {
			t.Errorf("%q: no error", yaml)
		}
	}
}

// TestProgressClosedBeforeStart: a pipeline that stops before connecting
// still closes cleanly with a summary.
func TestProgressClosedBeforeStart(t *testing.T) {
	o, _, log := newTestOutput(t, "output: {progress_test_sink: {}}")
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := <-log.ch; got != "progress: finished before any event was written" {
		t.Fatalf("summary: %q", got)
	}
}

// TestProgressTimeLeft covers the ends of the estimate: nothing done yet
// (unknown) and less than a second left.
func TestProgressTimeLeft(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, fake, log := newTestOutput(t, `
interval: 10s
total: 100
output:
  progress_test_sink: {}
`)
	sink.results = nil
	if err := o.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		write int
		want  string
	}{
		{0, "progress: 0 of 100 events done (0.0%), 0 events/s, time left unknown; 0 dead-lettered, 0 given back"},
		{99, "progress: 99 of 100 events done (99.0%), 10 events/s, under a second left; 0 dead-lettered, 0 given back"},
	} {
		if tc.write > 0 {
			if err := o.WriteBatch(ctx, batchOf(tc.write)); err != nil {
				t.Fatal(err)
			}
		}
		if !fake.WaitForTimers(ctx, 1) {
			t.Fatal("no reporting timer")
		}
		fake.Advance(10 * time.Second)
		if got := <-log.ch; got != tc.want {
			t.Fatalf("progress line:\n got %q\nwant %q", got, tc.want)
		}
	}
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
	<-log.ch
}
