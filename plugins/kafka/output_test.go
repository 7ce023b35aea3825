package kafka

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/opencurrents/currents-amplitude/plugins/internal/batchtest"
)

// newOutput builds and connects a kafka_franz output from YAML.
func newOutput(t *testing.T, yaml string) *franzOutput {
	t.Helper()
	conf, err := kafkaFranzOutputSpec().ParseYAML(yaml, nil)
	require.NoError(t, err)
	o, err := newFranzOutputFromParsed(conf, service.MockResources())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, o.Connect(ctx))
	t.Cleanup(func() { _ = o.Close(context.Background()) })
	return o
}

// readAll consumes n records of topic from the start.
func readAll(t *testing.T, brokers, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "only %d of %d records", len(out), n)
		out = append(out, fs.Records()...)
	}
	return out
}

func TestOutputProducesKeyedRecordsWithHeaders(t *testing.T) {
	brokers := newCluster(t, "currents", 4)
	o := newOutput(t, fmt.Sprintf(`
seed_brokers: [ %q ]
topic: currents
key: '${! this.device.or("") }'
metadata:
  include_prefixes: [ "braze_" ]
`, brokers))

	var batch service.MessageBatch
	for i := range 40 {
		m := service.NewMessage(fmt.Appendf(nil, `{"device":"d%d","n":%d}`, i%5, i))
		m.MetaSetMut("braze_source", "http")
		m.MetaSetMut("secret_internal", "x")
		batch = append(batch, m)
	}
	batch = append(batch, service.NewMessage([]byte(`{"n":99}`)))
	require.NoError(t, o.WriteBatch(context.Background(), batch))

	recs := readAll(t, brokers, "currents", len(batch))
	partOf := map[string]int32{}
	for _, r := range recs {
		if string(r.Value) == `{"n":99}` {
			assert.Nil(t, r.Key, "an empty key writes a record without key")
			continue
		}
		key := string(r.Key)
		if p, ok := partOf[key]; ok {
			assert.Equal(t, p, r.Partition, "records of device %s spread over partitions", key)
		}
		partOf[key] = r.Partition
		require.Len(t, r.Headers, 1)
		assert.Equal(t, kgo.RecordHeader{Key: "braze_source", Value: []byte("http")}, r.Headers[0])
	}
	assert.Len(t, partOf, 5)
}

func TestOutputFailsOnlyTheBadMessages(t *testing.T) {
	brokers := newCluster(t, "currents", 1)
	o := newOutput(t, fmt.Sprintf(`
seed_brokers: [ %q ]
topic: '${! if this.bad == "topic" { throw("no topic for this event") } else { "currents" } }'
max_message_bytes: 1KiB
timeout: 5s
`, brokers))

	batch := service.MessageBatch{
		service.NewMessage([]byte(`{"ok":1}`)),
		service.NewMessage([]byte(`{"bad":"topic"}`)),
		service.NewMessage([]byte(`{"big":"` + strings.Repeat("x", 2048) + `"}`)),
		service.NewMessage([]byte(`{"ok":2}`)),
	}
	failed := batchtest.Failures(t, batch.Index(), o.WriteBatch(context.Background(), batch))
	require.Len(t, failed, 2)
	assert.ErrorContains(t, failed[1], "no topic for this event")
	assert.ErrorContains(t, failed[2], "MESSAGE_TOO_LARGE", "%v", failed)

	recs := readAll(t, brokers, "currents", 2)
	assert.Equal(t, `{"ok":1}`, string(recs[0].Value))
	assert.Equal(t, `{"ok":2}`, string(recs[1].Value))
}

func TestOutputManualPartition(t *testing.T) {
	brokers := newCluster(t, "currents", 3)
	o := newOutput(t, fmt.Sprintf(`
seed_brokers: [ %q ]
topic: currents
partitioner: manual
partition: '${! @p }'
`, brokers))
	batch := service.MessageBatch{service.NewMessage([]byte("a")), service.NewMessage([]byte("b"))}
	batch[0].MetaSetMut("p", "2")
	batch[1].MetaSetMut("p", "nope")
	err := o.WriteBatch(context.Background(), batch)
	require.ErrorContains(t, err, "not a partition number")
	recs := readAll(t, brokers, "currents", 1)
	assert.Equal(t, int32(2), recs[0].Partition)
}

func TestSASLAuthentication(t *testing.T) {
	for _, mech := range []string{saslPlain, saslScramSHA256, saslScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			brokers := newCluster(t, "currents", 1, kfake.EnableSASL(), kfake.Superuser(mech, "braze", "s3cret-pass"))
			yaml := func(pass string) string {
				return fmt.Sprintf(`
seed_brokers: [ %q ]
topic: currents
sasl:
  - mechanism: %s
    username: braze
    password: %s
`, brokers, mech, pass)
			}
			o := newOutput(t, yaml("s3cret-pass"))
			require.NoError(t, o.WriteBatch(context.Background(), service.MessageBatch{service.NewMessage([]byte("x"))}))

			conf, err := kafkaFranzOutputSpec().ParseYAML(yaml("wrong-pass"), nil)
			require.NoError(t, err)
			bad, err := newFranzOutputFromParsed(conf, service.MockResources())
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = bad.Connect(ctx)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "wrong-pass", "the password leaked into an error")
		})
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name, spec, yaml, wantErr string
	}{
		{"no brokers", "input", `{seed_brokers: [" , "], topics: [t], consumer_group: g}`, "seed_brokers"},
		{"partitions in a group", "input", `{seed_brokers: [b:9092], topics: ["t:0"], consumer_group: g}`, "consumer group"},
		{"no topics", "input", `{seed_brokers: [b:9092], topics: [], consumer_group: g}`, "topics"},
		{"bad regexp", "input", `{seed_brokers: [b:9092], topics: ["("], regexp_topics: true, consumer_group: g}`, "regular expression"},
		{"zero checkpoint", "input", `{seed_brokers: [b:9092], topics: [t], consumer_group: g, checkpoint_limit: 0}`, "checkpoint_limit"},
		{"bad size", "input", `{seed_brokers: [b:9092], topics: [t], consumer_group: g, fetch_max_bytes: lots}`, "fetch_max_bytes"},
		{"sasl no user", "input", `{seed_brokers: [b:9092], topics: [t], consumer_group: g, sasl: [{mechanism: PLAIN}]}`, "username"},
		{"manual without partition", "output", `{seed_brokers: [b:9092], topic: t, partitioner: manual}`, "partition"},
		{"partition without manual", "output", `{seed_brokers: [b:9092], topic: t, partition: "1"}`, "partition"},
		{"write max below message max", "output", `{seed_brokers: [b:9092], topic: t, max_message_bytes: 2MiB, broker_write_max_bytes: 1MiB}`, "broker_write_max_bytes"},
		{"partitions with regexp", "input", `{seed_brokers: [b:9092], topics: ["t:0"], regexp_topics: true}`, "regular expression"},
		{"mixed topics and partitions", "input", `{seed_brokers: [b:9092], topics: ["t", "u:1"]}`, "cannot be mixed"},
		{"bad partition", "input", `{seed_brokers: [b:9092], topics: ["t:x"]}`, "partition"},
		{"bad partition range", "input", `{seed_brokers: [b:9092], topics: ["t:3-1"]}`, "range"},
		{"offset on a range", "input", `{seed_brokers: [b:9092], topics: ["t:0-3:5"]}`, "single partition"},
		{"bad offset", "input", `{seed_brokers: [b:9092], topics: ["t:0:-5"]}`, "offset"},
		{"partition twice", "input", `{seed_brokers: [b:9092], topics: ["t:0", "t:0-1"]}`, "twice"},
		{"topics and include", "input", `{seed_brokers: [b:9092], topics: [t], regexp_topics_include: ["u.*"]}`, "cannot both"},
		{"neither topics nor include", "input", `{seed_brokers: [b:9092]}`, "either topics"},
		{"exclude without regexp", "input", `{seed_brokers: [b:9092], topics: [t], regexp_topics_exclude: ["u"]}`, "regexp_topics_exclude"},
		{"bad include", "input", `{seed_brokers: [b:9092], regexp_topics_include: ["("]}`, "regexp_topics_include"},
		{"committed without group", "input", `{seed_brokers: [b:9092], topics: [t], start_offset: committed}`, "consumer_group"},
		{"oldest false, earliest", "input", `{seed_brokers: [b:9092], topics: [t], start_from_oldest: false, start_offset: earliest}`, "start_from_oldest"},
		{"instance without group", "input", `{seed_brokers: [b:9092], topics: [t], instance_id: i}`, "instance_id"},
		{"batching and batch_size", "input", `{seed_brokers: [b:9092], topics: [t], batch_size: 10, batching: {count: 5}}`, "batch_size"},
		{"heartbeat above session", "input", `{seed_brokers: [b:9092], topics: [t], consumer_group: g, heartbeat_interval: 10s, session_timeout: 5s}`, "heartbeat_interval"},
		{"fetch min above max", "input", `{seed_brokers: [b:9092], topics: [t], fetch_min_bytes: 2MiB, fetch_max_bytes: 1MiB}`, "fetch_min_bytes"},
		{"short fetch wait", "input", `{seed_brokers: [b:9092], topics: [t], fetch_max_wait: 1ms}`, "fetch_max_wait"},
		{"short lag refresh", "input", `{seed_brokers: [b:9092], topics: [t], topic_lag_refresh_period: 1ms}`, "topic_lag_refresh_period"},
		{"metadata age above 1h", "input", `{seed_brokers: [b:9092], topics: [t], metadata_max_age: 2h}`, "metadata_max_age"},
		{"tcp user timeout above keep-alive", "input", `{seed_brokers: [b:9092], topics: [t], tcp: {tcp_user_timeout: 30s, keep_alive: {idle: 15s}}}`, "tcp"},
		{"bad batching", "input", `{seed_brokers: [b:9092], topics: [t], batching: {count: 2, check: "this ="}}`, "batching"},
		{"ok no group", "input", `{seed_brokers: [b:9092], topics: ["t:0:10", "t:1-3"]}`, ""},
		{"ok regexp", "input", `{seed_brokers: [b:9092], regexp_topics_include: ["t.*"], regexp_topics_exclude: ["t-dlq"], consumer_group: g}`, ""},
		{"ok input", "input", `{seed_brokers: ["a:1,b:2"], topics: [t], consumer_group: g}`, ""},
		{"idempotent with acks leader", "output", `{seed_brokers: [b:9092], topic: t, acks: leader}`, "acks"},
		{"idempotent with in-flight 5", "output", `{seed_brokers: [b:9092], topic: t, max_in_flight_requests: 5}`, "idempotent_write"},
		{"both timestamps", "output", `{seed_brokers: [b:9092], topic: t, timestamp: "1", timestamp_ms: "1"}`, "timestamp"},
		{"zero buffered records", "output", `{seed_brokers: [b:9092], topic: t, max_buffered_records: 0}`, "max_buffered_records"},
		{"short delivery timeout", "output", `{seed_brokers: [b:9092], topic: t, record_delivery_timeout: 10ms}`, "record_delivery_timeout"},
		{"tiny message bytes", "output", `{seed_brokers: [b:9092], topic: t, max_message_bytes: 10B}`, "max_message_bytes"},
		{"ok output no idempotence", "output", `{seed_brokers: [a:1], topic: t, idempotent_write: false, acks: none, max_in_flight_requests: 5}`, ""},
		{"ok output", "output", `{seed_brokers: [a:1], topic: t, compression: zstd}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.spec == "input" {
				var conf *service.ParsedConfig
				if conf, err = kafkaFranzInputSpec().ParseYAML(tt.yaml, nil); err == nil {
					_, err = newFranzInputFromParsed(conf, service.MockResources())
				}
			} else {
				var conf *service.ParsedConfig
				if conf, err = kafkaFranzOutputSpec().ParseYAML(tt.yaml, nil); err == nil {
					_, err = newFranzOutputFromParsed(conf, service.MockResources())
				}
			}
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestStartOffsetOfExplicitPartitions(t *testing.T) {
	tests := []struct {
		yaml string
		want map[int32]int64 // partition -> offset (-2 start, -1 end)
	}{
		{`{seed_brokers: [b:9092], topics: ["t:0", "t:1:42"]}`, map[int32]int64{0: -2, 1: 42}},
		{`{seed_brokers: [b:9092], topics: ["t:0-1"], start_offset: latest}`, map[int32]int64{0: -1, 1: -1}},
		{`{seed_brokers: [b:9092], topics: ["t:0"], start_from_oldest: false}`, map[int32]int64{0: -1}},
		{`{seed_brokers: [b:9092], topics: ["t:0"], start_offset: earliest}`, map[int32]int64{0: -2}},
	}
	for _, tt := range tests {
		conf, err := kafkaFranzInputSpec().ParseYAML(tt.yaml, nil)
		require.NoError(t, err)
		c, err := parseFranzInputConf(conf)
		require.NoError(t, err, tt.yaml)
		got := map[int32]int64{}
		for p, off := range c.topics.partitions["t"] {
			got[p] = off.EpochOffset().Offset
		}
		assert.Equal(t, tt.want, got, tt.yaml)
		assert.Empty(t, c.group)
	}
}
