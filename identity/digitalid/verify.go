package digitalid

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// VerifyOptions says what Verify accepts.
type VerifyOptions struct {
	// Keys are the issuer's keys (its JWKS). Required.
	Keys *KeySet
	// Issuer, when set, is the only iss accepted.
	Issuer string
	// Audience is the only KB-JWT aud accepted: the verifier's own id.
	// Required.
	Audience string
	// Nonce is the only KB-JWT nonce accepted: the one the verifier asked
	// with. Required.
	Nonce string
	// Now is the time to check exp and the KB-JWT's iat at. Default:
	// time.Now().
	Now time.Time
	// MaxAge is how old the KB-JWT's iat may be; it may be up to
	// FutureSkew in the future. Default: 30 s, the QR payload's life.
	MaxAge time.Duration
	// Allowed are the claims the verifier asked for; a presentation that
	// discloses any other is refused ErrOverDisclosed. Nil allows any.
	Allowed []string
	// Required are the claims that must be disclosed (ErrMissingClaim).
	Required []string
	// Replay, when set, refuses a nonce it has seen within its life
	// (ErrReplay). A nonce is spent only by a presentation that passed
	// every other check.
	Replay *NonceCache
}

// FutureSkew is how far in the future a KB-JWT's iat may be, for clocks
// that disagree a little.
const FutureSkew = 5 * time.Second

// Result is what a verified presentation proves.
type Result struct {
	// Issuer, Subject and Type are the credential's iss, sub and vct.
	Issuer, Subject, Type string
	// IssuedAt and Expires are the credential's iat and exp.
	IssuedAt, Expires time.Time
	// Claims are the disclosed claims, name to value (JSON types: string,
	// bool, float64, []any, map[string]any).
	Claims map[string]any
	// Holder is the device key the credential is bound to and that signed
	// the KB-JWT: ed25519.PublicKey or *ecdsa.PublicKey.
	Holder crypto.PublicKey
}

var (
	issuerAlgs = []jose.SignatureAlgorithm{jose.EdDSA}
	kbAlgs     = map[jose.SignatureAlgorithm][]jose.SignatureAlgorithm{
		jose.EdDSA: {jose.EdDSA},
		jose.ES256: {jose.ES256},
	}
)

// Verify checks a presentation offline against the issuer's keys: the
// issuer JWT (EdDSA, typ dc+sd-jwt, a kid in o.Keys, iss, exp), each
// disclosure against _sd, the KB-JWT (typ kb+jwt, EdDSA or ES256 by the key
// in cnf.jwk) with its sd_hash, iat, aud and nonce, then the claims
// disclosed against o.Allowed and o.Required, and last the nonce against
// o.Replay. Each refusal wraps one of the package's sentinels. It never
// panics, whatever the input.
func Verify(presentation string, o VerifyOptions) (*Result, error) {
	if o.Keys == nil || o.Audience == "" || o.Nonce == "" {
		return nil, errors.New("digitalid: verify: Keys, Audience and Nonce are required")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 30 * time.Second
	}
	if o.Replay != nil && o.Replay.life < o.MaxAge+FutureSkew {
		// A nonce forgotten while its presentation is still young enough
		// to pass would pass again.
		return nil, fmt.Errorf("digitalid: verify: the replay cache's life %v is below MaxAge + %v", o.Replay.life, FutureSkew)
	}

	jwt, ds, kb, err := split(presentation)
	if err != nil {
		return nil, err
	}
	obj, err := parseJWS(jwt, TypeSDJWT, issuerAlgs)
	if err != nil {
		return nil, fmt.Errorf("digitalid: issuer JWT: %v: %w", err, ErrMalformed)
	}
	kid := obj.Signatures[0].Protected.KeyID
	key, ok := o.Keys.keys[kid]
	if !ok {
		return nil, fmt.Errorf("digitalid: kid %q: %w", kid, ErrUnknownKey)
	}
	payload, err := obj.Verify(key)
	if err != nil {
		return nil, fmt.Errorf("digitalid: issuer JWT: %w", ErrSignature)
	}
	c, err := decodeCredential(payload)
	if err != nil {
		return nil, err
	}
	if o.Issuer != "" && c.Iss != o.Issuer {
		return nil, fmt.Errorf("digitalid: iss %q: %w", c.Iss, ErrIssuer)
	}
	expires := time.Unix(c.Exp, 0)
	if !o.Now.Before(expires) {
		return nil, fmt.Errorf("digitalid: expired at %s: %w", expires.UTC().Format(time.RFC3339), ErrExpired)
	}
	discl, err := decodeDisclosures(c, ds)
	if err != nil {
		return nil, err
	}

	if kb == "" {
		return nil, fmt.Errorf("digitalid: presentation ends in '~', no KB-JWT: %w", ErrNoKeyBinding)
	}
	holder, alg, err := parseHolderJWK(c.Cnf.JWK)
	if err != nil {
		return nil, err
	}
	kbObj, err := parseJWS(kb, TypeKB, kbAlgs[alg])
	if err != nil {
		return nil, fmt.Errorf("digitalid: KB-JWT: %v: %w", err, ErrKeyBinding)
	}
	kbPayload, err := kbObj.Verify(holder)
	if err != nil {
		return nil, fmt.Errorf("digitalid: KB-JWT: %w", ErrKeyBinding)
	}
	var k kbClaims
	if err := json.Unmarshal(kbPayload, &k); err != nil || k.Iat == 0 || k.SDHash == "" {
		return nil, fmt.Errorf("digitalid: KB-JWT claims: %w", ErrMalformed)
	}
	if k.SDHash != digest(presentation[:len(presentation)-len(kb)]) {
		return nil, fmt.Errorf("digitalid: sd_hash does not cover the disclosures sent: %w", ErrSDHash)
	}
	if age := o.Now.Sub(time.Unix(k.Iat, 0)); age > o.MaxAge || age < -FutureSkew {
		return nil, fmt.Errorf("digitalid: KB-JWT iat %s old: %w", age, ErrStale)
	}
	if k.Aud != o.Audience {
		return nil, fmt.Errorf("digitalid: aud %q: %w", k.Aud, ErrAudience)
	}
	if k.Nonce != o.Nonce {
		return nil, fmt.Errorf("digitalid: nonce %q: %w", k.Nonce, ErrNonce)
	}

	claims := make(map[string]any, len(discl))
	for _, d := range discl {
		if o.Allowed != nil && !slices.Contains(o.Allowed, d.name) {
			return nil, fmt.Errorf("digitalid: %q not asked for: %w", d.name, ErrOverDisclosed)
		}
		claims[d.name] = d.value
	}
	for _, name := range o.Required {
		if _, ok := claims[name]; !ok {
			return nil, fmt.Errorf("digitalid: %q not disclosed: %w", name, ErrMissingClaim)
		}
	}
	if o.Replay != nil && !o.Replay.Use(k.Nonce, o.Now) {
		return nil, fmt.Errorf("digitalid: nonce %q: %w", k.Nonce, ErrReplay)
	}
	return &Result{
		Issuer:   c.Iss,
		Subject:  c.Sub,
		Type:     c.Vct,
		IssuedAt: time.Unix(c.Iat, 0),
		Expires:  expires,
		Claims:   claims,
		Holder:   holder,
	}, nil
}

// decodeCredential decodes the issuer JWT's payload, refusing unknown
// claims, trailing data and missing required ones.
func decodeCredential(payload []byte) (*credential, error) {
	var c credential
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("digitalid: credential: %v: %w", err, ErrMalformed)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("digitalid: credential: trailing data: %w", ErrMalformed)
	}
	switch {
	case c.Iss == "", c.Sub == "", c.Vct == "", c.Iat <= 0, c.Exp <= 0, len(c.Cnf.JWK) == 0:
		return nil, fmt.Errorf("digitalid: credential: a required claim is missing: %w", ErrMalformed)
	case c.SDAlg != sdAlg:
		return nil, fmt.Errorf("digitalid: credential: _sd_alg %q: %w", c.SDAlg, ErrMalformed)
	}
	return &c, nil
}

// decodeDisclosures decodes the disclosures and checks each against the
// credential's _sd: every digest is there once, no disclosure is sent
// twice and no name is disclosed twice.
func decodeDisclosures(c *credential, ds []string) ([]disclosure, error) {
	sd := make(map[string]bool, len(c.SD))
	for _, d := range c.SD {
		if sd[d] {
			return nil, fmt.Errorf("digitalid: digest %q twice in _sd: %w", d, ErrDigest)
		}
		sd[d] = true
	}
	discl := make([]disclosure, 0, len(ds))
	for _, raw := range ds {
		d, err := decodeDisclosure(raw)
		if err != nil {
			return nil, err
		}
		if !sd[d.digest] {
			return nil, fmt.Errorf("digitalid: disclosure of %q not in _sd (or sent twice): %w", d.name, ErrDigest)
		}
		sd[d.digest] = false
		for _, e := range discl {
			if e.name == d.name {
				return nil, fmt.Errorf("digitalid: %q disclosed twice: %w", d.name, ErrDigest)
			}
		}
		discl = append(discl, d)
	}
	return discl, nil
}
