package idtable

import (
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

// alloc returns n zeroed slots, outside the heap when they are large enough
// and the platform allows it.
func alloc[V any](n int) ([]Slot[V], *region) {
	size := n * int(unsafe.Sizeof(Slot[V]{}))
	if size < offHeapMin {
		return make([]Slot[V], n), nil
	}
	mem, use, ok := mapMem(size)
	if !ok {
		return make([]Slot[V], n), nil
	}
	r := &region{mem: mem, used: len(use)}
	r.cleanup = runtime.AddCleanup(r, unmapMem, mem)
	mapped.Add(int64(r.used))
	return unsafe.Slice((*Slot[V])(unsafe.Pointer(unsafe.SliceData(use))), n), r
}

// free releases r's memory now; nil does nothing.
func (r *region) free() {
	if r == nil {
		return
	}
	r.cleanup.Stop()
	mapped.Add(-int64(r.used))
	unmapMem(r.mem)
	r.mem = nil
}
