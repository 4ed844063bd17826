package digitalid

import (
	"maps"
	"testing"
	"time"

	"github.com/gonets/gonets/identity"
)

func TestAge(t *testing.T) {
	date := func(s string) time.Time {
		t.Helper()
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	f := func(birth, now string, want int) {
		t.Helper()
		if got := Age(date(birth), date(now)); got != want {
			t.Errorf("Age(%s, %s) = %d, want %d", birth, now, got, want)
		}
	}
	f("2008-06-01", "2026-05-31", 17) // the day before the 18th birthday
	f("2008-06-01", "2026-06-01", 18) // the 18th birthday
	f("2008-06-01", "2026-06-02", 18)
	f("2008-01-01", "2025-12-31", 17)
	f("2008-12-31", "2026-12-31", 18)
	f("2008-12-31", "2026-12-30", 17)
	f("2008-02-29", "2026-02-28", 17) // no 29 Feb in 2026: not yet
	f("2008-02-29", "2026-03-01", 18) // ... a year older on 1 March
	f("2008-02-29", "2028-02-28", 19)
	f("2008-02-29", "2028-02-29", 20) // leap year: on the day
	f("2012-03-01", "2026-02-28", 13)
	f("2012-03-01", "2026-03-01", 14)
	f("2026-06-02", "2026-06-01", -1)

	// The date is now's in now's location: 21:30 UTC on the eve of the
	// birthday is already the birthday in Moscow (UTC+3).
	msk := time.FixedZone("MSK", 3*3600)
	eve := time.Date(2026, 5, 31, 21, 30, 0, 0, time.UTC)
	if got := Age(date("2008-06-01"), eve); got != 17 {
		t.Errorf("in UTC: %d", got)
	}
	if got := Age(date("2008-06-01"), eve.In(msk)); got != 18 {
		t.Errorf("in Moscow: %d", got)
	}
}

func TestClaims(t *testing.T) {
	yes, no := true, false
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		a    identity.Attributes
		want map[string]any
	}{
		{"all", identity.Attributes{FirstName: "Anna", LastName: "Ivanova", MiddleName: "Petrovna", BirthDate: "2012-06-02", Student: &yes, Pensioner: &no},
			map[string]any{"given_name": "Anna", "family_name": "Ivanova", "middle_name": "Petrovna", "birthdate": "2012-06-02",
				"age_over_14": false, "age_over_18": false, "student": true, "pensioner": false}},
		{"14 today", identity.Attributes{BirthDate: "2012-06-01"},
			map[string]any{"birthdate": "2012-06-01", "age_over_14": true, "age_over_18": false}},
		{"adult, no middle name", identity.Attributes{FirstName: "Ivan", LastName: "Petrov", BirthDate: "1960-01-01", Pensioner: &yes},
			map[string]any{"given_name": "Ivan", "family_name": "Petrov", "birthdate": "1960-01-01", "age_over_14": true, "age_over_18": true, "pensioner": true}},
		{"bad birth date", identity.Attributes{FirstName: "Ivan", BirthDate: "01.01.1990"}, map[string]any{"given_name": "Ivan"}},
		{"nothing", identity.Attributes{SNILS: "123-456-789 01"}, map[string]any{}},
	} {
		if got := Claims(tc.a, now); !maps.Equal(got, tc.want) {
			t.Errorf("%s: Claims = %v, want %v", tc.name, got, tc.want)
		}
	}
}
