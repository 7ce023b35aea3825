//go:build !linux

package idtable

// offHeapMin: tables stay in the Go heap on platforms other than Linux.
const offHeapMin = int(^uint(0) >> 1)

func mapMem(int) (mapping, use []byte, ok bool) { return nil, nil, false }

func unmapMem([]byte) {}
