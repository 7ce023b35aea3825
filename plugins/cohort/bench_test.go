package cohort

import (
	"strings"
	"testing"
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
