package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The tests of this file load Redpanda Connect kafka_franz YAML, one field at
// a time, into our components: the YAML must lint clean and run against an
// in-process Kafka with the field's effect visible. The field list is
// Connect's (https://docs.redpanda.com/redpanda-connect/components/inputs/kafka_franz/
// and .../outputs/kafka_franz/); docs/kafka.md lists what differs.

// lintsOf lints one component YAML with the global environment (the one
// `currents-amplitude lint` uses) and returns the lint messages.
func lintsOf(t *testing.T, kind, yaml string) []string {
	t.Helper()
	linter := service.GlobalEnvironment().NewComponentConfigLinter()
	var lints []service.Lint
	var err error
	if kind == "input" {
		lints, err = linter.LintInputYAML([]byte(yaml))
	} else {
		lints, err = linter.LintOutputYAML([]byte(yaml))
	}
	require.NoError(t, err)
	out := make([]string, 0, len(lints))
	for _, l := range lints {
		out = append(out, l.What)
	}
	return out
}

// lintComponent requires the component YAML to lint clean.
func lintComponent(t *testing.T, kind, yaml string) {
	t.Helper()
	assert.Empty(t, lintsOf(t, kind, yaml), "Connect YAML does not lint:\n%s", yaml)
}

// record describes what a consumed message carried.
type record struct {
	value     string
	partition int
	offset    int
}

func recordsOf(c *consumer) []record {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]record, 0, len(c.seen))
	for _, m := range c.seen {
		v, _ := m.AsBytes()
		p, _ := m.MetaGetMut(metaPartition)
		o, _ := m.MetaGetMut(metaOffset)
		out = append(out, record{string(v), p.(int), o.(int)})
	}
	return out
}

// failTwice fails the message of the given value on its first two
// deliveries.
func failTwice(value string) func(*service.Message) error {
	n := 0
	return func(m *service.Message) error {
		if v, _ := m.AsBytes(); string(v) == value && n < 2 {
			n++
			return errors.New("refused twice")
		}
		return nil
	}
}

func TestConnectInputFields(t *testing.T) {
	// Two partitions: values v-0..v-19, key-<i%2>, so each partition holds
	// one key's records at offsets 0..9.
	brokers := newCluster(t, "compat", 2, kfake.SeedTopics(1, "compat-other", "compat-skip"))
	produce(t, brokers, "compat", 0, 20, 2)
	produce(t, brokers, "compat-other", 100, 5, 1)
	produce(t, brokers, "compat-skip", 200, 5, 1)

	group := 0
	nextGroup := func() string { group++; return fmt.Sprintf("compat-g%d", group) }
	tests := []struct {
		field string
		// yaml is the kafka_franz body below seed_brokers; %s is a fresh
		// consumer group name where the case needs one.
		yaml string
		// handle may fail a message (nil: all acknowledged).
		handle func(*service.Message) error
		// want is how many distinct records the consumer must acknowledge.
		want  int
		check func(t *testing.T, c *consumer)
	}{
		{field: "topics (no consumer_group)", yaml: "topics: [ compat ]", want: 20},
		{field: "topics topic:partition", yaml: `topics: [ "compat:1" ]`, want: 10, check: func(t *testing.T, c *consumer) {
			for _, r := range recordsOf(c) {
				assert.Equal(t, 1, r.partition)
			}
		}},
		{field: "topics topic:partition-range", yaml: `topics: [ "compat:0-1" ]`, want: 20},
		{field: "topics topic:partition:offset", yaml: `topics: [ "compat:0:6" ]`, want: 4, check: func(t *testing.T, c *consumer) {
			for _, r := range recordsOf(c) {
				assert.Equal(t, 0, r.partition)
				assert.GreaterOrEqual(t, r.offset, 6)
			}
		}},
		{field: "consumer_group", yaml: "topics: [ compat ]\nconsumer_group: %s", want: 20},
		{field: "regexp_topics_include / regexp_topics_exclude", yaml: "regexp_topics_include: [ 'compat-.*' ]\nregexp_topics_exclude: [ 'compat-skip' ]\nconsumer_group: %s", want: 5, check: func(t *testing.T, c *consumer) {
			for _, r := range recordsOf(c) {
				assert.True(t, strings.HasPrefix(r.value, "v-10"), r.value)
			}
		}},
		{field: "regexp_topics (deprecated)", yaml: "topics: [ 'compat-o.*' ]\nregexp_topics: true", want: 5},
		{field: "start_offset earliest", yaml: "topics: [ compat ]\nstart_offset: earliest", want: 20},
		{field: "start_from_oldest (deprecated)", yaml: "topics: [ compat ]\nconsumer_group: %s\nstart_from_oldest: true", want: 20},
		{field: "instance_id", yaml: "topics: [ compat ]\nconsumer_group: %s\ninstance_id: member-1", want: 20},
		{field: "rack_id", yaml: "topics: [ compat ]\nrack_id: rack-a", want: 20},
		{field: "client_id", yaml: "topics: [ compat ]\nclient_id: benthos", want: 20},
		{field: "checkpoint_limit", yaml: "topics: [ compat ]\ncheckpoint_limit: 1", want: 20},
		{field: "commit_period", yaml: "topics: [ compat ]\nconsumer_group: %s\ncommit_period: 1s", want: 20},
		{field: "session_timeout / heartbeat_interval / rebalance_timeout", yaml: "topics: [ compat ]\nconsumer_group: %s\nsession_timeout: 10s\nheartbeat_interval: 1s\nrebalance_timeout: 20s", want: 20},
		{field: "fetch_max_bytes / fetch_min_bytes / fetch_max_partition_bytes / fetch_max_wait", yaml: "topics: [ compat ]\nfetch_max_bytes: 10MiB\nfetch_min_bytes: 1KiB\nfetch_max_partition_bytes: 512KiB\nfetch_max_wait: 200ms", want: 20},
		{field: "transaction_isolation_level", yaml: "topics: [ compat ]\ntransaction_isolation_level: read_committed", want: 20},
		{field: "multi_header", yaml: "topics: [ compat ]\nmulti_header: true", want: 20, check: func(t *testing.T, c *consumer) {
			c.mu.Lock()
			defer c.mu.Unlock()
			v, _ := c.seen[0].MetaGetMut("source")
			assert.Equal(t, []any{"test"}, v)
		}},
		{field: "batching", yaml: "topics: [ compat ]\nbatching:\n  count: 5\n  period: 1s", want: 20},
		{field: "topic_lag_refresh_period and kafka_lag", yaml: "topics: [ 'compat:0' ]\ntopic_lag_refresh_period: 1s", want: 10, check: func(t *testing.T, c *consumer) {
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, m := range c.seen {
				lag, _ := m.MetaGetMut(metaLag)
				off, _ := m.MetaGetMut(metaOffset)
				assert.Equal(t, int64(9-off.(int)), lag, "kafka_lag of offset %v", off)
			}
		}},
		// batch_size 1 delivers one record per batch, as Connect does
		// without batching, so that the nack drops v-4 alone.
		{field: "auto_replay_nacks", yaml: "topics: [ compat ]\nbatch_size: 1\nauto_replay_nacks: false", want: 19, check: func(t *testing.T, c *consumer) {
			assert.NotContains(t, c.ackedValues(), "v-4", "a dropped record was redelivered")
		}, handle: func(m *service.Message) error {
			if v, _ := m.AsBytes(); string(v) == "v-4" {
				return errors.New("refused")
			}
			return nil
		}},
		{field: "batching period", yaml: "topics: [ 'compat:0' ]\nbatching:\n  period: 20ms", want: 10},
		{field: "no consumer_group: nacks replayed in order", yaml: "topics: [ 'compat:0' ]\nbatch_size: 1\ncheckpoint_limit: 1", want: 10, handle: failTwice("v-4"), check: func(t *testing.T, c *consumer) {
			recs := recordsOf(c)
			for i := 1; i < len(recs); i++ {
				assert.Greater(t, recs[i].offset, recs[i-1].offset, "records acknowledged out of order")
			}
		}},
		{field: "timely_nacks_maximum_wait", yaml: "topics: [ compat ]\ntimely_nacks_maximum_wait: 30s", want: 20},
		{field: "metadata_max_age / request_timeout_overhead / conn_idle_timeout", yaml: "topics: [ compat ]\nmetadata_max_age: 30s\nrequest_timeout_overhead: 5s\nconn_idle_timeout: 1m", want: 20},
		{field: "tcp", yaml: "topics: [ compat ]\ntcp:\n  connect_timeout: 5s\n  keep_alive:\n    idle: 30s\n    interval: 10s\n    count: 3\n  tcp_user_timeout: 20s", want: 20},
		{field: "tls (disabled) and sasl none", yaml: "topics: [ compat ]\ntls:\n  enabled: false\nsasl:\n  - mechanism: none", want: 20},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			body := tt.yaml
			if strings.Contains(body, "%s") {
				body = fmt.Sprintf(body, nextGroup())
			}
			yaml := fmt.Sprintf("kafka_franz:\n  seed_brokers: [ %q ]\n  %s\n", brokers, strings.ReplaceAll(body, "\n", "\n  "))
			lintComponent(t, "input", yaml)
			c := startConsumer(t, yaml, tt.handle)
			waitFor(t, fmt.Sprintf("%d records", tt.want), func() bool { return c.count() >= tt.want })
			c.stop(t) // every ack has resolved: nothing more can arrive
			assert.Equal(t, tt.want, c.count())
			for v, n := range c.ackedValues() {
				assert.Equal(t, 1, n, "record %s acknowledged %d times", v, n)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestConnectOutputFields(t *testing.T) {
	brokers := newCluster(t, "out", 3, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	tests := []struct {
		field string
		yaml  string // below seed_brokers
		topic string
		check func(t *testing.T, recs []*kgo.Record)
	}{
		{field: "defaults (compression and partitioner unset)", yaml: "topic: out\nkey: '${! this.k }'", topic: "out", check: func(t *testing.T, recs []*kgo.Record) {
			parts := map[string]int32{}
			for _, r := range recs {
				if p, ok := parts[string(r.Key)]; ok {
					assert.Equal(t, p, r.Partition, "murmur2: one key, one partition")
				}
				parts[string(r.Key)] = r.Partition
			}
		}},
		{field: "acks leader", yaml: "topic: out\nidempotent_write: false\nacks: leader", topic: "out"},
		{field: "acks all", yaml: "topic: out\nacks: all", topic: "out"},
		{field: "allow_auto_topic_creation", yaml: "topic: out-created\nallow_auto_topic_creation: true", topic: "out-created"},
		{field: "max_buffered_records / max_buffered_bytes", yaml: "topic: out\nmax_buffered_records: 100\nmax_buffered_bytes: 1MiB", topic: "out"},
		{field: "max_in_flight_requests", yaml: "topic: out\nidempotent_write: false\nmax_in_flight_requests: 5", topic: "out"},
		{field: "record_retries / record_delivery_timeout", yaml: "topic: out\nrecord_retries: 3\nrecord_delivery_timeout: 5s", topic: "out"},
		{field: "timestamp_ms", yaml: "topic: out\ntimestamp_ms: '${! 1767225600123 }'", topic: "out", check: func(t *testing.T, recs []*kgo.Record) {
			for _, r := range recs {
				assert.Equal(t, int64(1767225600123), r.Timestamp.UnixMilli())
			}
		}},
		{field: "timestamp (deprecated)", yaml: "topic: out\ntimestamp: '${! 1767225600 }'", topic: "out", check: func(t *testing.T, recs []*kgo.Record) {
			for _, r := range recs {
				assert.Equal(t, int64(1767225600), r.Timestamp.Unix())
			}
		}},
		{field: "compression", yaml: "topic: out\ncompression: lz4", topic: "out"},
		{field: "partitioner round_robin", yaml: "topic: out\npartitioner: round_robin", topic: "out"},
		{field: "partitioner manual", yaml: "topic: out\npartitioner: manual\npartition: '2'", topic: "out", check: func(t *testing.T, recs []*kgo.Record) {
			for _, r := range recs {
				assert.Equal(t, int32(2), r.Partition)
			}
		}},
		{field: "timeout / max_message_bytes / broker_write_max_bytes", yaml: "topic: out\ntimeout: 5s\nmax_message_bytes: 2MiB\nbroker_write_max_bytes: 50MiB", topic: "out"},
		{field: "metadata", yaml: "topic: out\nmetadata:\n  include_prefixes: [ h_ ]", topic: "out", check: func(t *testing.T, recs []*kgo.Record) {
			for _, r := range recs {
				assert.Equal(t, []kgo.RecordHeader{{Key: "h_n", Value: []byte("x")}}, r.Headers)
			}
		}},
		{field: "max_in_flight and batching", yaml: "topic: out\nmax_in_flight: 4\nbatching:\n  count: 2", topic: "out"},
	}
	seen := map[string]int{}
	for i, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			yaml := fmt.Sprintf("kafka_franz:\n  seed_brokers: [ %q ]\n  %s\n", brokers, strings.ReplaceAll(tt.yaml, "\n", "\n  "))
			lintComponent(t, "output", yaml)
			o := newOutput(t, fmt.Sprintf("seed_brokers: [ %q ]\n%s\n", brokers, tt.yaml))
			var batch service.MessageBatch
			for j := range 6 {
				m := service.NewMessage(fmt.Appendf(nil, `{"case":%d,"k":"k%d"}`, i, j%3))
				m.MetaSetMut("h_n", "x")
				batch = append(batch, m)
			}
			require.NoError(t, o.WriteBatch(context.Background(), batch))
			all := readAll(t, brokers, tt.topic, seen[tt.topic]+len(batch))
			seen[tt.topic] += len(batch)
			var recs []*kgo.Record
			for _, r := range all {
				if strings.HasPrefix(string(r.Value), fmt.Sprintf(`{"case":%d,`, i)) {
					recs = append(recs, r)
				}
			}
			require.Len(t, recs, len(batch))
			if tt.check != nil {
				tt.check(t, recs)
			}
		})
	}
}

func TestConnectOutputWithoutAutoTopicCreation(t *testing.T) {
	brokers := newCluster(t, "out", 1, kfake.AllowAutoTopicCreation())
	o := newOutput(t, fmt.Sprintf("seed_brokers: [ %q ]\ntopic: missing\nallow_auto_topic_creation: false\ntimeout: 1s\n", brokers))
	err := o.WriteBatch(context.Background(), service.MessageBatch{service.NewMessage([]byte("x"))})
	require.Error(t, err, "a missing topic was created although allow_auto_topic_creation is false")
}

func TestConnectStartOffsetCommittedResumesTheGroup(t *testing.T) {
	brokers := newCluster(t, "committed", 1)
	produce(t, brokers, "committed", 0, 10, 1)
	yaml := fmt.Sprintf("kafka_franz:\n  seed_brokers: [ %q ]\n  topics: [ committed ]\n  consumer_group: g-committed\n  commit_period: 100ms\n  start_offset: %%s\n", brokers)

	first := startConsumer(t, fmt.Sprintf(yaml, "earliest"), nil)
	waitFor(t, "10 records", func() bool { return first.count() == 10 })
	first.stop(t) // commits on close

	lintComponent(t, "input", fmt.Sprintf(yaml, "committed"))
	produce(t, brokers, "committed", 10, 5, 1)
	second := startConsumer(t, fmt.Sprintf(yaml, "committed"), nil)
	waitFor(t, "5 new records", func() bool { return second.count() >= 5 })
	second.stop(t)
	assert.Equal(t, 5, second.count(), "records before the committed offset were read again: %v", second.ackedValues())
}

func TestLintRulesAsConnect(t *testing.T) {
	tests := []struct{ kind, yaml, want string }{
		{"input", `kafka_franz: {seed_brokers: [b:9092], topics: ["t:0"], consumer_group: g}`, "consumer group"},
		{"input", `kafka_franz: {seed_brokers: [b:9092], topics: ["t:0"], regexp_topics: true}`, "regular expression"},
		{"input", `kafka_franz: {seed_brokers: [b:9092]}`, "either topics or regexp_topics_include"},
		{"input", `kafka_franz: {seed_brokers: [b:9092], topics: [t], regexp_topics_include: [u]}`, "cannot both be set"},
		{"output", `kafka_franz: {seed_brokers: [b:9092], topic: t, partitioner: manual}`, "partition must be specified"},
		{"output", `kafka_franz: {seed_brokers: [b:9092], topic: t, partition: "1"}`, "partition cannot be specified"},
		{"output", `kafka_franz: {seed_brokers: [b:9092], topic: t, acks: leader}`, "idempotent_write requires acks"},
		{"output", `kafka_franz: {seed_brokers: [b:9092], topic: t, timestamp: "1", timestamp_ms: "1"}`, "cannot both be set"},
	}
	for _, tt := range tests {
		assert.Contains(t, strings.Join(lintsOf(t, tt.kind, tt.yaml), "\n"), tt.want, tt.yaml)
	}
}
