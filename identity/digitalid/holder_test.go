package digitalid

import (
	"errors"
	"testing"
	"time"
)

func TestPresentRefusals(t *testing.T) {
	sdjwt := issue(t, holderEd.Public())
	at := t0.Add(time.Second)
	if _, err := Present(sdjwt, holderEd, []string{"shoe_size"}, testAud, testNonce, at); !errors.Is(err, ErrUnknownClaim) {
		t.Errorf("unknown claim: %v", err)
	}
	if _, err := Present(sdjwt, otherEd, []string{ClaimAgeOver18}, testAud, testNonce, at); !errors.Is(err, ErrHolderKey) {
		t.Errorf("another holder key: %v", err)
	}
	if _, err := Present(sdjwt, holderEC, []string{ClaimAgeOver18}, testAud, testNonce, at); !errors.Is(err, ErrHolderKey) {
		t.Errorf("another holder key type: %v", err)
	}
	p := present(t, sdjwt, holderEd, ClaimAgeOver18)
	if _, err := Present(p, holderEd, nil, testAud, testNonce, at); !errors.Is(err, ErrMalformed) {
		t.Errorf("presenting a presentation: %v", err)
	}
	if _, err := Present(sdjwt, holderEd, nil, "", testNonce, at); err == nil {
		t.Errorf("empty aud accepted")
	}
	// Nothing disclosed is a valid presentation: it proves holding the ID.
	p0, err := Present(sdjwt, holderEd, nil, testAud, testNonce, t0.Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := Verify(p0, verifyOptions(t)); err != nil || len(res.Claims) != 0 {
		t.Errorf("empty presentation: %v, %v", res, err)
	}
}
