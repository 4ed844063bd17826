package signing

import (
	"context"
	"fmt"
)

// Signer names the person who signs, as the state identity provider knows
// them (taken from the user's linked account).
type Signer struct {
	OID   string // the person's identifier at the identity provider
	SNILS string // the person's insurance number
}

// Document is what the node asks the signing service to sign.
type Document struct {
	RequestID string // the node's request ID; Start is idempotent on it
	Signer    Signer
	Title     string
	Data      []byte
	SHA256    [32]byte // the digest of Data
}

// State is where a signature stands at the signing service, and how a
// request ended.
type State int

const (
	// Pending: the person has not decided yet.
	Pending State = iota
	// Signed: the person approved and the service produced the signature.
	Signed
	// Declined: the person refused.
	Declined
	// Expired: nobody decided in time.
	Expired
	// Failed: the service could not sign (or its signature was refused).
	Failed
)

var stateNames = [...]string{"pending", "signed", "declined", "expired", "failed"}

// String returns the state's API name: "pending", "signed", ….
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// ParseState returns the State whose String is name.
func ParseState(name string) (State, error) {
	for i, n := range stateNames {
		if n == name {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown state %q", ErrProtocol, name)
}

// Status is an operation's state at the signing service.
type Status struct {
	State     State
	Signature []byte // detached CMS SignedData, DER; set when Signed
	Reason    string // the service's words, for Declined, Expired, Failed
}

// Provider is the signing service: where a qualified-signature provider
// asks the person to approve and produces the signature.
type Provider interface {
	// Start asks the signing service to sign d; idempotent on
	// d.RequestID (a retry after a lost answer returns the same
	// operation).
	Start(ctx context.Context, d Document) (operation string, err error)
	// Status returns the operation's state.
	Status(ctx context.Context, operation string) (Status, error)
}
