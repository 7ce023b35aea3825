package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/partialnack"
)

// Input field names (Redpanda Connect's, plus batch_size and
// partition_start_delay of this distribution).
const (
	kfiFieldTopics                 = "topics"
	kfiFieldRegexpTopics           = "regexp_topics"
	kfiFieldRegexpInclude          = "regexp_topics_include"
	kfiFieldRegexpExclude          = "regexp_topics_exclude"
	kfiFieldConsumerGroup          = "consumer_group"
	kfiFieldInstanceID             = "instance_id"
	kfiFieldCheckpointLimit        = "checkpoint_limit"
	kfiFieldBatchSize              = "batch_size"
	kfiFieldBatching               = "batching"
	kfiFieldCommitPeriod           = "commit_period"
	kfiFieldStartFromOldest        = "start_from_oldest"
	kfiFieldStartOffset            = "start_offset"
	kfiFieldFetchMaxBytes          = "fetch_max_bytes"
	kfiFieldFetchMinBytes          = "fetch_min_bytes"
	kfiFieldFetchMaxPartitionBytes = "fetch_max_partition_bytes"
	kfiFieldFetchMaxWait           = "fetch_max_wait"
	kfiFieldIsolationLevel         = "transaction_isolation_level"
	kfiFieldSessionTimeout         = "session_timeout"
	kfiFieldRebalanceTimeout       = "rebalance_timeout"
	kfiFieldHeartbeatInterval      = "heartbeat_interval"
	kfiFieldPartitionStartDelay    = "partition_start_delay"
	kfiFieldMultiHeader            = "multi_header"
	kfiFieldTopicLagRefreshPeriod  = "topic_lag_refresh_period"
)

// Values of start_offset and transaction_isolation_level.
const (
	startEarliest   = "earliest"
	startLatest     = "latest"
	startCommitted  = "committed"
	readUncommitted = "read_uncommitted"
	readCommitted   = "read_committed"
)

// Metadata keys set on every consumed message.
const (
	metaKey           = "kafka_key"
	metaTopic         = "kafka_topic"
	metaPartition     = "kafka_partition"
	metaOffset        = "kafka_offset"
	metaLag           = "kafka_lag"
	metaTimestamp     = "kafka_timestamp"
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

// maxWireTimeout is the largest duration Kafka's int32-millisecond timeout
// fields carry (kgo refuses more).
const maxWireTimeout = time.Duration(1<<31-1) * time.Millisecond

func kafkaFranzInputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		Categories("Services").
		Summary("Consumes records from Kafka topics with franz-go, as a consumer group or from explicit partitions, committing offsets only once messages are acknowledged downstream.").
		Description(`
Field names and defaults follow Redpanda Connect's `+"`kafka_franz`"+` input; see docs/kafka.md for the remaining differences.

### Delivery and ordering

With `+"`consumer_group`"+` the input joins the group and the brokers spread the partitions of the topics among
its members. Without it, the input consumes every partition of `+"`topics`"+` (or the explicit partitions
`+"`topic:partition`"+`, `+"`topic:first-last`"+`, `+"`topic:partition:offset`"+`) and commits nothing: acknowledged offsets
are tracked in memory only, and a restart begins again at `+"`start_offset`"+` (or the offsets given).

Records of one partition are handed to the pipeline in offset order, as batches of at most `+"`batch_size`"+` records or
as the `+"`batching`"+` policy forms them; at most `+"`checkpoint_limit`"+` records of one partition are in flight at once.
An offset is committed only once its message and every earlier message of the partition are acknowledged by the
output (at-least-once). Nacked batches are redelivered with a back-off, ahead of the partition's later records
(`+"`auto_replay_nacks: true`"+`, the default); a nack whose failures all say how long to wait (the `+"`amplitude`"+`
output's `+"`deferred`"+` events: when their hot device's backlog will have been sent) waits at least the shortest of
them, so that a hot device's records are not redelivered many times before their turn. A nack that names the messages that failed (a batch error, as the
`+"`amplitude`"+` output returns) redelivers only those, and the records before the first of them are committed: a
partition that moves meanwhile resumes at that first failed record. Messages a processor filtered out, or whose
fate the error does not tell, count as failed. With `+"`auto_replay_nacks: false`"+` a nacked batch is dropped, as in
Redpanda Connect: counted in `+"`kafka_franz_records_dropped_total`"+`, logged, and its offsets may then be committed.

When a partition is revoked (another instance joins or leaves the group), the input stops handing out its records,
waits up to half of `+"`rebalance_timeout`"+` for the records in flight to be acknowledged, commits, and only
then lets the partition move. The new owner therefore starts exactly after the last acknowledged record, and two
instances never process the same partition at the same time. Records still unacknowledged after that wait are left
to the new owner (counted in `+"`kafka_franz_records_released_total`"+`); their late acknowledgements are ignored.
Each message carries its partition's context, cancelled as soon as the partition is revoked or lost, or the
stream starts stopping: an output that has not sent a record yet may then give it up (nack) instead of sending it
next to its new owner. The `+"`amplitude`"+` output does, so a paced backlog neither delays a hand-over nor a
graceful stop.

### Metadata

Each message carries `+"`kafka_key`, `kafka_topic`, `kafka_partition`, `kafka_offset`, `kafka_lag`, `kafka_timestamp`, `kafka_timestamp_unix`, `kafka_timestamp_ms`, `kafka_tombstone_message`"+`
and every record header under its own name (a list of values with `+"`multi_header`"+`). `+"`kafka_lag`"+` is the
number of records of the partition after this one when it was fetched (high watermark - offset - 1).

### Metrics

`+"`kafka_franz_records_redelivered_total`"+` (nacked records queued again), `+"`kafka_franz_records_dropped_total`"+`
(nacked records dropped with `+"`auto_replay_nacks: false`"+`), `+"`kafka_franz_records_released_total`"+`
(records of revoked partitions left to their new owner), `+"`kafka_franz_partitions_revoked_total`, `kafka_franz_partitions_lost_total`"+`,
`+"`kafka_franz_commit_errors_total`"+`, and the gauge `+"`redpanda_lag`"+` (labels `+"`topic`, `partition`"+`, as Redpanda Connect
names it): records after the acknowledged mark of each partition, refreshed every `+"`topic_lag_refresh_period`"+`.`).
		Fields(clientFields()...).
		Fields(
			service.NewStringListField(kfiFieldTopics).
				Description("Topics to consume. Items that contain commas are split into several topics. Without `consumer_group`, an item may name explicit partitions: `foo:0` (partition 0), `foo:0-3` (partitions 0 to 3) or `foo:0:42` (partition 0 from offset 42).").
				Optional().
				Example([]string{"currents"}).
				Example([]string{"currents-eu,currents-us"}).
				Example([]string{"currents:0", "currents:1:1000"}),
			service.NewBoolField(kfiFieldRegexpTopics).
				Description("Deprecated: use `regexp_topics_include`. Whether the topics are regular expressions matched against every topic of the cluster.").
				Default(false).
				Advanced().
				Deprecated(),
			service.NewStringListField(kfiFieldRegexpInclude).
				Description("Regular expressions of the topics to consume, matched against every topic of the cluster (re-evaluated every `metadata_max_age`). Instead of `topics`.").
				Optional().
				Example([]string{"currents-.*"}),
			service.NewStringListField(kfiFieldRegexpExclude).
				Description("Regular expressions of topics never to consume, applied after `regexp_topics_include`.").
				Optional().
				Example([]string{"currents-dlq.*"}),
			service.NewStringField(kfiFieldConsumerGroup).
				Description("The consumer group whose members share the partitions and whose committed offsets record progress. Without it nothing is committed and explicit partitions may be listed in `topics`.").
				Optional().
				Example("currents-to-amplitude"),
			service.NewStringField(kfiFieldInstanceID).
				Description("A static group membership id (KIP-345), unique per member: a restart within `session_timeout` keeps the partitions without a rebalance. Such a member does not leave the group on close.").
				Default("").
				Example("delivery-0").
				Advanced(),
			service.NewIntField(kfiFieldCheckpointLimit).
				Description("The maximum number of records of one partition in flight (handed out and not yet acknowledged). Lower values mean fewer redeliveries after a crash; higher values let several batches of a partition be processed in parallel.").
				Default(1024).
				Example(100).
				Advanced(),
			service.NewIntField(kfiFieldBatchSize).
				Description("This distribution's addition: the maximum number of records of one partition delivered as one message batch when `batching` is not set. 0 means all records fetched for the partition, up to `checkpoint_limit` (Redpanda Connect delivers one record per batch without `batching`: set 1 for that). Batches reach the output whole when it has no batching policy of its own, which keeps per-message dead-letter routing exact.").
				Default(0).
				Example(500),
			service.NewBatchPolicyField(kfiFieldBatching).
				Description("A batching policy applied per partition, so that batches keep the partition's order. When set, `batch_size` must stay 0.").
				Advanced(),
			service.NewDurationField(kfiFieldCommitPeriod).
				Description("How often acknowledged offsets are committed to the group. Offsets are also committed on revocation and shutdown.").
				Default("5s").
				Example("1s").
				Advanced(),
			service.NewBoolField(kfiFieldStartFromOldest).
				Description("Deprecated: use `start_offset`. When `start_offset` is not set, whether a partition without a committed offset starts at its oldest record (`true`, earliest) or its newest (`false`, latest).").
				Default(true).
				Example(false).
				Advanced().
				Deprecated(),
			service.NewStringAnnotatedEnumField(kfiFieldStartOffset, map[string]string{
				startEarliest:  "Start at the oldest record (Kafka's `auto.offset.reset=earliest`).",
				startLatest:    "Start at the next record written (`auto.offset.reset=latest`).",
				startCommitted: "Consume only partitions with a committed offset (`auto.offset.reset=none`); needs `consumer_group`.",
			}).
				Description("Where a partition without a committed offset starts, and where consumption restarts after an out-of-range offset. Redpanda Connect's default is `earliest`; when the field is absent here, `start_from_oldest` decides (true by default, hence earliest).").
				Optional().
				Example(startLatest).
				Advanced(),
			service.NewStringField(kfiFieldFetchMaxBytes).
				Description("The maximum number of bytes a broker returns for one fetch request (`fetch.max.bytes`).").
				Default("50MiB").
				Example("100MiB").
				Advanced(),
			service.NewStringField(kfiFieldFetchMinBytes).
				Description("The minimum number of bytes a broker accumulates before it answers a fetch (`fetch.min.bytes`), waiting at most `fetch_max_wait`.").
				Default("1B").
				Example("64KiB").
				Advanced(),
			service.NewStringField(kfiFieldFetchMaxPartitionBytes).
				Description("The maximum number of bytes a broker returns for one partition of a fetch request (`max.partition.fetch.bytes`).").
				Default("1MiB").
				Example("10MiB").
				Advanced(),
			service.NewDurationField(kfiFieldFetchMaxWait).
				Description("How long a broker may wait to accumulate `fetch_min_bytes` for a fetch response (`fetch.max.wait.ms`).").
				Default("5s").
				Example("500ms").
				Advanced(),
			service.NewStringAnnotatedEnumField(kfiFieldIsolationLevel, map[string]string{
				readUncommitted: "Records of open and aborted transactions are consumed too.",
				readCommitted:   "Only records of committed transactions (and non-transactional ones) are consumed.",
			}).
				Description("Which transactional records are consumed.").
				Default(readUncommitted).
				Example(readCommitted),
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
				Description("How often a member tells the group it is alive; at most a third of `session_timeout`.").
				Default("3s").
				Example("1s").
				Advanced(),
			service.NewDurationField(kfiFieldPartitionStartDelay).
				Description("This distribution's addition: how long a partition newly assigned to this member waits before its first records are handed out. Set it to the window of a per-key rate limit downstream (`1s` for `device_rate_limit`): the previous owner sent its last records before the partition moved, so no window then holds records of two members and the limit holds across the group.").
				Default("0s").
				Example("1s"),
			service.NewBoolField(kfiFieldMultiHeader).
				Description("Whether each header becomes a list of all its values (headers may repeat) instead of its last value.").
				Default(false).
				Example(true).
				Advanced(),
			service.NewDurationField(kfiFieldTopicLagRefreshPeriod).
				Description("How often the `redpanda_lag` gauge is refreshed from the partitions' end offsets.").
				Default("5s").
				Example("30s").
				Advanced(),
			service.NewAutoRetryNacksToggleField(),
			service.NewForceTimelyNacksField(),
		).
		LintRule(`
let parts = this.topics.or([]).any(t -> t.contains(":"))
let regex = this.regexp_topics.or(false) || this.regexp_topics_include.or([]).length() > 0
root = [
  if $parts && this.consumer_group.or("") != "" { "explicit topic partitions cannot be consumed in a consumer group" },
  if $parts && $regex { "explicit topic partitions cannot be combined with regular expression topics" },
  if this.topics.or([]).length() == 0 && this.regexp_topics_include.or([]).length() == 0 { "either topics or regexp_topics_include must be set" },
  if this.topics.or([]).length() > 0 && this.regexp_topics_include.or([]).length() > 0 { "topics and regexp_topics_include cannot both be set" },
]
`+saslLintRule).
		Example("Consume Currents events", "Joins the group `currents-to-amplitude` and consumes the topic `braze-currents`.", `
input:
  kafka_franz:
    seed_brokers: [ "${KAFKA_BROKERS:localhost:9092}" ]
    topics: [ braze-currents ]
    consumer_group: currents-to-amplitude
    batch_size: 500
`).
		Example("Replay two partitions", "Reads partitions 0 and 1 of `braze-currents` from offset 1000 without a group (nothing is committed).", `
input:
  kafka_franz:
    seed_brokers: [ "${KAFKA_BROKERS:localhost:9092}" ]
    topics: [ "braze-currents:0:1000", "braze-currents:1:1000" ]
`)
}

func init() {
	service.MustRegisterBatchInput("kafka_franz", kafkaFranzInputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
			in, err := newFranzInputFromParsed(conf, mgr)
			if err != nil {
				return nil, err
			}
			return service.ForceTimelyNacksBatched(conf, in)
		})
}

type franzInputConf struct {
	client          *clientConf
	topics          topicSelection
	group           string
	checkpointLimit int
	batchSize       int
	batching        service.BatchPolicy
	commitPeriod    time.Duration
	drainTimeout    time.Duration
	startDelay      time.Duration
	lagPeriod       time.Duration
	multiHeader     bool
	replayNacks     bool
	isolation       int8
	consumerOpts    []kgo.Opt
}

type franzInput struct {
	conf franzInputConf
	log  *service.Logger
	clk  clock.Clock
	// newBatcher, set with a batching policy, gives each partition its own
	// batcher.
	newBatcher func() (*service.Batcher, error)

	mRedelivered *service.MetricCounter
	mDropped     *service.MetricCounter
	mReleased    *service.MetricCounter
	mRevoked     *service.MetricCounter
	mLost        *service.MetricCounter
	mCommitErrs  *service.MetricCounter
	mLag         *service.MetricGauge

	mu     sync.Mutex
	client *kgo.Client
	// stopLag ends the lag refresher of the current client.
	stopLag context.CancelFunc
	// readCtx is the context of the last ReadBatch call; unwatchRead stops
	// the watch that withdraws the records in flight when it ends.
	readCtx     context.Context
	unwatchRead func() bool
	parts       map[topicPartition]*partitionTracker
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
	f := newFranzInput(c, mgr, clock.System)
	if !c.batching.IsNoop() {
		if _, err := c.batching.NewBatcher(mgr); err != nil {
			return nil, fmt.Errorf("field batching: %w", err)
		}
		f.newBatcher = func() (*service.Batcher, error) { return c.batching.NewBatcher(mgr) }
	}
	return f, nil
}

// intLimit bounds an integer field, as kgo's config validation bounds its
// limits: the value must lie in [min, max] (max 0: unbounded).
type intLimit struct {
	field    string
	min, max int64
}

// byteLimit is an intLimit on a size field such as "50MiB".
type byteLimit = intLimit

// configCheck is a cross-field rule: when bad, the component is refused
// with msg.
type configCheck struct {
	bad bool
	msg string
}

func parseFranzInputConf(conf *service.ParsedConfig) (franzInputConf, error) {
	var c franzInputConf
	var err error
	if c.client, err = parseClientConf(conf); err != nil {
		return c, err
	}
	ints, err := intFields(conf, []intLimit{
		{kfiFieldCheckpointLimit, 1, 0},
		{kfiFieldBatchSize, 0, 0},
	})
	if err != nil {
		return c, err
	}
	sizes, err := byteFields(conf, []byteLimit{
		{kfiFieldFetchMaxBytes, 1, 1<<31 - 1},
		{kfiFieldFetchMinBytes, 1, 1<<31 - 1},
		{kfiFieldFetchMaxPartitionBytes, 1, 1<<31 - 1},
	})
	if err != nil {
		return c, err
	}
	durs, err := durationFields(conf, []durationLimit{
		{kfiFieldCommitPeriod, time.Millisecond, 0},
		// The bounds kgo's own validation enforces.
		{kfiFieldFetchMaxWait, 10 * time.Millisecond, maxWireTimeout},
		{kfiFieldSessionTimeout, 100 * time.Millisecond, maxWireTimeout},
		{kfiFieldRebalanceTimeout, 100 * time.Millisecond, maxWireTimeout},
		{kfiFieldHeartbeatInterval, time.Millisecond, maxWireTimeout},
		{kfiFieldPartitionStartDelay, 0, 0},
		{kfiFieldTopicLagRefreshPeriod, 100 * time.Millisecond, 0},
	})
	if err != nil {
		return c, err
	}
	c.checkpointLimit, c.batchSize = int(ints[kfiFieldCheckpointLimit]), int(ints[kfiFieldBatchSize])
	c.commitPeriod = durs[kfiFieldCommitPeriod]
	c.drainTimeout = durs[kfiFieldRebalanceTimeout] / 2
	c.startDelay = durs[kfiFieldPartitionStartDelay]
	c.lagPeriod = durs[kfiFieldTopicLagRefreshPeriod]

	strs := map[string]string{}
	for _, f := range []string{kfiFieldInstanceID, kfiFieldIsolationLevel} {
		if strs[f], err = conf.FieldString(f); err != nil {
			return c, err
		}
	}
	for _, f := range []string{kfiFieldConsumerGroup, kfiFieldStartOffset} {
		if conf.Contains(f) {
			if strs[f], err = conf.FieldString(f); err != nil {
				return c, err
			}
		}
	}
	c.group = strs[kfiFieldConsumerGroup]
	bools := map[string]bool{}
	for _, f := range []string{kfiFieldRegexpTopics, kfiFieldStartFromOldest, kfiFieldMultiHeader, service.AutoRetryNacksToggleFieldName} {
		if bools[f], err = conf.FieldBool(f); err != nil {
			return c, err
		}
	}
	c.multiHeader, c.replayNacks = bools[kfiFieldMultiHeader], bools[service.AutoRetryNacksToggleFieldName]
	lists := map[string][]string{}
	for _, f := range []string{kfiFieldTopics, kfiFieldRegexpInclude, kfiFieldRegexpExclude} {
		if conf.Contains(f) {
			raw, err := conf.FieldStringList(f)
			if err != nil {
				return c, err
			}
			lists[f] = splitList(raw)
		}
	}
	if c.batching, err = conf.FieldBatchPolicy(kfiFieldBatching); err != nil {
		return c, err
	}

	startOffset := strs[kfiFieldStartOffset]
	explicitStart := startOffset != ""
	if !explicitStart {
		startOffset = startLatest
		if bools[kfiFieldStartFromOldest] {
			startOffset = startEarliest
		}
	}
	reset := map[string]kgo.Offset{
		startEarliest:  kgo.NewOffset().AtStart(),
		startLatest:    kgo.NewOffset().AtEnd(),
		startCommitted: kgo.NewOffset().AtCommitted(),
	}[startOffset]

	topics, parts, err := parseTopics(lists[kfiFieldTopics], reset)
	if err != nil {
		return c, fmt.Errorf("field topics: %w", err)
	}
	regex := bools[kfiFieldRegexpTopics] || len(lists[kfiFieldRegexpInclude]) > 0
	for _, check := range []configCheck{
		{len(topics) == 0 && len(parts) == 0 && len(lists[kfiFieldRegexpInclude]) == 0, "either topics or regexp_topics_include must be set"},
		{len(lists[kfiFieldTopics]) > 0 && len(lists[kfiFieldRegexpInclude]) > 0, "topics and regexp_topics_include cannot both be set"},
		{len(parts) > 0 && c.group != "", "explicit topic partitions cannot be consumed in a consumer group (field consumer_group)"},
		{len(parts) > 0 && regex, "explicit topic partitions cannot be combined with regular expression topics"},
		{len(lists[kfiFieldRegexpExclude]) > 0 && !regex, "regexp_topics_exclude needs regular expression topics (regexp_topics_include)"},
		{startOffset == startCommitted && c.group == "", "start_offset committed needs a consumer_group"},
		{explicitStart && startOffset == startEarliest && !bools[kfiFieldStartFromOldest], "start_from_oldest cannot be false when start_offset is earliest"},
		{strs[kfiFieldInstanceID] != "" && c.group == "", "instance_id needs a consumer_group"},
		{!c.batching.IsNoop() && c.batchSize != 0, "batch_size must be 0 when a batching policy is set"},
		{durs[kfiFieldHeartbeatInterval] >= durs[kfiFieldSessionTimeout], "heartbeat_interval must be shorter than session_timeout"},
		{sizes[kfiFieldFetchMinBytes] > sizes[kfiFieldFetchMaxBytes], "fetch_min_bytes must not exceed fetch_max_bytes"},
	} {
		if check.bad {
			return c, errors.New(check.msg)
		}
	}
	if regex {
		for _, f := range []string{kfiFieldTopics, kfiFieldRegexpInclude, kfiFieldRegexpExclude} {
			if err := checkRegexps(f, lists[f]); err != nil {
				return c, err
			}
		}
	}
	c.topics = topicSelection{topics: topics, regex: regex, exclude: lists[kfiFieldRegexpExclude], partitions: parts}
	if len(lists[kfiFieldRegexpInclude]) > 0 {
		c.topics.topics = lists[kfiFieldRegexpInclude]
	}
	if c.batchSize == 0 || c.batchSize > c.checkpointLimit {
		c.batchSize = c.checkpointLimit
	}

	isolation := kgo.ReadUncommitted()
	if strs[kfiFieldIsolationLevel] == readCommitted {
		isolation, c.isolation = kgo.ReadCommitted(), 1
	}
	c.consumerOpts = append(c.topics.opts(),
		kgo.ConsumeResetOffset(reset),
		kgo.FetchMaxBytes(int32(sizes[kfiFieldFetchMaxBytes])),
		kgo.FetchMinBytes(int32(sizes[kfiFieldFetchMinBytes])),
		kgo.FetchMaxPartitionBytes(int32(sizes[kfiFieldFetchMaxPartitionBytes])),
		kgo.FetchMaxWait(durs[kfiFieldFetchMaxWait]),
		kgo.FetchIsolationLevel(isolation),
	)
	if c.client.rackID != "" {
		c.consumerOpts = append(c.consumerOpts, kgo.Rack(c.client.rackID))
	}
	if c.group != "" {
		c.consumerOpts = append(c.consumerOpts,
			kgo.ConsumerGroup(c.group),
			kgo.SessionTimeout(durs[kfiFieldSessionTimeout]),
			kgo.RebalanceTimeout(durs[kfiFieldRebalanceTimeout]),
			kgo.HeartbeatInterval(durs[kfiFieldHeartbeatInterval]),
			kgo.BlockRebalanceOnPoll(),
			kgo.AutoCommitMarks(),
			kgo.AutoCommitInterval(c.commitPeriod),
		)
		if id := strs[kfiFieldInstanceID]; id != "" {
			c.consumerOpts = append(c.consumerOpts, kgo.InstanceID(id))
		}
	}
	return c, nil
}

// intFields reads and checks the named integer fields.
func intFields(conf *service.ParsedConfig, limits []intLimit) (map[string]int64, error) {
	out := make(map[string]int64, len(limits))
	for _, l := range limits {
		n, err := conf.FieldInt(l.field)
		if err != nil {
			return nil, err
		}
		if err := l.check(int64(n), fmt.Sprint(n)); err != nil {
			return nil, err
		}
		out[l.field] = int64(n)
	}
	return out, nil
}

// byteFields reads and checks the named size fields ("50MiB").
func byteFields(conf *service.ParsedConfig, limits []byteLimit) (map[string]int64, error) {
	out := make(map[string]int64, len(limits))
	for _, l := range limits {
		s, err := conf.FieldString(l.field)
		if err != nil {
			return nil, err
		}
		n, err := humanize.ParseBytes(s)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", l.field, err)
		}
		if n > 1<<62 {
			return nil, fmt.Errorf("field %s: %s is too large", l.field, s)
		}
		if err := l.check(int64(n), s); err != nil {
			return nil, err
		}
		out[l.field] = int64(n)
	}
	return out, nil
}

// check refuses a value outside the limit, quoting it as written.
func (l intLimit) check(v int64, written string) error {
	if v < l.min || (l.max > 0 && v > l.max) {
		if l.max > 0 {
			return fmt.Errorf("field %s: %s is outside [%d, %d]", l.field, written, l.min, l.max)
		}
		return fmt.Errorf("field %s: %s is below the minimum %d", l.field, written, l.min)
	}
	return nil
}

func newFranzInput(c franzInputConf, mgr *service.Resources, clk clock.Clock) *franzInput {
	m := mgr.Metrics()
	return &franzInput{
		conf:         c,
		log:          mgr.Logger(),
		clk:          clock.OrSystem(clk),
		mRedelivered: m.NewCounter("kafka_franz_records_redelivered_total"),
		mDropped:     m.NewCounter("kafka_franz_records_dropped_total"),
		mReleased:    m.NewCounter("kafka_franz_records_released_total"),
		mRevoked:     m.NewCounter("kafka_franz_partitions_revoked_total"),
		mLost:        m.NewCounter("kafka_franz_partitions_lost_total"),
		mCommitErrs:  m.NewCounter("kafka_franz_commit_errors_total"),
		mLag:         m.NewGauge("redpanda_lag", "topic", "partition"),
		parts:        map[topicPartition]*partitionTracker{},
		assignedAt:   map[topicPartition]time.Time{},
		changed:      make(chan struct{}),
	}
}

// Connect creates the client: it joins the consumer group, or starts
// consuming the topics or partitions directly.
func (f *franzInput) Connect(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.client != nil {
		return nil
	}
	opts := append([]kgo.Opt{}, f.conf.client.opts...)
	opts = append(opts, f.conf.consumerOpts...)
	if f.conf.group != "" {
		opts = append(opts,
			kgo.OnPartitionsAssigned(f.onAssigned),
			kgo.OnPartitionsRevoked(f.onRevoked),
			kgo.OnPartitionsLost(f.onLost),
			kgo.AutoCommitCallback(f.onAutoCommit),
		)
	}
	cl, err := newClient(ctx, opts)
	if err != nil {
		return err
	}
	f.client = cl
	lagCtx, stop := context.WithCancel(context.Background())
	f.stopLag = stop
	go f.runLag(lagCtx, cl)
	return nil
}

// ReadBatch hands out the next batch of one partition, polling the brokers
// when nothing is queued.
func (f *franzInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	// Benthos reads with one context that it cancels when the stream starts
	// stopping, whether or not a read is in progress: from then on, withdraw
	// what is in flight, so that the output does not keep sending a paced
	// backlog that the next owner (or the next run) re-reads from the
	// committed offset anyway, and hand out nothing more.
	f.watchReadContext(ctx)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return f.readBatch(ctx)
}

// watchReadContext withdraws every record in flight once ctx, the context
// ReadBatch is called with, ends.
func (f *franzInput) watchReadContext(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ctx == f.readCtx {
		return
	}
	if f.unwatchRead != nil {
		f.unwatchRead()
	}
	f.readCtx = ctx
	f.unwatchRead = context.AfterFunc(ctx, func() { f.withdrawAll(ErrStopping) })
}

// withdrawAll cancels the context of every owned partition's records.
func (f *franzInput) withdrawAll(cause error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.parts {
		p.cancel(cause)
	}
}

func (f *franzInput) readBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	for {
		f.mu.Lock()
		cl := f.client
		if cl == nil {
			f.mu.Unlock()
			return nil, nil, service.ErrNotConnected
		}
		flushIn := f.flushDueLocked()
		b, wait, queued := f.nextBatchLocked(f.clk.Now())
		changed := f.changed
		f.mu.Unlock()

		if b != nil {
			// A shallow copy: processors replace the bytes of what they are
			// given, and a nacked batch must be redelivered as it was read.
			// Indexed, so that a nack naming the messages that failed is
			// traced back to them (see partialnack.Failed).
			out := b.msgs.Copy()
			ix := out.Index()
			return out, func(_ context.Context, err error) error {
				f.settle(b, err, partialnack.Failed(ix, len(out), err))
				return nil
			}, nil
		}
		if flushIn > 0 && (wait == 0 || flushIn < wait) {
			wait = flushIn
		}
		if queued {
			// Everything queued waits on a checkpoint limit or a back-off.
			if err := waitChange(ctx, f.clk, changed, wait); err != nil {
				return nil, nil, err
			}
			continue
		}
		if err := f.poll(ctx, cl, flushIn); err != nil {
			return nil, nil, err
		}
	}
}

// poll fetches records and queues them as batches of their partitions. A
// nack interrupts it (see ack); so does the next batching flush, after
// flushIn (when positive).
func (f *franzInput) poll(ctx context.Context, cl *kgo.Client, flushIn time.Duration) error {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if flushIn > 0 {
		t := f.clk.NewTimer(flushIn)
		defer t.Stop()
		go func() {
			select {
			case <-t.C():
				cancel()
			case <-pctx.Done():
			}
		}()
	}
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
	got := false
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) > 0 {
			got = true
			f.addFetchLocked(ftp)
		}
	})
	if !got {
		// Nothing fetched: report the error so that Benthos backs off.
		return fetchErr
	}
	return nil
}

// recordToMessage turns a record into a message with its metadata and the
// partition's context; hwm is the partition's high watermark in the fetch
// that returned it.
func (f *franzInput) recordToMessage(ctx context.Context, r *kgo.Record, hwm int64) *service.Message {
	msg := service.NewMessage(r.Value).WithContext(ctx)
	msg.MetaSetMut(metaKey, string(r.Key))
	msg.MetaSetMut(metaTopic, r.Topic)
	msg.MetaSetMut(metaPartition, int(r.Partition))
	msg.MetaSetMut(metaOffset, int(r.Offset))
	msg.MetaSetMut(metaLag, max(hwm-r.Offset-1, 0))
	msg.MetaSetMut(metaTimestamp, r.Timestamp.Format(time.RFC3339Nano))
	msg.MetaSetMut(metaTimestampUnix, r.Timestamp.Unix())
	msg.MetaSetMut(metaTimestampMs, r.Timestamp.UnixMilli())
	msg.MetaSetMut(metaTombstone, r.Value == nil)
	if !f.conf.multiHeader {
		for _, h := range r.Headers {
			msg.MetaSetMut(h.Key, string(h.Value))
		}
		return msg
	}
	lists := map[string][]any{}
	for _, h := range r.Headers {
		lists[h.Key] = append(lists[h.Key], string(h.Value))
	}
	for k, vs := range lists {
		msg.MetaSetMut(k, vs)
	}
	return msg
}

// Close commits what was acknowledged (in a consumer group) and closes the
// client. Benthos calls it once every pending ack has resolved.
func (f *franzInput) Close(ctx context.Context) error {
	f.mu.Lock()
	cl := f.client
	f.client = nil
	if f.unwatchRead != nil {
		f.unwatchRead()
		f.unwatchRead = nil
	}
	if f.stopLag != nil {
		f.stopLag()
		f.stopLag = nil
	}
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
	if f.conf.group != "" {
		cctx, cancel := context.WithTimeout(ctx, closeCommitTimeout)
		defer cancel()
		if err := cl.CommitMarkedOffsets(cctx); err != nil {
			f.mCommitErrs.Incr(1)
			f.log.Errorf("Failed to commit offsets on close: %v", err)
		}
	}
	cl.CloseAllowingRebalance()
	return nil
}
