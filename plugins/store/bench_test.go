package store

import (
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
)

// The state writes of the shipped pipelines, each measured next to what the
// plain-Benthos alternative (the `file` cache: os.WriteFile in place,
// truncate then write, no fsync, not atomic) costs in the same run.

func benchSizes() []struct {
	name string
	size int
} {
	return []struct {
		name string
		size int
	}{
		{"progress_32B", 32},            // a cohort progress bitmap, a backfill block bitmap
		{"membership_1.3MB", 1_300_000}, // 100,000 cohort members
	}
}

// BenchmarkStoreUpdate: one durable transaction (fsync) writing one value.
func BenchmarkStoreUpdate(b *testing.B) {
	for _, sz := range benchSizes() {
		b.Run(sz.name, func(b *testing.B) {
			db, err := Open(filepath.Join(b.TempDir(), "s.db"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			v := make([]byte, sz.size)
			b.SetBytes(int64(sz.size))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				v[0] = byte(i)
				if err := db.Update(func(tx *Tx) error { return tx.Put("ns", "k", v, 0) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFileCacheSet is the plain-Benthos alternative: what the file
// cache's Set does (os.WriteFile over the old file, no fsync).
func BenchmarkFileCacheSet(b *testing.B) {
	for _, sz := range benchSizes() {
		b.Run(sz.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "k")
			v := make([]byte, sz.size)
			b.SetBytes(int64(sz.size))
			b.ReportAllocs()
			for b.Loop() {
				if err := os.WriteFile(path, v, 0o644); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStoreBatchParallel: small idempotent writes from many goroutines
// (acks of cohort messages and Avro blocks), coalesced by Batch into shared
// commits. ns/op is per write.
func BenchmarkStoreBatchParallel(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "s.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := strconv.FormatInt(n.Add(1)%64, 10)
			if err := db.Batch(func(tx *Tx) error { return tx.Put("ns", k, []byte("0123456789abcdef"), 0) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
