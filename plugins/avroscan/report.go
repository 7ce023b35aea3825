package avroscan

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// reporter logs the progress of a backfill at a steady cadence — files and
// events delivered (or dead-lettered), the rate since the last line — and a
// summary when the scanner is closed.
type reporter struct {
	logf  func(format string, args ...any)
	clock clock.Clock
	every time.Duration
	start time.Time

	files, events atomic.Int64

	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}
}

// newReporter starts a reporter; every <= 0 logs only the summary.
func newReporter(log *service.Logger, every time.Duration) *reporter {
	return startReporter(log.Infof, clock.System, every)
}

func startReporter(logf func(string, ...any), clk clock.Clock, every time.Duration) *reporter {
	r := &reporter{logf: logf, clock: clk, every: every, start: clk.Now(), quit: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r
}

func (r *reporter) records(n int64) { r.events.Add(n) }
func (r *reporter) file()           { r.files.Add(1) }

func (r *reporter) loop() {
	defer close(r.done)
	if r.every <= 0 {
		<-r.quit
		return
	}
	lastAt, lastEvents := r.start, int64(0)
	for {
		t := r.clock.NewTimer(r.every)
		select {
		case <-r.quit:
			t.Stop()
			return
		case now := <-t.C():
			events := r.events.Load()
			if events == lastEvents && r.files.Load() == 0 {
				continue // nothing read yet: stay quiet
			}
			rate := float64(events-lastEvents) / now.Sub(lastAt).Seconds()
			r.logf("currents_avro progress: %d files and %d events delivered or dead-lettered, %.0f events/s",
				r.files.Load(), events, rate)
			lastAt, lastEvents = now, events
		}
	}
}

// stop ends the cadence and logs the summary.
func (r *reporter) stop() {
	r.stopOnce.Do(func() {
		close(r.quit)
		<-r.done
		elapsed := r.clock.Now().Sub(r.start)
		events := r.events.Load()
		rate := 0.0
		if s := elapsed.Seconds(); s > 0 {
			rate = float64(events) / s
		}
		r.logf("currents_avro summary: %d files and %d events delivered or dead-lettered in %s (%.0f events/s)",
			r.files.Load(), events, elapsed.Round(time.Millisecond), rate)
	})
}
