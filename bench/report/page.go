package report

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gonets/gonets/bench/result"
)

// page is what the template draws: every figure already formatted, every
// chart already laid out.
type page struct {
	Generated string
	Summary   []summaryRow
	Compare   []comparison
	Runs      []runView
}

// summaryRow is one run in the summary table.
type summaryRow struct {
	ID, Scenario, Target     string
	Offered, Rate, Delivered string
	P50, P99, P999           string
	NodeCPU, NodeRSS         string
	Verdict                  verdict
}

// verdict is a run's goal and whether it was met, as a badge.
type verdict struct {
	Class string // met, missed or none
	Text  string
}

// comparison sets one scenario's runs against one target beside those
// against another: the baseline (a gonets target where there is one) and
// a peer. Rates and p99s are the medians of each side's runs.
type comparison struct {
	Scenario, Base, Peer string
	BaseRuns, PeerRuns   int
	BaseRate, PeerRate   string
	RateRatio, RateClass string
	BaseP99, PeerP99     string
	P99Ratio, P99Class   string
}

// runView is one run's section of the page.
type runView struct {
	ID, Scenario, Target string
	When, Seconds        string
	Goal                 string
	Verdict              verdict
	Shared               bool
	Cores                string
	Machine              []field
	Params               []field
	Figures              []field
	Latencies            []latencyRow
	Processes            []processRow
	Charts               []panel
	Metrics              []field
	Notes                []string
}

type field struct{ K, V string }

type latencyRow struct {
	Name                                  string
	Count, P50, P90, P99, P999, Max, Mean string
}

type processRow struct {
	Name, PID, CPUPercent, CPUSeconds, RSS, MaxRSS, CPUs string
}

// panel is a chart, or the line of text that stands where a chart has
// nothing to draw.
type panel struct {
	Chart *chart
	Empty string
}

func newPage(runs []result.Result, now time.Time) *page {
	p := &page{Generated: now.UTC().Format("2006-01-02 15:04:05 MST")}
	for i := range runs {
		r := &runs[i]
		id := "run-" + strconv.Itoa(i+1)
		p.Summary = append(p.Summary, newSummaryRow(id, r))
		p.Runs = append(p.Runs, newRunView(id, r))
	}
	p.Compare = compare(runs)
	return p
}

func newSummaryRow(id string, r *result.Result) summaryRow {
	row := summaryRow{
		ID: id, Scenario: orNone(r.Scenario), Target: orNone(r.Target),
		Offered: dash, Rate: count(r.Rate), Delivered: percent(r.DeliveredRatio),
		P50: ms(r.Latency.P50), P99: ms(r.Latency.P99), P999: ms(r.Latency.P999),
		NodeCPU: dash, NodeRSS: dash, Verdict: newVerdict(r),
	}
	if r.Offered > 0 {
		row.Offered = count(r.Offered)
	}
	if r.Latency == (result.Latency{}) {
		row.P50, row.P99, row.P999 = dash, dash, dash
	}
	if r.Node != nil {
		row.NodeCPU = sig(r.Node.CPUPercent, 3) + "%"
		row.NodeRSS = bytesIEC(r.Node.RSSBytes)
	}
	return row
}

func newVerdict(r *result.Result) verdict {
	switch {
	case r.Goal == "":
		return verdict{"none", "no goal"}
	case r.Met:
		return verdict{"met", "met"}
	}
	return verdict{"missed", "not met"}
}

func newRunView(id string, r *result.Result) runView {
	v := runView{
		ID: id, Scenario: orNone(r.Scenario), Target: orNone(r.Target),
		When: dash, Seconds: sig(r.Seconds, 3) + " s",
		Goal: r.Goal, Verdict: newVerdict(r), Shared: r.SharedCores,
		Notes: r.Notes,
	}
	if !r.Started.IsZero() {
		v.When = r.Started.Format("2006-01-02 15:04:05 MST")
	}
	v.Cores = cores(r)
	v.Machine = machine(&r.Machine)
	for _, k := range slices.Sorted(maps.Keys(r.Params)) {
		v.Params = append(v.Params, field{k, param(r.Params[k])})
	}
	if r.Offered > 0 {
		v.Figures = append(v.Figures, field{"offered", count(r.Offered) + "/s"})
	}
	v.Figures = append(v.Figures,
		field{"rate", count(r.Rate) + "/s"},
		field{"sent", count(float64(r.Sent))},
		field{"expected", count(float64(r.Expected))},
		field{"delivered", count(float64(r.Delivered)) + " (" + percent(r.DeliveredRatio) + ")"},
	)
	for _, l := range []struct {
		name string
		l    result.Latency
	}{{"delivery", r.Latency}, {"ack", r.Ack}} {
		if l.l != (result.Latency{}) {
			v.Latencies = append(v.Latencies, latencyRow{
				Name: l.name, Count: count(float64(l.l.Count)),
				P50: ms(l.l.P50), P90: ms(l.l.P90), P99: ms(l.l.P99), P999: ms(l.l.P999),
				Max: ms(l.l.Max), Mean: ms(l.l.Mean),
			})
		}
	}
	for _, pr := range []struct {
		name string
		p    *result.Process
	}{{"node", r.Node}, {"generator", r.Generator}} {
		if pr.p != nil {
			v.Processes = append(v.Processes, process(pr.name, pr.p))
		}
	}
	v.Charts = []panel{
		orEmpty(latencyChart(r), "No latency histogram: the run recorded no deliveries."),
		orEmpty(timelineChart(r), "No timeline: the run has no per-second samples."),
	}
	if len(r.Steps) > 0 {
		v.Charts = append(v.Charts, orEmpty(stepsChart(r), "No step search to draw: no step has a finite p99."))
	}
	for _, k := range slices.Sorted(maps.Keys(r.Metrics)) {
		v.Metrics = append(v.Metrics, field{k, metric(k, r.Metrics[k])})
	}
	return v
}

func orEmpty(c *chart, why string) panel {
	if c == nil {
		return panel{Empty: why}
	}
	return panel{Chart: c}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// cores says whether node and generator shared cores, and where each ran
// when pinned.
func cores(r *result.Result) string {
	if r.SharedCores {
		return "node and generator shared the same cores"
	}
	var pinned []string
	for _, pr := range []struct {
		name string
		p    *result.Process
	}{{"node", r.Node}, {"generator", r.Generator}} {
		if pr.p != nil && pr.p.CPUs != "" {
			pinned = append(pinned, pr.name+" on CPUs "+pr.p.CPUs)
		}
	}
	if len(pinned) > 0 {
		return "separate cores: " + strings.Join(pinned, ", ")
	}
	return "node and generator on separate cores"
}

func machine(m *result.Machine) []field {
	var f []field
	add := func(k, v string) {
		if v != "" {
			f = append(f, field{k, v})
		}
	}
	if m.CPUs > 0 {
		add("cores", strconv.Itoa(m.CPUs))
	}
	if m.MemBytes > 0 {
		add("memory", bytesIEC(m.MemBytes))
	}
	add("CPU", m.CPUModel)
	add("Go", m.GoVersion)
	add("commit", m.Commit)
	add("version", m.Version)
	if m.OS != "" || m.Arch != "" {
		add("OS", strings.Trim(m.OS+"/"+m.Arch, "/"))
	}
	add("host", m.Host)
	if len(f) == 0 {
		f = append(f, field{"machine", "not recorded"})
	}
	return f
}

func process(name string, p *result.Process) processRow {
	row := processRow{
		Name: name, PID: dash, CPUPercent: sig(p.CPUPercent, 3) + "%",
		CPUSeconds: sig(p.CPUSeconds, 3) + " s",
		RSS:        bytesIEC(p.RSSBytes), MaxRSS: bytesIEC(p.MaxRSSBytes), CPUs: dash,
	}
	if p.PID > 0 {
		row.PID = strconv.Itoa(p.PID)
	}
	if p.CPUs != "" {
		row.CPUs = p.CPUs
	}
	return row
}

// param formats a parameter's value; numbers decoded from JSON are
// float64 and print without an exponent.
func param(v any) string {
	switch v := v.(type) {
	case nil:
		return dash
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(v), 'f', -1, 32)
	}
	return fmt.Sprint(v)
}

// metric formats a metric's value, adding binary units to byte counts.
func metric(name string, v float64) string {
	s := count(v)
	if strings.Contains(name, "bytes") && v >= 1024 && v < 1<<62 {
		s += " (" + bytesIEC(int64(v)) + ")"
	}
	return s
}

// compare pairs, per scenario that ran against more than one target, the
// baseline target with each of the others.
func compare(runs []result.Result) []comparison {
	type side struct {
		target    string
		rate, p99 []float64
	}
	var scenarios []string
	sides := map[string][]*side{}
	for i := range runs {
		r := &runs[i]
		if _, ok := sides[r.Scenario]; !ok {
			scenarios = append(scenarios, r.Scenario)
		}
		j := slices.IndexFunc(sides[r.Scenario], func(s *side) bool { return s.target == r.Target })
		if j < 0 {
			sides[r.Scenario] = append(sides[r.Scenario], &side{target: r.Target})
			j = len(sides[r.Scenario]) - 1
		}
		s := sides[r.Scenario][j]
		s.rate = append(s.rate, r.Rate)
		s.p99 = append(s.p99, r.Latency.P99)
	}
	var out []comparison
	for _, sc := range scenarios {
		ss := sides[sc]
		if len(ss) < 2 {
			continue
		}
		b := max(0, slices.IndexFunc(ss, func(s *side) bool { return strings.HasPrefix(s.target, "gonets") }))
		base := ss[b]
		for i, peer := range ss {
			if i == b {
				continue
			}
			br, pr := median(base.rate), median(peer.rate)
			bp, pp := median(base.p99), median(peer.p99)
			c := comparison{
				Scenario: orNone(sc), Base: orNone(base.target), Peer: orNone(peer.target),
				BaseRuns: len(base.rate), PeerRuns: len(peer.rate),
				BaseRate: count(br), PeerRate: count(pr), RateRatio: ratio(br, pr),
				BaseP99: ms(bp), PeerP99: ms(pp), P99Ratio: ratio(bp, pp),
			}
			c.RateClass = better(br >= pr, c.RateRatio)
			c.P99Class = better(bp <= pp, c.P99Ratio)
			out = append(out, c)
		}
	}
	return out
}

// better names the CSS class of a ratio: good where the baseline does at
// least as well, bad where it does worse, none where there is no ratio.
func better(ok bool, ratio string) string {
	switch {
	case ratio == dash:
		return ""
	case ok:
		return "good"
	}
	return "bad"
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.SortFunc(s, cmp.Compare)
	n := len(s)
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}
