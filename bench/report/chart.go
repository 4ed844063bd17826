package report

import (
	"strconv"
	"strings"
)

// A chart is one SVG drawing as plain shapes in pixel coordinates, drawn
// in order (later over earlier); the page template writes them out,
// escaping every text. Classes name the page's CSS rules (stroke and fill
// colours); they come from this package, never from a run.
type chart struct {
	Title  string
	W, H   float64
	Shapes []shape
	// The plot area, inside the margins for the title and axes.
	left, right, top, bottom float64
}

// A shape is one SVG element, by Kind:
//   - "rect": X, Y, W, H;
//   - "line": X, Y to X2, Y2;
//   - "poly": a polyline through Points ("x,y x,y ...");
//   - "dot": a circle at X, Y of radius R;
//   - "text": S at X, Y, aligned by Anchor (start, middle or end) and
//     turned Rotate degrees about X, Y.
//
// Tip, on a rect or a dot, is a tooltip that the browser shows on hover.
type shape struct {
	Kind               string
	X, Y, X2, Y2, W, H float64
	R                  float64
	Points             string
	Class, Anchor, S   string
	Tip                string
	Rotate             int
}

// A chart's size and margins, in pixels.
const (
	chartW      = 660
	chartH      = 320
	marginLeft  = 64
	marginRight = 20 // without a right axis
	marginAxis  = 64 // with one
	marginTop   = 48
	marginBot   = 48
)

// newChart returns an empty chart with room for a right axis when
// rightAxis is set.
func newChart(title string, rightAxis bool) *chart {
	c := &chart{Title: title, W: chartW, H: chartH}
	c.left, c.top = marginLeft, marginTop
	c.right, c.bottom = chartW-marginRight, chartH-marginBot
	if rightAxis {
		c.right = chartW - marginAxis
	}
	return c
}

// axes fits the scales to the plot area and draws the grid, the axis
// lines, the tick labels and the axis titles. right may be nil.
func (c *chart) axes(x, left, right *scale, xTitle, leftTitle, rightTitle string) {
	x.a, x.b = c.left, c.right
	left.a, left.b = c.bottom, c.top
	for _, v := range x.ticks {
		p := x.pos(v)
		c.line(p, c.top, p, c.bottom, "grid")
		c.line(p, c.bottom, p, c.bottom+5, "axis")
		c.text(p, c.bottom+18, "middle", "tick", tickLabel(v))
	}
	for _, v := range left.ticks {
		p := left.pos(v)
		c.line(c.left, p, c.right, p, "grid")
		c.line(c.left-5, p, c.left, p, "axis")
		c.text(c.left-8, p+4, "end", "tick", tickLabel(v))
	}
	c.line(c.left, c.top, c.left, c.bottom, "axis")
	c.line(c.left, c.bottom, c.right, c.bottom, "axis")
	c.text((c.left+c.right)/2, c.H-8, "middle", "axis-title", xTitle)
	c.rotated(16, (c.top+c.bottom)/2, -90, "axis-title", leftTitle)
	if right == nil {
		return
	}
	right.a, right.b = c.bottom, c.top
	for _, v := range right.ticks {
		p := right.pos(v)
		c.line(c.right, p, c.right+5, p, "axis")
		c.text(c.right+8, p+4, "start", "tick", tickLabel(v))
	}
	c.line(c.right, c.top, c.right, c.bottom, "axis")
	c.rotated(c.W-12, (c.top+c.bottom)/2, 90, "axis-title", rightTitle)
}

// A legendItem is one entry of a chart's legend: a swatch drawn in the
// class's colour (a short line, or a dot when dot is set) and a label.
type legendItem struct {
	class, label string
	dot          bool
}

// legend draws the items in a row above the plot area, right-aligned.
func (c *chart) legend(items ...legendItem) {
	const swatch, gap, charW = 18, 14, 6.5
	width := 0.0
	for _, it := range items {
		width += swatch + 4 + charW*float64(len([]rune(it.label))) + gap
	}
	x, y := c.right-width+gap, c.top-12
	for _, it := range items {
		if it.dot {
			c.dot(x+swatch/2, y-4, 4, it.class, "")
		} else {
			c.line(x, y-4, x+swatch, y-4, it.class)
		}
		c.text(x+swatch+4, y, "start", "legend", it.label)
		x += swatch + 4 + charW*float64(len([]rune(it.label))) + gap
	}
}

func (c *chart) line(x1, y1, x2, y2 float64, class string) {
	c.Shapes = append(c.Shapes, shape{Kind: "line", X: round1(x1), Y: round1(y1), X2: round1(x2), Y2: round1(y2), Class: class})
}

func (c *chart) rect(x, y, w, h float64, class, tip string) {
	c.Shapes = append(c.Shapes, shape{Kind: "rect", X: round1(x), Y: round1(y), W: round1(w), H: round1(h), Class: class, Tip: tip})
}

func (c *chart) dot(x, y, r float64, class, tip string) {
	c.Shapes = append(c.Shapes, shape{Kind: "dot", X: round1(x), Y: round1(y), R: r, Class: class, Tip: tip})
}

func (c *chart) text(x, y float64, anchor, class, s string) {
	c.Shapes = append(c.Shapes, shape{Kind: "text", X: round1(x), Y: round1(y), Anchor: anchor, Class: class, S: s})
}

// rotated draws a text centred on x, y and turned by deg degrees.
func (c *chart) rotated(x, y float64, deg int, class, s string) {
	c.Shapes = append(c.Shapes, shape{Kind: "text", X: round1(x), Y: round1(y), Anchor: "middle", Class: class, Rotate: deg, S: s})
}

// polyline draws a line through the points, given as x, y pairs already
// in pixels.
func (c *chart) polyline(xy []float64, class string) {
	if len(xy) < 4 {
		return
	}
	var b strings.Builder
	for i := 0; i+1 < len(xy); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(round1(xy[i]), 'f', -1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(round1(xy[i+1]), 'f', -1, 64))
	}
	c.Shapes = append(c.Shapes, shape{Kind: "poly", Points: b.String(), Class: class})
}
