package cohort

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencurrents/currents-amplitude/plugins/store"
)

// BenchmarkReadAndDiff100k parses a 100,000-member cohort CSV and computes the
// delta against a stored membership with 10% churn.
func BenchmarkReadAndDiff100k(b *testing.B) {
	const n = 100_000
	var sb strings.Builder
	sb.WriteString("\"amplitude_id\",\"user_id\"\n")
	for i, id := range ids("user-", n/10, n) {
		sb.WriteString(strings.Repeat("1", 8) + string(rune('0'+i%10)) + ",\"" + id + "\"\n")
	}
	csv := sb.String()
	old := ids("uuser-", 0, n)
	stored := encodeState("1", old)
	b.SetBytes(int64(len(csv)))
	b.ReportAllocs()
	for b.Loop() {
		members, _, err := readMembers(strings.NewReader(csv), csvColumns{userID: "user_id"}, 2_000_000)
		if err != nil {
			b.Fatal(err)
		}
		st, err := decodeState(stored)
		if err != nil {
			b.Fatal(err)
		}
		msgs := 0
		ck := &chunker{cohortID: "c", cohortName: "N", max: 1000, flush: func(c Change) error {
			_ = c.AppendJSON(nil)
			msgs++
			return nil
		}}
		cur, err := decodeState(encodeState("2", members))
		if err != nil {
			b.Fatal(err)
		}
		if err := diff(st, cur, ck.add); err != nil {
			b.Fatal(err)
		}
		_ = ck.close()
		if ck.added != n/10 || ck.removed != n/10 {
			b.Fatalf("added %d removed %d", ck.added, ck.removed)
		}
	}
}

// BenchmarkUsersTrackRequest builds one /users/track body of 75 objects.
func BenchmarkUsersTrackRequest(b *testing.B) {
	u := &usersTrackSender{attribute: "amplitude_cohorts", existingOnly: true, objectsPerReq: 75}
	batch := ids("user-", 0, 75)
	value := []byte(`"[Amplitude] Churn risk: abc1def"`)
	b.ReportAllocs()
	for b.Loop() {
		_ = u.request(batch, "add", value)
	}
}

// BenchmarkSyncStateWrites measures the state writes of one sync of a
// 100,000-member cohort cut into 100 messages: the pending change set
// (begin, 1.3 MB), one progress record per delivered message, and the commit.
// file_cache_once is the plain-Benthos alternative in the same run: the file
// cache's one in-place write of the membership after the sync (not atomic,
// not fsynced, no progress).
func BenchmarkSyncStateWrites(b *testing.B) {
	members := ids("uuser-", 0, 100_000)
	encoded := encodeState("1", members)
	const messages = 100
	b.Run("store_begin_100_acks_commit", func(b *testing.B) {
		db, err := store.Open(filepath.Join(b.TempDir(), "s.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		s := syncState{db: db}
		b.ReportAllocs()
		for b.Loop() {
			if err := s.begin("c", 1000, encoded); err != nil {
				b.Fatal(err)
			}
			for i := range messages {
				if err := s.delivered("c", i); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.commit("c"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(messages+2), "writes/sync")
	})
	b.Run("store_one_ack", func(b *testing.B) {
		db, err := store.Open(filepath.Join(b.TempDir(), "s.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		s := syncState{db: db}
		if err := s.begin("c", 1000, encoded); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := s.delivered("c", i%2000); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("file_cache_once", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "amplitude_cohort_state_c")
		b.ReportAllocs()
		for b.Loop() {
			if err := os.WriteFile(path, encoded, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	})
}
