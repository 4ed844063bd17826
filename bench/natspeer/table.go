package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/gonets/gonets/bench/result"
)

// printTable writes a result for a person: the headline figures, the
// steps of a step search, the metrics and the notes.
func printTable(w io.Writer, r *result.Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("scenario", "%s on %s", r.Scenario, r.Target)
	if r.Offered > 0 {
		row("offered", "%.0f /s", r.Offered)
	}
	row("rate", "%.0f /s over %.3g s", r.Rate, r.Seconds)
	if r.Expected > 0 {
		row("delivered", "%d of %d (%.4f), %d sent", r.Delivered, r.Expected, r.DeliveredRatio, r.Sent)
	}
	if l := r.Latency; l.Count > 0 {
		row("latency", "p50 %.2f  p90 %.2f  p99 %.2f  p999 %.2f  max %.2f ms", l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	if l := r.Ack; l.Count > 0 {
		row("ack", "p50 %.2f  p90 %.2f  p99 %.2f  p999 %.2f  max %.2f ms", l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	proc := func(name string, p *result.Process) {
		if p != nil {
			row(name, "cpu %.1f%%  rss %.1f MiB  peak %.1f MiB", p.CPUPercent, mib(p.RSSBytes), mib(p.MaxRSSBytes))
		}
	}
	proc("node", r.Node)
	proc("generator", r.Generator)
	row("shared cores", "%v", r.SharedCores)
	if r.Goal != "" {
		row("goal", "%s: met %v", r.Goal, r.Met)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Metrics)) {
		row(k, "%.6g", r.Metrics[k])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Steps) > 0 {
		fmt.Fprintln(w, "\nsteps:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "offered/s\trate/s\tp50 ms\tp99 ms\tp999 ms\tdelivered\tpassed")
		for _, s := range r.Steps {
			fmt.Fprintf(tw, "%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.4f\t%v\n", s.Offered, s.Rate, s.P50, s.P99, s.P999, s.DeliveredRatio, s.Passed)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	for _, n := range r.Notes {
		fmt.Fprintln(w, "- "+n)
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
