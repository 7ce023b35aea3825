package replay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/metricstest"
)

// nackingOutput fails the first failures[key] attempts of a message (its
// body), and records every message it takes.
type nackingOutput struct {
	plain    bool // fail the whole write with a plain error
	failures func(key string) int
	hint     time.Duration // > 0: each failure asks to wait that long (ratelimited.After)

	mu       sync.Mutex
	attempts map[string]int
	got      map[string]int
	writes   int
}

func (o *nackingOutput) Connect(context.Context) error { return nil }
func (o *nackingOutput) Close(context.Context) error   { return nil }

func (o *nackingOutput) WriteBatch(_ context.Context, b service.MessageBatch) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.writes++
	failed := make([]bool, len(b))
	anyFailed := false
	for i, m := range b {
		raw, err := m.AsBytes()
		if err != nil {
			return err
		}
		k := string(raw)
		o.attempts[k]++
		if o.attempts[k] <= o.failures(k) {
			failed[i], anyFailed = true, true
		}
	}
	if anyFailed && o.plain {
		return errors.New("the whole write failed")
	}
	var berr *service.BatchError
	for i, m := range b {
		if failed[i] {
			if berr == nil {
				berr = service.NewBatchError(b, errors.New("some messages failed"))
			}
			if o.hint > 0 {
				berr.Failed(i, hintedErr(o.hint))
			} else {
				berr.Failed(i, errors.New("not delivered"))
			}
			continue
		}
		raw, _ := m.AsBytes()
		o.got[string(raw)]++
	}
	if berr != nil {
		return berr
	}
	return nil
}

func (o *nackingOutput) delivered(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.got[k]
}

// splitInTwo turns each message into two: "BODY-a" and "BODY-b".
type splitInTwo struct{}

func (splitInTwo) ProcessBatch(_ context.Context, b service.MessageBatch) ([]service.MessageBatch, error) {
	out := make(service.MessageBatch, 0, 2*len(b))
	for _, m := range b {
		raw, err := m.AsBytes()
		if err != nil {
			return nil, err
		}
		for _, suffix := range []string{"-a", "-b"} {
			c := m.Copy()
			c.SetBytes(append(append([]byte(nil), raw...), suffix...))
			out = append(out, c)
		}
	}
	return []service.MessageBatch{out}, nil
}

func (splitInTwo) Close(context.Context) error { return nil }

// replayNacksRig is a stream: a file of lines, read by replay_nacks (on
// clk) around a file input that deletes the file once acknowledged, then
// split (or not) and written to out.
type replayNacksRig struct {
	out     *nackingOutput
	metrics *metricstest.Recorder
	path    string
	keys    []string // what out must take
	stream  *service.Stream
}

func newReplayNacksRig(t *testing.T, clk clock.Clock, lines int, out *nackingOutput, split bool, outBatching, extra string) *replayNacksRig {
	t.Helper()
	out.attempts, out.got = map[string]int{}, map[string]int{}
	r := &replayNacksRig{out: out, metrics: metricstest.New(t), path: filepath.Join(t.TempDir(), "in.jsonl")}
	var body strings.Builder
	for i := range lines {
		k := fmt.Sprintf(`"l%04d"`, i)
		body.WriteString(k + "\n")
		if split {
			r.keys = append(r.keys, k+"-a", k+"-b")
		} else {
			r.keys = append(r.keys, k)
		}
	}
	require.NoError(t, os.WriteFile(r.path, []byte(body.String()), 0o644))

	env := service.NewEnvironment()
	require.NoError(t, env.RegisterBatchInput("replay_nacks_on_clock", replayNacksInputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			return newReplayNacks(conf, mgr, clk)
		}))
	require.NoError(t, env.RegisterBatchProcessor("split_in_two", service.NewConfigSpec(),
		func(*service.ParsedConfig, *service.Resources) (service.BatchProcessor, error) {
			return splitInTwo{}, nil
		}))
	require.NoError(t, env.RegisterBatchOutput("nacking", service.NewConfigSpec().Field(service.NewBatchPolicyField("batching")),
		func(conf *service.ParsedConfig, _ *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			pol, err := conf.FieldBatchPolicy("batching")
			return out, pol, 4, err
		}))
	proc := "noop: {}"
	if split {
		proc = "split_in_two: {}"
	}
	b := env.NewStreamBuilder()
	require.NoError(t, b.SetYAML(fmt.Sprintf(`
input:
  replay_nacks_on_clock:
    %s
    input:
      file:
        paths: [ %q ]
        delete_on_finish: true
        scanner:
          currents_lines: { batch_size: 10 }
pipeline:
  threads: 4
  processors: [ { %s } ]
output:
  nacking: { %s }
logger: { level: ${RN_LOG:none} }
`, extra, r.path, proc, outBatching)))
	require.NoError(t, b.SetMetricsYAML(r.metrics.YAML()))
	s, err := b.Build()
	require.NoError(t, err)
	r.stream = s
	return r
}

// run runs the stream to its end, advancing a fake clock whenever the
// stream waits on it.
func (r *replayNacksRig) run(t *testing.T, fake *clock.Fake) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if fake != nil {
		pumpCtx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			for fake.WaitForTimers(pumpCtx, 1) {
				if next, ok := fake.NextDeadline(); ok {
					fake.Set(next)
				}
			}
		}()
	}
	require.NoError(t, r.stream.Run(ctx))
}

func (r *replayNacksRig) assertAllDelivered(t *testing.T) {
	t.Helper()
	var missing []string
	for _, k := range r.keys {
		if r.out.delivered(k) == 0 {
			missing = append(missing, k)
		}
	}
	assert.Empty(t, missing, "every message is delivered before the input ends")
	_, err := os.Stat(r.path)
	assert.True(t, errors.Is(err, os.ErrNotExist), "the file input's batches are all acknowledged (delete_on_finish removed the file): %v", err)
	assert.Zero(t, r.metrics.Get("replay_nacks_pending"), "nothing waits for a retry at the end")
}

// failEvery fails the first n attempts of every k-th message (by the digits
// in its body), so that retries are partial, repeated and of ever smaller
// batches.
func failEvery(k, n int) func(string) int {
	return func(key string) int {
		var d int
		for _, c := range key {
			if c >= '0' && c <= '9' {
				d = d*10 + int(c-'0')
			}
		}
		if d%k == 0 || strings.HasSuffix(key, "-b") && d%3 == 1 {
			return n
		}
		return 0
	}
}

func TestReplayNacksDeliversEveryMessage(t *testing.T) {
	for _, tc := range []struct {
		name        string
		split       bool
		plain       bool
		outBatching string
	}{
		// The batch error names the failed messages: partial retries,
		// re-indexed on each attempt.
		{name: "partial nacks", outBatching: ""},
		{name: "partial nacks of a line split in two", split: true},
		// Output batching merges the pipeline's batches: Benthos reduces the
		// batch error to a plain error per batch, the whole batch is retried.
		{name: "partial nacks behind output batching", split: true, outBatching: "batching: { count: 25, period: 5ms }"},
		{name: "whole-write nacks", plain: true, split: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := clock.NewFake(time.Unix(0, 0))
			out := &nackingOutput{plain: tc.plain, failures: failEvery(7, 4)}
			rig := newReplayNacksRig(t, fake, 200, out, tc.split, tc.outBatching, "")
			rig.run(t, fake)
			rig.assertAllDelivered(t)
			assert.Positive(t, rig.metrics.Get("replay_nacks_retried_total"), "messages were sent again")
		})
	}
}

// failLine3 fails the first n attempts of line 3.
func failLine3(n int) func(string) int {
	return func(k string) int {
		if k == `"l0003"` {
			return n
		}
		return 0
	}
}

// runOnFakeClock runs a rig of 20 lines into out on fake (retry_interval
// 500ms) and returns it, the run's context (a minute) and its result.
func runOnFakeClock(t *testing.T, fake *clock.Fake, out *nackingOutput) (*replayNacksRig, context.Context, chan error) {
	t.Helper()
	rig := newReplayNacksRig(t, fake, 20, out, false, "", "retry_interval: 500ms")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- rig.stream.Run(ctx) }()
	return rig, ctx, done
}

// A batch nacked a third time waits retry_interval on the input's clock,
// and the input does not end meanwhile.
func TestReplayNacksWaitsOnItsClockBeforeEnding(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	out := &nackingOutput{failures: failLine3(3)}
	rig, ctx, done := runOnFakeClock(t, fake, out)

	waitCtx, stopWait := context.WithCancel(ctx)
	go func() {
		select {
		case err := <-done:
			t.Errorf("the stream ended before the retry: %v", err)
			done <- err
		case <-waitCtx.Done():
		}
		stopWait()
	}()
	require.True(t, fake.WaitForTimers(waitCtx, 1), "the third retry waits on the clock")
	stopWait()
	assert.Equal(t, 3, out.attemptsOf(`"l0003"`), "two immediate retries after the first nack")
	assert.Zero(t, out.delivered(`"l0003"`))
	select {
	case err := <-done:
		t.Fatalf("the input ended with a message waiting for its retry: %v", err)
	default:
	}
	fake.Advance(500*time.Millisecond - time.Nanosecond)
	assert.Equal(t, 1, fake.Pending(), "not before retry_interval")
	fake.Advance(time.Nanosecond)
	require.NoError(t, <-done)
	rig.assertAllDelivered(t)
	assert.Equal(t, 4, out.attemptsOf(`"l0003"`))
	assert.Equal(t, int64(3), rig.metrics.Get("replay_nacks_retried_total"))
}

// hintedErr is a rate limit's nack that says how long to wait.
type hintedErr time.Duration

func (e hintedErr) Error() string             { return "over the rate: wait " + time.Duration(e).String() }
func (e hintedErr) RetryAfter() time.Duration { return time.Duration(e) }

// A nack that says how long to wait (a hot device's deferred events) is
// retried no sooner, even where the back-off would retry at once.
func TestReplayNacksWaitsForTheNacksHint(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	out := &nackingOutput{hint: 2 * time.Second, failures: failLine3(1)}
	rig, ctx, done := runOnFakeClock(t, fake, out)
	require.True(t, fake.WaitForTimers(ctx, 1), "the first retry waits on the clock")
	assert.Equal(t, 1, out.attemptsOf(`"l0003"`))
	fake.Advance(2*time.Second - time.Nanosecond)
	assert.Equal(t, 1, fake.Pending(), "not before the nack's hint")
	assert.Equal(t, 1, out.attemptsOf(`"l0003"`))
	fake.Advance(time.Nanosecond)
	require.NoError(t, <-done)
	rig.assertAllDelivered(t)
	assert.Equal(t, 2, out.attemptsOf(`"l0003"`))
}

func (o *nackingOutput) attemptsOf(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.attempts[k]
}

// While max_pending messages wait to be sent again, no new batch is read:
// an outage does not pull the whole input into memory.
func TestReplayNacksStopsReadingAtMaxPending(t *testing.T) {
	var outage sync.Mutex
	down := true
	out := &nackingOutput{plain: true}
	out.failures = func(string) int {
		outage.Lock()
		defer outage.Unlock()
		if down {
			return 1 << 30
		}
		return 0
	}
	rig := newReplayNacksRig(t, clock.System, 500, out, false, "", "max_pending: 1\n    retry_interval: 1ms\n    max_retry_interval: 1ms")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- rig.stream.Run(ctx) }()

	// Once the batches in flight fill the pipeline, no new line is read
	// however long the output keeps failing.
	tried := func(writes int) int {
		require.Eventually(t, func() bool {
			out.mu.Lock()
			defer out.mu.Unlock()
			return out.writes >= writes
		}, 30*time.Second, time.Millisecond)
		out.mu.Lock()
		defer out.mu.Unlock()
		return len(out.attempts)
	}
	early := tried(200)
	assert.Equal(t, early, tried(600), "no new line read while the output fails")
	assert.Less(t, early, 500, "the outage holds only what was in flight")

	outage.Lock()
	down = false
	outage.Unlock()
	require.NoError(t, <-done)
	rig.assertAllDelivered(t)
}

func TestReplayNacksBackoff(t *testing.T) {
	r := &replayNacks{interval: 10 * time.Millisecond, maxWait: time.Second}
	for tries, want := range map[int]time.Duration{
		1: 0, 2: 0, 3: 10 * time.Millisecond, 4: 20 * time.Millisecond, 5: 40 * time.Millisecond,
		9: 640 * time.Millisecond, 10: time.Second, 1000: time.Second,
	} {
		assert.Equal(t, want, r.backoff(tries), "attempt %d", tries)
	}
}

func TestReplayNacksConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"retry_interval: 0s", "retry_interval must be positive"},
		{"retry_interval: 2s\nmax_retry_interval: 1s", "must not be shorter than retry_interval"},
		{"max_pending: 0", "max_pending must be at least 1"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			conf, err := replayNacksInputSpec().ParseYAML(tc.yaml+"\ninput: { stdin: {} }", nil)
			require.NoError(t, err)
			_, err = newReplayNacks(conf, service.MockResources(), clock.System)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
