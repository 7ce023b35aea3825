// Package logthrottle bounds a repeated warning to one log line per period,
// each line carrying how many times it occurred since the previous one, so
// that a problem hitting every message is visible without flooding the log.
package logthrottle

import (
	"sync/atomic"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// DefaultEvery is the period of a Warner whose Every is zero.
const DefaultEvery = 10 * time.Second

// Warner logs one warning at most once per period. The zero value is ready
// to use; it is safe for concurrent use.
type Warner struct {
	// Every is the shortest time between two lines (DefaultEvery when 0).
	Every time.Duration
	count atomic.Int64
	last  atomic.Int64
}

// Warn counts one occurrence at now (unix nanoseconds) and, when the period
// has passed since the last line, logs format with the number of occurrences
// since then as its first argument, followed by args.
func (w *Warner) Warn(log *service.Logger, now int64, format string, args ...any) {
	w.WarnN(log, now, 1, format, args...)
}

// WarnN is Warn for n occurrences at once.
func (w *Warner) WarnN(log *service.Logger, now int64, n int64, format string, args ...any) {
	every := w.Every
	if every == 0 {
		every = DefaultEvery
	}
	total := w.count.Add(n)
	if last := w.last.Load(); now-last >= int64(every) && w.last.CompareAndSwap(last, now) {
		w.count.Add(-total)
		log.Warnf(format, append([]any{total}, args...)...)
	}
}
