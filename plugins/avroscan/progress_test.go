package avroscan

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/hamba/avro/v2/ocf"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/avroscan/avroscantest"
	"github.com/opencurrents/currents-amplitude/plugins/store"
)

var errDown = errors.New("amplitude down")

// runProgress scans data named name with progress in path, passing every
// batch to deliver, which returns the batch's ack result; after each ack the
// queued progress is flushed (as the flush interval would). It returns the
// ids emitted and whether (and how) the source was acknowledged.
func runProgress(t *testing.T, path, name string, data []byte, deliver func(ids []string) error) (ids []string, acked bool, ackErr error) {
	t.Helper()
	conf, err := currentsAvroScannerSpec().ParseYAML("progress_path: "+path, nil)
	require.NoError(t, err)
	c, err := newCurrentsAvroFromParsed(conf, service.MockResources())
	require.NoError(t, err)
	details := service.NewScannerSourceDetails()
	details.SetName(name)
	s, err := c.Create(io.NopCloser(bytes.NewReader(data)), func(_ context.Context, err error) error {
		require.False(t, acked, "source acknowledged twice")
		acked, ackErr = true, err
		return nil
	}, details)
	require.NoError(t, err)
	ctx := context.Background()
	for {
		b, ack, err := s.NextBatch(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		var batch []string
		for _, m := range b {
			raw, _ := m.AsBytes()
			batch = append(batch, gjson.GetBytes(raw, "id").String())
		}
		ids = append(ids, batch...)
		require.NoError(t, ack(ctx, deliver(batch)))
		c.progress.flush()
	}
	require.NoError(t, s.Close(ctx))
	require.NoError(t, c.Close(ctx))
	return ids, acked, ackErr
}

func TestScannerResumesFromProgress(t *testing.T) {
	data, _, _ := avroscantest.File(t, ocf.Snappy, 100, 10)
	path := filepath.Join(t.TempDir(), "state", "backfill.db")
	const name = "event_type=users.behaviors.Purchase/a.avro"

	// Run 1: Amplitude goes down after 45 records.
	sent := 0
	ids, acked, ackErr := runProgress(t, path, name, data, func([]string) error {
		sent++
		if sent > 45 {
			return errDown
		}
		return nil
	})
	assert.Len(t, ids, 100)
	assert.True(t, acked)
	assert.Error(t, ackErr, "a file with nacked records is not done (kept)")

	// Run 2 resumes at record 45 (blocks 0-3 done, records 40-44 of block 4).
	ids, acked, ackErr = runProgress(t, path, name, data, func([]string) error { return nil })
	assert.Equal(t, idsFrom(45, 100), ids, "records already delivered are not sent again")
	assert.True(t, acked)
	assert.NoError(t, ackErr, "every record delivered: the file is done")

	// Run 3: the file is complete; it is acknowledged without reading.
	ids, acked, ackErr = runProgress(t, path, name, data, func([]string) error { return nil })
	assert.Empty(t, ids)
	assert.True(t, acked)
	assert.NoError(t, ackErr)

	// The same name with other content (another sync marker) starts over.
	other, _, _ := avroscantest.Records(t, ocf.Null, 5, 5, func(i int) any { return avroscantest.Record(i) })
	other = bytes.Replace(other, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, []byte("0123456789abcdef"), -1)
	ids, _, _ = runProgress(t, path, name, other, func([]string) error { return nil })
	assert.Len(t, ids, 5)
}

func idsFrom(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, avroscantest.Record(i).ID)
	}
	return out
}

// TestBackfillCrashAtEveryWritePoint crashes a backfill of one file at each
// of its writes to the progress file (here one per acknowledged record, the
// flush running after every ack; the last also records the file as
// complete), before the write commits: from the crash on, nothing is
// delivered (the process is dead). A restart on the same file then runs to
// the end. Invariants: every record reaches Amplitude; the restart sends only
// the records not recorded before the crash; the source is acknowledged as
// done (deletable) only in a run in which every record was delivered.
func TestBackfillCrashAtEveryWritePoint(t *testing.T) {
	const blocks, perBlock = 6, 5
	const total = blocks * perBlock
	data, _, _ := avroscantest.File(t, ocf.Deflate, total, perBlock)
	const name = "f.avro"
	for crashAt := 1; crashAt <= total+1; crashAt++ {
		path := filepath.Join(t.TempDir(), "backfill.db")
		n, crashed := 0, false
		db, err := store.Open(path, store.Options{BeforeCommit: func() error {
			n++
			if n >= crashAt {
				crashed = true
			}
			if crashed {
				return errDown
			}
			return nil
		}})
		require.NoError(t, err)
		delivered := map[string]int{}
		deliver := func(ids []string) error {
			if crashed {
				return errDown // dead: nothing is delivered any more
			}
			for _, id := range ids {
				delivered[id]++
			}
			return nil
		}
		_, _, ackErr1 := runProgress(t, path, name, data, deliver)
		require.NoError(t, db.Close())
		if ackErr1 == nil {
			assert.Len(t, delivered, total, "crash at write %d: the file was acknowledged as done with records undelivered", crashAt)
		}
		recorded := min(crashAt-1, total)
		crashed = false // the restarted process's file has no fault

		ids, acked, ackErr2 := runProgress(t, path, name, data, deliver)
		assert.True(t, acked)
		assert.NoError(t, ackErr2, "crash at write %d: the restart finishes the file", crashAt)
		assert.Len(t, delivered, total, "crash at write %d: every record reached Amplitude", crashAt)
		assert.Equal(t, idsFrom(recorded, total), ids, "crash at write %d: only the records not recorded are sent again", crashAt)
	}
}
