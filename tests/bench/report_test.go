package bench

import (
	"strings"
	"testing"
	"time"
)

func TestMarkdownAndScaling(t *testing.T) {
	d := Dataset{Events: 1000, Devices: 10, Seed: 1}
	res := func(wall time.Duration, mallocs uint64, rss int64) Result {
		return Result{Events: 1000, Wall: wall, CPU: wall, Mallocs: mallocs, PeakRSS: rss << 20, Delivered: 1000,
			Counters: map[string]int64{"device_rate_limit_delayed_total": 3, "device_rate_limit_delay_seconds_sum": 1500000000, "output_sent": 9}}
	}
	rows := []Row{
		{Dataset: d, Scenario: Scenario{Group: "end to end", Side: Ours, Server: true}, Result: res(time.Second, 10000, 50)},
		{Dataset: d, Scenario: Scenario{Group: "end to end", Side: Plain, Server: true}, Result: res(4*time.Second, 100000, 100)},
		{Dataset: d, Scenario: Scenario{Group: "mapping", Side: Ours}, Skipped: "missing braze_to_amplitude"},
		{Dataset: d, Scenario: Scenario{Group: "mapping", Side: Plain}, Result: res(time.Second, 1, 1)},
	}
	md := Markdown(rows)
	for _, want := range []string{
		"1,000 events, 10 devices:",
		"| end to end | ours | 1,000 | 1000.00 | 10.0 | 50 | 1,000 | device_rate_limit_delay total=1.5s, device_rate_limit_delayed_total=3 |",
		"| end to end | ×4.0 | ×4.0 less | ×10.0 fewer | ×2.0 less |",
		"| mapping | ours | skipped: missing braze_to_amplitude |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| mapping | ×") {
		t.Errorf("ratio printed for a skipped side:\n%s", md)
	}
	rows[1].Dataset.Devices = 100
	sc := Scaling(rows)
	for _, want := range []string{
		"| devices | events | end to end / ours: events/s | end to end / ours: peak RSS (MiB) |",
		"| 10 | 1,000 | 1,000 | 50 |",
		"| 100 | 1,000 | | | 250 | 100 |",
	} {
		if !strings.Contains(sc, want) {
			t.Errorf("scaling table lacks %q:\n%s", want, sc)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestMedian(t *testing.T) {
	walls := func(ds ...time.Duration) []Result {
		var rs []Result
		for i, d := range ds {
			rs = append(rs, Result{Wall: d, Mallocs: uint64(i)})
		}
		return rs
	}
	tests := []struct {
		name string
		rs   []Result
		want uint64 // Mallocs marks which run was picked
	}{
		{"one run", walls(time.Second), 0},
		{"odd count", walls(3*time.Second, time.Second, 2*time.Second), 2},
		{"even count: the slower middle run", walls(4*time.Second, time.Second, 3*time.Second, 2*time.Second), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := median(tt.rs); got.Mallocs != tt.want {
				t.Errorf("picked run %d (wall %s), want run %d", got.Mallocs, got.Wall, tt.want)
			}
		})
	}
}
