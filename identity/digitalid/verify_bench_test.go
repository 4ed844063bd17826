package digitalid

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

func BenchmarkVerify(b *testing.B) {
	for _, bc := range []struct {
		name   string
		holder crypto.Signer
	}{
		{"Ed25519", holderEd},
		{"ES256", holderEC},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := present(b, issue(b, bc.holder.Public()), bc.holder, ClaimAgeOver18, ClaimGivenName, ClaimFamilyName)
			o := verifyOptions(b)
			o.Allowed = []string{ClaimAgeOver18, ClaimGivenName, ClaimFamilyName}
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if _, err := Verify(p, o); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
		})
	}
}

func BenchmarkIssue(b *testing.B) {
	iss, err := NewIssuer(IssuerOptions{Issuer: testIssuer, Key: issuerKey, KeyID: testKID})
	if err != nil {
		b.Fatal(err)
	}
	claims := Claims(testAttributes(), t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iss.Issue("account-42", holderEC.Public(), claims); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPresent(b *testing.B) {
	for _, bc := range []struct {
		name   string
		holder crypto.Signer
	}{
		{"Ed25519", holderEd},
		{"ES256", holderEC},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sdjwt := issue(b, bc.holder.Public())
			disclose := []string{ClaimAgeOver18, ClaimGivenName, ClaimFamilyName}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Present(sdjwt, bc.holder, disclose, testAud, testNonce, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignatureFloor times the two signature checks a Verify makes
// (the issuer's Ed25519, the holder's Ed25519 or ES256) alone, the floor
// under BenchmarkVerify on the same machine.
func BenchmarkSignatureFloor(b *testing.B) {
	msg := []byte("eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJodHRwczovL25vZGUuZXhhbXBsZSJ9")
	sum := sha256.Sum256(msg)
	edSig := ed25519.Sign(issuerKey, msg)
	ecSig, err := ecdsa.SignASN1(rand.Reader, holderEC, sum[:])
	if err != nil {
		b.Fatal(err)
	}
	edPub := issuerKey.Public().(ed25519.PublicKey)
	b.Run("Ed25519", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(edPub, msg, edSig) || !ed25519.Verify(edPub, msg, edSig) {
				b.Fatal("bad signature")
			}
		}
	})
	b.Run("ES256", func(b *testing.B) {
		for b.Loop() {
			h := sha256.Sum256(msg)
			if !ed25519.Verify(edPub, msg, edSig) || !ecdsa.VerifyASN1(&holderEC.PublicKey, h[:], ecSig) {
				b.Fatal("bad signature")
			}
		}
	})
}
