package signing

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// Verify checks that sig is a detached CMS SignedData over doc: it parses,
// carries no content of its own, has exactly one signer whose certificate
// it embeds, and that signer's signature (over the signed attributes,
// whose message digest must be doc's) verifies. With roots set, the
// signer's certificate must also chain to one of them at now (or at the
// signing time the CMS states, when now is zero). It returns the signer's
// certificate.
//
// Without roots Verify proves integrity — these bytes were signed by the
// holder of the embedded certificate's key — not who that holder is: the
// chain to a qualified CA is the signing service's business.
func Verify(doc, sig []byte, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	p7, err := pkcs7.Parse(sig)
	if err != nil {
		return nil, fmt.Errorf("%w: not a CMS SignedData: %w", ErrSignature, err)
	}
	if len(p7.Content) != 0 {
		return nil, fmt.Errorf("%w: not detached: it carries %d bytes of content", ErrSignature, len(p7.Content))
	}
	cert := p7.GetOnlySigner()
	if cert == nil {
		return nil, fmt.Errorf("%w: %d signers or no signer certificate", ErrSignature, len(p7.Signers))
	}
	p7.Content = doc
	if roots != nil && !now.IsZero() {
		err = p7.VerifyWithChainAtTime(roots, now)
	} else {
		err = p7.VerifyWithChain(roots)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	return cert, nil
}

// OIDSNILS is the subject attribute in which Russian qualified
// certificates carry the holder's SNILS: 11 digits, a NumericString,
// without separators.
var OIDSNILS = asn1.ObjectIdentifier{1, 2, 643, 100, 3}

// NormalizeSNILS returns s without its separators (spaces and hyphens):
// "123-456-789 64" → "12345678964", the form a certificate carries.
func NormalizeSNILS(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, s)
}

// CertSNILS returns the SNILS the subject of cert carries (OIDSNILS), or
// found false when it carries none. A subject carrying it more than once
// with different values returns the first value and found true;
// CheckSigner refuses such a certificate.
func CertSNILS(cert *x509.Certificate) (snils string, found bool) {
	if all := certSNILS(cert); len(all) > 0 {
		return all[0], true
	}
	return "", false
}

// certSNILS returns every SNILS value in cert's subject.
func certSNILS(cert *x509.Certificate) []string {
	var out []string
	for _, atv := range cert.Subject.Names {
		if !atv.Type.Equal(OIDSNILS) {
			continue
		}
		s, _ := atv.Value.(string)
		out = append(out, s)
	}
	return out
}

// CheckSigner checks that cert (the signer's certificate, as Verify
// returns it) belongs to person: when its subject carries a SNILS, it
// must equal person.SNILS without separators, or CheckSigner returns
// ErrOtherSigner. A certificate without a SNILS passes unless
// requireSNILS, when it returns ErrOtherSigner too. The errors never
// carry either SNILS.
func CheckSigner(cert *x509.Certificate, person Signer, requireSNILS bool) error {
	got := certSNILS(cert)
	if len(got) == 0 {
		if requireSNILS {
			return fmt.Errorf("%w: the certificate carries no SNILS", ErrOtherSigner)
		}
		return nil
	}
	want := NormalizeSNILS(person.SNILS)
	for _, s := range got {
		if want == "" || s != want {
			return fmt.Errorf("%w: the certificate's SNILS is not the signer's", ErrOtherSigner)
		}
	}
	return nil
}
