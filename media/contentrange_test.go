package media

import (
	"errors"
	"fmt"
	"testing"
)

func TestParseContentRange(t *testing.T) {
	ok := func(h string, s, e, tot int64) {
		t.Helper()
		gs, ge, gt, err := ParseContentRange(h)
		if err != nil || gs != s || ge != e || gt != tot {
			t.Errorf("%q: got %d %d %d %v, want %d %d %d", h, gs, ge, gt, err, s, e, tot)
		}
	}
	bad := func(h string) {
		t.Helper()
		if _, _, _, err := ParseContentRange(h); !errors.Is(err, ErrBadRange) {
			t.Errorf("%q: err = %v, want ErrBadRange", h, err)
		}
	}
	ok("bytes 0-99/100", 0, 99, 100)
	ok("bytes 5-5/6", 5, 5, 6)
	ok("bytes 0-0/*", 0, 0, -1)
	ok("bytes 007-010/0100", 7, 10, 100)
	ok("bytes 0-999999999999999998/999999999999999999", 0, 999999999999999998, 999999999999999999)
	for _, h := range []string{
		"", "bytes", "bytes ", "bytes 0-99", "bytes 0-99/", "bytes -99/100", "bytes 0-/100",
		"bytes 10-9/100", "bytes 0-100/100", "bytes 0-99/99", "Bytes 0-99/100", "bytes  0-99/100",
		"bytes 0-99/100 ", " bytes 0-99/100", "bytes +0-99/100", "bytes 0-+99/100", "bytes 0-99/+100",
		"bytes */100", "bytes 0-99/*1", "bytes 0x1-2/3", "bytes 0-9223372036854775807/9223372036854775807",
		"bytes 0-1-2/3", "bytes 0-1/2/3", "items 0-1/2", "bytes 1,2-3/4", "bytes 0-1/0",
		"bytes 0-1234567890123456789/12345678901234567890",
	} {
		bad(h)
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes 0-0/*", "bytes */100", "bytes 10-9/100",
		"bytes 0-99/99", "bytes 999999999999999998-999999999999999998/999999999999999999", "", "bytes 1-2/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		s, e, tot, err := ParseContentRange(h)
		if err != nil {
			if !errors.Is(err, ErrBadRange) {
				t.Fatalf("%q: error %v does not wrap ErrBadRange", h, err)
			}
			return
		}
		if s < 0 || e < s || (tot != -1 && e >= tot) || tot < -1 || e+1 <= e {
			t.Fatalf("%q: accepted inconsistent %d-%d/%d", h, s, e, tot)
		}
		ts := "*"
		if tot >= 0 {
			ts = fmt.Sprint(tot)
		}
		s2, e2, t2, err := ParseContentRange(fmt.Sprintf("bytes %d-%d/%s", s, e, ts))
		if err != nil || s2 != s || e2 != e || t2 != tot {
			t.Fatalf("%q: canonical form does not round-trip: %d %d %d %v", h, s2, e2, t2, err)
		}
	})
}
