// Package store is the project's one durable state store: an embedded,
// transactional key-value file (go.etcd.io/bbolt) for state that must outlive
// the process — cohort sync state, backfill progress, webhook message ids, id
// budgets.
//
// It offers two faces:
//
//   - the Benthos cache `store` (cache_store.go), for components that only
//     need get/set/add/delete with TTLs;
//   - a Go API (Open, DB.Update, DB.View, Tx) for components that need
//     several writes to land together (the amplitude_cohort input commits a
//     membership and clears its progress in one transaction).
//
// Every Update is one bbolt transaction: pages are copied on write and the
// new root becomes visible by a single meta-page write, fsynced before Update
// returns. A crash at any instant leaves the file at the last committed
// transaction; there is no log to replay and no torn value to detect.
//
// File layout: one file per path, one bbolt bucket per namespace, keys as
// given. Every value is prefixed with 8 bytes: its expiry as big-endian Unix
// nanoseconds, 0 for none. The reserved bucket "\x00ttl" indexes expiring
// entries by expiry (8 bytes) + namespace + 0x00 + key, so a sweep costs what
// it deletes. docs/state.md lists the namespaces and keys of each component.
package store
