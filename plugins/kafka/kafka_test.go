package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/partialnack"
)

// newCluster starts an in-process Kafka cluster with the topic seeded.
func newCluster(t *testing.T, topic string, partitions int32, opts ...kfake.Opt) string {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic)}, opts...)
	c, err := kfake.NewCluster(opts...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

// produce writes n records to topic, keyed key-<i%keys>, valued v-<i>.
func produce(t *testing.T, brokers, topic string, from, n, keys int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	require.NoError(t, err)
	defer cl.Close()
	recs := make([]*kgo.Record, 0, n)
	for i := from; i < from+n; i++ {
		recs = append(recs, &kgo.Record{
			Topic:   topic,
			Key:     fmt.Appendf(nil, "key-%d", i%keys),
			Value:   fmt.Appendf(nil, "v-%d", i),
			Headers: []kgo.RecordHeader{{Key: "source", Value: []byte("test")}},
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, cl.ProduceSync(ctx, recs...).FirstErr())
}

// consumer is a running stream with a kafka_franz input and a recording
// output whose outcome per message is decided by nack.
type consumer struct {
	stream *service.Stream
	done   chan error

	mu    sync.Mutex
	acked map[string]int // value -> times acked
	seen  []*service.Message
}

func inputYAML(brokers, topic, group string, extra string) string {
	return fmt.Sprintf(`
kafka_franz:
  seed_brokers: [ %q ]
  topics: [ %s ]
  consumer_group: %s
  commit_period: 100ms
  fetch_max_wait: 100ms
  session_timeout: 10s
  rebalance_timeout: 20s
  heartbeat_interval: 200ms
%s`, brokers, topic, group, extra)
}

// startConsumer runs a stream consuming with the given input YAML. handle,
// when not nil, can hold or fail a message before it is acknowledged.
func startConsumer(t *testing.T, inYAML string, handle func(*service.Message) error) *consumer {
	t.Helper()
	sb := service.NewStreamBuilder()
	require.NoError(t, sb.SetLoggerYAML("level: none"))
	require.NoError(t, sb.AddInputYAML(inYAML))
	c := &consumer{acked: map[string]int{}, done: make(chan error, 1)}
	require.NoError(t, sb.AddBatchConsumerFunc(func(_ context.Context, b service.MessageBatch) error {
		for _, m := range b {
			if handle != nil {
				if err := handle(m); err != nil {
					return err
				}
			}
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, m := range b {
			v, _ := m.AsBytes()
			c.acked[string(v)]++
			c.seen = append(c.seen, m)
		}
		return nil
	}))
	s, err := sb.Build()
	require.NoError(t, err)
	c.stream = s
	go func() { c.done <- s.Run(context.Background()) }()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop stops the stream gracefully (at most once).
func (c *consumer) stop(t *testing.T) {
	t.Helper()
	if c.stream == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = c.stream.Stop(ctx)
	<-c.done
	c.stream = nil
}

func (c *consumer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acked)
}

func (c *consumer) ackedValues() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.acked)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 60*time.Second, 20*time.Millisecond, what)
}

func TestInputConsumesWithMetadataAndResumesAfterCommit(t *testing.T) {
	brokers := newCluster(t, "events", 3)
	produce(t, brokers, "events", 0, 300, 7)

	c := startConsumer(t, inputYAML(brokers, "events", "g1", "  batch_size: 50"), nil)
	waitFor(t, "all 300 records consumed", func() bool { return c.count() == 300 })

	c.mu.Lock()
	m := c.seen[0]
	c.mu.Unlock()
	key, _ := m.MetaGet(metaKey)
	assert.True(t, strings.HasPrefix(key, "key-"), key)
	topic, _ := m.MetaGet(metaTopic)
	assert.Equal(t, "events", topic)
	src, _ := m.MetaGet("source")
	assert.Equal(t, "test", src)
	for _, k := range []string{metaPartition, metaOffset, metaTimestampUnix, metaTimestampMs, metaTombstone} {
		_, ok := m.MetaGetMut(k)
		assert.True(t, ok, k)
	}

	// Per partition, offsets arrive in order.
	last := map[any]int{}
	c.mu.Lock()
	for _, m := range c.seen {
		p, _ := m.MetaGetMut(metaPartition)
		o, _ := m.MetaGetMut(metaOffset)
		prev, ok := last[p]
		assert.True(t, !ok || o.(int) == prev+1, "partition %v: offset %v after %v", p, o, prev)
		last[p] = o.(int)
	}
	c.mu.Unlock()
	c.stop(t)

	// A new member of the group resumes after the committed offsets.
	produce(t, brokers, "events", 300, 20, 7)
	c2 := startConsumer(t, inputYAML(brokers, "events", "g1", ""), nil)
	waitFor(t, "20 new records consumed", func() bool { return c2.count() >= 20 })
	c2.stop(t) // every ack has resolved: a redelivery would have shown by now
	for v := range c2.ackedValues() {
		var i int
		_, err := fmt.Sscanf(v, "v-%d", &i)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, i, 300, "record %s redelivered after it was acknowledged and committed", v)
	}
	assert.Equal(t, 20, c2.count())
}

func TestInputRedeliversNackedAndNeverCommitsPastThem(t *testing.T) {
	brokers := newCluster(t, "events", 1)
	produce(t, brokers, "events", 0, 10, 1)

	// v-5 always fails: the output keeps nacking it. Later records of the
	// partition are still processed (checkpoint_limit allows it) but their
	// offsets cannot be committed past v-5.
	var attempts atomic.Int64
	c := startConsumer(t, inputYAML(brokers, "events", "g2", "  batch_size: 1"), func(m *service.Message) error {
		if v, _ := m.AsBytes(); string(v) == "v-5" {
			attempts.Add(1)
			return errors.New("downstream refused")
		}
		return nil
	})
	waitFor(t, "v-5 redelivered several times", func() bool { return attempts.Load() >= 3 && c.count() == 9 })
	assert.NotContains(t, c.ackedValues(), "v-5")
	c.stop(t)

	// The next member starts at the unacked record: nothing lost.
	c2 := startConsumer(t, inputYAML(brokers, "events", "g2", ""), nil)
	waitFor(t, "v-5..v-9 consumed", func() bool { return c2.count() == 5 })
	for i := 5; i < 10; i++ {
		assert.Contains(t, c2.ackedValues(), fmt.Sprintf("v-%d", i))
	}
}

func TestInputStrictOrderWithCheckpointLimitOne(t *testing.T) {
	brokers := newCluster(t, "events", 1)
	produce(t, brokers, "events", 0, 10, 1)

	var attempts atomic.Int64
	c := startConsumer(t, inputYAML(brokers, "events", "g3", "  batch_size: 1\n  checkpoint_limit: 1"), func(m *service.Message) error {
		if v, _ := m.AsBytes(); string(v) == "v-5" && attempts.Add(1) < 3 {
			return errors.New("downstream refused twice")
		}
		return nil
	})
	waitFor(t, "all consumed", func() bool { return c.count() == 10 })
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.seen {
		v, _ := m.AsBytes()
		assert.Equal(t, fmt.Sprintf("v-%d", i), string(v), "records of a partition stay in order, redeliveries included")
	}
}

func TestNextBatchOrderAndCheckpointLimit(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_767_225_600, 0))
	f := newFranzInput(franzInputConf{checkpointLimit: 20, batchSize: 10, replayNacks: true}, service.MockResources(), clk)
	p0 := newPartitionTracker(topicPartition{"t", 0})
	p1 := newPartitionTracker(topicPartition{"t", 1})
	mk := func(p *partitionTracker, n int) *trackedBatch {
		b := &trackedBatch{part: p, msgs: make(service.MessageBatch, n), records: n}
		p.batches = append(p.batches, b)
		f.queue = append(f.queue, b)
		return b
	}
	a1, a2, a3 := mk(p0, 10), mk(p0, 10), mk(p0, 10)
	b1 := mk(p1, 5)
	now := clk.Now()

	next := func() *trackedBatch {
		b, _, _ := f.nextBatchLocked(now)
		return b
	}
	assert.Same(t, a1, next())
	assert.Same(t, a2, next(), "two batches fit the checkpoint limit")
	assert.Same(t, b1, next(), "p0 is at its limit, p1 is not")
	b, wait, queued := f.nextBatchLocked(now)
	assert.Nil(t, b)
	assert.Zero(t, wait)
	assert.True(t, queued, "a3 waits for an ack")

	// a2 is nacked: it goes first again, after its back-off, before a3.
	f.ack(a2, errors.New("nope"))
	b, wait, _ = f.nextBatchLocked(now)
	assert.Nil(t, b, "a2 is backing off and a3 must not overtake it")
	assert.Positive(t, wait)
	assert.Same(t, a2, func() *trackedBatch { b, _, _ := f.nextBatchLocked(now.Add(time.Second)); return b }())

	// A newly assigned partition waits for partition_start_delay.
	p2 := newPartitionTracker(topicPartition{"t", 2})
	p2.startAt = now.Add(time.Second)
	c1 := mk(p2, 1)
	f.queue = []*trackedBatch{c1}
	b, wait, _ = f.nextBatchLocked(now)
	assert.Nil(t, b)
	assert.Equal(t, time.Second, wait)
	b, _, _ = f.nextBatchLocked(now.Add(time.Second))
	assert.Same(t, c1, b)
	f.queue = []*trackedBatch{a3}

	// A revoked partition's queued batches are released, not handed out.
	p0.state = partDraining
	b, _, queued = f.nextBatchLocked(now.Add(time.Second))
	assert.Nil(t, b)
	assert.False(t, queued)
	_ = a3
}

func TestAckAdvancesOnlyOverContiguousBatches(t *testing.T) {
	f := newFranzInput(franzInputConf{checkpointLimit: 100, batchSize: 10, replayNacks: true}, service.MockResources(), clock.NewFake(time.Unix(1_767_225_600, 0)))
	p := newPartitionTracker(topicPartition{"t", 0})
	var bs []*trackedBatch
	for i := range 3 {
		b := &trackedBatch{part: p, msgs: make(service.MessageBatch, 1), records: 1, next: kgo.EpochOffset{Offset: int64(i + 1)}}
		p.batches = append(p.batches, b)
		p.inFlight++
		bs = append(bs, b)
	}
	f.ack(bs[1], nil)
	assert.Len(t, p.batches, 3, "batch 0 is not acked: nothing may be committed")
	f.ack(bs[0], nil)
	assert.Len(t, p.batches, 1, "batches 0 and 1 are committable")
	assert.Same(t, bs[2], p.batches[0])

	// After release, late acks are ignored.
	f.releasePartitionLocked(p, false)
	f.ack(bs[2], nil)
	assert.Empty(t, p.batches)
	assert.Zero(t, p.inFlight)
}

func TestInputRebalanceMovesPartitionsWithoutLossOrDuplicates(t *testing.T) {
	brokers := newCluster(t, "events", 6)
	const total = 600
	produce(t, brokers, "events", 0, total, 60)

	// a's processing is held at two points, released by events rather than
	// by time: past 100 records until b has joined (a rebalance is under
	// way with a's records in flight), past 200 until a is being stopped
	// (a leaves with records of its partitions left to move).
	joined, stopping := make(chan struct{}), make(chan struct{})
	var handled atomic.Int64
	holdA := func(*service.Message) error {
		n := handled.Add(1)
		if n > 100 {
			<-joined
		}
		if n > 200 {
			<-stopping
		}
		return nil
	}
	in := inputYAML(brokers, "events", "g-rebalance", "  batch_size: 5")
	a := startConsumer(t, in, holdA)
	waitFor(t, "a consumes", func() bool { return a.count() >= 100 })

	b := startConsumer(t, in, nil)
	waitFor(t, "b joins the group", func() bool { return groupMembers(t, brokers, "g-rebalance") == 2 })
	close(joined)
	waitFor(t, "b takes partitions over", func() bool { return b.count() > 0 })
	waitFor(t, "a is held mid-stream", func() bool { return handled.Load() > 200 })

	// a leaves mid-stream: its partitions move to b.
	require.Less(t, a.count()+b.count(), total, "a finished before it was stopped")
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		a.stop(t)
	}()
	close(stopping)
	<-stopped
	waitFor(t, "every record acknowledged", func() bool {
		n := 0
		bv := b.ackedValues()
		for v := range a.ackedValues() {
			if bv[v] == 0 {
				n++
			}
		}
		return n+len(bv) == total
	})
	b.stop(t) // every ack has resolved: stray redeliveries would have shown

	av, bv := a.ackedValues(), b.ackedValues()
	for v, n := range av {
		assert.Equal(t, 1, n+bv[v], "record %s processed %d times by a and %d times by b", v, n, bv[v])
	}
	for v, n := range bv {
		assert.Equal(t, 1, n, "record %s processed %d times by b", v, n)
	}
}

// groupMembers returns how many members the broker lists in the group.
func groupMembers(t *testing.T, brokers, group string) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Groups) == 0 {
		return 0
	}
	return len(resp.Groups[0].Members)
}

// TestInputRedeliversNackedAsRead: what the pipeline did to a nacked batch
// (a processor mapping it, replacing its bytes) must not reach its
// redelivery, or the records would be processed twice over.
func TestInputRedeliversNackedAsRead(t *testing.T) {
	brokers := newCluster(t, "events", 1)
	produce(t, brokers, "events", 0, 5, 1)

	var mu sync.Mutex
	seen := map[string]int{}
	c := startConsumer(t, inputYAML(brokers, "events", "g-mutate", "  batch_size: 1"), func(m *service.Message) error {
		v, _ := m.AsBytes()
		mu.Lock()
		seen[string(v)]++
		n := seen["v-3"]
		mu.Unlock()
		if string(v) == "v-3" && n == 1 {
			m.SetBytes([]byte("mapped by the pipeline"))
			return errors.New("outage")
		}
		return nil
	})
	waitFor(t, "all five acked", func() bool { return c.count() == 5 })
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 2, seen["v-3"], "v-3 redelivered once, with the bytes read from Kafka")
	assert.Zero(t, seen["mapped by the pipeline"], "the pipeline's change reached the redelivery")
}

// TestInputNackNamingMessagesRedeliversOnlyThem: an output that fails some
// messages of a batch (a *service.BatchError naming them) gets only those
// again, and the records delivered before the first failed one are
// committed: the next member starts at that record, not at the batch's first.
func TestInputNackNamingMessagesRedeliversOnlyThem(t *testing.T) {
	brokers := newCluster(t, "events", 1)
	produce(t, brokers, "events", 0, 10, 1)

	var mu sync.Mutex
	got := map[string]int{}
	sb := service.NewStreamBuilder()
	require.NoError(t, sb.SetLoggerYAML("level: none"))
	require.NoError(t, sb.AddInputYAML(inputYAML(brokers, "events", "g-partial", "  batch_size: 10")))
	require.NoError(t, sb.AddBatchConsumerFunc(func(_ context.Context, b service.MessageBatch) error {
		mu.Lock()
		defer mu.Unlock()
		var berr *service.BatchError
		for i, m := range b {
			v, _ := m.AsBytes()
			got[string(v)]++
			if string(v) == "v-4" || string(v) == "v-7" {
				if berr == nil {
					berr = service.NewBatchError(b, errors.New("two refused"))
				}
				berr.Failed(i, errors.New("refused"))
			}
		}
		if berr != nil {
			return berr
		}
		return nil
	}))
	s, err := sb.Build()
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	waitFor(t, "v-4 redelivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got["v-4"] >= 3
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	<-done
	mu.Lock()
	for i := range 10 {
		v := fmt.Sprintf("v-%d", i)
		if v == "v-4" || v == "v-7" {
			assert.GreaterOrEqual(t, got[v], 3, "%s redelivered", v)
			continue
		}
		assert.Equal(t, 1, got[v], "%s delivered once, never redelivered", v)
	}
	mu.Unlock()

	// Committed up to v-4, the first failed record.
	c2 := startConsumer(t, inputYAML(brokers, "events", "g-partial", ""), nil)
	waitFor(t, "v-4..v-9 consumed", func() bool { return c2.count() == 6 })
	assert.NotContains(t, c2.ackedValues(), "v-3", "the records before v-4 were committed")
}

// TestFailedMessages: a nack is traced back to the messages handed out, even
// through processors that reorder or drop them; when it cannot be (a
// failed message built anew, a plain error, a batch error naming nobody),
// every message counts as failed.
func TestFailedMessages(t *testing.T) {
	refused := errors.New("refused")
	for _, tc := range []struct {
		name string
		// nack builds the output's error from the batch it got.
		nack func(out service.MessageBatch) error
		want []bool
	}{
		{"plain error", func(service.MessageBatch) error { return refused }, nil},
		{"batch error naming nobody", func(out service.MessageBatch) error { return service.NewBatchError(out, refused) }, nil},
		{"named messages", func(out service.MessageBatch) error {
			return service.NewBatchError(out, refused).Failed(1, refused).Failed(3, refused)
		}, []bool{false, true, false, true}},
		{"reordered by a processor", func(out service.MessageBatch) error {
			rev := service.MessageBatch{out[3], out[2], out[1], out[0]}
			return service.NewBatchError(rev, refused).Failed(0, refused)
		}, []bool{false, false, false, true}},
		{"one filtered out: not assumed delivered", func(out service.MessageBatch) error {
			kept := service.MessageBatch{out[0], out[1], out[3]}
			return service.NewBatchError(kept, refused).Failed(2, refused)
		}, []bool{false, false, true, true}},
		{"a failed message built anew", func(out service.MessageBatch) error {
			fresh := service.MessageBatch{out[0], service.NewMessage([]byte("new"))}
			return service.NewBatchError(fresh, refused).Failed(1, refused)
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			batch := service.MessageBatch{}
			for i := range 4 {
				batch = append(batch, service.NewMessage(fmt.Appendf(nil, "v-%d", i)))
			}
			out := batch.Copy()
			ix := out.Index()
			assert.Equal(t, tc.want, partialnack.Failed(ix, len(out), tc.nack(out)))
		})
	}
}

// TestPartialNackOfARevokedPartitionCommitsTheDeliveredRecords: a batch
// nacked after its partition was revoked (its unsent records withdrawn) is
// left to the new owner from its first failed record: the records delivered
// before it are committed, so the new owner does not send them again.
func TestPartialNackOfARevokedPartitionCommitsTheDeliveredRecords(t *testing.T) {
	f := newFranzInput(franzInputConf{checkpointLimit: 100, batchSize: 10, replayNacks: true}, service.MockResources(), clock.NewFake(time.Unix(1_767_225_600, 0)))
	f.mu.Lock()
	var recs []*kgo.Record
	for i := range 5 {
		recs = append(recs, &kgo.Record{Topic: "t", Offset: int64(40 + i), LeaderEpoch: 3, Value: fmt.Appendf(nil, "v-%d", i)})
	}
	f.addFetchLocked(kgo.FetchTopicPartition{Topic: "t", FetchPartition: kgo.FetchPartition{Partition: 0, Records: recs}})
	b, _, _ := f.nextBatchLocked(time.Unix(1_767_225_600, 0))
	f.mu.Unlock()
	require.NotNil(t, b)
	p := b.part

	out := b.msgs.Copy()
	ix := out.Index()
	f.detach(map[string][]int32{"t": {0}}, partDraining)
	berr := service.NewBatchError(out, errors.New("withdrawn")).Failed(2, errors.New("withdrawn")).Failed(4, errors.New("withdrawn"))
	f.settle(b, berr, partialnack.Failed(ix, len(out), berr))

	assert.True(t, p.hasNext)
	assert.Equal(t, kgo.EpochOffset{Epoch: 3, Offset: 42}, p.next, "committed up to the first failed record")
	assert.Zero(t, p.inFlight)
	assert.Empty(t, f.queue, "a revoked partition's batch is not redelivered here")

	// On an active partition, only the failed messages come again, and the
	// batch's success commits all of it.
	f2 := newFranzInput(franzInputConf{checkpointLimit: 100, batchSize: 10, replayNacks: true}, service.MockResources(), clock.NewFake(time.Unix(1_767_225_600, 0)))
	f2.mu.Lock()
	f2.addFetchLocked(kgo.FetchTopicPartition{Topic: "t", FetchPartition: kgo.FetchPartition{Partition: 0, Records: recs}})
	b2, _, _ := f2.nextBatchLocked(time.Unix(1_767_225_600, 0))
	f2.mu.Unlock()
	out = b2.msgs.Copy()
	ix = out.Index()
	berr = service.NewBatchError(out, errors.New("outage")).Failed(2, errors.New("outage")).Failed(4, errors.New("outage"))
	f2.settle(b2, berr, partialnack.Failed(ix, len(out), berr))
	p2 := b2.part
	assert.Equal(t, kgo.EpochOffset{Epoch: 3, Offset: 42}, p2.next)
	require.Len(t, f2.queue, 1)
	var vals []string
	for _, m := range f2.queue[0].msgs {
		v, _ := m.AsBytes()
		vals = append(vals, string(v))
	}
	assert.Equal(t, []string{"v-2", "v-4"}, vals)
	assert.Equal(t, 2, f2.queue[0].records)
	f2.mu.Lock()
	again, _, _ := f2.nextBatchLocked(time.Unix(1_767_225_700, 0))
	f2.mu.Unlock()
	require.Same(t, b2, again)
	assert.Equal(t, 2, p2.inFlight)
	f2.ack(again, nil)
	assert.Equal(t, kgo.EpochOffset{Epoch: 3, Offset: 45}, p2.next, "the whole batch is committed once its failed records are delivered")
	assert.Empty(t, p2.batches)
}

// hintedErr is a rate limit's nack that says how long to wait (the amplitude
// output's deferred events: when the hot device's backlog will have been
// sent).
type hintedErr time.Duration

func (e hintedErr) Error() string             { return "over the rate: wait " + time.Duration(e).String() }
func (e hintedErr) RetryAfter() time.Duration { return time.Duration(e) }

// A nack that says how long to wait is redelivered no sooner, where the
// back-off alone would redeliver it after 10 ms; one without a hint after
// the back-off.
func TestInputRedeliversNoSoonerThanTheNacksHint(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
	}{
		{"a hint", hintedErr(5 * time.Second), 5 * time.Second},
		{"a hint shorter than the back-off", hintedErr(time.Millisecond), nackDelay(1)},
		{"no hint", errors.New("503"), nackDelay(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1_767_225_600, 0))
			f := newFranzInput(franzInputConf{checkpointLimit: 20, batchSize: 10, replayNacks: true}, service.MockResources(), clk)
			p := newPartitionTracker(topicPartition{"t", 0})
			b := &trackedBatch{part: p, msgs: make(service.MessageBatch, 1), records: 1}
			p.batches = append(p.batches, b)
			f.queue = append(f.queue, b)
			now := clk.Now()
			got, _, _ := f.nextBatchLocked(now)
			require.Same(t, b, got)
			f.ack(b, tc.err)
			got, wait, _ := f.nextBatchLocked(now)
			assert.Nil(t, got)
			assert.Equal(t, tc.want, wait)
			got, _, _ = f.nextBatchLocked(now.Add(tc.want))
			assert.Same(t, b, got)
		})
	}
}
