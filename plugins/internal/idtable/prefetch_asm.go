//go:build amd64 || arm64

package idtable

import "unsafe"

// prefetch asks the CPU for the cache line at p without waiting for it
// (PREFETCHT0 on amd64, PRFM PLDL1KEEP on arm64). Unlike a load, it
// retires at once: a loop of them keeps many misses in flight, where a loop
// of loads stalls once the loads fill the CPU's reorder window (measured in
// BENCHMARKS.md, "Group prefetching").
//
//go:noescape
func prefetch(p unsafe.Pointer)
