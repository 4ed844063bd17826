package signing

import (
	"crypto/x509"
	"fmt"
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
