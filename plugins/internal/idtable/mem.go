package idtable

import (
	"os"
	"runtime"
	"unsafe"
)

// region is a table's memory outside the Go heap; a table that is dropped
// without Free releases it when collected.
type region struct {
	mem     []byte // the mapping
	used    int    // the bytes of it the slots use (rounded up to a page)
	cleanup runtime.Cleanup
}

// alloc returns n zeroed values of a pointer-free type T, outside the heap
// when they are large enough and the platform allows it.
func alloc[T any](n int) ([]T, *region) {
	var zero T
	size := n * int(unsafe.Sizeof(zero))
	if size < offHeapMin {
		return make([]T, n), nil
	}
	mem, use, ok := mapMem(size)
	if !ok {
		return make([]T, n), nil
	}
	page := os.Getpagesize() // what the kernel maps in
	r := &region{mem: mem, used: (len(use) + page - 1) &^ (page - 1)}
	r.cleanup = runtime.AddCleanup(r, release, mapping{mem, r.used})
	mapped.Add(int64(r.used))
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(use))), n), r
}

// Array is a fixed number of values of a pointer-free type, held as a
// table's slots are (outside the Go heap where the platform allows it, and
// counted by Mapped): for per-id state of a fixed size beside the tables,
// such as a sketch of counts. The zero Array is empty; an Array's memory is
// released when it is collected. It is not safe for concurrent use.
type Array[T any] struct {
	items []T
	mem   *region
}

// NewArray returns an Array of n zeroed values.
func NewArray[T any](n int) Array[T] {
	items, mem := alloc[T](n)
	return Array[T]{items, mem}
}

// Items returns the values of a.
func (a *Array[T]) Items() []T { return a.items }

// free releases r's memory now; nil does nothing.
func (r *region) free() {
	if r == nil {
		return
	}
	r.cleanup.Stop()
	release(mapping{r.mem, r.used})
	r.mem = nil
}

// mapping is what releasing a region takes: its cleanup's argument, which
// must not refer to the region.
type mapping struct {
	mem  []byte
	used int
}

// release unmaps m and takes its bytes off Mapped: for a region freed, and
// for one collected without Free (the cleanup).
func release(m mapping) {
	mapped.Add(-int64(m.used))
	unmapMem(m.mem)
}
