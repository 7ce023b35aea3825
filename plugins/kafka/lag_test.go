package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRefreshLagCountsRecordsAfterTheAcknowledgedMark(t *testing.T) {
	brokers := newCluster(t, "lag", 2)
	produce(t, brokers, "lag", 0, 20, 2) // 10 records per partition

	conf, err := kafkaFranzInputSpec().ParseYAML(fmt.Sprintf(`
seed_brokers: [ %q ]
topics: [ "lag:0" ]
batch_size: 4
fetch_max_wait: 100ms
`, brokers), nil)
	require.NoError(t, err)
	f, err := newFranzInputFromParsed(conf, service.MockResources())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, f.Connect(ctx))
	defer func() { _ = f.Close(context.Background()) }()

	assert.Empty(t, f.refreshLag(ctx, f.client), "lag reported before anything was acknowledged")
	batch, ack, err := f.ReadBatch(ctx)
	require.NoError(t, err)
	require.Len(t, batch, 4)
	lag, _ := batch[0].MetaGetMut(metaLag)
	assert.Equal(t, int64(9), lag, "kafka_lag of the first record")
	require.NoError(t, ack(ctx, nil))

	assert.Equal(t, map[topicPartition]int64{{"lag", 0}: 6}, f.refreshLag(ctx, f.client))
}
