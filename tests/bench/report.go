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
	type key struct {
		d   Dataset
		env string
	}
	var order []key
	byDataset := map[key][]Row{}
	for _, r := range rows {
		k := key{r.Dataset, r.Env}
		if _, ok := byDataset[k]; !ok {
			order = append(order, k)
		}
		byDataset[k] = append(byDataset[k], r)
	}
	for _, k := range order {
		d := k.d
		fmt.Fprintf(&b, "\n%s events, %s devices%s%s:\n\n", thousands(d.Events), thousands(d.Devices), skewNote(d), envNote(k.env))
		b.WriteString("| benchmark | side | events/s | CPU s per 1M events | allocs/event | peak RSS (MiB) | delivered | notes |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|---|\n")
		rs := byDataset[k]
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
		shares(&b, rs)
	}
	return b.String()
}

// shares writes, for every row measured against a baseline of ours (Of),
// its events/s as a share of the baseline's and its CPU per event over the
// baseline's.
func shares(b *strings.Builder, rs []Row) {
	base := map[string]Result{}
	for _, r := range rs {
		if r.Skipped == "" {
			base[r.Scenario.Group] = r.Result
		}
	}
	header := false
	for _, r := range rs {
		p, ok := base[r.Scenario.Of]
		if r.Scenario.Of == "" || r.Skipped != "" || !ok {
			continue
		}
		if !header {
			b.WriteString("\n| pipeline | baseline | events/s, share of the baseline's | CPU per event ÷ baseline's |\n")
			b.WriteString("|---|---|---:|---:|\n")
			header = true
		}
		o := r.Result
		fmt.Fprintf(b, "| %s | %s | %.0f%% | ×%.2f |\n", r.Scenario.Group, r.Scenario.Of,
			100*o.EventsPerSec()/p.EventsPerSec(), o.CPUPerMillion()/p.CPUPerMillion())
	}
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

// Scaling renders rows as one table with a line per dataset (and
// environment) and, per scenario, its events/s and peak RSS: how they grow
// with the number of devices.
func Scaling(rows []Row) string {
	var names []string
	seen := map[string]bool{}
	type line struct {
		label string
		cells map[string]Result
	}
	var lines []*line
	byLabel := map[string]*line{}
	for _, r := range rows {
		if r.Skipped != "" {
			continue
		}
		name := r.Scenario.Name()
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		label := fmt.Sprintf("%s | %s", thousands(r.Dataset.Devices), thousands(r.Dataset.Events)) + envNote(r.Env)
		l, ok := byLabel[label]
		if !ok {
			l = &line{label: label, cells: map[string]Result{}}
			byLabel[label] = l
			lines = append(lines, l)
		}
		l.cells[name] = r.Result
	}
	var b strings.Builder
	b.WriteString("| devices | events |")
	for _, n := range names {
		fmt.Fprintf(&b, " %s: events/s | %s: peak RSS (MiB) |", n, n)
	}
	b.WriteString("\n|---:|---:|" + strings.Repeat("---:|---:|", len(names)) + "\n")
	for _, l := range lines {
		b.WriteString("| " + l.label + " |")
		for _, n := range names {
			if r, ok := l.cells[n]; ok {
				fmt.Fprintf(&b, " %s | %.0f |", thousands(int(r.EventsPerSec())), r.PeakRSSMB())
			} else {
				b.WriteString(" | |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func envNote(env string) string {
	if env == "" {
		return ""
	}
	return ", " + env
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
