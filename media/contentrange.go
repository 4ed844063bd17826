package media

import (
	"fmt"
	"strconv"
	"strings"
)

// Range is a half-open byte range [Start, End) of a file.
type Range struct {
	Start, End int64
}

// Len returns the number of bytes in r.
func (r Range) Len() int64 { return r.End - r.Start }

// ParseContentRange parses a Content-Range header of the form
// "bytes START-END/TOTAL" (RFC 9110 §14.4), END inclusive, as a client
// sends it with a chunk. TOTAL may be "*" (unknown), returned as -1. It is
// strict: exactly one space after "bytes", decimal digits only (no signs,
// no spaces, at most 18 digits), START ≤ END and END < TOTAL. The
// unsatisfied-range form "bytes */TOTAL" is refused: it belongs in
// responses. Every error wraps ErrBadRange.
func ParseContentRange(h string) (start, end, total int64, err error) {
	bad := func(why string) (int64, int64, int64, error) {
		return 0, 0, 0, fmt.Errorf("%w: content-range %q: %s", ErrBadRange, truncate(h, 64), why)
	}
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return bad(`want "bytes "`)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no /")
	}
	s, e, ok := strings.Cut(rng, "-")
	if !ok {
		return bad("no -")
	}
	if start, ok = parseDigits(s); !ok {
		return bad("bad start")
	}
	if end, ok = parseDigits(e); !ok {
		return bad("bad end")
	}
	if start > end {
		return bad("start after end")
	}
	if tot == "*" {
		return start, end, -1, nil
	}
	if total, ok = parseDigits(tot); !ok {
		return bad("bad total")
	}
	if end >= total {
		return bad("end not below total")
	}
	return start, end, total, nil
}

// parseDigits parses 1 to 18 ASCII decimal digits: at most 18, so the
// value always fits an int64 and END+1 cannot overflow.
func parseDigits(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
