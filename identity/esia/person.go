package esia

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/gonets/gonets/identity"
)

// BirthDateLayout is the Go layout of ESIA's birthDate, "dd.mm.yyyy".
const BirthDateLayout = "02.01.2006"

// Person is ESIA's person record (GET /rs/prns/{oid}); the JSON names are
// ESIA's. Only the fields the token's scopes cover are set.
type Person struct {
	// OID is the person's id in ESIA. The record itself need not carry
	// it: Client.Person sets it from the token.
	OID        string `json:"oid,omitempty"`
	FirstName  string `json:"firstName,omitempty"`
	LastName   string `json:"lastName,omitempty"`
	MiddleName string `json:"middleName,omitempty"`
	// BirthDate is as ESIA gives it, "dd.mm.yyyy"; BirthDateISO converts.
	BirthDate string `json:"birthDate,omitempty"`
	// SNILS is the insurance number as ESIA gives it, "123-456-789 64".
	SNILS string `json:"snils,omitempty"`
	// Trusted is ESIA's "confirmed account" mark.
	Trusted bool `json:"trusted"`
	// Student and Pensioner are this deployment's extension (the scopes
	// "student" and "pensioner"; see the package doc); nil when absent.
	Student   *bool `json:"student,omitempty"`
	Pensioner *bool `json:"pensioner,omitempty"`
}

// BirthDateISO returns BirthDate as "2006-01-02", or "" when there is none
// or it does not parse.
func (p Person) BirthDateISO() string {
	t, err := time.Parse(BirthDateLayout, p.BirthDate)
	if err != nil {
		return ""
	}
	return t.Format(time.DateOnly)
}

// Attributes returns what p says that the granted scopes cover, verified
// at verifiedAt: fullname gives the names, birthdate the date of birth,
// snils the SNILS, and this deployment's student and pensioner scopes
// those statuses. Trusted is always set.
func (p Person) Attributes(scopes []string, verifiedAt time.Time) identity.Attributes {
	a := identity.Attributes{
		Provider:   "esia",
		Subject:    p.OID,
		VerifiedAt: verifiedAt,
		Trusted:    p.Trusted,
		Scopes:     slices.Clone(scopes),
	}
	for _, s := range scopes {
		switch s {
		case "fullname":
			a.FirstName, a.LastName, a.MiddleName = p.FirstName, p.LastName, p.MiddleName
		case "birthdate":
			a.BirthDate = p.BirthDateISO()
		case "snils":
			a.SNILS = p.SNILS
		case "student":
			a.Student = cloneBool(p.Student)
		case "pensioner":
			a.Pensioner = cloneBool(p.Pensioner)
		}
	}
	return a
}

func cloneBool(b *bool) *bool {
	if b == nil {
		return nil
	}
	v := *b
	return &v
}

// validate checks the fields whose format ESIA defines.
func (p Person) validate() error {
	if p.BirthDate != "" && p.BirthDateISO() == "" {
		// The value stays out of the message: errors are logged.
		return errors.New("birthDate is not dd.mm.yyyy")
	}
	if p.SNILS != "" && !ValidSNILS(p.SNILS) {
		return errors.New("snils is not a valid SNILS")
	}
	return nil
}

// ValidSNILS reports whether s is a SNILS written "123-456-789 64" whose
// check number is right (numbers up to 001-001-998 have none to check).
func ValidSNILS(s string) bool {
	if len(s) != 14 || s[3] != '-' || s[7] != '-' || s[11] != ' ' {
		return false
	}
	var d [11]int
	n := 0
	for i := 0; i < len(s); i++ {
		if i == 3 || i == 7 || i == 11 {
			continue
		}
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		d[n] = int(s[i] - '0')
		n++
	}
	num, sum := 0, 0
	for i := 0; i < 9; i++ {
		num = num*10 + d[i]
		sum += d[i] * (9 - i)
	}
	if num <= 1001998 {
		return true
	}
	check := sum % 101
	if check == 100 {
		check = 0
	}
	return check == d[9]*10+d[10]
}

// personTries is the most attempts one Person makes.
const personTries = 3

// Person reads the person record of t's OID, GET {BaseURL}/rs/prns/{oid}
// with t as Bearer, retrying network errors and 5xx (at most 3 tries within
// the call's timeout). An expired or refused token is ErrInvalidGrant.
func (c *Client) Person(ctx context.Context, t Token) (_ Person, err error) {
	start := time.Now()
	defer func() { c.done(c.prns, start, err) }()
	if t.Access == "" || t.OID == "" {
		return Person{}, fmt.Errorf("%w: person: token without access token or oid", ErrProtocol)
	}
	if !t.Expires.IsZero() && c.c.Now().After(t.Expires) {
		return Person{}, fmt.Errorf("%w: person: access token expired at %v", ErrInvalidGrant, t.Expires)
	}
	ctx, cancel := context.WithTimeout(ctx, c.c.Timeout)
	defer cancel()
	u := c.base + "/rs/prns/" + url.PathEscape(t.OID)
	wait := c.retryW
	for try := 1; ; try++ {
		p, retry, err := c.person(ctx, u, t)
		if err == nil {
			return p, nil
		}
		if !retry || try == personTries || ctx.Err() != nil {
			return Person{}, fmt.Errorf("esia: person (try %d): %w", try, err)
		}
		d := wait/2 + rand.N(wait/2+1)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return Person{}, fmt.Errorf("esia: person (try %d, no time left to retry): %w", try, err)
		}
		if serr := sleepCtx(ctx, d); serr != nil {
			return Person{}, fmt.Errorf("esia: person (try %d): %w (last: %w)", try, serr, err)
		}
		wait *= 2
	}
}

// person makes one attempt; retry says whether another may succeed.
func (c *Client) person(ctx context.Context, u string, t Token) (_ Person, retry bool, _ error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Person{}, false, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	req.Header.Set("Authorization", "Bearer "+t.Access)
	req.Header.Set("Accept", "application/json")
	status, body, err := c.do(req)
	switch {
	case err != nil:
		return Person{}, !errorsIsProtocol(err), err
	case status == http.StatusUnauthorized:
		return Person{}, false, fmt.Errorf("%w: status 401 %q", ErrInvalidGrant, snippet(body))
	case status != http.StatusOK:
		err := statusError(status, body)
		return Person{}, status >= 500, err
	}
	// ESIA's record need not carry the oid, and where it does it may be
	// a number: it is set from the token, which the record was read with.
	var r struct {
		Person
		OID json.RawMessage `json:"oid"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return Person{}, false, fmt.Errorf("%w: person record: %w", ErrProtocol, err)
	}
	p := r.Person
	if err := p.validate(); err != nil {
		return Person{}, false, fmt.Errorf("%w: person record: %w", ErrProtocol, err)
	}
	p.OID = t.OID
	return p, false, nil
}

func errorsIsProtocol(err error) bool { return outcomeOf(err) == outcomeProtocol }
