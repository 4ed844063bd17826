package media

import "slices"

// Received ranges are kept sorted, disjoint and merged: adjacent ranges
// are one.

// insertRange returns rs with c added and merged with its neighbours. c
// must not overlap rs. rs is not modified.
func insertRange(rs []Range, c Range) []Range {
	out := make([]Range, 0, len(rs)+1)
	i := 0
	for ; i < len(rs) && rs[i].End < c.Start; i++ {
		out = append(out, rs[i])
	}
	for ; i < len(rs) && rs[i].Start <= c.End; i++ {
		c.Start, c.End = min(c.Start, rs[i].Start), max(c.End, rs[i].End)
	}
	out = append(out, c)
	return append(out, rs[i:]...)
}

// overlaps reports whether c shares a byte with any range of rs.
func overlaps(rs []Range, c Range) bool {
	return slices.ContainsFunc(rs, func(r Range) bool { return r.Start < c.End && c.Start < r.End })
}

// contains reports whether every byte of c is in rs.
func contains(rs []Range, c Range) bool {
	return slices.ContainsFunc(rs, func(r Range) bool { return r.Start <= c.Start && c.End <= r.End })
}

// total returns the bytes in rs.
func total(rs []Range) int64 {
	var n int64
	for _, r := range rs {
		n += r.Len()
	}
	return n
}

// validRanges reports whether rs is sorted, disjoint, merged, non-empty
// ranges within [0, size).
func validRanges(rs []Range, size int64) bool {
	var prev int64 = -1
	for _, r := range rs {
		if r.Start < 0 || r.Start >= r.End || r.End > size || r.Start <= prev {
			return false
		}
		prev = r.End
	}
	return true
}
