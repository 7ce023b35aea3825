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
		b.WriteString("| benchmark | side | events/s | CPU s per 1M events | allocs/event | peak RSS (MiB) | delivered | notes |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|---|\n")
		rs := byDataset[d]
		for _, r := range rs {
			if r.Skipped != "" {
				fmt.Fprintf(&b, "| %s | %s | skipped: %s | | | | | |\n", r.Scenario.Group, r.Scenario.Side, r.Skipped)
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
			fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %.1f | %.0f | %s | %s |\n", r.Scenario.Group, r.Scenario.Side,
				thousands(int(res.EventsPerSec())), res.CPUPerMillion(), res.AllocsPerEvent(), res.PeakRSSMB(), delivered,
				strings.Join(notable(res.Counters), ", "))
		}
		ratios(&b, rs)
	}
	return b.String()
}

// ratios writes a table of ours ÷ plain for every Ours row with a Plain
// counterpart; above 1 means ours is better.
func ratios(b *strings.Builder, rs []Row) {
	plain := map[string]Result{}
	for _, r := range rs {
		if r.Scenario.Side == Plain && r.Skipped == "" {
			plain[r.Scenario.Group] = r.Result
		}
	}
	header := false
	for _, r := range rs {
		versus := r.Scenario.Versus
		if versus == "" {
			versus = r.Scenario.Group
		}
		p, ok := plain[versus]
		if r.Scenario.Side != Ours || r.Skipped != "" || !ok {
			continue
		}
		if !header {
			b.WriteString("\n| ours ÷ plain Benthos (above 1: ours better) | events/s | CPU per event | allocs per event | peak RSS |\n")
			b.WriteString("|---|---:|---:|---:|---:|\n")
			header = true
		}
		name := r.Scenario.Group
		if versus != r.Scenario.Group {
			name += " vs plain " + versus
		}
		o := r.Result
		fmt.Fprintf(b, "| %s | ×%.1f | ×%.1f less | ×%.1f fewer | ×%.1f less |\n", name, o.EventsPerSec()/p.EventsPerSec(),
			p.CPUPerMillion()/o.CPUPerMillion(), p.AllocsPerEvent()/o.AllocsPerEvent(), p.PeakRSSMB()/o.PeakRSSMB())
	}
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
