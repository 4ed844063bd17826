package status

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
)

// Person is whom a Source is asked about: the ids of the user's linked
// ESIA account.
type Person struct {
	// OID is the ESIA object id. Required.
	OID string
	// SNILS is the person's insurance number as ESIA gave it; may be empty.
	SNILS string
}

// Status is one step of an application.
type Status struct {
	// Code is the state service's code for the step.
	Code string
	// Title is the text shown to the user.
	Title string
	// At is when the step happened.
	At time.Time
	// Final reports that the application will not change after it.
	Final bool
}

// Application is one request a person made to a state service.
type Application struct {
	// OrderID is the state service's id of the application.
	OrderID string
	// Service names the state service.
	Service string
	// Statuses are the application's steps, in the order they happened.
	Statuses []Status
}

// Source reads a person's applications from the state-service side.
type Source interface {
	// History returns the person's applications with every status; none
	// (nil, nil) when they have none. Safe for concurrent use.
	History(ctx context.Context, p Person) ([]Application, error)
}

// Limits of an answer; Validate and HTTPSource refuse one beyond them.
const (
	// MaxResponse caps an HTTP answer's body in bytes.
	MaxResponse = 4 << 20
	// MaxApplications caps the applications of one person.
	MaxApplications = 1000
	// MaxStatuses caps the statuses of one application.
	MaxStatuses = 100
	// MaxOrderID caps an order id in bytes.
	MaxOrderID = 128
	// MaxCode caps a status code in bytes.
	MaxCode = 128
	// MaxService caps a service name in bytes.
	MaxService = 1000
	// MaxTitle caps a status title in bytes.
	MaxTitle = 1000
	// maxOID and maxSNILS cap a Person's fields in bytes.
	maxOID   = 128
	maxSNILS = 32
)

// Validate checks apps against the contract's limits: at most
// MaxApplications, each with a unique non-empty order id and at most
// MaxStatuses statuses, each with a non-empty code, a time, and text within
// its limit. Errors wrap ErrInvalidResponse.
func Validate(apps []Application) error {
	if len(apps) > MaxApplications {
		return fmt.Errorf("%w: %d applications, at most %d", ErrInvalidResponse, len(apps), MaxApplications)
	}
	orders := make(map[string]struct{}, len(apps))
	for i, a := range apps {
		if !validText(a.OrderID, MaxOrderID, false) || a.OrderID == "" {
			return fmt.Errorf("%w: application %d: order_id empty, over %d bytes or not printable UTF-8", ErrInvalidResponse, i, MaxOrderID)
		}
		if _, dup := orders[a.OrderID]; dup {
			return fmt.Errorf("%w: application %d: order_id repeated", ErrInvalidResponse, i)
		}
		orders[a.OrderID] = struct{}{}
		if !validText(a.Service, MaxService, false) {
			return fmt.Errorf("%w: application %d: service over %d bytes or not printable UTF-8", ErrInvalidResponse, i, MaxService)
		}
		if len(a.Statuses) > MaxStatuses {
			return fmt.Errorf("%w: application %d: %d statuses, at most %d", ErrInvalidResponse, i, len(a.Statuses), MaxStatuses)
		}
		for j, s := range a.Statuses {
			switch {
			case s.Code == "" || !validText(s.Code, MaxCode, false):
				return fmt.Errorf("%w: application %d status %d: code empty, over %d bytes or not printable UTF-8", ErrInvalidResponse, i, j, MaxCode)
			case !validText(s.Title, MaxTitle, true):
				return fmt.Errorf("%w: application %d status %d: title over %d bytes or not printable UTF-8", ErrInvalidResponse, i, j, MaxTitle)
			case s.At.IsZero():
				return fmt.Errorf("%w: application %d status %d: no time", ErrInvalidResponse, i, j)
			}
		}
	}
	return nil
}

// validate checks p's fields; errors wrap ErrInvalidPerson.
func (p Person) validate() error {
	if p.OID == "" || !validText(p.OID, maxOID, false) {
		return fmt.Errorf("%w: oid empty, over %d bytes or not printable", ErrInvalidPerson, maxOID)
	}
	if !validText(p.SNILS, maxSNILS, false) {
		return fmt.Errorf("%w: snils over %d bytes or not printable", ErrInvalidPerson, maxSNILS)
	}
	return nil
}

// validText reports whether s is valid UTF-8 of at most max bytes without
// control characters; multiline allows newlines and tabs.
func validText(s string, max int, multiline bool) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			if multiline && (r == '\n' || r == '\t') {
				continue
			}
			return false
		}
	}
	return true
}
