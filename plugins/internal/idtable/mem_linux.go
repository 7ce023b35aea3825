package idtable

import (
	"syscall"
	"unsafe"
)

const (
	// offHeapMin is the smallest table mapped outside the heap (smaller
	// ones cost more in system calls and page rounding than they save).
	offHeapMin = 16 << 10
	// hugePage is the size of a transparent huge page on x86-64 and arm64
	// (4 KiB base pages); tables of at least one are aligned to it and
	// advised to use them. Smaller ones gain nothing from them: at 10^6
	// ids each pacer shard's table is just under 2 MiB, and on huge pages
	// it measured no faster (BENCHMARKS.md, pacing cost): its misses are
	// DRAM latency, not page walks.
	hugePage = 2 << 20
)

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14), absent from
// package syscall: it faults a range in, writable, in one call.
const madvPopulateWrite = 23

// mapMem maps at least size zeroed bytes of anonymous memory and returns
// the mapping and the bytes to use in it; tables of a huge page or more are
// aligned to one and advised to use huge pages (with THP in "madvise" mode,
// the default of many distributions, the Go heap gets none). The mapping's
// bytes outside the ones used are never touched, so never resident.
//
// The bytes used are faulted in by the call (MAP_POPULATE, or
// MADV_POPULATE_WRITE after the huge-page advice, where the kernel has it):
// a table is written all over as soon as it is made (a rebuild moves every
// entry into it, and hashing spreads them), and one call costs far less
// than a fault per page (BenchmarkGrow: growing a table from empty cost 280
// ns per insert with a fault per page, 172 faulted in by the call).
func mapMem(size int) (mapping, use []byte, ok bool) {
	if size < hugePage {
		b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE|syscall.MAP_POPULATE)
		return b, b, err == nil
	}
	full := (size + hugePage - 1) &^ (hugePage - 1)
	b, err := syscall.Mmap(-1, 0, full+hugePage, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, nil, false
	}
	off := int((hugePage - uintptr(unsafe.Pointer(unsafe.SliceData(b)))%hugePage) % hugePage)
	use = b[off : off+full : off+full]
	_ = syscall.Madvise(use, syscall.MADV_HUGEPAGE) // advice: without it, 4 KiB pages
	_ = syscall.Madvise(use, madvPopulateWrite)     // older kernels: faulted page by page
	return b, use, true
}

// unmapMem releases a mapping of mapMem.
func unmapMem(mapping []byte) {
	_ = syscall.Munmap(mapping)
}
