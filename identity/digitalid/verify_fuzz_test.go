package digitalid

import (
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// FuzzVerify feeds Verify (and the holder's parsers) arbitrary input: it
// must never panic, every refusal must wrap one of the sentinels, and what
// it accepts must be a well-formed result. The seeds are valid
// presentations for both holder key types (the fixtures' keys are fixed,
// so corpus entries stay valid) and mutations of them.
func FuzzVerify(f *testing.F) {
	sdjwt := issue(f, holderEd.Public())
	ecJWT := issue(f, holderEC.Public())
	p18 := present(f, sdjwt, holderEd, ClaimAgeOver18)
	pEC := present(f, ecJWT, holderEC, ClaimGivenName, ClaimBirthdate, ClaimAgeOver18)
	jwt, ds, kb := parts(p18)
	dName := disclosureOf(f, sdjwt, ClaimGivenName)
	for _, s := range []string{
		p18,
		pEC,
		sdjwt,
		present(f, sdjwt, holderEd),
		join(jwt, append(ds, dName), kb), // disclosure added
		join(jwt, nil, kb),               // removed
		bind(f, jwt+"~"+ds[0]+"~"+ds[0]+"~", holderEd, jose.EdDSA), // sent twice
		strings.Replace(p18, ".", "", 1),
		p18[:len(p18)/2],
		strings.ReplaceAll(p18, "~", "~~"),
		jwt + "~" + kb,
		"~",
		"a.b.c~d~e.f.g",
	} {
		f.Add(s)
	}
	keys := testKeys(f)
	f.Fuzz(func(t *testing.T, s string) {
		o := VerifyOptions{Keys: keys, Audience: testAud, Nonce: testNonce, Now: t0.Add(10e9)}
		res, err := Verify(s, o)
		if err != nil {
			if res != nil {
				t.Fatalf("a result with error %v", err)
			}
			if Reason(err) == "error" {
				t.Fatalf("refusal wraps no sentinel: %v", err)
			}
		} else if res.Subject == "" || res.Issuer == "" || res.Holder == nil || res.Claims == nil {
			t.Fatalf("accepted with result %+v", res)
		}
		if claims, err := Disclosable(s); err == nil && claims == nil {
			t.Fatalf("Disclosable: nil claims, no error")
		}
		_, _ = Present(s, holderEd, []string{ClaimAgeOver18}, testAud, testNonce, t0)
	})
}
