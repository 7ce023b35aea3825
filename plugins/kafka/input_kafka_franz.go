package kafka

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Input field names.
const (
	kfiFieldTopics                 = "topics"
	kfiFieldRegexpTopics           = "regexp_topics"
	kfiFieldConsumerGroup          = "consumer_group"
	kfiFieldCheckpointLimit        = "checkpoint_limit"
	kfiFieldBatchSize              = "batch_size"
	kfiFieldCommitPeriod           = "commit_period"
	kfiFieldStartFromOldest        = "start_from_oldest"
	kfiFieldFetchMaxBytes          = "fetch_max_bytes"
	kfiFieldFetchMaxPartitionBytes = "fetch_max_partition_bytes"
	kfiFieldFetchMaxWait           = "fetch_max_wait"
	kfiFieldSessionTimeout         = "session_timeout"
	kfiFieldRebalanceTimeout       = "rebalance_timeout"
	kfiFieldHeartbeatInterval      = "heartbeat_interval"
	kfiFieldPartitionStartDelay    = "partition_start_delay"
)

// Metadata keys set on every consumed message.
const (
	metaKey           = "kafka_key"
	metaTopic         = "kafka_topic"
	metaPartition     = "kafka_partition"
	metaOffset        = "kafka_offset"
	metaTimestampUnix = "kafka_timestamp_unix"
	metaTimestampMs   = "kafka_timestamp_ms"
	metaTombstone     = "kafka_tombstone_message"
)

// Redelivery back-off of nacked batches: doubled per attempt, like Benthos'
// own auto-retry of nacks.
const (
	nackBackoffMin = 10 * time.Millisecond
	nackBackoffMax = time.Second
)

// closeCommitTimeout bounds the final offset commit on shutdown.
const closeCommitTimeout = 10 * time.Second

func kafkaFranzInputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("Consumes records from Kafka topics as a consumer group with franz-go, committing offsets only once messages are acknowledged downstream.").
		Description(`
Field names follow Redpanda Connect's `+"`kafka_franz`"+` input.

### Delivery and ordering

The input joins the consumer group `+"`consumer_group`"+` and the brokers spread the partitions of the
topics among the group's members. Records of one partition are handed to the pipeline in offset order, as batches
of at most `+"`batch_size`"+` records; at most `+"`checkpoint_limit`"+` records of one partition are in
flight at once (set it to `+"`batch_size`"+` for strictly one batch of a partition at a time). An offset is
committed only once its message and every earlier message of the partition are acknowledged by the output
(at-least-once). Nacked batches are redelivered with a back-off, ahead of the partition's later records.

When a partition is revoked (another instance joins or leaves the group), the input stops handing out its records,
waits up to half of `+"`rebalance_timeout`"+` for the records in flight to be acknowledged, commits, and only
then lets the partition move. The new owner therefore starts exactly after the last acknowledged record, and two
instances never process the same partition at the same time. Records still unacknowledged after that wait are left
to the new owner (counted in `+"`kafka_franz_records_released`"+`); their late acknowledgements are ignored.

### Metadata

Each message carries `+"`kafka_key`, `kafka_topic`, `kafka_partition`, `kafka_offset`, `kafka_timestamp_unix`, `kafka_timestamp_ms`, `kafka_tombstone_message`"+`
and every record header under its own name.

### Metrics

`+"`kafka_franz_records_redelivered`"+` (nacked records queued again), `+"`kafka_franz_records_released`"+`
(records of revoked partitions left to their new owner), `+"`kafka_franz_partitions_revoked`, `kafka_franz_partitions_lost`"+`,
`+"`kafka_franz_commit_errors`"+`.`).
		Fields(clientFields()...).
		Fields(
			service.NewStringListField(kfiFieldTopics).
				Description("Topics to consume. Items that contain commas are split into several topics.").
				Example([]string{"currents"}).
				Example([]string{"currents-eu,currents-us"}),
			service.NewBoolField(kfiFieldRegexpTopics).
				Description("Whether the topics are regular expressions matched against every topic of the cluster.").
				Default(false).
				Example(true).
				Advanced(),
			service.NewStringField(kfiFieldConsumerGroup).
				Description("The consumer group whose members share the partitions and whose committed offsets record progress. Required.").
				Example("currents-to-amplitude"),
			service.NewIntField(kfiFieldCheckpointLimit).
				Description("The maximum number of records of one partition in flight (handed out and not yet acknowledged). Lower values mean fewer redeliveries after a crash; higher values let several batches of a partition be processed in parallel.").
				Default(1024).
				Example(100).
				Advanced(),
			service.NewIntField(kfiFieldBatchSize).
				Description("The maximum number of records of one partition delivered as one message batch. 0 means all records fetched for the partition, up to `checkpoint_limit`. Batches reach the output whole when it has no batching policy of its own, which keeps per-message dead-letter routing exact.").
				Default(0).
				Example(500),
			service.NewDurationField(kfiFieldCommitPeriod).
				Description("How often acknowledged offsets are committed. Offsets are also committed on revocation and shutdown.").
				Default("5s").
				Example("1s").
				Advanced(),
			service.NewBoolField(kfiFieldStartFromOldest).
				Description("Whether a partition without a committed offset is consumed from its oldest record (true) or from its newest (false).").
				Default(true).
				Example(false),
			service.NewStringField(kfiFieldFetchMaxBytes).
				Description("The maximum number of bytes a broker returns for one fetch request.").
				Default("50MiB").
				Example("100MiB").
				Advanced(),
			service.NewStringField(kfiFieldFetchMaxPartitionBytes).
				Description("The maximum number of bytes a broker returns for one partition of a fetch request.").
				Default("1MiB").
				Example("10MiB").
				Advanced(),
			service.NewDurationField(kfiFieldFetchMaxWait).
				Description("How long a broker may wait to accumulate data for a fetch response.").
				Default("5s").
				Example("500ms").
				Advanced(),
			service.NewDurationField(kfiFieldSessionTimeout).
				Description("How long the group waits without a heartbeat before it evicts a member and moves its partitions.").
				Default("1m").
				Example("10s").
				Advanced(),
			service.NewDurationField(kfiFieldRebalanceTimeout).
				Description("How long the group waits for members to rejoin during a rebalance. A member gives in-flight records of revoked partitions half of it to be acknowledged.").
				Default("45s").
				Example("30s").
				Advanced(),
			service.NewDurationField(kfiFieldHeartbeatInterval).
				Description("How often a member tells the group it is alive.").
				Default("3s").
				Example("1s").
				Advanced(),
			service.NewDurationField(kfiFieldPartitionStartDelay).
				Description("How long a partition newly assigned to this member waits before its first records are handed out. Set it to the window of a per-key rate limit downstream (`1s` for `device_rate_limit`): the previous owner sent its last records before the partition moved, so no window then holds records of two members and the limit holds across the group.").
				Default("0s").
				Example("1s"),
		).
		Example("Consume Currents events", "Joins the group `currents-to-amplitude` and consumes the topic `braze-currents`.", `
input:
  kafka_franz:
    seed_brokers: [ "${KAFKA_BROKERS:localhost:9092}" ]
    topics: [ braze-currents ]
    consumer_group: currents-to-amplitude
    batch_size: 500
`)
}

func init() {
	service.MustRegisterBatchInput("kafka_franz", kafkaFranzInputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			return newFranzInputFromParsed(conf, mgr)
		})
}

// topicPartition names one partition of a topic.
type topicPartition struct {
	topic     string
	partition int32
}

// partitionState is the lifecycle of a partition owned by this member.
type partitionState int

const (
	partActive   partitionState = iota // records are handed out
	partDraining                       // revoked: waiting for in-flight acks
	partGone                           // released to the group: acks ignored
)

// partitionTracker tracks the batches of one owned partition, in offset
// order, from fetch until acknowledgement.
type partitionTracker struct {
	tp    topicPartition
	state partitionState
	// batches are the tracked batches in ascending offset order; the head is
	// the oldest not yet acknowledged.
	batches []*trackedBatch
	// inFlight counts the records handed to the pipeline and not yet acked.
	inFlight int
	// startAt is when the partition's records may first be handed out
	// (partition_start_delay after its assignment).
	startAt time.Time
}

// trackedBatch is a run of consecutive records of one partition delivered as
// one message batch.
type trackedBatch struct {
	part *partitionTracker
	msgs service.MessageBatch
	// next is the offset to commit once this batch and all earlier ones are
	// acknowledged.
	next      kgo.EpochOffset
	acked     bool
	attempts  int
	notBefore time.Time
}

type franzInputConf struct {
	client          *clientConf
	topics          []string
	group           string
	checkpointLimit int
	batchSize       int
	commitPeriod    time.Duration
	drainTimeout    time.Duration
	startDelay      time.Duration
	groupOpts       []kgo.Opt
}

type franzInput struct {
	conf franzInputConf
	log  *service.Logger

	mRedelivered *service.MetricCounter
	mReleased    *service.MetricCounter
	mRevoked     *service.MetricCounter
	mLost        *service.MetricCounter
	mCommitErrs  *service.MetricCounter

	mu     sync.Mutex
	client *kgo.Client
	parts  map[topicPartition]*partitionTracker
	// assignedAt holds when partitions were assigned until their tracker is
	// created (on their first records).
	assignedAt map[topicPartition]time.Time
	// queue holds batches ready to be handed out: fetched ones and nacked
	// ones waiting for redelivery (those go first).
	queue []*trackedBatch
	// changed is closed and replaced whenever an ack or a revocation may
	// unblock a waiter.
	changed chan struct{}
	// interruptPoll, set while ReadBatch polls, ends the poll early so that
	// a nacked batch is redelivered without waiting for new records.
	interruptPoll context.CancelFunc
}

func newFranzInputFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*franzInput, error) {
	c, err := parseFranzInputConf(conf)
	if err != nil {
		return nil, err
	}
	return newFranzInput(c, mgr), nil
}

func parseFranzInputConf(conf *service.ParsedConfig) (franzInputConf, error) {
	var c franzInputConf
	var err error
	if c.client, err = parseClientConf(conf); err != nil {
		return c, err
	}
	rawTopics, err := conf.FieldStringList(kfiFieldTopics)
	if err != nil {
		return c, err
	}
	c.topics = splitList(rawTopics)
	if len(c.topics) == 0 {
		return c, errors.New("field topics: at least one topic is required")
	}
	regex, err := conf.FieldBool(kfiFieldRegexpTopics)
	if err != nil {
		return c, err
	}
	if regex {
		for _, t := range c.topics {
			if _, err := regexp.Compile(t); err != nil {
				return c, fmt.Errorf("field topics: invalid regular expression %q: %w", t, err)
			}
		}
	}
	if c.group, err = conf.FieldString(kfiFieldConsumerGroup); err != nil {
		return c, err
	}
	if c.group == "" {
		return c, errors.New("field consumer_group: a consumer group is required")
	}
	if c.checkpointLimit, err = conf.FieldInt(kfiFieldCheckpointLimit); err != nil {
		return c, err
	}
	if c.checkpointLimit < 1 {
		return c, fmt.Errorf("field checkpoint_limit: must be at least 1, got %d", c.checkpointLimit)
	}
	if c.batchSize, err = conf.FieldInt(kfiFieldBatchSize); err != nil {
		return c, err
	}
	if c.batchSize < 0 {
		return c, fmt.Errorf("field batch_size: must not be negative, got %d", c.batchSize)
	}
	if c.batchSize == 0 || c.batchSize > c.checkpointLimit {
		c.batchSize = c.checkpointLimit
	}
	if c.commitPeriod, err = conf.FieldDuration(kfiFieldCommitPeriod); err != nil {
		return c, err
	}
	if c.commitPeriod <= 0 {
		return c, errors.New("field commit_period: must be positive")
	}
	oldest, err := conf.FieldBool(kfiFieldStartFromOldest)
	if err != nil {
		return c, err
	}
	fetchMax, err := byteSizeField(conf, kfiFieldFetchMaxBytes)
	if err != nil {
		return c, err
	}
	fetchPartMax, err := byteSizeField(conf, kfiFieldFetchMaxPartitionBytes)
	if err != nil {
		return c, err
	}
	durs := map[string]time.Duration{}
	for _, f := range []string{kfiFieldFetchMaxWait, kfiFieldSessionTimeout, kfiFieldRebalanceTimeout, kfiFieldHeartbeatInterval} {
		d, err := conf.FieldDuration(f)
		if err != nil {
			return c, err
		}
		if d <= 0 {
			return c, fmt.Errorf("field %s: must be positive", f)
		}
		durs[f] = d
	}
	c.drainTimeout = durs[kfiFieldRebalanceTimeout] / 2
	if c.startDelay, err = conf.FieldDuration(kfiFieldPartitionStartDelay); err != nil {
		return c, err
	}
	if c.startDelay < 0 {
		return c, errors.New("field partition_start_delay: must not be negative")
	}

	reset := kgo.NewOffset().AtEnd()
	if oldest {
		reset = kgo.NewOffset().AtStart()
	}
	c.groupOpts = []kgo.Opt{
		kgo.ConsumerGroup(c.group),
		kgo.ConsumeTopics(c.topics...),
		kgo.ConsumeResetOffset(reset),
		kgo.FetchMaxBytes(fetchMax),
		kgo.FetchMaxPartitionBytes(fetchPartMax),
		kgo.FetchMaxWait(durs[kfiFieldFetchMaxWait]),
		kgo.SessionTimeout(durs[kfiFieldSessionTimeout]),
		kgo.RebalanceTimeout(durs[kfiFieldRebalanceTimeout]),
		kgo.HeartbeatInterval(durs[kfiFieldHeartbeatInterval]),
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(c.commitPeriod),
	}
	if regex {
		c.groupOpts = append(c.groupOpts, kgo.ConsumeRegex())
	}
	if c.client.rackID != "" {
		c.groupOpts = append(c.groupOpts, kgo.Rack(c.client.rackID))
	}
	return c, nil
}

// byteSizeField parses a size such as "50MiB" that must fit a Kafka int32.
func byteSizeField(conf *service.ParsedConfig, field string) (int32, error) {
	s, err := conf.FieldString(field)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("field %s: %w", field, err)
	}
	if n == 0 || n > 1<<31-1 {
		return 0, fmt.Errorf("field %s: must be between 1B and 2GiB, got %s", field, s)
	}
	return int32(n), nil
}

func newFranzInput(c franzInputConf, mgr *service.Resources) *franzInput {
	m := mgr.Metrics()
	return &franzInput{
		conf:         c,
		log:          mgr.Logger(),
		mRedelivered: m.NewCounter("kafka_franz_records_redelivered"),
		mReleased:    m.NewCounter("kafka_franz_records_released"),
		mRevoked:     m.NewCounter("kafka_franz_partitions_revoked"),
		mLost:        m.NewCounter("kafka_franz_partitions_lost"),
		mCommitErrs:  m.NewCounter("kafka_franz_commit_errors"),
		parts:        map[topicPartition]*partitionTracker{},
		assignedAt:   map[topicPartition]time.Time{},
		changed:      make(chan struct{}),
	}
}

// Connect joins the consumer group.
func (f *franzInput) Connect(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.client != nil {
		return nil
	}
	opts := append([]kgo.Opt{}, f.conf.client.opts...)
	opts = append(opts, f.conf.groupOpts...)
	opts = append(opts,
		kgo.OnPartitionsAssigned(f.onAssigned),
		kgo.OnPartitionsRevoked(f.onRevoked),
		kgo.OnPartitionsLost(f.onLost),
		kgo.AutoCommitCallback(f.onAutoCommit),
	)
	cl, err := newClient(ctx, opts)
	if err != nil {
		return err
	}
	f.client = cl
	return nil
}

// ReadBatch hands out the next batch of one partition, polling the brokers
// when nothing is queued.
func (f *franzInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	for {
		f.mu.Lock()
		cl := f.client
		if cl == nil {
			f.mu.Unlock()
			return nil, nil, service.ErrNotConnected
		}
		b, wait, queued := f.nextBatchLocked(time.Now())
		changed := f.changed
		f.mu.Unlock()

		if b != nil {
			return b.msgs, func(_ context.Context, err error) error {
				f.ack(b, err)
				return nil
			}, nil
		}
		if queued {
			// Everything queued waits on a checkpoint limit or a back-off.
			if err := waitChange(ctx, changed, wait); err != nil {
				return nil, nil, err
			}
			continue
		}
		if err := f.poll(ctx, cl); err != nil {
			return nil, nil, err
		}
	}
}

// waitChange blocks until changed is closed, wait elapses (when positive) or
// ctx is done.
func waitChange(ctx context.Context, changed <-chan struct{}, wait time.Duration) error {
	var timer <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-changed:
	case <-timer:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// nextBatchLocked removes and returns the first queued batch that may be
// handed out now. Otherwise it reports whether batches are queued and how long
// until the earliest back-off ends (0 when only acks can unblock them).
// Batches of one partition leave the queue in order.
func (f *franzInput) nextBatchLocked(now time.Time) (found *trackedBatch, wait time.Duration, queued bool) {
	blocked := map[*partitionTracker]bool{}
	kept := f.queue[:0]
	for i, qb := range f.queue {
		if found != nil {
			kept = append(kept, f.queue[i:]...)
			break
		}
		p := qb.part
		if p.state != partActive {
			f.releaseLocked(qb, "its partition was revoked before it was processed")
			continue
		}
		if !blocked[p] {
			if d := max(qb.notBefore.Sub(now), p.startAt.Sub(now)); d > 0 {
				blocked[p] = true
				if wait == 0 || d < wait {
					wait = d
				}
			} else if p.inFlight > 0 && p.inFlight+len(qb.msgs) > f.conf.checkpointLimit {
				blocked[p] = true
			} else {
				found = qb
				p.inFlight += len(qb.msgs)
				continue
			}
		}
		kept = append(kept, qb)
	}
	clear(f.queue[len(kept):])
	f.queue = kept
	return found, wait, len(kept) > 0
}

// releaseLocked gives up a batch of a revoked partition: its records will be
// delivered by the partition's new owner from the last committed offset.
func (f *franzInput) releaseLocked(b *trackedBatch, why string) {
	f.mReleased.Incr(int64(len(b.msgs)))
	f.log.Debugf("Released %d records of %s/%d to the new owner: %s", len(b.msgs), b.part.tp.topic, b.part.tp.partition, why)
}

// poll fetches records and queues them as batches of their partitions. A
// nack interrupts it (see ack).
func (f *franzInput) poll(ctx context.Context, cl *kgo.Client) error {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.mu.Lock()
	f.interruptPoll = cancel
	f.mu.Unlock()
	fetches := cl.PollFetches(pctx)
	// BlockRebalanceOnPoll guarantees that the partitions of these records
	// stay ours until AllowRebalance, so they are registered as owned first.
	defer cl.AllowRebalance()
	if fetches.IsClientClosed() {
		return service.ErrNotConnected
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var fetchErr error
	fetches.EachError(func(topic string, partition int32, err error) {
		if fetchErr == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			fetchErr = fmt.Errorf("kafka fetch: %w", err)
			if topic != "" {
				fetchErr = fmt.Errorf("kafka fetch %s/%d: %w", topic, partition, err)
			}
		}
	})

	f.mu.Lock()
	defer f.mu.Unlock()
	f.interruptPoll = nil
	queued := len(f.queue)
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) == 0 {
			return
		}
		tp := topicPartition{ftp.Topic, ftp.Partition}
		p := f.parts[tp]
		if p == nil {
			p = &partitionTracker{tp: tp, startAt: f.assignedAt[tp].Add(f.conf.startDelay)}
			delete(f.assignedAt, tp)
			f.parts[tp] = p
		}
		for recs := ftp.Records; len(recs) > 0; {
			n := min(len(recs), f.conf.batchSize)
			b := &trackedBatch{part: p, msgs: make(service.MessageBatch, n)}
			for i, r := range recs[:n] {
				b.msgs[i] = recordToMessage(r)
			}
			last := recs[n-1]
			b.next = kgo.EpochOffset{Epoch: last.LeaderEpoch, Offset: last.Offset + 1}
			p.batches = append(p.batches, b)
			f.queue = append(f.queue, b)
			recs = recs[n:]
		}
	})
	if len(f.queue) == queued {
		// Nothing fetched: report the error so that Benthos backs off.
		return fetchErr
	}
	return nil
}

// recordToMessage turns a record into a message with its metadata.
func recordToMessage(r *kgo.Record) *service.Message {
	msg := service.NewMessage(r.Value)
	msg.MetaSetMut(metaKey, string(r.Key))
	msg.MetaSetMut(metaTopic, r.Topic)
	msg.MetaSetMut(metaPartition, int(r.Partition))
	msg.MetaSetMut(metaOffset, int(r.Offset))
	msg.MetaSetMut(metaTimestampUnix, r.Timestamp.Unix())
	msg.MetaSetMut(metaTimestampMs, r.Timestamp.UnixMilli())
	msg.MetaSetMut(metaTombstone, r.Value == nil)
	for _, h := range r.Headers {
		msg.MetaSetMut(h.Key, string(h.Value))
	}
	return msg
}

// ack records the outcome of a batch. A success advances the partition's
// commit mark over every contiguous acknowledged batch; a failure queues the
// batch for redelivery. Outcomes of released partitions are ignored: the new
// owner redelivers from the committed offset.
func (f *franzInput) ack(b *trackedBatch, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.broadcastLocked()

	p := b.part
	p.inFlight -= len(b.msgs)
	if p.state == partGone {
		return
	}
	if err != nil {
		if p.state == partDraining {
			f.releaseLocked(b, "it was nacked after its partition was revoked")
			return
		}
		b.attempts++
		b.notBefore = time.Now().Add(nackDelay(b.attempts))
		f.mRedelivered.Incr(int64(len(b.msgs)))
		f.log.Debugf("Redelivering %d records of %s/%d after nack: %v", len(b.msgs), p.tp.topic, p.tp.partition, err)
		f.queue = append([]*trackedBatch{b}, f.queue...)
		if f.interruptPoll != nil {
			f.interruptPoll()
		}
		return
	}
	b.acked = true
	n := 0
	for n < len(p.batches) && p.batches[n].acked {
		n++
	}
	if n == 0 {
		return
	}
	head := p.batches[n-1].next
	clear(p.batches[:n])
	p.batches = p.batches[n:]
	if f.client == nil {
		return // closed: nothing can be committed any more
	}
	f.client.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{p.tp.topic: {p.tp.partition: head}})
}

// nackDelay is the redelivery back-off after the given number of attempts.
func nackDelay(attempts int) time.Duration {
	d := nackBackoffMin << min(attempts-1, 10)
	return min(d, nackBackoffMax)
}

func (f *franzInput) broadcastLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// onAssigned notes when the group gave partitions to this member, for
// partition_start_delay.
func (f *franzInput) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	f.log.Infof("Consuming partitions %v of group %s", assigned, f.conf.group)
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for topic, ps := range assigned {
		for _, p := range ps {
			f.assignedAt[topicPartition{topic, p}] = now
		}
	}
}

// onRevoked runs in franz-go's group loop before revoked partitions move to
// another member: stop handing them out, let in-flight records finish
// (bounded), commit, and release the partitions.
func (f *franzInput) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	parts := f.detach(revoked, partDraining)
	if len(parts) == 0 {
		return
	}
	f.log.Infof("Partitions %v of group %s revoked: finishing their records in flight", revoked, f.conf.group)
	f.mRevoked.Incr(int64(len(parts)))

	drainCtx, cancel := context.WithTimeout(ctx, f.conf.drainTimeout)
	defer cancel()
	for {
		f.mu.Lock()
		inFlight := 0
		for _, p := range parts {
			inFlight += p.inFlight
		}
		changed := f.changed
		f.mu.Unlock()
		if inFlight == 0 || waitChange(drainCtx, changed, 0) != nil {
			break
		}
	}

	f.mu.Lock()
	for _, p := range parts {
		f.releasePartitionLocked(p, false)
	}
	f.mu.Unlock()
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		f.mCommitErrs.Incr(1)
		f.log.Errorf("Failed to commit offsets of revoked partitions: %v", err)
	}
}

// onLost releases partitions the group took away without a revocation
// (fenced or evicted member): committing is no longer possible.
func (f *franzInput) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	parts := f.detach(lost, partGone)
	f.mLost.Incr(int64(len(parts)))
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range parts {
		f.releasePartitionLocked(p, false)
	}
}

// detach removes the named partitions from the owned set and sets their
// state, returning the trackers that existed.
func (f *franzInput) detach(tps map[string][]int32, state partitionState) []*partitionTracker {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.broadcastLocked()
	var parts []*partitionTracker
	for topic, ps := range tps {
		for _, id := range ps {
			tp := topicPartition{topic, id}
			delete(f.assignedAt, tp)
			if p := f.parts[tp]; p != nil {
				p.state = state
				delete(f.parts, tp)
				parts = append(parts, p)
			}
		}
	}
	return parts
}

// releasePartitionLocked forgets a partition for good, counting its records
// still in flight: their new owner redelivers them. Records read but never
// delivered because Benthos was stopping are expected on shutdown, hence
// only logged at info level then.
func (f *franzInput) releasePartitionLocked(p *partitionTracker, shutdown bool) {
	p.state = partGone
	if p.inFlight > 0 {
		f.mReleased.Incr(int64(p.inFlight))
		logf := f.log.Warnf
		if shutdown {
			logf = f.log.Infof
		}
		logf("Partition %s/%d released with %d records unacknowledged: its next owner redelivers them", p.tp.topic, p.tp.partition, p.inFlight)
	}
	p.batches = nil
}

// onAutoCommit reports failed periodic commits.
func (f *franzInput) onAutoCommit(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
	if err == nil && resp != nil {
		err = firstCommitError(resp)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		f.mCommitErrs.Incr(1)
		f.log.Errorf("Failed to commit offsets: %v", err)
	}
}

// firstCommitError returns the first partition-level error of a commit.
func firstCommitError(resp *kmsg.OffsetCommitResponse) error {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, kerr.ErrorForCode(p.ErrorCode))
			}
		}
	}
	return nil
}

// Close commits what was acknowledged and leaves the group. Benthos calls it
// once every pending ack has resolved.
func (f *franzInput) Close(ctx context.Context) error {
	f.mu.Lock()
	cl := f.client
	f.client = nil
	// Every ack that will ever come has come: release the partitions now, so
	// that leaving the group does not wait for batches that Benthos read but
	// never delivered because it was stopping.
	for tp, p := range f.parts {
		f.releasePartitionLocked(p, true)
		delete(f.parts, tp)
	}
	clear(f.queue)
	f.queue = nil
	f.mu.Unlock()
	if cl == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, closeCommitTimeout)
	defer cancel()
	if err := cl.CommitMarkedOffsets(cctx); err != nil {
		f.mCommitErrs.Incr(1)
		f.log.Errorf("Failed to commit offsets on close: %v", err)
	}
	cl.CloseAllowingRebalance()
	return nil
}
