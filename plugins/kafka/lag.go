package kafka

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// runLag refreshes the lag gauge every topic_lag_refresh_period until ctx
// ends.
func (f *franzInput) runLag(ctx context.Context, cl *kgo.Client) {
	for clock.Sleep(ctx, f.clk, f.conf.lagPeriod) == nil {
		for tp, lag := range f.refreshLag(ctx, cl) {
			f.mLag.Set(lag, tp.topic, strconv.Itoa(int(tp.partition)))
		}
	}
}

// refreshLag asks the partition leaders for the end offsets (the last stable
// offsets with read_committed) of the partitions this input has acknowledged
// records of, and returns each one's lag: the records after the acknowledged
// mark. Partitions whose leader does not answer are left out until the next
// refresh.
func (f *franzInput) refreshLag(ctx context.Context, cl *kgo.Client) map[topicPartition]int64 {
	marks := map[string]map[int32]int64{}
	f.mu.Lock()
	for tp, p := range f.parts {
		if !p.hasNext {
			continue
		}
		if marks[tp.topic] == nil {
			marks[tp.topic] = map[int32]int64{}
		}
		marks[tp.topic][tp.partition] = p.next.Offset
	}
	f.mu.Unlock()
	if len(marks) == 0 {
		return nil
	}

	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	req.IsolationLevel = f.conf.isolation
	for topic, ps := range marks {
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for p := range ps {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition = p
			rp.CurrentLeaderEpoch = -1
			rp.Timestamp = -1 // the end of the partition
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	out := map[topicPartition]int64{}
	for _, shard := range cl.RequestSharded(ctx, req) {
		if shard.Err != nil {
			f.log.Debugf("Lag refresh: %v", shard.Err)
			continue
		}
		resp, ok := shard.Resp.(*kmsg.ListOffsetsResponse)
		if !ok {
			continue
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				mark, ok := marks[t.Topic][p.Partition]
				if !ok || p.ErrorCode != 0 {
					continue
				}
				out[topicPartition{t.Topic, p.Partition}] = max(p.Offset-mark, 0)
			}
		}
	}
	return out
}
