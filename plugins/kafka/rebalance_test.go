package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// inFlightPartition registers a partition of f with one batch handed out.
func inFlightPartition(f *franzInput, partition int32) (*partitionTracker, *trackedBatch) {
	p := newPartitionTracker(topicPartition{"t", partition})
	b := &trackedBatch{part: p, msgs: make(service.MessageBatch, 2), records: 2, next: kgo.EpochOffset{Offset: 2}}
	p.batches = []*trackedBatch{b}
	p.inFlight = 2
	f.parts[p.tp] = p
	return p, b
}

// startDrain runs f.drain in the background and returns once it waits on
// the clock; the channel is closed when drain returns.
func startDrain(t *testing.T, f *franzInput, clk *clock.Fake, parts []*partitionTracker) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.drain(context.Background(), parts)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.True(t, clk.WaitForTimers(ctx, 1), "drain does not wait on the input's clock")
	return done
}

func TestDrainEndsOnTheLastAck(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_767_225_600, 0))
	f := newFranzInput(franzInputConf{checkpointLimit: 10, drainTimeout: time.Minute, replayNacks: true}, service.MockResources(), clk)
	_, b0 := inFlightPartition(f, 0)
	_, b1 := inFlightPartition(f, 1)
	parts := f.detach(map[string][]int32{"t": {0, 1}}, partDraining)
	require.Len(t, parts, 2)

	done := startDrain(t, f, clk, parts)
	f.ack(b0, nil)
	select {
	case <-done:
		t.Fatal("drain ended with records of partition 1 in flight")
	default:
	}
	f.ack(b1, errors.New("nacked while draining: left to the new owner"))
	<-done
	assert.Zero(t, clk.Pending(), "drain left its timer running")
}

func TestDrainGivesUpAfterTheTimeout(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_767_225_600, 0))
	f := newFranzInput(franzInputConf{checkpointLimit: 10, drainTimeout: 22 * time.Second}, service.MockResources(), clk)
	p, b := inFlightPartition(f, 0)
	parts := f.detach(map[string][]int32{"t": {0}}, partDraining)

	done := startDrain(t, f, clk, parts)
	clk.Advance(21 * time.Second)
	select {
	case <-done:
		t.Fatal("drain ended before its timeout")
	default:
	}
	clk.Advance(time.Second)
	<-done

	// The partition is released: a late ack changes nothing and commits
	// nothing.
	f.mu.Lock()
	f.releasePartitionLocked(p, false)
	f.mu.Unlock()
	f.ack(b, nil)
	assert.False(t, p.hasNext, "a late ack of a released partition moved its commit mark")
}

// TestRevokeCancelsTheMessagesContext: the records of a revoked or lost
// partition carry a cancelled context (cause ErrPartitionRevoked), so that an
// output abandons what it has not sent; other partitions' records do not.
func TestRevokeCancelsTheMessagesContext(t *testing.T) {
	for _, state := range []partitionState{partDraining, partGone} {
		clk := clock.NewFake(time.Unix(1_767_225_600, 0))
		f := newFranzInput(franzInputConf{checkpointLimit: 10, batchSize: 10}, service.MockResources(), clk)
		fetch := func(partition int32) {
			f.addFetchLocked(kgo.FetchTopicPartition{Topic: "t", FetchPartition: kgo.FetchPartition{
				Partition: partition, Records: []*kgo.Record{{Topic: "t", Partition: partition, Value: []byte("v")}}}})
		}
		f.mu.Lock()
		fetch(0)
		fetch(1)
		f.mu.Unlock()
		require.Len(t, f.queue, 2)
		revoked, kept := f.queue[0].msgs[0], f.queue[1].msgs[0]
		if f.queue[0].part.tp.partition != 0 {
			revoked, kept = kept, revoked
		}
		require.NoError(t, revoked.Context().Err())

		f.detach(map[string][]int32{"t": {0}}, state)
		require.Error(t, revoked.Context().Err(), "state %d", state)
		assert.ErrorIs(t, context.Cause(revoked.Context()), ErrPartitionRevoked)
		assert.NoError(t, kept.Context().Err(), "another partition's records are still wanted")
		assert.NoError(t, kept.Copy().Context().Err())
	}
}

// TestStopWithdrawsRecordsInFlight: once the context Benthos reads with ends
// (the stream is stopping), every owned partition's records are withdrawn
// (cause ErrStopping) and nothing more is handed out.
func TestStopWithdrawsRecordsInFlight(t *testing.T) {
	f := newFranzInput(franzInputConf{checkpointLimit: 10, batchSize: 10}, service.MockResources(), clock.NewFake(time.Unix(1_767_225_600, 0)))
	f.mu.Lock()
	f.addFetchLocked(kgo.FetchTopicPartition{Topic: "t", FetchPartition: kgo.FetchPartition{
		Partition: 0, Records: []*kgo.Record{{Topic: "t", Value: []byte("v")}}}})
	msg := f.queue[0].msgs[0]
	f.mu.Unlock()

	ctx, stop := context.WithCancel(context.Background())
	f.watchReadContext(ctx)
	f.watchReadContext(ctx) // the same context again: one watch
	require.NoError(t, msg.Context().Err())
	stop()
	<-msg.Context().Done() // the watch runs in its own goroutine
	assert.ErrorIs(t, context.Cause(msg.Context()), ErrStopping)
	_, _, err := f.ReadBatch(ctx)
	assert.ErrorIs(t, err, context.Canceled, "a stopping input hands out nothing")
}
