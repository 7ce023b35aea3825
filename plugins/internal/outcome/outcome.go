// Package outcome keeps process-wide counts of what became of events that
// were not delivered: dead-lettered or dropped on purpose, by reason.
//
// Components add to it where they already count a metric (deadletter.Writer
// for dead letters; a processor that drops events on purpose should call Add
// with Dropped next to its drop metric). The progress output reads it for its
// end-of-run summary. Counts are per process: a `streams` mode process with
// several pipelines sums them.
package outcome

import (
	"maps"
	"sync"
)

// Kind is what became of the events.
type Kind string

const (
	// DeadLettered events were written to a dead-letter output.
	DeadLettered Kind = "dead_lettered"
	// Dropped events were removed on purpose (filtered, unidentified...).
	Dropped Kind = "dropped"
)

// Counts holds counts by kind and reason.
type Counts map[Kind]map[string]int64

var (
	mu     sync.Mutex
	counts = Counts{}
)

// Add counts n events of kind for reason.
func Add(kind Kind, reason string, n int) {
	if n <= 0 {
		return
	}
	mu.Lock()
	m := counts[kind]
	if m == nil {
		m = map[string]int64{}
		counts[kind] = m
	}
	m[reason] += int64(n)
	mu.Unlock()
}

// Snapshot returns a copy of the counts so far.
func Snapshot() Counts {
	mu.Lock()
	defer mu.Unlock()
	out := make(Counts, len(counts))
	for k, m := range counts {
		out[k] = maps.Clone(m)
	}
	return out
}

// Since returns c minus an earlier snapshot base, leaving out reasons with no
// new events.
func (c Counts) Since(base Counts) Counts {
	out := Counts{}
	for k, m := range c {
		for r, n := range m {
			if d := n - base[k][r]; d > 0 {
				if out[k] == nil {
					out[k] = map[string]int64{}
				}
				out[k][r] = d
			}
		}
	}
	return out
}

// Total returns the number of events of kind.
func (c Counts) Total(kind Kind) (n int64) {
	for _, v := range c[kind] {
		n += v
	}
	return n
}
