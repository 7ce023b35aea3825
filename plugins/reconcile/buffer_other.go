//go:build !unix

package reconcile

// allocBuffer returns n bytes on the Go heap (see buffer_unix.go).
func allocBuffer(n int) (buf []byte, free func()) { return make([]byte, n), func() {} }
