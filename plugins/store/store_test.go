package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

func openTest(t *testing.T, clk clock.Clock) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "deep", "er", "state.db"), Options{Clock: clk})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func get(t *testing.T, db *DB, ns, key string) (string, bool) {
	t.Helper()
	var v []byte
	var ok bool
	require.NoError(t, db.View(func(tx *Tx) error { v, ok = tx.Get(ns, key); return nil }))
	return string(v), ok
}

func TestTxOperations(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	type step struct {
		advance time.Duration
		fn      func(tx *Tx) error
		want    map[string]string // key -> value; "" means absent
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"put then get", []step{
			{0, func(tx *Tx) error { return tx.Put("ns", "a", []byte("1"), 0) }, map[string]string{"a": "1", "b": ""}},
		}},
		{"overwrite", []step{
			{0, func(tx *Tx) error { return tx.Put("ns", "a", []byte("1"), 0) }, nil},
			{0, func(tx *Tx) error { return tx.Put("ns", "a", []byte("22"), 0) }, map[string]string{"a": "22"}},
		}},
		{"empty value is present", []step{
			{0, func(tx *Tx) error { return tx.Put("ns", "a", nil, 0) }, nil},
		}},
		{"ttl hides then sweep deletes", []step{
			{0, func(tx *Tx) error { return tx.Put("ns", "a", []byte("1"), time.Minute) }, map[string]string{"a": "1"}},
			{time.Minute, nil, map[string]string{"a": ""}},
		}},
		{"overwrite without ttl keeps the entry", []step{
			{0, func(tx *Tx) error { return tx.Put("ns", "a", []byte("1"), time.Minute) }, nil},
			{0, func(tx *Tx) error { return tx.Put("ns", "a", []byte("2"), 0) }, nil},
			{time.Hour, nil, map[string]string{"a": "2"}},
		}},
		{"delete", []step{
			{0, func(tx *Tx) error { return tx.Put("ns", "a", []byte("1"), time.Minute) }, nil},
			{0, func(tx *Tx) error { return tx.Delete("ns", "a") }, map[string]string{"a": ""}},
			{0, func(tx *Tx) error { return tx.Delete("nobucket", "a") }, nil},
		}},
		{"delete prefix", []step{
			{0, func(tx *Tx) error {
				for _, k := range []string{"p/1", "p/2", "q/1"} {
					if err := tx.Put("ns", k, []byte(k), 0); err != nil {
						return err
					}
				}
				return tx.DeletePrefix("ns", "p/")
			}, map[string]string{"p/1": "", "p/2": "", "q/1": "q/1"}},
		}},
		{"an error rolls the whole transaction back", []step{
			{0, func(tx *Tx) error {
				if err := tx.Put("ns", "a", []byte("1"), 0); err != nil {
					return err
				}
				return errors.New("boom")
			}, map[string]string{"a": ""}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := clock.NewFake(start)
			db := openTest(t, clk)
			for i, s := range c.steps {
				clk.Advance(s.advance)
				if s.fn != nil {
					err := db.Update(s.fn)
					if c.name == "an error rolls the whole transaction back" {
						require.Error(t, err)
					} else {
						require.NoError(t, err, "step %d", i)
					}
				}
				for k, want := range s.want {
					got, ok := get(t, db, "ns", k)
					assert.Equal(t, want != "", ok, "step %d key %s present", i, k)
					assert.Equal(t, want, got, "step %d key %s", i, k)
				}
			}
			// After a sweep, nothing expired is left in the file or the index.
			_, err := db.Sweep()
			require.NoError(t, err)
			require.NoError(t, db.View(func(tx *Tx) error {
				if idx := tx.tx.Bucket([]byte(ttlBucket)); idx != nil {
					return idx.ForEach(func(k, _ []byte) error {
						_, live := get(t, db, "ns", string(k[headerLen+len("ns")+1:]))
						assert.True(t, live, "index entry %q for a dead key", k)
						return nil
					})
				}
				return nil
			}))
		})
	}
}

func TestSweepDeletesOnlyExpired(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	db := openTest(t, clk)
	require.NoError(t, db.Update(func(tx *Tx) error {
		for i := range 25_000 {
			ttl := time.Minute
			if i%5 == 0 {
				ttl = time.Hour
			}
			if err := tx.Put("ns", string(rune('a'+i%26))+time.Duration(i).String(), []byte("v"), ttl); err != nil {
				return err
			}
		}
		return nil
	}))
	clk.Advance(2 * time.Minute)
	n, err := db.Sweep()
	require.NoError(t, err)
	assert.Equal(t, 20_000, n, "more than one chunk swept")
	left := 0
	require.NoError(t, db.View(func(tx *Tx) error {
		return tx.tx.Bucket([]byte("ns")).ForEach(func(_, _ []byte) error { left++; return nil })
	}))
	assert.Equal(t, 5_000, left)
}

func TestOpenSharesOneFileAndCreatesFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "s.db")
	db1, err := Open(path, Options{})
	require.NoError(t, err)
	db2, err := Open(path, Options{})
	require.NoError(t, err)
	assert.Same(t, db1, db2)
	require.NoError(t, db1.Update(func(tx *Tx) error { return tx.Put("ns", "k", []byte("v"), 0) }))
	require.NoError(t, db1.Close())
	v, ok := get(t, db2, "ns", "k")
	assert.True(t, ok, "the second reference still works after the first is closed")
	assert.Equal(t, "v", v)
	require.NoError(t, db2.Close())

	db3, err := Open(path, Options{})
	require.NoError(t, err)
	defer db3.Close()
	assert.NotSame(t, db1, db3)
	v, _ = get(t, db3, "ns", "k")
	assert.Equal(t, "v", v, "committed data survives a close")
}

func TestInvalidNamespaceAndKey(t *testing.T) {
	db := openTest(t, nil)
	for _, c := range []struct{ ns, key string }{{"", "k"}, {"\x00ttl", "k"}, {"a\x00b", "k"}, {"ns", ""}} {
		assert.Error(t, db.Update(func(tx *Tx) error { return tx.Put(c.ns, c.key, nil, 0) }), "%q/%q", c.ns, c.key)
	}
}

func TestBeforeCommitAborts(t *testing.T) {
	fail := false
	db, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{BeforeCommit: func() error {
		if fail {
			return errors.New("crash")
		}
		return nil
	}})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Update(func(tx *Tx) error { return tx.Put("ns", "k", []byte("1"), 0) }))
	fail = true
	require.Error(t, db.Update(func(tx *Tx) error { return tx.Put("ns", "k", []byte("2"), 0) }))
	v, _ := get(t, db, "ns", "k")
	assert.Equal(t, "1", v)
}
