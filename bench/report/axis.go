package report

import (
	"math"
	"slices"
)

// A scale maps a domain of values onto a pixel range, linearly or by
// logarithm, and knows its tick values. The domain is rounded out to whole
// ticks, so the first and last ticks sit on the plot's edges.
type scale struct {
	lo, hi float64 // the domain
	a, b   float64 // the pixels that lo and hi map onto
	log    bool
	ticks  []float64
}

// maxValue bounds the values a scale takes, so that a range never
// overflows to infinity.
const maxValue = 1e300

// linearScale returns a linear scale over [lo, hi] with about n round
// ticks. A degenerate domain is widened: [0, 0] to [0, 1], [v, v] by 10%
// of v on each side.
func linearScale(lo, hi float64, n int) *scale {
	lo, hi = finite(lo), finite(hi)
	if lo > hi {
		lo, hi = hi, lo
	}
	if lo == hi {
		if lo == 0 {
			hi = 1
		} else {
			pad := math.Abs(lo) / 10
			lo, hi = lo-pad, hi+pad
		}
	}
	step := niceStep((hi - lo) / float64(max(n, 1)))
	lo = math.Floor(lo/step) * step
	hi = math.Ceil(hi/step) * step
	s := &scale{lo: lo, hi: hi}
	count := min(int(math.Round((hi-lo)/step)), 4*max(n, 1))
	for i := 0; i <= count; i++ {
		s.ticks = append(s.ticks, lo+float64(i)*step)
	}
	return s
}

// niceStep returns the smallest of 1, 2 or 5 times a power of ten that is
// at least x.
func niceStep(x float64) float64 {
	if !(x > 0) || math.IsInf(x, 0) {
		return 1
	}
	p := decade(x)
	switch f := x / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	}
	return 10 * p
}

// logScale returns a base-10 logarithmic scale over [lo, hi], rounded out
// to 1, 2 or 5 times a power of ten. Values at or below zero have no place
// on it: a lo that is not above zero becomes hi/1000. Ticks are at the
// domain's ends and the decades between them (every second or third one
// over a wide domain), with 2 and 5 between decades over a narrow one.
func logScale(lo, hi float64) *scale {
	lo, hi = finite(lo), finite(hi)
	if lo > hi {
		lo, hi = hi, lo
	}
	if !(hi > 0) {
		hi = 1
	}
	if !(lo > 0) {
		lo = hi / 1000
	}
	lo, hi = niceBelow(lo), niceStep(hi)
	if hi <= lo {
		hi = niceStep(lo * 1.5)
	}
	s := &scale{lo: lo, hi: hi, log: true}
	e0, e1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	every := math.Ceil((e1 - e0) / 7)
	minor := e1-e0 <= 2
	// Leave out a tick that would crowd a domain end's label: one within
	// a twelfth of the axis of it.
	gap := math.Log10(hi/lo) / 12
	add := func(v float64) {
		if math.Log10(v/lo) >= gap && math.Log10(hi/v) >= gap {
			s.ticks = append(s.ticks, v)
		}
	}
	s.ticks = append(s.ticks, lo)
	for e := e0; e <= e1; e++ {
		d := math.Pow(10, e)
		if math.Mod(e-e0, every) == 0 || e == e0 {
			add(d)
		}
		if minor {
			add(2 * d)
			add(5 * d)
		}
	}
	s.ticks = append(s.ticks, hi)
	slices.Sort(s.ticks)
	return s
}

// decade returns the power of ten at or just below x, for x above zero,
// correcting the rounding of math.Log10 at exact powers.
func decade(x float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(x)))
	switch {
	case x/p >= 10:
		p *= 10
	case x/p < 1:
		p /= 10
	}
	return p
}

// niceBelow returns the largest of 1, 2 or 5 times a power of ten that is
// at most x, for x above zero.
func niceBelow(x float64) float64 {
	p := decade(x)
	switch f := x / p; {
	case f >= 5:
		return 5 * p
	case f >= 2:
		return 2 * p
	}
	return p
}

// autoScale returns a log scale for positive values that span more than
// the given ratio, and a linear one from zero otherwise.
func autoScale(lo, hi, ratio float64) *scale {
	if lo > 0 && hi/lo > ratio {
		return logScale(lo, hi)
	}
	return linearScale(min(0, lo), hi, 5)
}

// pos returns the pixel of v, clamped to the scale's range so that an
// outlier is drawn at the plot's edge rather than outside it.
func (s *scale) pos(v float64) float64 {
	var t float64
	if s.log {
		v = math.Max(v, s.lo)
		t = math.Log10(v/s.lo) / math.Log10(s.hi/s.lo)
	} else {
		t = (v - s.lo) / (s.hi - s.lo)
	}
	if math.IsNaN(t) {
		t = 0
	}
	t = math.Max(0, math.Min(1, t))
	return round1(s.a + t*(s.b-s.a))
}

// finite returns v bounded to ±maxValue, and NaN as zero.
func finite(v float64) float64 {
	switch {
	case math.IsNaN(v):
		return 0
	case v > maxValue:
		return maxValue
	case v < -maxValue:
		return -maxValue
	}
	return v
}

// round1 rounds a pixel coordinate to a tenth, which keeps the page small.
func round1(v float64) float64 {
	return math.Round(v*10) / 10
}
