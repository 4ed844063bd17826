package identity

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePhone(t *testing.T) {
	ru := []int{7}
	ok := func(raw string, allowed []int, e164 string, national uint64, region string) {
		t.Helper()
		p, err := ParsePhone(raw, allowed)
		if err != nil {
			t.Fatalf("ParsePhone(%q) = %v", raw, err)
		}
		want := Phone{E164: e164, CountryCode: allowed[len(allowed)-1], National: national, Region: region}
		if e164[1] == '7' {
			want.CountryCode = 7
		}
		if p != want {
			t.Fatalf("ParsePhone(%q) = %+v, want %+v", raw, p, want)
		}
	}
	ok("+79000000001", ru, "+79000000001", 9000000001, "RU")
	ok("+7 900 000-00-01", ru, "+79000000001", 9000000001, "RU")
	ok("+7 (900) 000-00-02", ru, "+79000000002", 9000000002, "RU")
	ok("8 900 000 00 03", ru, "+79000000003", 9000000003, "RU")
	ok("8(900)000.00.04", ru, "+79000000004", 9000000004, "RU")
	ok("  +7 912 345 67 89  ", ru, "+79123456789", 9123456789, "RU")
	ok("9000000001", ru, "+79000000001", 9000000001, "RU")
	ok("+44 7400 123456", []int{7, 44}, "+447400123456", 7400123456, "GB")
	ok("+7 701 123 4567", ru, "+77011234567", 7011234567, "KZ") // Kazakhstan shares +7
	// NANP does not tell mobile from fixed: FIXED_LINE_OR_MOBILE passes.
	ok("+1 650 253 0000", []int{1}, "+16502530000", 6502530000, "US")

	bad := func(raw string, allowed []int, want error) {
		t.Helper()
		p, err := ParsePhone(raw, allowed)
		if !errors.Is(err, want) {
			t.Fatalf("ParsePhone(%q) = %+v, %v; want %v", raw, p, err, want)
		}
		if p != (Phone{}) {
			t.Fatalf("ParsePhone(%q) returned %+v with an error", raw, p)
		}
	}
	bad("", ru, ErrBadPhone)
	bad("   ", ru, ErrBadPhone)
	bad("+", ru, ErrBadPhone)
	bad("+7 900 ABC-DE-FG", ru, ErrBadPhone)
	bad("+7 900 000-00-0l", ru, ErrBadPhone)
	bad("+7 900 000 00 01 ext. 5", ru, ErrBadPhone)
	bad("+7 900 000 00 01;ext=5", ru, ErrBadPhone)
	bad("7+9000000001", ru, ErrBadPhone)
	bad("++79000000001", ru, ErrBadPhone)
	bad("+7 900 000 00 01\x00", ru, ErrBadPhone)
	bad("+7 ９００ 000 00 01", ru, ErrBadPhone)   // fullwidth digits
	bad("+7 900 000 00", ru, ErrBadPhone)      // too short
	bad("+7 900 000 00 01 2", ru, ErrBadPhone) // too many digits
	bad("+7 900 000-00-01"+strings.Repeat(" ", MaxPhoneLen), ru, ErrBadPhone)
	bad(strings.Repeat("9", MaxPhoneLen+1), ru, ErrBadPhone)
	bad("+7 495 123-45-67", ru, ErrNotMobile) // Moscow landline
	bad("8 800 555-35-35", ru, ErrNotMobile)  // toll free
	bad("+44 20 7946 0000", []int{7, 44}, ErrNotMobile)
	bad("+44 7400 123456", ru, ErrCountryNotAllowed)
	bad("+1 650 253 0000", ru, ErrCountryNotAllowed)
	bad("+79000000001", nil, ErrCountryNotAllowed)
	bad("89000000001", nil, ErrCountryNotAllowed)
}

func FuzzParsePhone(f *testing.F) {
	for _, s := range []string{"+79000000001", "8 (900) 000-00-01", "+7 495 123-45-67", "+1 650 253 0000", "+7 900 ABC", "++7", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := ParsePhone(raw, []int{7, 1})
		if err != nil {
			if !errors.Is(err, ErrBadPhone) && !errors.Is(err, ErrCountryNotAllowed) && !errors.Is(err, ErrNotMobile) {
				t.Fatalf("ParsePhone(%q): error without a sentinel: %v", raw, err)
			}
			return
		}
		if p.E164 == "" || p.E164[0] != '+' || len(p.E164) > 16 {
			t.Fatalf("ParsePhone(%q) = %+v", raw, p)
		}
		again, err := ParsePhone(p.E164, []int{7, 1})
		if err != nil || again != p {
			t.Fatalf("ParsePhone(%q) = %+v, but its E164 reparses as %+v, %v", raw, p, again, err)
		}
	})
}

func BenchmarkParsePhone(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePhone("+7 900 000-00-01", []int{7}); err != nil {
			b.Fatal(err)
		}
	}
}
