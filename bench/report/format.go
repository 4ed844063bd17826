package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// dash stands for a figure that is missing or cannot be shown.
const dash = "—"

// huge is where figures give up their digits for an exponent.
const huge = 1e15

// sig formats v to n significant digits without an exponent, trailing
// zeros trimmed: sig(0.012345, 3) is "0.0123", sig(123456, 3) "123456".
// Only a value of a quadrillion or more, or one too small to show in
// 2n decimals, is written with an exponent.
func sig(v float64, n int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return dash
	}
	if v == 0 {
		return "0"
	}
	if a := math.Abs(v); a >= huge || a < math.Pow(10, -float64(2*n)) {
		return strconv.FormatFloat(v, 'g', n, 64)
	}
	d := max(0, n-1-int(math.Floor(math.Log10(math.Abs(v)))))
	return trimZeros(strconv.FormatFloat(v, 'f', d, 64))
}

// trimZeros drops the trailing zeros of a decimal fraction, and its point
// when nothing follows it.
func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// count formats a count or a rate for a table: whole and grouped by
// thousands from 100 up ("52,340"), three significant digits below.
func count(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return dash
	}
	if a := math.Abs(v); a < 100 || a >= huge {
		return sig(v, 3)
	}
	s := strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// ms formats milliseconds to three significant digits.
func ms(v float64) string {
	return sig(v, 3)
}

// percent formats a ratio as a percentage, truncated rather than rounded
// so that 99.9996% never reads as 100%.
func percent(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return dash
	}
	if r == 1 {
		return "100%"
	}
	return trimZeros(strconv.FormatFloat(math.Floor(r*1e5)/1e3, 'f', 3, 64)) + "%"
}

// bytesIEC formats a byte count in binary units; zero, which the schema
// uses for "not measured", is a dash.
func bytesIEC(n int64) string {
	if n <= 0 {
		return dash
	}
	v := float64(n)
	for _, unit := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if v < 1024 || unit == "TiB" {
			if unit == "B" {
				return fmt.Sprintf("%d B", n)
			}
			return sig(v, 3) + " " + unit
		}
		v /= 1024
	}
	return dash
}

// ratio formats a÷b as "1.85×", or a dash where it has no meaning.
func ratio(a, b float64) string {
	if !(a > 0) || !(b > 0) {
		return dash
	}
	return sig(a/b, 3) + "×"
}

// tickLabel formats an axis tick compactly, with an SI suffix from a
// thousand up: "0.05", "250", "2.5k", "10M".
func tickLabel(v float64) string {
	a := math.Abs(v)
	if a >= huge {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	for _, u := range []struct {
		f      float64
		suffix string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if a >= u.f {
			return shortest(v/u.f) + u.suffix
		}
	}
	return shortest(v)
}

// shortest formats v to at most six significant digits, which hides the
// float noise of tick arithmetic (0.30000000000000004 is "0.3").
func shortest(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return dash
	}
	r, err := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
	if err != nil {
		return dash
	}
	if math.Abs(r) >= 1e-4 || r == 0 {
		return strconv.FormatFloat(r, 'f', -1, 64)
	}
	return strconv.FormatFloat(r, 'g', -1, 64)
}
