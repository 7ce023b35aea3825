package cohort

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// fakeClock is a clock.Clock whose timers shorter than long fire at once,
// moving the time forward by their duration and recording it (retries,
// polls); longer timers (the schedule) wait for Advance.
type fakeClock struct {
	*clock.Fake
	long time.Duration

	mu     sync.Mutex
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{Fake: clock.NewFake(time.Unix(1_800_000_000, 0)), long: time.Hour}
}

// NewTimer fires short timers at once and defers long ones to the fake.
func (c *fakeClock) NewTimer(d time.Duration) clock.Timer {
	if d >= c.long {
		return c.Fake.NewTimer(d)
	}
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.mu.Unlock()
	c.Fake.Advance(d)
	return c.Fake.NewTimer(0)
}

// useClock makes clk the clock of the components the test builds.
func useClock(t testing.TB, clk clock.Clock) {
	testClock = clk
	t.Cleanup(func() { testClock = nil })
}

func (c *fakeClock) total() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t time.Duration
	for _, s := range c.sleeps {
		t += s
	}
	return t
}

func (c *fakeClock) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sleeps)
}

// ids returns n ids "<prefix>00000" … in sorted order.
func ids(prefix string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%06d", prefix, from+i)
	}
	return out
}

func parseConf(t testing.TB, spec *service.ConfigSpec, yaml string) *service.ParsedConfig {
	t.Helper()
	conf, err := spec.ParseYAML(yaml, nil)
	if err != nil {
		t.Fatalf("parsing config: %v", err)
	}
	return conf
}

func changeMsg(c Change) *service.Message {
	return service.NewMessage(c.AppendJSON(nil))
}
