//go:build unix

package reconcile

import "syscall"

// allocBuffer returns n bytes outside the Go heap (an anonymous mapping), so
// that the sort buffer does not raise the garbage collector's target: with
// the default GOGC a heap buffer of B bytes lets the heap grow to 2B before
// a collection. free unmaps it. Pages are only resident once written.
func allocBuffer(n int) (buf []byte, free func()) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n), func() {}
	}
	return b, func() { _ = syscall.Munmap(b) }
}
