// Package unsafestr holds the one zero-copy bytes-to-string view of the
// project, for the hot paths that hand a message's bytes to gjson or to the
// JSON writer without copying them.
package unsafestr

import "unsafe"

// FromBytes views b as a string without copying. The string, and anything
// taken from it (gjson results), must not outlive b nor be used after b is
// modified. A nil or empty b gives "".
func FromBytes(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
