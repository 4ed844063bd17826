package report

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"github.com/gonets/gonets/bench/result"
)

// defaultP99Goal is the p99 a step search holds to when its parameters do
// not say: the chat target of the bench issue.
const defaultP99Goal = 10 * time.Millisecond

// stepsChart draws a step search: each offered rate tried against the p99
// it got, passed steps green and failed ones red, with the p99 goal as a
// horizontal line. It returns nil when the run made no step search.
func stepsChart(r *result.Result) *chart {
	var steps []result.Step
	for _, s := range r.Steps {
		if isFinite(s.Offered) && isFinite(s.P99) {
			steps = append(steps, s)
		}
	}
	if len(steps) == 0 {
		return nil
	}
	goal := float64(p99Goal(r.Params)) / float64(time.Millisecond)
	xhi, plo, phi := 0.0, goal, goal
	for _, s := range steps {
		xhi = max(xhi, s.Offered)
		if s.P99 > 0 {
			plo, phi = min(plo, s.P99), max(phi, s.P99)
		}
	}

	c := newChart("Step search: p99 at each offered rate", false)
	x := linearScale(0, xhi, 6)
	y := autoScale(plo, phi, 50)
	yTitle := "p99, ms"
	if y.log {
		yTitle = "p99, ms (log)"
	}
	c.axes(x, y, nil, "offered per second", yTitle, "")
	gy := y.pos(goal)
	c.line(c.left, gy, c.right, gy, "goal")
	c.text(c.left+6, gy-5, "start", "goal-label", "p99 goal "+ms(goal)+" ms")

	sorted := slices.SortedStableFunc(slices.Values(steps), func(a, b result.Step) int {
		return cmp.Compare(a.Offered, b.Offered)
	})
	var xy []float64
	for _, s := range sorted {
		xy = append(xy, x.pos(s.Offered), y.pos(s.P99))
	}
	c.polyline(xy, "step-path")
	best := -1
	for i, s := range steps {
		if s.Passed && (best < 0 || s.Offered > steps[best].Offered) {
			best = i
		}
	}
	for i, s := range steps {
		class, verdict := "fail", "failed"
		if s.Passed {
			class, verdict = "pass", "passed"
		}
		c.dot(x.pos(s.Offered), y.pos(s.P99), 5, class,
			"step "+strconv.Itoa(i+1)+", "+verdict+": offered "+count(s.Offered)+
				"/s, rate "+count(s.Rate)+"/s, p50 "+ms(s.P50)+" ms, p99 "+ms(s.P99)+
				" ms, p999 "+ms(s.P999)+" ms, delivered "+percent(s.DeliveredRatio))
	}
	if best >= 0 {
		s := steps[best]
		px, py := x.pos(s.Offered), y.pos(s.P99)
		anchor, dx := "start", 8.0
		if px > c.right-120 {
			anchor, dx = "end", -8
		}
		ty := py - 8
		if ty < c.top+12 {
			ty = py + 18 // below the dot, clear of the legend
		}
		c.text(px+dx, ty, anchor, "best-label", "best "+count(s.Offered)+"/s")
	}
	c.legend(legendItem{"pass", "passed", true}, legendItem{"fail", "failed", true},
		legendItem{"goal", "p99 goal", false})
	return c
}

// p99Goal reads a run's p99 goal from its "p99" parameter, a duration
// ("10ms") or a time.Duration, falling back to defaultP99Goal.
func p99Goal(params map[string]any) time.Duration {
	switch v := params["p99"].(type) {
	case time.Duration:
		if v > 0 {
			return v
		}
	case string:
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return defaultP99Goal
}
