package digitalid

import (
	"time"

	"github.com/gonets/gonets/identity"
)

// Claim names of the digital ID (OpenID Connect's where one exists).
const (
	ClaimGivenName  = "given_name"
	ClaimFamilyName = "family_name"
	ClaimMiddleName = "middle_name"
	ClaimBirthdate  = "birthdate"
	ClaimAgeOver14  = "age_over_14"
	ClaimAgeOver18  = "age_over_18"
	ClaimStudent    = "student"
	ClaimPensioner  = "pensioner"
)

// Claims returns the digital ID's claims from what a state identity
// provider verified, as of now: given_name, family_name, middle_name,
// birthdate ("2006-01-02"), age_over_14, age_over_18, student and
// pensioner, each only when its source attribute is present. A birth date
// that does not parse gives neither birthdate nor the age claims.
//
// Ages are counted on now's calendar date in now's location: a person is a
// year older on the anniversary of the birth date, and one born on 29
// February on 1 March in a year that has none.
func Claims(a identity.Attributes, now time.Time) map[string]any {
	c := make(map[string]any, 8)
	if a.FirstName != "" {
		c[ClaimGivenName] = a.FirstName
	}
	if a.LastName != "" {
		c[ClaimFamilyName] = a.LastName
	}
	if a.MiddleName != "" {
		c[ClaimMiddleName] = a.MiddleName
	}
	if birth, ok := a.Birth(); ok {
		age := Age(birth, now)
		c[ClaimBirthdate] = birth.Format(time.DateOnly)
		c[ClaimAgeOver14] = age >= 14
		c[ClaimAgeOver18] = age >= 18
	}
	if a.Student != nil {
		c[ClaimStudent] = *a.Student
	}
	if a.Pensioner != nil {
		c[ClaimPensioner] = *a.Pensioner
	}
	return c
}

// Age returns the age in whole years on now's date (in now's location) of
// a person born on birth's date (its year, month and day; the clock and
// location are ignored). Someone born on 29 February turns a year older on
// 1 March in a year without one. Before the birth date it is negative.
func Age(birth, now time.Time) int {
	by, bm, bd := birth.Date()
	ny, nm, nd := now.Date()
	age := ny - by
	if nm < bm || (nm == bm && nd < bd) {
		age--
	}
	return age
}
