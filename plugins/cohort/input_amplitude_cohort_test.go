package cohort

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/cohort/cohorttest"
	"github.com/opencurrents/currents-amplitude/plugins/store"
)

// newTestInput builds an input on a fresh state file with a fake clock.
func newTestInput(t testing.TB, amp *cohorttest.Amplitude, extra string) (*amplitudeCohortInput, *fakeClock) {
	t.Helper()
	return newTestInputAt(t, amp, filepath.Join(t.TempDir(), "state", "cohorts.db"), store.Options{}, extra)
}

// newTestInputAt builds an input on the state file at path, opened first
// with opts (a fault hook, say).
func newTestInputAt(t testing.TB, amp *cohorttest.Amplitude, path string, opts store.Options, extra string) (*amplitudeCohortInput, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	useClock(t, clk)
	opts.Clock = clk
	db, err := store.Open(path, opts) // the input shares this handle
	require.NoError(t, err)
	yaml := "url: " + amp.URL + "\napi_key: ak\nsecret_key: sk\nstate_path: " + path + "\npoll_interval: 1ms\n" + extra
	in, err := newAmplitudeCohortInputFromParsed(parseConf(t, amplitudeCohortInputSpec(), yaml), service.MockResources())
	require.NoError(t, err)
	require.NoError(t, db.Close())
	t.Cleanup(func() { _ = in.Close(context.Background()) })
	return in, clk
}

// syncOnce runs one scheduled sync, acking every emitted message with ackErr,
// and returns the emitted changes.
func syncOnce(t testing.TB, in *amplitudeCohortInput, ackErr error) []Change {
	t.Helper()
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		in.syncAll(ctx)
		close(done)
	}()
	var out []Change
	for {
		select {
		case p := <-in.out:
			require.Len(t, p.batch, 1)
			b, err := p.batch[0].AsBytes()
			require.NoError(t, err)
			c, err := ParseChange(b)
			require.NoError(t, err)
			out = append(out, c)
			require.NoError(t, p.ack(ctx, ackErr))
		case <-done:
			return out
		}
	}
}

func storedLastComputed(t testing.TB, in *amplitudeCohortInput, cohortID string) string {
	t.Helper()
	st, err := in.state.load(cohortID)
	require.NoError(t, err)
	return st.committed.lastComputed
}

func TestCohortSyncSendsEveryoneThenDeltas(t *testing.T) {
	amp := cohorttest.NewAmplitude(t, "ak", "sk")
	amp.SetCohort("c1", cohorttest.Cohort{Name: "Buyers", LastComputed: 100, UserIDs: []string{"b", "a", "c", "a"}})
	in, _ := newTestInput(t, amp, "")

	first := syncOnce(t, in, nil)
	assert.Equal(t, []Change{{CohortID: "c1", CohortName: "Buyers", IDType: IDTypeExternal, Added: []string{"a", "b", "c"}}}, first)
	assert.Equal(t, "100", storedLastComputed(t, in, "c1"))

	assert.Empty(t, syncOnce(t, in, nil), "unchanged lastComputed sends nothing")
	assert.Equal(t, 1, amp.Requests(), "unchanged cohort costs no download")

	amp.SetCohort("c1", cohorttest.Cohort{Name: "Buyers", LastComputed: 200, UserIDs: []string{"b", "c", "d"}})
	delta := syncOnce(t, in, nil)
	assert.Equal(t, []Change{{CohortID: "c1", CohortName: "Buyers", IDType: IDTypeExternal, Added: []string{"d"}, Removed: []string{"a"}}}, delta)
	assert.Equal(t, 2, amp.Requests())

	amp.SetCohort("c1", cohorttest.Cohort{Name: "Buyers", LastComputed: 300, UserIDs: []string{"d", "c", "b"}})
	assert.Empty(t, syncOnce(t, in, nil), "recomputed but identical membership sends nothing")
	assert.Equal(t, "300", storedLastComputed(t, in, "c1"))
}

func TestCohortFailedDeliveryIsRetriedAndNotCommitted(t *testing.T) {
	amp := cohorttest.NewAmplitude(t, "ak", "sk")
	amp.SetCohort("c1", cohorttest.Cohort{Name: "N", LastComputed: 1, UserIDs: []string{"a", "b"}})
	in, _ := newTestInput(t, amp, "")

	nack := assert.AnError
	failed := syncOnce(t, in, nack)
	require.Len(t, failed, 1)
	assert.Equal(t, "", storedLastComputed(t, in, "c1"), "nothing stored before delivery")

	retried := syncOnce(t, in, nil)
	assert.Equal(t, failed, retried, "the same delta is sent again")
	assert.Equal(t, "1", storedLastComputed(t, in, "c1"))

	amp.SetCohort("c1", cohorttest.Cohort{Name: "N", LastComputed: 2, UserIDs: []string{"b", "c"}})
	require.Len(t, syncOnce(t, in, nack), 1)
	assert.Equal(t, "1", storedLastComputed(t, in, "c1"), "membership not advanced")
	delta := syncOnce(t, in, nil)
	assert.Equal(t, []Change{{CohortID: "c1", CohortName: "N", IDType: IDTypeExternal, Added: []string{"c"}, Removed: []string{"a"}}}, delta)
	assert.Equal(t, "2", storedLastComputed(t, in, "c1"))
}

func TestCohortSelectionAndChunks(t *testing.T) {
	amp := cohorttest.NewAmplitude(t, "ak", "sk")
	amp.SetCohort("c1", cohorttest.Cohort{Name: "One", LastComputed: 1, UserIDs: ids("u", 0, 5)})
	amp.SetCohort("c2", cohorttest.Cohort{Name: "Two", LastComputed: 1, UserIDs: []string{"x"}})
	amp.SetCohort("c3", cohorttest.Cohort{Name: "Old", LastComputed: 1, Archived: true, UserIDs: []string{"y"}})

	t.Run("all non-archived cohorts, chunked", func(t *testing.T) {
		in, _ := newTestInput(t, amp, "max_ids_per_message: 2")
		got := syncOnce(t, in, nil)
		require.Len(t, got, 4)
		for _, c := range got[:3] {
			assert.Equal(t, "c1", c.CohortID)
			assert.LessOrEqual(t, len(c.Added), 2)
		}
		assert.Equal(t, "c2", got[3].CohortID)
	})
	t.Run("configured ids, unknown id skipped", func(t *testing.T) {
		in, _ := newTestInput(t, amp, "cohort_ids: [ c3, missing ]")
		got := syncOnce(t, in, nil)
		require.Len(t, got, 1)
		assert.Equal(t, []string{"y"}, got[0].Added)
	})
}

func TestCohortDeviceIDsForAnonymousMembers(t *testing.T) {
	amp := cohorttest.NewAmplitude(t, "ak", "sk")
	amp.SetCohort("c1", cohorttest.Cohort{Name: "N", LastComputed: 1,
		UserIDs: []string{"a", "", ""}, DeviceIDs: []string{"dev-a", "dev-b", ""}})
	for _, tc := range []struct {
		conf string
		want []Change
	}{
		{"", []Change{{CohortID: "c1", CohortName: "N", IDType: IDTypeExternal, Added: []string{"a"}}}},
		{"device_id_column: device_id", []Change{
			{CohortID: "c1", CohortName: "N", IDType: IDTypeDevice, Added: []string{"dev-b"}},
			{CohortID: "c1", CohortName: "N", IDType: IDTypeExternal, Added: []string{"a"}},
		}},
	} {
		in, _ := newTestInput(t, amp, tc.conf)
		assert.Equal(t, tc.want, syncOnce(t, in, nil), tc.conf)
	}
}

func TestCohortDownloadBudget(t *testing.T) {
	amp := cohorttest.NewAmplitude(t, "ak", "sk")
	for _, id := range []string{"c1", "c2", "c3"} {
		amp.SetCohort(id, cohorttest.Cohort{Name: id, LastComputed: 1, UserIDs: []string{"a"}})
	}
	in, clk := newTestInput(t, amp, "monthly_download_budget: 2")
	now := clk.Now().UTC()
	clk.Set(time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Hour)) // an hour before the month ends
	assert.Len(t, syncOnce(t, in, nil), 2)
	assert.Equal(t, 2, amp.Requests())
	assert.Empty(t, syncOnce(t, in, nil), "budget used up")
	assert.Equal(t, 2, amp.Requests())

	clk.Advance(2 * time.Hour) // December
	assert.Len(t, syncOnce(t, in, nil), 1)
	assert.Equal(t, 3, amp.Requests())
}

func TestCohortBadStateAndCredentials(t *testing.T) {
	amp := cohorttest.NewAmplitude(t, "ak", "sk")
	amp.SetCohort("c1", cohorttest.Cohort{Name: "N", LastComputed: 1, UserIDs: []string{"a"}})

	in, _ := newTestInput(t, amp, "")
	require.NoError(t, in.state.db.Update(func(tx *store.Tx) error { return tx.Put(membersNS, "state/c1", []byte("garbage"), 0) }))
	assert.Empty(t, syncOnce(t, in, nil), "a corrupt state is never synced as a first sync (it would send no removals)")
	assert.Zero(t, amp.Requests(), "nor downloaded")

	bad := cohorttest.NewAmplitude(t, "other", "sk")
	bad.SetCohort("c1", cohorttest.Cohort{Name: "N", LastComputed: 1, UserIDs: []string{"a"}})
	in, _ = newTestInput(t, bad, "")
	assert.Empty(t, syncOnce(t, in, nil))
}

func TestCohortInputConfigValidation(t *testing.T) {
	blocked := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(blocked, nil, 0o600))
	for _, tc := range []struct{ yaml, want string }{
		{"api_key: \"\"\nsecret_key: \"\"", "api_key and secret_key are required"},
		{"api_key: a\nsecret_key: b\nschedule: weekly", "schedule must be"},
		{"api_key: a\nsecret_key: b\nmax_ids_per_message: 0", "at least 1"},
		{"api_key: a\nsecret_key: b\nstate_path: " + blocked + "/s.db", "creating the state folder"},
	} {
		_, err := newAmplitudeCohortInputFromParsed(parseConf(t, amplitudeCohortInputSpec(), tc.yaml), service.MockResources())
		require.Error(t, err, tc.yaml)
		assert.Contains(t, err.Error(), tc.want)
	}
}

// TestCohortLargeCohortBoundedMemory syncs a 100,000-member cohort, then a
// 10% churn, and checks that messages stay within max_ids_per_message and
// that allocation stays proportional to the cohort (a few hundred bytes per
// member), not to anything larger.
func TestCohortLargeCohortBoundedMemory(t *testing.T) {
	const n = 100_000
	amp := cohorttest.NewAmplitude(t, "ak", "sk")
	members := ids("user-", 0, n)
	amp.SetCohort("big", cohorttest.Cohort{Name: "Big", LastComputed: 1, UserIDs: members})
	in, _ := newTestInput(t, amp, "")

	measure := func() (allocated uint64, added, removed, maxIDs int) {
		var before, after, retained runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, c := range syncOnce(t, in, nil) {
			added += len(c.Added)
			removed += len(c.Removed)
			maxIDs = max(maxIDs, len(c.Added)+len(c.Removed))
		}
		runtime.ReadMemStats(&after)
		runtime.GC()
		runtime.ReadMemStats(&retained)
		// Nothing of the cohort outlives a sync in the heap: the state is
		// in the (memory-mapped) state file.
		assert.Less(t, int64(retained.HeapAlloc)-int64(before.HeapAlloc), int64(8<<20), "heap retained after the sync")
		return after.TotalAlloc - before.TotalAlloc, added, removed, maxIDs
	}

	alloc, added, removed, maxIDs := measure()
	assert.Equal(t, n, added)
	assert.Zero(t, removed)
	assert.LessOrEqual(t, maxIDs, 1000)
	t.Logf("first sync of %d members: %.1f MB allocated (%d B/member)", n, float64(alloc)/1e6, alloc/n)
	// ids are 11 bytes; the CSV line, the tagged copy, the sorted list, the
	// stored state and the JSON messages each hold every id about once.
	assert.Less(t, alloc/n, uint64(600), "allocation per member")

	churned := slices.Concat(members[n/10:], ids("new-", 0, n/10))
	amp.SetCohort("big", cohorttest.Cohort{Name: "Big", LastComputed: 2, UserIDs: churned})
	alloc, added, removed, maxIDs = measure()
	assert.Equal(t, n/10, added)
	assert.Equal(t, n/10, removed)
	assert.LessOrEqual(t, maxIDs, 1000)
	assert.Less(t, alloc/n, uint64(600), "allocation per member")
}

// TestCohortTransientErrorsDoNotRestartTheExport: a 503 or 429 on the list,
// a status poll or the file is retried in place; the export job is requested
// once, so the monthly download budget is spent once.
func TestCohortTransientErrorsDoNotRestartTheExport(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match func(path string) bool
		code  int
	}{
		{"list", func(p string) bool { return p == "/api/3/cohorts" }, http.StatusBadGateway},
		{"status poll", func(p string) bool { return strings.HasPrefix(p, "/api/5/cohorts/request-status/") }, http.StatusServiceUnavailable},
		{"status poll throttled", func(p string) bool { return strings.HasPrefix(p, "/api/5/cohorts/request-status/") }, http.StatusTooManyRequests},
		{"file", func(p string) bool { return strings.HasSuffix(p, "/file") }, http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			amp := cohorttest.NewAmplitude(t, "ak", "sk")
			amp.SetCohort("c1", cohorttest.Cohort{Name: "N", LastComputed: 1, UserIDs: []string{"a", "b"}})
			var mu sync.Mutex
			faults := 3
			amp.Fault = func(path string) int {
				mu.Lock()
				defer mu.Unlock()
				if tc.match(path) && faults > 0 {
					faults--
					return tc.code
				}
				return 0
			}
			in, _ := newTestInput(t, amp, "")
			got := syncOnce(t, in, nil)
			assert.Equal(t, []Change{{CohortID: "c1", CohortName: "N", IDType: IDTypeExternal, Added: []string{"a", "b"}}}, got)
			assert.Equal(t, 1, amp.Requests(), "one export job, one download of the budget")
			mu.Lock()
			assert.Zero(t, faults, "the faults were hit")
			mu.Unlock()
		})
	}
}
