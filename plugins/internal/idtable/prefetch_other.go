//go:build !amd64 && !arm64

package idtable

import (
	"sync/atomic"
	"unsafe"
)

// prefetch loads the word at p (a load the compiler keeps), where this
// package has no prefetch instruction for the architecture.
func prefetch(p unsafe.Pointer) {
	_ = atomic.LoadUint64((*uint64)(p))
}
