package kafka

import (
	"fmt"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// BenchmarkFetchToBatches measures the input's work per record between a
// fetch and the pipeline: metadata, batching into trackedBatches, handing
// out and acknowledging (commit mark). 500 records of one partition per op.
//
//	go test -run '^$' -bench BenchmarkFetchToBatches -benchtime 2000x ./plugins/kafka/
func BenchmarkFetchToBatches(b *testing.B) {
	recs := make([]*kgo.Record, 500)
	for i := range recs {
		recs[i] = &kgo.Record{
			Topic: "t", Partition: 0, Offset: int64(i), Timestamp: time.Unix(1_767_225_600, 0),
			Key:     fmt.Appendf(nil, "device-%d", i%50),
			Value:   []byte(`{"event_type":"users.behaviors.CustomEvent","user":{"device_id":"d"}}`),
			Headers: []kgo.RecordHeader{{Key: "braze_source", Value: []byte("http")}},
		}
	}
	for _, multi := range []bool{false, true} {
		b.Run(fmt.Sprintf("multi_header=%v", multi), func(b *testing.B) {
			f := newFranzInput(franzInputConf{checkpointLimit: 1000, batchSize: 100, replayNacks: true, multiHeader: multi},
				service.MockResources(), clock.NewFake(time.Unix(1_767_225_600, 0)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				f.mu.Lock()
				f.addFetchLocked(kgo.FetchTopicPartition{Topic: "t", FetchPartition: kgo.FetchPartition{Partition: 0, HighWatermark: 500, Records: recs}})
				var out []*trackedBatch
				for {
					tb, _, _ := f.nextBatchLocked(f.clk.Now())
					if tb == nil {
						break
					}
					out = append(out, tb)
				}
				f.mu.Unlock()
				for _, tb := range out {
					f.ack(tb, nil)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
		})
	}
}
