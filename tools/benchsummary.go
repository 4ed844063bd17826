package tools

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/gonets/gonets/bench/result"
)

// summaryMetrics are the scenario metrics the summary shows, per scenario.
var summaryMetrics = map[string][]string{
	"connect": {"sessions", "rss_bytes_per_session", "handshakes_per_s", "resumed_per_s", "storm_seconds", "resumed_ratio",
		"node_cpu_us_per_handshake", "node_cpu_us_per_resumption"},
	"sync":    {"catch_up_ms", "messages_per_s"},
	"storage": {"appends_per_s", "reads_per_s"},
}

// runBenchSummary prints a markdown table of the medians of the runs in
// JSON-lines files written by gonets bench --out, per scenario and
// target:
//
//	gonets bench-summary FILE ...
func runBenchSummary(args []string, stdout, stderr io.Writer) int {
	const usage = "usage: gonets bench-summary FILE ...   (files written by gonets bench --out)"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprintln(stdout, usage)
		return 0
	}
	if len(args) == 0 {
		fmt.Fprintf(stderr, "gonets bench-summary: no files\n%s\n", usage)
		return 2
	}
	var runs []result.Result
	for _, path := range args {
		rs, err := readRuns(path)
		if err != nil {
			fmt.Fprintf(stderr, "gonets bench-summary: %v\n", err)
			return 1
		}
		runs = append(runs, rs...)
	}
	writeSummary(stdout, runs)
	return 0
}

// readRuns reads one JSON result per line.
func readRuns(path string) ([]result.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var runs []result.Result
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r result.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		runs = append(runs, r)
	}
	return runs, sc.Err()
}

// writeSummary writes the medians per scenario and target as markdown.
func writeSummary(w io.Writer, runs []result.Result) {
	type key struct{ scenario, target string }
	groups := map[key][]result.Result{}
	var order []key
	for _, r := range runs {
		k := key{r.Scenario, r.Target}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	fmt.Fprintln(w, "| scenario | target | runs | offered/s | rate/s | delivered | p50 ms | p99 ms | p999 ms | node CPU | node RSS | node µs/msg | node µs/delivery | node pkts in / out per msg | node idle %/1k sessions | goal met | scenario figures (median) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, k := range order {
		rs := groups[k]
		med := func(f func(result.Result) float64) float64 { return median(rs, f) }
		met := 0
		for _, r := range rs {
			if r.Met {
				met++
			}
		}
		cpu, rss := "-", "-"
		if rs[0].Node != nil {
			cpu = fmt.Sprintf("%.0f%%", med(func(r result.Result) float64 { return nodeOr(r).CPUPercent }))
			rss = fmt.Sprintf("%.0f MiB", med(func(r result.Result) float64 { return float64(nodeOr(r).RSSBytes) })/(1<<20))
		}
		// metric is the median of a metric over the runs that have it,
		// formatted, or "-".
		metric := func(name, format string) string {
			var have []result.Result
			for _, r := range rs {
				if _, ok := r.Metrics[name]; ok {
					have = append(have, r)
				}
			}
			if len(have) == 0 {
				return "-"
			}
			return fmt.Sprintf(format, median(have, func(r result.Result) float64 { return r.Metrics[name] }))
		}
		packets := "-"
		if in, out := metric("node_packets_in_per_message", "%.2f"), metric("node_packets_out_per_message", "%.2f"); in != "-" {
			packets = in + " / " + out
		}
		var figs []string
		for _, m := range summaryMetrics[k.scenario] {
			if _, ok := rs[0].Metrics[m]; ok {
				figs = append(figs, fmt.Sprintf("%s %.4g", m, med(func(r result.Result) float64 { return r.Metrics[m] })))
			}
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | %.0f | %.2f%% | %.2f | %.2f | %.2f | %s | %s | %s | %s | %s | %s | %d of %d | %s |\n",
			k.scenario, k.target, len(rs),
			med(func(r result.Result) float64 { return r.Offered }),
			med(func(r result.Result) float64 { return r.Rate }),
			100*med(func(r result.Result) float64 { return r.DeliveredRatio }),
			med(func(r result.Result) float64 { return r.Latency.P50 }),
			med(func(r result.Result) float64 { return r.Latency.P99 }),
			med(func(r result.Result) float64 { return r.Latency.P999 }),
			cpu, rss, metric("node_cpu_us_per_message", "%.0f"), metric("node_cpu_us_per_delivery", "%.1f"), packets,
			metric("node_idle_cpu_pct_per_1000_sessions", "%.2f%%"), met, len(rs), strings.Join(figs, ", "))
	}
}

// median returns the median of f over runs.
func median(runs []result.Result, f func(result.Result) float64) float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// nodeOr returns the run's node process, or an empty one.
func nodeOr(r result.Result) result.Process {
	if r.Node == nil {
		return result.Process{}
	}
	return *r.Node
}
