package identity

import (
	"errors"
	"time"
)

// Attributes are what a state identity provider verified about an
// account's person (ESIA's person record), kept sealed in the accounts'
// store with the time they were verified. Only what the granted scope
// returned is set; the rest is empty. Unlinking erases them.
type Attributes struct {
	// Provider is the identity provider: "esia".
	Provider string `json:"provider"`
	// Subject is the person's id at the provider (ESIA's oid).
	Subject string `json:"subject"`
	// VerifiedAt is when the node read them from the provider.
	VerifiedAt time.Time `json:"verified_at"`
	// Trusted is the provider's "confirmed account" mark (ESIA's
	// trusted: identity checked in person or by a qualified signature).
	Trusted bool `json:"trusted"`
	// Scopes are the scopes the provider granted.
	Scopes []string `json:"scopes,omitempty"`

	FirstName  string `json:"first_name,omitempty"`
	LastName   string `json:"last_name,omitempty"`
	MiddleName string `json:"middle_name,omitempty"`
	// BirthDate is the date of birth, "2006-01-02"; empty when not granted.
	BirthDate string `json:"birth_date,omitempty"`
	// SNILS is the insurance number, "123-456-789 01".
	SNILS string `json:"snils,omitempty"`
	// Student and Pensioner are statuses the provider vouches for; nil
	// when the scope did not grant them.
	Student   *bool `json:"student,omitempty"`
	Pensioner *bool `json:"pensioner,omitempty"`
}

// Birth returns the date of birth, or ok false when none was granted or
// it does not parse.
func (a Attributes) Birth() (time.Time, bool) {
	if a.BirthDate == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.DateOnly, a.BirthDate)
	return t, err == nil
}

// Errors of the state services, which the broker maps to error codes.
var (
	// ErrStateOff is returned for a state-service request the node has no
	// adapter for (not configured).
	ErrStateOff = errors.New("identity: this node has no such state service")
	// ErrUnknownRequest is returned for a signing request that does not
	// exist, or whose signer is someone else.
	ErrUnknownRequest = errors.New("identity: no such signing request")
	// ErrRequestEnded is returned for a signing request already decided
	// or ended.
	ErrRequestEnded = errors.New("identity: the signing request was already decided or ended")
)
