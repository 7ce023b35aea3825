package bench

import (
	"fmt"
	"strings"
)

// Markdown renders rows as one table per dataset: each group's ours and
// plain-Benthos rows, then their ratio, where a ratio above 1 means ours is
// better (more events/s; fewer CPU seconds, allocations or bytes of RSS).
func Markdown(rows []Row) string {
	var b strings.Builder
	var order []Dataset
	byDataset := map[Dataset][]Row{}
	for _, r := range rows {
		if _, ok := byDataset[r.Dataset]; !ok {
			order = append(order, r.Dataset)
		}
		byDataset[r.Dataset] = append(byDataset[r.Dataset], r)
	}
	for _, d := range order {
		fmt.Fprintf(&b, "\n%s events, %s devices%s:\n\n", thousands(d.Events), thousands(d.Devices), skewNote(d))
		b.WriteString("| benchmark | side | events/s | CPU s per 1M events | allocs/event | peak RSS (MiB) | delivered |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|\n")
		rs := byDataset[d]
		for i, r := range rs {
			if r.Skipped != "" {
				fmt.Fprintf(&b, "| %s | %s | skipped: %s | | | | |\n", r.Scenario.Group, r.Scenario.Side, r.Skipped)
				continue
			}
			res := r.Result
			delivered := ""
			if r.Scenario.Server {
				delivered = thousands(res.Delivered)
				if res.Duplicates > 0 {
					delivered += fmt.Sprintf(" (+%d dup)", res.Duplicates)
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %.1f | %.0f | %s |\n", r.Scenario.Group, r.Scenario.Side,
				thousands(int(res.EventsPerSec())), res.CPUPerMillion(), res.AllocsPerEvent(), res.PeakRSSMB(), delivered)
			if r.Scenario.Side == Plain && i > 0 {
				if o := rs[i-1]; o.Scenario.Group == r.Scenario.Group && o.Skipped == "" {
					or := o.Result
					fmt.Fprintf(&b, "| %s | **ours ÷ plain** | **×%.1f** | **×%.1f less** | **×%.1f fewer** | **×%.1f less** | |\n",
						r.Scenario.Group, or.EventsPerSec()/res.EventsPerSec(), res.CPUPerMillion()/or.CPUPerMillion(),
						res.AllocsPerEvent()/or.AllocsPerEvent(), res.PeakRSSMB()/or.PeakRSSMB())
				}
			}
		}
	}
	return b.String()
}

func skewNote(d Dataset) string {
	if d.Skew > 1 {
		return fmt.Sprintf(", Zipf skew %g (hot devices)", d.Skew)
	}
	return ""
}

// thousands formats n with thin separators: 1,234,567.
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
