package cohort

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/cohort/cohorttest"
	"github.com/opencurrents/currents-amplitude/plugins/store"
)

// errCrashed is what every write returns once the simulated process died.
var errCrashed = errors.New("crashed")

// brazeModel is the membership Braze holds, updated by delivered changes.
type brazeModel map[string]bool

func (m brazeModel) apply(c Change) {
	for _, id := range c.Added {
		m[id] = true
	}
	for _, id := range c.Removed {
		delete(m, id)
	}
}

func (m brazeModel) sorted() []string {
	out := make([]string, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// runSync runs one sync, delivering each emitted change to braze and acking
// it, until dead() says the process died: from then on nothing is delivered
// and every message is nacked. It returns the number of changes delivered.
func runSync(t *testing.T, in *amplitudeCohortInput, braze brazeModel, dead func() bool) int {
	t.Helper()
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		in.syncAll(ctx)
		close(done)
	}()
	sent := 0
	for {
		select {
		case p := <-in.out:
			b, err := p.batch[0].AsBytes()
			require.NoError(t, err)
			c, err := ParseChange(b)
			require.NoError(t, err)
			if dead() {
				require.NoError(t, p.ack(ctx, errCrashed))
				continue
			}
			braze.apply(c)
			sent++
			require.NoError(t, p.ack(ctx, nil))
		case <-done:
			return sent
		}
	}
}

// TestCohortCrashAtEveryWritePoint crashes a sync that adds and removes
// members at each of its writes to the state file (the download count, the
// pending change set, each delivered message, the commit), before the write
// is committed, then restarts on the same file and syncs again. Invariants:
// Braze ends with exactly the new membership (no removal lost), the commit
// lands, a change set already recorded is resumed without a new download,
// and once part of it was recorded as delivered the restart sends only the
// rest, never the whole change set again.
func TestCohortCrashAtEveryWritePoint(t *testing.T) {
	old := ids("u", 0, 60)
	cur := slices.Concat(ids("u", 20, 40), ids("v", 0, 25)) // 20 removed, 25 added
	const conf = "max_ids_per_message: 10"
	const messages = 5 // 45 changes in messages of 10
	writes := 2 + messages + 1
	for crashAt := 1; crashAt <= writes+1; crashAt++ {
		amp := cohorttest.NewAmplitude(t, "ak", "sk")
		amp.SetCohort("c1", cohorttest.Cohort{Name: "N", LastComputed: 1, UserIDs: old})
		path := filepath.Join(t.TempDir(), "s.db")
		braze := brazeModel{}

		in, _ := newTestInputAt(t, amp, path, store.Options{}, conf)
		runSync(t, in, braze, func() bool { return false })
		require.NoError(t, in.Close(context.Background()))
		require.Equal(t, old, braze.sorted())

		amp.SetCohort("c1", cohorttest.Cohort{Name: "N", LastComputed: 2, UserIDs: cur})
		n := 0
		crashed := false
		hook := func() error {
			n++
			if n >= crashAt {
				crashed = true
			}
			if crashed {
				return errCrashed
			}
			return nil
		}
		in, _ = newTestInputAt(t, amp, path, store.Options{BeforeCommit: hook}, conf)
		before := runSync(t, in, braze, func() bool { return crashed })
		require.NoError(t, in.Close(context.Background()))
		requestsBefore := amp.Requests()
		recorded := max(0, min(crashAt-3, messages)) // delivered messages committed before the crash

		in, _ = newTestInputAt(t, amp, path, store.Options{}, conf)
		after := runSync(t, in, braze, func() bool { return false })
		assert.Equal(t, cur, braze.sorted(), "crash at write %d: Braze holds the new membership", crashAt)
		assert.Equal(t, "2", storedLastComputed(t, in, "c1"), "crash at write %d: committed", crashAt)
		switch {
		case crashAt > writes:
			assert.Zero(t, after, "no crash: nothing left to send")
		case crashAt >= 3:
			assert.Equal(t, requestsBefore, amp.Requests(), "crash at write %d: the pending change set is resumed, not downloaded again", crashAt)
			assert.Equal(t, messages-recorded, after, "crash at write %d: only the messages not recorded are sent", crashAt)
		default:
			assert.Equal(t, messages, after, "crash at write %d: nothing was pending, the sync starts over", crashAt)
		}
		t.Logf("crash at write %d: %d messages before, %d after", crashAt, before, after)
		require.NoError(t, in.Close(context.Background()))
	}
}
