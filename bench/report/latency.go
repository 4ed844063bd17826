package report

import (
	"math"

	"github.com/gonets/gonets/bench/result"
)

// bucketRatio is how far above the last each bound of result.Buckets
// lies; it sets a bar's left edge when the bars around it say nothing.
const bucketRatio = 1.15

// latencyChart draws the delivery latency histogram as bars on a log
// axis of milliseconds, with p50, p99 and p999 marked. It returns nil when
// the run recorded no latencies.
func latencyChart(r *result.Result) *chart {
	var bars []result.Bucket
	var total int64
	for _, b := range r.Histogram {
		if b.Count > 0 && b.UpToMS > 0 && !math.IsInf(b.UpToMS, 0) {
			bars = append(bars, b)
			total += b.Count
		}
	}
	if len(bars) == 0 {
		return nil
	}
	// The bars are log-spaced at a fixed ratio, empty ones left out: the
	// smallest ratio between neighbours is that spacing.
	step := math.Inf(1)
	for i := 1; i < len(bars); i++ {
		if q := bars[i].UpToMS / bars[i-1].UpToMS; q > 1 {
			step = min(step, q)
		}
	}
	if math.IsInf(step, 1) {
		step = bucketRatio
	}
	from := func(i int) float64 {
		lo := bars[i].UpToMS / step
		if i > 0 {
			lo = max(lo, bars[i-1].UpToMS)
		}
		return lo
	}

	marks := []struct {
		name  string
		v     float64
		class string
	}{{"p50", r.Latency.P50, "mark-p50"}, {"p99", r.Latency.P99, "mark-p99"}, {"p999", r.Latency.P999, "mark-p999"}}
	xlo, xhi := from(0), bars[len(bars)-1].UpToMS
	var cmin, cmax int64 = math.MaxInt64, 0
	for _, b := range bars {
		cmin, cmax = min(cmin, b.Count), max(cmax, b.Count)
	}
	for _, m := range marks {
		if m.v > 0 {
			xlo, xhi = min(xlo, m.v), max(xhi, m.v)
		}
	}

	noun := " messages)"
	if total == 1 {
		noun = " message)"
	}
	c := newChart("Delivery latency ("+count(float64(total))+noun, false)
	x := logScale(xlo, xhi)
	y, yTitle := linearScale(0, float64(cmax), 5), "messages"
	if cmax >= 100*cmin {
		// The tail would vanish on a linear axis.
		y, yTitle = logScale(1, float64(cmax)), "messages (log)"
	}
	c.axes(x, y, nil, "latency, ms (log)", yTitle, "")
	for i, b := range bars {
		x0, x1 := x.pos(from(i)), x.pos(b.UpToMS)
		top := y.pos(float64(b.Count))
		h := max(c.bottom-top, 1.5)
		c.rect(x0, c.bottom-h, max(x1-x0-0.5, 1), h, "bar",
			ms(from(i))+"–"+ms(b.UpToMS)+" ms: "+count(float64(b.Count))+
				" ("+percent(float64(b.Count)/float64(total))+")")
	}
	for row, m := range marks {
		if !(m.v > 0) || math.IsInf(m.v, 0) {
			continue
		}
		p := x.pos(m.v)
		c.line(p, c.top, p, c.bottom, m.class)
		label := m.name + " " + ms(m.v) + " ms"
		ty := c.top + 14 + 14*float64(row)
		if p > c.right-90 {
			c.text(p-4, ty, "end", "mark-label "+m.class, label)
		} else {
			c.text(p+4, ty, "start", "mark-label "+m.class, label)
		}
	}
	return c
}
