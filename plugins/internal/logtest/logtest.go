// Package logtest captures log output in tests: a goroutine-safe buffer and
// a Benthos logger writing to it.
package logtest

import (
	"bytes"
	"log/slog"
	"sync"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Buffer is a bytes.Buffer safe for concurrent writers and readers.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a Benthos logger writing text lines (level=WARN msg=...)
// to b, for service.MockResourcesOptUseLogger.
func Logger(b *Buffer) *service.Logger {
	return service.NewLoggerFromSlog(slog.New(slog.NewTextHandler(b, nil)))
}
