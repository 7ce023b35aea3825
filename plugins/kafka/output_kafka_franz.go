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

// Output field names.
const (
	kfoFieldTopic               = "topic"
	kfoFieldKey                 = "key"
	kfoFieldPartitioner         = "partitioner"
	kfoFieldPartition           = "partition"
	kfoFieldMetadata            = "metadata"
	kfoFieldIdempotentWrite     = "idempotent_write"
	kfoFieldCompression         = "compression"
	kfoFieldTimeout             = "timeout"
	kfoFieldMaxMessageBytes     = "max_message_bytes"
	kfoFieldBrokerWriteMaxBytes = "broker_write_max_bytes"
	kfoFieldBatching            = "batching"
)

// Partitioners accepted by the partitioner field.
const (
	partMurmur2     = "murmur2_hash"
	partRoundRobin  = "round_robin"
	partLeastBackup = "least_backup"
	partManual      = "manual"
)

var compressionCodecs = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"gzip":   kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
}

func kafkaFranzOutputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Services").
		Summary("Writes messages to a Kafka topic with franz-go, acknowledging them only once Kafka has acknowledged the records.").
		Description(`
Field names follow Redpanda Connect's `+"`kafka_franz`"+` output.

A message is acknowledged only when every in-sync replica has the record (`+"`acks=all`"+`). A record Kafka refuses
fails only its own message, so `+"`fallback`"+` or `+"`switch`"+` outputs route exactly that message, with the reason,
to a dead-letter output. Records with the same key always go to the same partition (`+"`murmur2_hash`"+`, as
Kafka's Java client does), which keeps a device's events in order and on one consumer of a group.

Metrics: `+"`kafka_franz_produce_failed`"+` (messages Kafka refused or that could not be built, label `+"`reason`"+`).`+
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
				Description("How records are assigned to partitions.").
				Default(partMurmur2).
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
			service.NewBoolField(kfoFieldIdempotentWrite).
				Description("Whether to use idempotent producing, which prevents duplicates from producer retries. Requires IDEMPOTENT_WRITE permission on the cluster.").
				Default(true).
				Example(false).
				Advanced(),
			service.NewStringEnumField(kfoFieldCompression, "none", "gzip", "snappy", "lz4", "zstd").
				Description("The compression codec of record batches.").
				Default("none").
				Example("zstd"),
			service.NewDurationField(kfoFieldTimeout).
				Description("How long to wait for Kafka to acknowledge a batch before its messages fail and are retried.").
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
			service.NewOutputMaxInFlightField().
				Default(10).
				Example(64),
			service.NewBatchPolicyField(kfoFieldBatching),
		).
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
	opts      []kgo.Opt
	topic     *service.InterpolatedString
	key       *service.InterpolatedString
	partition *service.InterpolatedString
	meta      *service.MetadataFilter
	timeout   time.Duration
	log       *service.Logger
	mFailed   *service.MetricCounter

	mu     sync.RWMutex
	client *kgo.Client
}

func newFranzOutputFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*franzOutput, error) {
	cc, err := parseClientConf(conf)
	if err != nil {
		return nil, err
	}
	o := &franzOutput{log: mgr.Logger(), mFailed: mgr.Metrics().NewCounter("kafka_franz_produce_failed", "reason")}
	if o.topic, err = conf.FieldInterpolatedString(kfoFieldTopic); err != nil {
		return nil, err
	}
	if conf.Contains(kfoFieldKey) {
		if o.key, err = conf.FieldInterpolatedString(kfoFieldKey); err != nil {
			return nil, err
		}
	}
	partitioner, err := conf.FieldString(kfoFieldPartitioner)
	if err != nil {
		return nil, err
	}
	hasPartition := conf.Contains(kfoFieldPartition)
	if (partitioner == partManual) != hasPartition {
		return nil, errors.New("field partition: must be set when, and only when, partitioner is manual")
	}
	if hasPartition {
		if o.partition, err = conf.FieldInterpolatedString(kfoFieldPartition); err != nil {
			return nil, err
		}
	}
	if conf.Contains(kfoFieldMetadata) {
		if o.meta, err = conf.FieldMetadataFilter(kfoFieldMetadata); err != nil {
			return nil, err
		}
	}
	if o.timeout, err = conf.FieldDuration(kfoFieldTimeout); err != nil {
		return nil, err
	}
	if o.timeout <= 0 {
		return nil, errors.New("field timeout: must be positive")
	}
	idempotent, err := conf.FieldBool(kfoFieldIdempotentWrite)
	if err != nil {
		return nil, err
	}
	codec, err := conf.FieldString(kfoFieldCompression)
	if err != nil {
		return nil, err
	}
	maxMsg, err := byteSizeField(conf, kfoFieldMaxMessageBytes)
	if err != nil {
		return nil, err
	}
	maxWrite, err := byteSizeField(conf, kfoFieldBrokerWriteMaxBytes)
	if err != nil {
		return nil, err
	}
	if maxWrite < maxMsg {
		return nil, fmt.Errorf("field broker_write_max_bytes: must be at least max_message_bytes")
	}

	o.opts = append(cc.opts,
		kgo.ProducerBatchMaxBytes(maxMsg),
		kgo.BrokerMaxWriteBytes(maxWrite),
		kgo.ProducerBatchCompression(compressionCodecs[codec]),
		kgo.RecordPartitioner(newPartitioner(partitioner)),
		// Produce as soon as the pipeline hands a batch over: Benthos does
		// the batching.
		kgo.ProducerLinger(0),
	)
	if !idempotent {
		o.opts = append(o.opts, kgo.DisableIdempotentWrite())
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
