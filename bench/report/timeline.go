package report

import (
	"math"

	"github.com/gonets/gonets/bench/result"
)

// maxTimelineDots is how many samples a timeline marks with dots (each
// with a tooltip) besides its lines; longer runs get the lines alone.
const maxTimelineDots = 120

// timelineChart draws offered and delivered per second on the left axis
// and p99 on the right, over the seconds of the run. It returns nil when
// the run has no timeline.
func timelineChart(r *result.Result) *chart {
	var samples []result.Sample
	for _, s := range r.Timeline {
		if isFinite(s.T) && isFinite(s.Offered) && isFinite(s.Delivered) && isFinite(s.P99) {
			samples = append(samples, s)
		}
	}
	if len(samples) == 0 {
		return nil
	}
	tlo, thi, rmax, pmax := 0.0, 0.0, 0.0, 0.0
	offered := false
	for _, s := range samples {
		tlo, thi = min(tlo, s.T), max(thi, s.T)
		rmax = max(rmax, s.Offered, s.Delivered)
		pmax = max(pmax, s.P99)
		offered = offered || s.Offered > 0
	}

	c := newChart("Rate and p99 over time", true)
	x := linearScale(tlo, thi, 8)
	y := linearScale(0, rmax, 5)
	p := linearScale(0, pmax, 5)
	c.axes(x, y, p, "seconds", "per second", "p99, ms")
	var off, del, p99 []float64
	for _, s := range samples {
		px := x.pos(s.T)
		off = append(off, px, y.pos(s.Offered))
		del = append(del, px, y.pos(s.Delivered))
		p99 = append(p99, px, p.pos(s.P99))
	}
	items := []legendItem{{"delivered", "delivered /s", false}, {"p99", "p99 ms", false}}
	if offered {
		c.polyline(off, "offered")
		items = append([]legendItem{{"offered", "offered /s", false}}, items...)
	}
	c.polyline(del, "delivered")
	c.polyline(p99, "p99")
	c.legend(items...)
	if len(samples) > maxTimelineDots {
		return c
	}
	for i, s := range samples {
		tip := "t = " + sig(s.T, 4) + " s: offered " + count(s.Offered) + "/s, delivered " +
			count(s.Delivered) + "/s, p99 " + ms(s.P99) + " ms"
		if s.Sessions > 0 {
			tip += ", " + count(float64(s.Sessions)) + " sessions"
		}
		if offered {
			c.dot(off[2*i], off[2*i+1], 2.5, "offered", tip)
		}
		c.dot(del[2*i], del[2*i+1], 2.5, "delivered", tip)
		c.dot(p99[2*i], p99[2*i+1], 2.5, "p99", tip)
	}
	return c
}

func isFinite(v float64) bool {
	return !math.IsNaN(v) && !math.IsInf(v, 0)
}
