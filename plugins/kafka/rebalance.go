package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The consumer group callbacks: franz-go calls them from its group loop when
// the group assigns, revokes or loses partitions of this member.

// onAssigned notes when the group gave partitions to this member, for
// partition_start_delay.
func (f *franzInput) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	f.log.Infof("Consuming partitions %v of group %s", assigned, f.conf.group)
	now := f.clk.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for topic, ps := range assigned {
		for _, p := range ps {
			f.assignedAt[topicPartition{topic, p}] = now
		}
	}
}

// ErrPartitionRevoked is the cause of a message's context once its partition
// is revoked or lost: the record will be delivered by the partition's new
// owner from the committed offset, so an output that has not sent it yet may
// abandon it (nack) instead of sending it alongside the new owner. The
// amplitude output does: see its pacing.
var ErrPartitionRevoked = errors.New("kafka partition revoked: its new owner delivers this record")

// ErrStopping is the cause of a message's context once the stream stops
// reading: the record is delivered again from the committed offset by the
// partition's next owner or the next run, so an output may abandon it.
var ErrStopping = errors.New("kafka input stopping: this record is delivered again from the committed offset")

// onRevoked runs before revoked partitions move to another member: stop
// handing them out, let in-flight records finish (for at most the drain
// timeout, on the input's clock), commit, and release the partitions.
func (f *franzInput) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	parts := f.detach(revoked, partDraining)
	if len(parts) == 0 {
		return
	}
	f.log.Infof("Partitions %v of group %s revoked: finishing their records in flight", revoked, f.conf.group)
	f.mRevoked.Incr(int64(len(parts)))
	f.drain(ctx, parts)

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

// drain waits until the partitions have no record in flight, the drain
// timeout elapses or ctx ends. It wakes on every ack, not on a poll period.
func (f *franzInput) drain(ctx context.Context, parts []*partitionTracker) {
	timer := f.clk.NewTimer(f.conf.drainTimeout)
	defer timer.Stop()
	for {
		f.mu.Lock()
		inFlight := 0
		for _, p := range parts {
			inFlight += p.inFlight
		}
		changed := f.changed
		f.mu.Unlock()
		if inFlight == 0 {
			return
		}
		select {
		case <-changed:
		case <-timer.C():
			return
		case <-ctx.Done():
			return
		}
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
				p.cancel(ErrPartitionRevoked)
				delete(f.parts, tp)
				parts = append(parts, p)
			}
		}
	}
	return parts
}

// releasePartitionLocked forgets a partition for good, counting its records
// still in flight: their new owner redelivers them. Records held by its
// batcher were never handed out and are simply dropped from memory (not
// committed). Records read but never delivered because Benthos was stopping
// are expected on shutdown, hence only logged at info level then.
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
	if p.batcher != nil {
		_ = p.batcher.Close(context.Background())
		p.batcher, p.pending, p.pendingRecs = nil, nil, 0
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
