package digitalid

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// Present returns a presentation of the SD-JWT sdjwt,
// "<issuer-jwt>~<chosen disclosures>~<kb-jwt>", that discloses only the
// claims named in disclose (an unknown name is ErrUnknownClaim). The KB-JWT
// (typ kb+jwt, EdDSA or ES256 after the holder key) signs iat = now, aud,
// nonce and sd_hash, the base64url SHA-256 of everything before it
// including the last '~' (RFC 9901 §4.3). holder must be the key the
// credential is bound to (ErrHolderKey); it may be a secure element's
// crypto.Signer.
func Present(sdjwt string, holder crypto.Signer, disclose []string, aud, nonce string, now time.Time) (string, error) {
	if aud == "" || nonce == "" {
		return "", errors.New("digitalid: present: aud and nonce are required")
	}
	if holder == nil {
		return "", fmt.Errorf("digitalid: present: no holder key: %w", ErrHolderKey)
	}
	jwt, ds, kb, err := split(sdjwt)
	if err != nil {
		return "", err
	}
	if kb != "" {
		return "", fmt.Errorf("digitalid: present: input already carries a key binding: %w", ErrMalformed)
	}
	c, discl, err := parseUnverified(jwt, ds)
	if err != nil {
		return "", err
	}
	pub := holder.Public()
	alg, err := holderAlg(pub)
	if err != nil {
		return "", fmt.Errorf("digitalid: present: %w", err)
	}
	if err := sameKey(pub, c.Cnf.JWK); err != nil {
		return "", err
	}

	want := make(map[string]bool, len(disclose))
	for _, name := range disclose {
		want[name] = true
	}
	for name := range want {
		found := false
		for _, d := range discl {
			if d.name == name {
				found = true
				break
			}
		}
		if !found {
			return "", fmt.Errorf("digitalid: present: %q: %w", name, ErrUnknownClaim)
		}
	}
	var b strings.Builder
	b.WriteString(jwt)
	b.WriteByte('~')
	for _, d := range discl {
		if want[d.name] {
			b.WriteString(d.raw)
			b.WriteByte('~')
		}
	}

	payload, err := json.Marshal(kbClaims{Iat: now.Unix(), Aud: aud, Nonce: nonce, SDHash: digest(b.String())})
	if err != nil {
		return "", fmt.Errorf("digitalid: present: %w", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: cryptosigner.Opaque(holder)},
		(&jose.SignerOptions{}).WithType(TypeKB),
	)
	if err != nil {
		return "", fmt.Errorf("digitalid: present: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("digitalid: present: sign: %w", err)
	}
	kbJWT, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("digitalid: present: %w", err)
	}
	b.WriteString(kbJWT)
	return b.String(), nil
}

// Disclosable returns the claims an SD-JWT (or a presentation) holds,
// name to value, for a UI or CLI to offer. It does not check the issuer's
// signature; it does check that each disclosure belongs to the credential.
func Disclosable(sdjwt string) (map[string]any, error) {
	jwt, ds, _, err := split(sdjwt)
	if err != nil {
		return nil, err
	}
	_, discl, err := parseUnverified(jwt, ds)
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(discl))
	for _, d := range discl {
		out[d.name] = d.value
	}
	return out, nil
}

// parseUnverified reads the issuer JWT's payload without checking its
// signature (the holder need not have the issuer's keys) and decodes the
// disclosures, checked against its _sd.
func parseUnverified(jwt string, ds []string) (*credential, []disclosure, error) {
	obj, err := parseJWS(jwt, TypeSDJWT, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, nil, fmt.Errorf("digitalid: issuer JWT: %v: %w", err, ErrMalformed)
	}
	c, err := decodeCredential(obj.UnsafePayloadWithoutVerification())
	if err != nil {
		return nil, nil, err
	}
	discl, err := decodeDisclosures(c, ds)
	if err != nil {
		return nil, nil, err
	}
	return c, discl, nil
}

// sameKey checks that pub is the key cnf.jwk names, by RFC 7638 thumbprint.
func sameKey(pub crypto.PublicKey, raw json.RawMessage) error {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return fmt.Errorf("digitalid: cnf.jwk: %w", ErrMalformed)
	}
	want, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("digitalid: cnf.jwk: %w", ErrMalformed)
	}
	got, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("digitalid: present: not the key the credential is bound to: %w", ErrHolderKey)
	}
	return nil
}
