package cohort

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadMembers(t *testing.T) {
	cols := csvColumns{userID: "user_id"}
	for _, tc := range []struct {
		name, csv string
		cols      csvColumns
		want      []string
		stats     memberStats
		err       string
	}{
		{name: "quoted with BOM and CRLF", csv: "\ufeff\"amplitude_id\",\"user_id\"\r\n1,\"b\"\r\n2,\"a,1\"\r\n3,\"\"\r\n4,b\r\n",
			cols: cols, want: []string{"ua,1", "ub"}, stats: memberStats{rows: 4, anonymous: 1}},
		{name: "device column", csv: "user_id,device_id\nu1,d1\n,d2\n,\n",
			cols: csvColumns{userID: "user_id", deviceID: "device_id"}, want: []string{"dd2", "uu1"}, stats: memberStats{rows: 3, anonymous: 1}},
		{name: "short rows and long ids", csv: "amplitude_id,user_id\n1\n2," + strings.Repeat("x", maxIDLen+1) + "\n",
			cols: cols, stats: memberStats{rows: 2, anonymous: 1, invalid: 1}},
		{name: "empty file", csv: "", cols: cols, err: "no header row"},
		{name: "missing column", csv: "amplitude_id\n1\n", cols: cols, err: `no "user_id" column`},
		{name: "missing device column", csv: "user_id\n1\n", cols: csvColumns{userID: "user_id", deviceID: "device_id"}, err: `no "device_id" column`},
		{name: "too many members", csv: "user_id\na\nb\nc\nd\n", cols: cols, err: "more than 3 members"},
		{name: "broken quoting", csv: "user_id\n\"a\"b\"\"\n", cols: cols, want: []string{"ua\"b\""}, stats: memberStats{rows: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, st, err := readMembers(strings.NewReader(tc.csv), tc.cols, 3)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.stats, st)
		})
	}
}

func TestStateRoundTripAndCorruption(t *testing.T) {
	members := []string{"dx", "ua", "ub"}
	st, err := decodeState(encodeState("1700000000", members))
	require.NoError(t, err)
	assert.Equal(t, "1700000000", st.lastComputed)
	var got []string
	for c := st.cursor(); c.cur != nil; c.next() {
		got = append(got, string(c.cur))
	}
	assert.Equal(t, members, got)

	good := encodeState("1", members)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"magic":     []byte("xxxx"),
		"truncated": good[:len(good)-1],
		"trailing":  append(slices.Clone(good), 0),
		"unsorted":  encodeState("1", []string{"ub", "ua"}),
		"untagged":  encodeState("1", []string{"xa"}),
		"huge":      append([]byte(stateMagic), 0xff, 0xff, 0xff, 0xff, 0x0f),
	} {
		_, err := decodeState(b)
		assert.ErrorIs(t, err, errBadState, name)
	}
}

// TestDiffMatchesSetDifference compares the merge with a map-based reference
// on random memberships.
func TestDiffMatchesSetDifference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		pick := func() []string {
			var m []string
			for i := range 40 {
				if r.IntN(2) == 0 {
					m = append(m, string("du"[r.IntN(2)])+ids("", i, 1)[0])
				}
			}
			slices.Sort(m)
			return slices.Compact(m)
		}
		old, cur := pick(), pick()
		st, err := decodeState(encodeState("1", old))
		require.NoError(t, err)
		var added, removed []string
		next, err := decodeState(encodeState("2", cur))
		require.NoError(t, err)
		require.NoError(t, diff(st, next, func(m string, add bool) error {
			if add {
				added = append(added, m)
			} else {
				removed = append(removed, m)
			}
			return nil
		}))
		var wantAdded, wantRemoved []string
		for _, m := range cur {
			if !slices.Contains(old, m) {
				wantAdded = append(wantAdded, m)
			}
		}
		for _, m := range old {
			if !slices.Contains(cur, m) {
				wantRemoved = append(wantRemoved, m)
			}
		}
		require.Equal(t, wantAdded, added)
		require.Equal(t, wantRemoved, removed)
	}
}

func TestChunkerSplitsBySizeAndType(t *testing.T) {
	var got []Change
	ck := &chunker{cohortID: "c", cohortName: "N", max: 2, flush: func(c Change) error {
		got = append(got, c)
		return nil
	}}
	for _, e := range []struct {
		m   string
		add bool
	}{{"d1", true}, {"ua", true}, {"ub", false}, {"uc", true}} {
		require.NoError(t, ck.add(e.m, e.add))
	}
	require.NoError(t, ck.close())
	assert.Equal(t, []Change{
		{CohortID: "c", CohortName: "N", IDType: IDTypeDevice, Added: []string{"1"}},
		{CohortID: "c", CohortName: "N", IDType: IDTypeExternal, Added: []string{"a"}, Removed: []string{"b"}},
		{CohortID: "c", CohortName: "N", IDType: IDTypeExternal, Added: []string{"c"}},
	}, got)
	assert.Equal(t, 3, ck.added)
	assert.Equal(t, 1, ck.removed)
}

func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState("1", []string{"ua", "ub"}))
	f.Add([]byte(stateMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		n := 0
		for c := st.cursor(); c.cur != nil; c.next() {
			n++
		}
		if n != st.count {
			t.Fatalf("iterated %d members, header says %d", n, st.count)
		}
	})
}

func FuzzReadMembers(f *testing.F) {
	f.Add("user_id,device_id\na,b\n,c\n")
	f.Add("\"user_id\"\n\"a\"\"b\"\n")
	f.Fuzz(func(t *testing.T, s string) {
		got, _, err := readMembers(strings.NewReader(s), csvColumns{userID: "user_id", deviceID: "device_id"}, 1000)
		if err != nil {
			return
		}
		if !slices.IsSorted(got) {
			t.Fatal("members not sorted")
		}
		if _, err := decodeState(encodeState("1", got)); err != nil {
			t.Fatalf("state of parsed members does not decode: %v", err)
		}
	})
}
