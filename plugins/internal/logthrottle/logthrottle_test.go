package logthrottle

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

func TestWarner(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := service.NewLoggerFromSlog(slog.New(slog.NewTextHandler(lockedWriter{&buf, &mu}, nil)))
	lines := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := strings.Split(strings.TrimSpace(buf.String()), "\n")
		buf.Reset()
		if len(out) == 1 && out[0] == "" {
			return nil
		}
		return out
	}
	w := Warner{Every: time.Second}
	t0 := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC).UnixNano()

	w.Warn(log, t0, "%d drops (last %s)", "a")
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "1 drops (last a)") {
		t.Fatalf("first occurrence: %q", got)
	}
	// Within the period: counted, not logged.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.Warn(log, t0+int64(i+1)*int64(time.Millisecond), "%d drops (last %s)", "b")
		}()
	}
	wg.Wait()
	w.WarnN(log, t0+int64(500*time.Millisecond), 10, "%d drops (last %s)", "c")
	if got := lines(); got != nil {
		t.Fatalf("logged within the period: %q", got)
	}
	// After the period: one line with everything since the last one.
	w.Warn(log, t0+int64(time.Second), "%d drops (last %s)", "d")
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "19 drops (last d)") {
		t.Fatalf("after the period: %q", got)
	}
}

func TestWarnerDefaultPeriod(t *testing.T) {
	var buf bytes.Buffer
	log := service.NewLoggerFromSlog(slog.New(slog.NewTextHandler(&buf, nil)))
	var w Warner
	w.Warn(log, int64(DefaultEvery), "%d x")
	w.Warn(log, int64(DefaultEvery)+int64(DefaultEvery)-1, "%d x")
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d lines within DefaultEvery, want 1:\n%s", n, buf.String())
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
