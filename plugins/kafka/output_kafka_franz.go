package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Output field names (Redpanda Connect's).
const (
	kfoFieldTopic                  = "topic"
	kfoFieldKey                    = "key"
	kfoFieldPartitioner            = "partitioner"
	kfoFieldPartition              = "partition"
	kfoFieldMetadata               = "metadata"
	kfoFieldTimestamp              = "timestamp"
	kfoFieldTimestampMs            = "timestamp_ms"
	kfoFieldIdempotentWrite        = "idempotent_write"
	kfoFieldAcks                   = "acks"
	kfoFieldCompression            = "compression"
	kfoFieldAllowAutoTopicCreation = "allow_auto_topic_creation"
	kfoFieldTimeout                = "timeout"
	kfoFieldMaxMessageBytes        = "max_message_bytes"
	kfoFieldBrokerWriteMaxBytes    = "broker_write_max_bytes"
	kfoFieldMaxBufferedRecords     = "max_buffered_records"
	kfoFieldMaxBufferedBytes       = "max_buffered_bytes"
	kfoFieldMaxInFlightRequests    = "max_in_flight_requests"
	kfoFieldRecordRetries          = "record_retries"
	kfoFieldRecordDeliveryTimeout  = "record_delivery_timeout"
	kfoFieldBatching               = "batching"
)

// Partitioners accepted by the partitioner field.
const (
	partMurmur2     = "murmur2_hash"
	partRoundRobin  = "round_robin"
	partLeastBackup = "least_backup"
	partManual      = "manual"
)

// Values of the acks field.
const (
	acksAll    = "all"
	acksLeader = "leader"
	acksNone   = "none"
)

var compressionCodecs = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"gzip":   kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
}

var requiredAcks = map[string]kgo.Acks{
	acksAll:    kgo.AllISRAcks(),
	acksLeader: kgo.LeaderAck(),
	acksNone:   kgo.NoAck(),
}

func kafkaFranzOutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		Categories("Services").
		Summary("Writes messages to Kafka topics with franz-go, acknowledging them only once Kafka has acknowledged the records.").
		Description(`
Field names and defaults follow Redpanda Connect's `+"`kafka_franz`"+` output; see docs/kafka.md for the remaining differences.

With the default `+"`acks: all`"+` a message is acknowledged only when every in-sync replica has the record
(`+"`leader`"+` and `+"`none`"+` acknowledge earlier and can lose acknowledged messages). A record Kafka refuses fails only
its own message, so `+"`fallback`"+` or `+"`switch`"+` outputs route exactly that message, with the reason, to a dead-letter
output. Records with the same key always go to the same partition (`+"`murmur2_hash`"+`, as Kafka's Java client does, when
`+"`partitioner`"+` is not set), which keeps a device's events in order and on one consumer of a group.

Metrics: `+"`kafka_franz_produce_failed_total`"+` (messages Kafka refused or that could not be built, label `+"`reason`"+`).`+
			service.OutputPerformanceDocs(true, true)).
		Fields(clientFields()...).
		Fields(
			service.NewInterpolatedStringField(kfoFieldTopic).
				Description("The topic to write to.").
				Example("braze-currents").
				Example(`${! @kafka_topic }`),
			service.NewInterpolatedStringField(kfoFieldKey).
				Description("The record key. Records with the same key land on the same partition. An empty result writes a record without key.").
				Optional().
				Example(`${! this.user.device_id }`),
			service.NewStringAnnotatedEnumField(kfoFieldPartitioner, map[string]string{
				partMurmur2:     "Keyed records hashed with murmur2 like Kafka's Java client; records without key spread in sticky batches.",
				partRoundRobin:  "Records spread evenly over partitions, ignoring keys.",
				partLeastBackup: "Records go to the partition with the fewest buffered records, ignoring keys.",
				partManual:      "The partition comes from the `partition` field.",
			}).
				Description("How records are assigned to partitions. When not set, `murmur2_hash`.").
				Optional().
				Example(partManual).
				Advanced(),
			service.NewInterpolatedStringField(kfoFieldPartition).
				Description("The partition to write to when `partitioner` is `manual`: an integer.").
				Optional().
				Example(`${! @kafka_partition }`).
				Advanced(),
			service.NewMetadataFilterField(kfoFieldMetadata).
				Description("Which metadata keys are written as record headers.").
				Optional().
				Example(map[string]any{"include_prefixes": []string{"braze_"}}),
			service.NewInterpolatedStringField(kfoFieldTimestamp).
				Description("Deprecated: use `timestamp_ms`. The record timestamp in Unix seconds; empty means the time of writing.").
				Optional().
				Example(`${! timestamp_unix() }`).
				Advanced().
				Deprecated(),
			service.NewInterpolatedStringField(kfoFieldTimestampMs).
				Description("The record timestamp in Unix milliseconds; when not set, the time of writing.").
				Optional().
				Example(`${! timestamp_unix_milli() }`).
				Example(`${! @kafka_timestamp_ms }`).
				Advanced(),
			service.NewBoolField(kfoFieldIdempotentWrite).
				Description("Whether to use idempotent producing, which prevents duplicates from producer retries. Requires IDEMPOTENT_WRITE permission on the cluster, `acks: all` and `max_in_flight_requests: 1`.").
				Default(true).
				Example(false).
				Advanced(),
			service.NewStringAnnotatedEnumField(kfoFieldAcks, map[string]string{
				acksAll:    "Every in-sync replica has the record (acks=-1). Required by idempotent_write.",
				acksLeader: "The partition leader has the record (acks=1): lost if the leader fails before replicating it.",
				acksNone:   "No acknowledgement (acks=0): messages are acknowledged as soon as they are sent and may be lost.",
			}).
				Description("What the brokers confirm before a record counts as written.").
				Default(acksAll).
				Example(acksLeader).
				Advanced(),
			service.NewStringEnumField(kfoFieldCompression, "none", "gzip", "snappy", "lz4", "zstd").
				Description("The compression codec of record batches. When not set, snappy where the brokers support it, otherwise none.").
				Optional().
				Example("zstd"),
			service.NewBoolField(kfoFieldAllowAutoTopicCreation).
				Description("Whether a topic that does not exist is created by the brokers (when their `auto.create.topics.enable` allows it) on first use.").
				Default(true).
				Example(false).
				Advanced(),
			service.NewDurationField(kfoFieldTimeout).
				Description("How long to wait for Kafka to acknowledge a batch before its messages fail and are retried; also the produce request timeout.").
				Default("10s").
				Example("30s"),
			service.NewStringField(kfoFieldMaxMessageBytes).
				Description("The maximum size of a record batch sent to a partition; it must not exceed the topic's `max.message.bytes`.").
				Default("1MiB").
				Example("4MiB").
				Advanced(),
			service.NewStringField(kfoFieldBrokerWriteMaxBytes).
				Description("The maximum size of one request to a broker; it must not exceed the broker's `socket.request.max.bytes`.").
				Default("100MiB").
				Example("50MiB").
				Advanced(),
			service.NewIntField(kfoFieldMaxBufferedRecords).
				Description("The maximum number of records the client buffers before writes wait for room.").
				Default(10000).
				Example(100000).
				Advanced(),
			service.NewStringField(kfoFieldMaxBufferedBytes).
				Description("The maximum number of bytes the client buffers before writes wait for room; `0` means no byte limit.").
				Default("0").
				Example("256MiB").
				Advanced(),
			service.NewIntField(kfoFieldMaxInFlightRequests).
				Description("The maximum number of produce requests in flight per broker. Values above 1 need `idempotent_write: false` and may reorder records of a partition on retries.").
				Default(1).
				Example(5).
				Advanced(),
			service.NewIntField(kfoFieldRecordRetries).
				Description("How many times a record is retried before it fails; 0 means until `timeout` (Kafka's `retries`). A failed record fails its message, which the pipeline retries or routes.").
				Default(0).
				Example(10).
				Advanced(),
			service.NewDurationField(kfoFieldRecordDeliveryTimeout).
				Description("How long a record may wait in the client before it fails (Kafka's `delivery.timeout.ms`); 0s means no limit besides `timeout`.").
				Default("0s").
				Example("30s").
				Advanced(),
			service.NewOutputMaxInFlightField().
				Default(10).
				Example(64),
			service.NewBatchPolicyField(kfoFieldBatching),
		).
		LintRule(`root = [
  if this.partitioner.or("") == "manual" && this.partition.or("") == "" { "a partition must be specified when the partitioner is set to manual" },
  if this.partitioner.or("") != "manual" && this.partition.or("") != "" { "a partition cannot be specified unless the partitioner is set to manual" },
  if this.timestamp.or("") != "" && this.timestamp_ms.or("") != "" { "timestamp and timestamp_ms cannot both be set" },
  if this.idempotent_write.or(true) && this.acks.or("all") != "all" { "idempotent_write requires acks to be all" },
]`+saslLintRule).
		Example("Currents keyed by device", "Writes each Currents event to `braze-currents`, keyed by device id (user id when there is none).", `
output:
  kafka_franz:
    seed_brokers: [ "${KAFKA_BROKERS:localhost:9092}" ]
    topic: braze-currents
    key: '${! this.user.device_id.or(this.user.external_user_id).or(this.user.user_id).or("") }'
    compression: zstd
`)
}

func init() {
	service.MustRegisterBatchOutput("kafka_franz", kafkaFranzOutputSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (out service.BatchOutput, pol service.BatchPolicy, maxInFlight int, err error) {
			if maxInFlight, err = conf.FieldMaxInFlight(); err != nil {
				return
			}
			if pol, err = conf.FieldBatchPolicy(kfoFieldBatching); err != nil {
				return
			}
			out, err = newFranzOutputFromParsed(conf, mgr)
			return
		})
}

type franzOutput struct {
	opts        []kgo.Opt
	topic       *service.InterpolatedString
	key         *service.InterpolatedString
	partition   *service.InterpolatedString
	timestamp   *service.InterpolatedString
	timestampMs bool
	meta        *service.MetadataFilter
	timeout     time.Duration
	log         *service.Logger
	mFailed     *service.MetricCounter

	mu     sync.RWMutex
	client *kgo.Client
}

func newFranzOutputFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*franzOutput, error) {
	cc, err := parseClientConf(conf)
	if err != nil {
		return nil, err
	}
	o := &franzOutput{log: mgr.Logger(), mFailed: mgr.Metrics().NewCounter("kafka_franz_produce_failed_total", "reason")}
	interp := map[string]**service.InterpolatedString{
		kfoFieldKey:         &o.key,
		kfoFieldPartition:   &o.partition,
		kfoFieldTimestamp:   &o.timestamp,
		kfoFieldTimestampMs: &o.timestamp,
	}
	if o.topic, err = conf.FieldInterpolatedString(kfoFieldTopic); err != nil {
		return nil, err
	}
	for _, f := range []string{kfoFieldKey, kfoFieldPartition, kfoFieldTimestamp, kfoFieldTimestampMs} {
		if conf.Contains(f) {
			if *interp[f], err = conf.FieldInterpolatedString(f); err != nil {
				return nil, err
			}
		}
	}
	o.timestampMs = conf.Contains(kfoFieldTimestampMs)
	if conf.Contains(kfoFieldMetadata) {
		if o.meta, err = conf.FieldMetadataFilter(kfoFieldMetadata); err != nil {
			return nil, err
		}
	}
	strs := map[string]string{kfoFieldPartitioner: partMurmur2}
	for _, f := range []string{kfoFieldPartitioner, kfoFieldCompression, kfoFieldAcks} {
		if conf.Contains(f) {
			if strs[f], err = conf.FieldString(f); err != nil {
				return nil, err
			}
		}
	}
	bools := map[string]bool{}
	for _, f := range []string{kfoFieldIdempotentWrite, kfoFieldAllowAutoTopicCreation} {
		if bools[f], err = conf.FieldBool(f); err != nil {
			return nil, err
		}
	}
	ints, err := intFields(conf, []intLimit{
		{kfoFieldMaxBufferedRecords, 1, 0},
		{kfoFieldMaxInFlightRequests, 1, 0},
		{kfoFieldRecordRetries, 0, 0},
	})
	if err != nil {
		return nil, err
	}
	// The bounds kgo's own validation enforces.
	sizes, err := byteFields(conf, []byteLimit{
		{kfoFieldMaxMessageBytes, 512, 1 << 30},
		{kfoFieldBrokerWriteMaxBytes, 1 << 10, 1 << 30},
		{kfoFieldMaxBufferedBytes, 0, 0},
	})
	if err != nil {
		return nil, err
	}
	durs, err := durationFields(conf, []durationLimit{
		{kfoFieldTimeout, 100 * time.Millisecond, maxWireTimeout},
		{kfoFieldRecordDeliveryTimeout, 0, 0},
	})
	if err != nil {
		return nil, err
	}
	o.timeout = durs[kfoFieldTimeout]
	idempotent := bools[kfoFieldIdempotentWrite]
	for _, check := range []configCheck{
		{(strs[kfoFieldPartitioner] == partManual) != (o.partition != nil), "field partition: must be set when, and only when, partitioner is manual"},
		{conf.Contains(kfoFieldTimestamp) && o.timestampMs, "timestamp and timestamp_ms cannot both be set"},
		{sizes[kfoFieldBrokerWriteMaxBytes] < sizes[kfoFieldMaxMessageBytes], "field broker_write_max_bytes: must be at least max_message_bytes"},
		{idempotent && strs[kfoFieldAcks] != acksAll, "idempotent_write requires acks to be all"},
		{idempotent && ints[kfoFieldMaxInFlightRequests] != 1, "max_in_flight_requests above 1 requires idempotent_write: false"},
		{durs[kfoFieldRecordDeliveryTimeout] > 0 && durs[kfoFieldRecordDeliveryTimeout] < time.Second, "field record_delivery_timeout: must be 0s or at least 1s"},
	} {
		if check.bad {
			return nil, errors.New(check.msg)
		}
	}

	o.opts = append(cc.opts,
		kgo.ProducerBatchMaxBytes(int32(sizes[kfoFieldMaxMessageBytes])),
		kgo.BrokerMaxWriteBytes(int32(sizes[kfoFieldBrokerWriteMaxBytes])),
		kgo.RecordPartitioner(newPartitioner(strs[kfoFieldPartitioner])),
		kgo.RequiredAcks(requiredAcks[strs[kfoFieldAcks]]),
		kgo.ProduceRequestTimeout(o.timeout),
		kgo.MaxBufferedRecords(int(ints[kfoFieldMaxBufferedRecords])),
		// Produce as soon as the pipeline hands a batch over: Benthos does
		// the batching.
		kgo.ProducerLinger(0),
	)
	if c, ok := strs[kfoFieldCompression]; ok {
		o.opts = append(o.opts, kgo.ProducerBatchCompression(compressionCodecs[c]))
	}
	if n := sizes[kfoFieldMaxBufferedBytes]; n > 0 {
		o.opts = append(o.opts, kgo.MaxBufferedBytes(int(n)))
	}
	if n := ints[kfoFieldRecordRetries]; n > 0 {
		o.opts = append(o.opts, kgo.RecordRetries(int(n)))
	}
	if d := durs[kfoFieldRecordDeliveryTimeout]; d > 0 {
		o.opts = append(o.opts, kgo.RecordDeliveryTimeout(d))
	}
	if bools[kfoFieldAllowAutoTopicCreation] {
		o.opts = append(o.opts, kgo.AllowAutoTopicCreation())
	}
	if !idempotent {
		o.opts = append(o.opts, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(int(ints[kfoFieldMaxInFlightRequests])))
	}
	if cc.rackID != "" {
		o.opts = append(o.opts, kgo.Rack(cc.rackID))
	}
	return o, nil
}

func newPartitioner(name string) kgo.Partitioner {
	switch name {
	case partRoundRobin:
		return kgo.RoundRobinPartitioner()
	case partLeastBackup:
		return kgo.LeastBackupPartitioner()
	case partManual:
		return kgo.ManualPartitioner()
	default:
		// nil hasher: murmur2 as in Kafka's Java client.
		return kgo.StickyKeyPartitioner(nil)
	}
}

// Connect creates the producer client and checks that a broker answers.
func (o *franzOutput) Connect(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.client != nil {
		return nil
	}
	cl, err := newClient(ctx, o.opts)
	if err != nil {
		return err
	}
	o.client = cl
	return nil
}

// WriteBatch produces the batch and returns once Kafka acknowledged every
// record. Messages that could not be built or that Kafka refused fail on
// their own in a service.BatchError.
func (o *franzOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	o.mu.RLock()
	cl := o.client
	o.mu.RUnlock()
	if cl == nil {
		return service.ErrNotConnected
	}

	var berr *service.BatchError
	fail := func(i int, reason string, err error) {
		if berr == nil {
			berr = service.NewBatchError(batch, err)
		}
		berr = berr.Failed(i, err)
		o.mFailed.Incr(1, reason)
	}

	recs := make([]*kgo.Record, 0, len(batch))
	// Results come back in completion order: map records to their index.
	idx := make(map[*kgo.Record]int, len(batch))
	for i, msg := range batch {
		rec, err := o.buildRecord(batch, i, msg)
		if err != nil {
			o.log.Errorf("Message %d not written to Kafka: %v", i, err)
			fail(i, "build", err)
			continue
		}
		recs = append(recs, rec)
		idx[rec] = i
	}

	if len(recs) > 0 {
		pctx, cancel := context.WithTimeout(ctx, o.timeout)
		results := cl.ProduceSync(pctx, recs...)
		cancel()
		for _, res := range results {
			if res.Err != nil {
				o.log.Errorf("Kafka refused a record for %s: %v", res.Record.Topic, res.Err)
				fail(idx[res.Record], "produce", fmt.Errorf("produce to %s: %w", res.Record.Topic, res.Err))
			}
		}
	}
	if berr != nil {
		return berr
	}
	return nil
}

// buildRecord evaluates the topic, key, partition and headers of a message.
func (o *franzOutput) buildRecord(batch service.MessageBatch, i int, msg *service.Message) (*kgo.Record, error) {
	value, err := msg.AsBytes()
	if err != nil {
		return nil, err
	}
	rec := &kgo.Record{Value: value}
	if rec.Topic, err = batch.TryInterpolatedString(i, o.topic); err != nil {
		return nil, fmt.Errorf("topic interpolation: %w", err)
	}
	if rec.Topic == "" {
		return nil, errors.New("topic interpolation: empty topic")
	}
	if o.key != nil {
		key, err := batch.TryInterpolatedBytes(i, o.key)
		if err != nil {
			return nil, fmt.Errorf("key interpolation: %w", err)
		}
		if len(key) > 0 {
			rec.Key = key
		}
	}
	if o.partition != nil {
		s, err := batch.TryInterpolatedString(i, o.partition)
		if err != nil {
			return nil, fmt.Errorf("partition interpolation: %w", err)
		}
		p, err := strconv.ParseInt(s, 10, 32)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("partition interpolation: %q is not a partition number", s)
		}
		rec.Partition = int32(p)
	}
	if o.timestamp != nil {
		s, err := batch.TryInterpolatedString(i, o.timestamp)
		if err != nil {
			return nil, fmt.Errorf("timestamp interpolation: %w", err)
		}
		ts, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("timestamp interpolation: %q is not an integer", s)
		}
		if o.timestampMs {
			rec.Timestamp = time.UnixMilli(ts)
		} else {
			rec.Timestamp = time.Unix(ts, 0)
		}
	}
	if o.meta != nil {
		_ = o.meta.Walk(msg, func(k, v string) error {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
			return nil
		})
	}
	return rec, nil
}

// Close flushes nothing (writes are synchronous) and closes the client.
func (o *franzOutput) Close(context.Context) error {
	o.mu.Lock()
	cl := o.client
	o.client = nil
	o.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
	return nil
}
