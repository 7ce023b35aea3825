package kafka

import (
	"context"
	"slices"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/ratelimited"
)

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
// order, from fetch until acknowledgement. Its acknowledged offset (next) is
// what is committed with a consumer group; without one it only lives here.
type partitionTracker struct {
	tp    topicPartition
	state partitionState
	// ctx is the context of every message of the partition; it is cancelled
	// (cause ErrPartitionRevoked) as soon as the partition is revoked or
	// lost, so that an output can abandon the records it has not sent yet:
	// their new owner delivers them from the committed offset.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// batches are the tracked batches in ascending offset order; the head is
	// the oldest not yet acknowledged.
	batches []*trackedBatch
	// inFlight counts the records handed to the pipeline and not yet acked.
	inFlight int
	// startAt is when the partition's records may first be handed out
	// (partition_start_delay after its assignment).
	startAt time.Time
	// next is the offset after the last record acknowledged together with
	// every earlier one: the commit mark. hasNext is false until the first
	// acknowledgement.
	next    kgo.EpochOffset
	hasNext bool

	// batcher, with a batching policy, accumulates records until the policy
	// flushes them; pending are the raw messages it holds, pendingRecs their
	// number and pendingNext the offset after the last one.
	batcher     *service.Batcher
	pending     service.MessageBatch
	pendingRecs int
	pendingNext kgo.EpochOffset
}

// trackedBatch is a run of consecutive records of one partition delivered as
// one message batch.
type trackedBatch struct {
	part *partitionTracker
	msgs service.MessageBatch
	// records is the number of Kafka records behind msgs (batching
	// processors may change the number of messages).
	records int
	// offsets holds the offset of each message's record, when messages are
	// records (nil with a batching policy, whose processors may not keep
	// them apart): a nack naming the messages that failed then lets the
	// records delivered before the first of them be committed.
	offsets []kgo.EpochOffset
	// next is the offset to commit once this batch and all earlier ones are
	// acknowledged.
	next      kgo.EpochOffset
	acked     bool
	attempts  int
	notBefore time.Time
}

// newPartitionTracker returns the tracker of a newly owned partition.
func newPartitionTracker(tp topicPartition) *partitionTracker {
	p := &partitionTracker{tp: tp}
	p.ctx, p.cancel = context.WithCancelCause(context.Background())
	return p
}

// trackerLocked returns the tracker of a partition, creating it on its first
// records.
func (f *franzInput) trackerLocked(tp topicPartition) *partitionTracker {
	if p := f.parts[tp]; p != nil {
		return p
	}
	p := newPartitionTracker(tp)
	if at, ok := f.assignedAt[tp]; ok {
		p.startAt = at.Add(f.conf.startDelay)
		delete(f.assignedAt, tp)
	}
	if f.newBatcher != nil {
		b, err := f.newBatcher()
		if err != nil {
			// The policy was checked at construction; a failure here is a
			// bug, and records still flow unbatched.
			f.log.Errorf("Batching policy of %s/%d not applied: %v", tp.topic, tp.partition, err)
		} else {
			p.batcher = b
		}
	}
	f.parts[tp] = p
	return p
}

// addFetchLocked queues the records of one fetched partition: as batches of
// at most batch_size records, or through the partition's batcher.
func (f *franzInput) addFetchLocked(ftp kgo.FetchTopicPartition) {
	p := f.trackerLocked(topicPartition{ftp.Topic, ftp.Partition})
	recs := ftp.Records
	if p.batcher != nil {
		for _, r := range recs {
			msg := f.recordToMessage(p.ctx, r, ftp.HighWatermark)
			p.pending = append(p.pending, msg)
			p.pendingRecs++
			p.pendingNext = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
			if p.batcher.Add(msg) {
				f.flushLocked(p)
			}
		}
		return
	}
	for len(recs) > 0 {
		n := min(len(recs), f.conf.batchSize)
		b := &trackedBatch{part: p, msgs: make(service.MessageBatch, n), records: n, offsets: make([]kgo.EpochOffset, n)}
		for i, r := range recs[:n] {
			b.msgs[i] = f.recordToMessage(p.ctx, r, ftp.HighWatermark)
			b.offsets[i] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
		last := recs[n-1]
		b.next = kgo.EpochOffset{Epoch: last.LeaderEpoch, Offset: last.Offset + 1}
		p.batches = append(p.batches, b)
		f.queue = append(f.queue, b)
		recs = recs[n:]
	}
}

// flushLocked turns what the partition's batcher holds into a tracked batch.
// A batch that the policy's processors emptied is acknowledged at once: its
// records were handled (dropped on purpose by the pipeline's own mapping,
// which Benthos counts under the processors' metrics). The processors run
// under the input's lock, so acks wait for them: keep them cheap.
func (f *franzInput) flushLocked(p *partitionTracker) {
	if p.pendingRecs == 0 {
		return
	}
	msgs, err := p.batcher.Flush(context.Background())
	if err != nil {
		f.log.Errorf("Batching processors of %s/%d failed, delivering %d records unprocessed: %v", p.tp.topic, p.tp.partition, len(p.pending), err)
		msgs = p.pending
	}
	b := &trackedBatch{part: p, msgs: msgs, records: p.pendingRecs, next: p.pendingNext}
	p.pending, p.pendingRecs = nil, 0
	p.batches = append(p.batches, b)
	if len(msgs) == 0 {
		b.acked = true
		f.advanceLocked(p)
		return
	}
	f.queue = append(f.queue, b)
}

// flushDueLocked flushes the batchers whose period has elapsed and returns
// how long until the next one is due (0 when none is pending).
func (f *franzInput) flushDueLocked() (next time.Duration) {
	for _, p := range f.parts {
		if p.batcher == nil || p.pendingRecs == 0 {
			continue
		}
		d, ok := p.batcher.UntilNext()
		if !ok {
			continue
		}
		// The batcher reports an overdue period as 1ns, never as zero.
		if d <= time.Nanosecond {
			f.flushLocked(p)
			continue
		}
		if next == 0 || d < next {
			next = d
		}
	}
	return next
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
			} else if p.inFlight > 0 && p.inFlight+qb.records > f.conf.checkpointLimit {
				blocked[p] = true
			} else {
				found = qb
				p.inFlight += qb.records
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
	f.mReleased.Incr(int64(b.records))
	f.log.Debugf("Released %d records of %s/%d to the new owner: %s", b.records, b.part.tp.topic, b.part.tp.partition, why)
}

// ack records the outcome of a batch as a whole (see settle).
func (f *franzInput) ack(b *trackedBatch, err error) { f.settle(b, err, nil) }

// settle records the outcome of a batch. A success advances the partition's
// commit mark over every contiguous acknowledged batch; a failure queues the
// batch for redelivery (auto_replay_nacks) or, when replays are off, counts
// and logs it as dropped and then treats it as done, as Redpanda Connect
// does. When failed names the messages that failed (nil: all of them), only
// those are redelivered (or dropped), and the records delivered before the
// first of them may be committed, even when the partition was revoked
// meanwhile: its new owner then starts at that first failed record instead
// of sending the delivered ones again. Outcomes of released partitions are
// ignored: the new owner redelivers from the committed offset.
func (f *franzInput) settle(b *trackedBatch, err error, failed []bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.broadcastLocked()

	p := b.part
	p.inFlight -= b.records
	if p.state == partGone {
		return
	}
	if err != nil {
		if failed != nil {
			f.keepFailedLocked(b, failed)
		}
		if p.state == partDraining {
			f.releaseLocked(b, "it was nacked after its partition was revoked")
			return
		}
		if f.conf.replayNacks {
			b.attempts++
			// A rate limit's hint (a hot device's deferred events: when its
			// backlog will have been sent) outlasts the back-off.
			b.notBefore = f.clk.Now().Add(max(nackDelay(b.attempts), ratelimited.After(err)))
			f.mRedelivered.Incr(int64(b.records))
			f.log.Debugf("Redelivering %d records of %s/%d after nack: %v", b.records, p.tp.topic, p.tp.partition, err)
			f.queue = append([]*trackedBatch{b}, f.queue...)
			if f.interruptPoll != nil {
				f.interruptPoll()
			}
			return
		}
		f.mDropped.Incr(int64(b.records))
		f.log.Warnf("Dropped %d nacked records of %s/%d (auto_replay_nacks is false): %v", b.records, p.tp.topic, p.tp.partition, err)
	}
	b.acked = true
	f.advanceLocked(p)
}

// keepFailedLocked narrows a nacked batch to its failed messages (failed[i]
// for message i). The records before the first of them were delivered: they
// become an acknowledged run ahead of the batch, and the commit mark may move
// up to that first failed record. Records delivered after it stay covered by
// the batch (committed with it; sent again by a new owner only). Without
// per-record offsets (a batching policy) the batch stays whole.
func (f *franzInput) keepFailedLocked(b *trackedBatch, failed []bool) {
	if b.offsets == nil || len(failed) != len(b.msgs) {
		return
	}
	first := slices.Index(failed, true)
	if first < 0 {
		// A nack that names no failed message: redeliver it all.
		return
	}
	msgs, offsets := b.msgs[:0:0], b.offsets[:0:0]
	for i, bad := range failed {
		if bad {
			msgs = append(msgs, b.msgs[i])
			offsets = append(offsets, b.offsets[i])
		}
	}
	b.msgs, b.offsets, b.records = msgs, offsets, len(msgs)
	if first == 0 {
		return
	}
	p := b.part
	at := slices.Index(p.batches, b)
	if at < 0 {
		return
	}
	// A run of no record in flight, acknowledged: committing its next
	// offset (the first failed record's) resumes the partition there.
	done := &trackedBatch{part: p, acked: true, next: offsets[0]}
	p.batches = slices.Insert(p.batches, at, done)
	f.advanceLocked(p)
}

// advanceLocked moves the partition's commit mark over its leading
// acknowledged batches and, in a consumer group, marks it for the next
// commit. Without a group the mark stays in memory.
func (f *franzInput) advanceLocked(p *partitionTracker) {
	n := 0
	for n < len(p.batches) && p.batches[n].acked {
		n++
	}
	if n == 0 {
		return
	}
	p.next, p.hasNext = p.batches[n-1].next, true
	clear(p.batches[:n])
	p.batches = p.batches[n:]
	if f.client == nil || f.conf.group == "" {
		return
	}
	f.client.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{p.tp.topic: {p.tp.partition: p.next}})
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

// waitChange blocks until changed is closed, wait elapses on c (when
// positive) or ctx is done.
func waitChange(ctx context.Context, c clock.Clock, changed <-chan struct{}, wait time.Duration) error {
	var timer <-chan time.Time
	if wait > 0 {
		t := c.NewTimer(wait)
		defer t.Stop()
		timer = t.C()
	}
	select {
	case <-changed:
	case <-timer:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}
