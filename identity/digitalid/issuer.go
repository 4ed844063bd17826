package digitalid

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// IssuerOptions configures an Issuer.
type IssuerOptions struct {
	// Issuer is the iss claim, the node's URL ("https://node.example:7445").
	// Required.
	Issuer string
	// Key is the node's Ed25519 signing key. Required.
	Key ed25519.PrivateKey
	// KeyID is the kid in the issuer JWT's header and in the node's JWKS.
	// Required.
	KeyID string
	// TTL is a credential's life (exp - iat). Default: 30 days.
	TTL time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Issuer signs digital IDs: SD-JWTs whose every claim is selectively
// disclosable, bound to the holder's device key. It is safe for concurrent
// use.
type Issuer struct {
	o      IssuerOptions
	signer jose.Signer
}

// Decoy digests hide how many claims a credential holds (RFC 9901 §4.2.5):
// each credential gets between minDecoys and maxDecoys of them.
const (
	minDecoys = 2
	maxDecoys = 6
)

// NewIssuer returns an Issuer for o, with defaults filled in.
func NewIssuer(o IssuerOptions) (*Issuer, error) {
	if o.Issuer == "" || o.KeyID == "" {
		return nil, errors.New("digitalid: issuer: Issuer and KeyID are required")
	}
	if len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("digitalid: issuer: Key must be an Ed25519 private key")
	}
	if o.TTL <= 0 {
		o.TTL = 30 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.EdDSA, Key: o.Key},
		(&jose.SignerOptions{}).WithType(TypeSDJWT).WithHeader(jose.HeaderKey("kid"), o.KeyID),
	)
	if err != nil {
		return nil, fmt.Errorf("digitalid: issuer: %w", err)
	}
	return &Issuer{o: o, signer: signer}, nil
}

// Issue returns an SD-JWT "<issuer-jwt>~<disclosure>~...~" with every
// disclosure included: typ dc+sd-jwt, alg EdDSA, claims iss, sub, iat, exp,
// vct and cnf.jwk (the holder's public key) in the clear, and one
// disclosure per entry of claims, its digest in _sd among decoys in random
// order. The holder key must be Ed25519 or ECDSA P-256 (ErrHolderKey).
func (i *Issuer) Issue(subject string, holder crypto.PublicKey, claims map[string]any) (string, error) {
	if subject == "" {
		return "", errors.New("digitalid: issue: empty subject")
	}
	if _, err := holderAlg(holder); err != nil {
		return "", fmt.Errorf("digitalid: issue: %w", err)
	}
	if len(claims) > MaxDisclosures {
		return "", fmt.Errorf("digitalid: issue: %d claims, over %d", len(claims), MaxDisclosures)
	}
	jwk, err := (&jose.JSONWebKey{Key: holder}).MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("digitalid: issue: holder key: %w", err)
	}
	rng, err := newShuffler()
	if err != nil {
		return "", err
	}

	discl := make([]string, 0, len(claims))
	sd := make([]string, 0, len(claims)+maxDecoys)
	for name, value := range claims {
		if reserved[name] || name == "" {
			return "", fmt.Errorf("digitalid: issue: claim name %q is reserved", name)
		}
		d, err := encodeDisclosure(name, value)
		if err != nil {
			return "", err
		}
		discl = append(discl, d)
		sd = append(sd, digest(d))
	}
	for range minDecoys + rng.IntN(maxDecoys-minDecoys+1) {
		d, err := decoy()
		if err != nil {
			return "", err
		}
		sd = append(sd, d)
	}
	rng.Shuffle(len(sd), func(a, b int) { sd[a], sd[b] = sd[b], sd[a] })
	// Map order is no cryptographic shuffle: shuffle the disclosures too,
	// so that their order tells nothing either.
	rng.Shuffle(len(discl), func(a, b int) { discl[a], discl[b] = discl[b], discl[a] })

	now := i.o.Now()
	payload, err := json.Marshal(credential{
		Iss:   i.o.Issuer,
		Sub:   subject,
		Iat:   now.Unix(),
		Exp:   now.Add(i.o.TTL).Unix(),
		Vct:   VCT,
		Cnf:   cnf{JWK: jwk},
		SD:    sd,
		SDAlg: sdAlg,
	})
	if err != nil {
		return "", fmt.Errorf("digitalid: issue: %w", err)
	}
	obj, err := i.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("digitalid: issue: sign: %w", err)
	}
	jwt, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("digitalid: issue: %w", err)
	}
	var b strings.Builder
	b.WriteString(jwt)
	b.WriteByte('~')
	for _, d := range discl {
		b.WriteString(d)
		b.WriteByte('~')
	}
	if b.Len() > MaxPresentation {
		return "", fmt.Errorf("digitalid: issue: %d bytes, over %d", b.Len(), MaxPresentation)
	}
	return b.String(), nil
}

// decoy returns a decoy digest: the digest of a random value (RFC 9901
// §4.2.5), indistinguishable from a disclosure's.
func decoy() (string, error) {
	var r [saltSize]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("digitalid: decoy: %w", err)
	}
	return digest(b64.EncodeToString(r[:])), nil
}

// newShuffler returns a ChaCha8 generator seeded from crypto/rand, for the
// decoy count and the shuffles.
func newShuffler() (*mrand.Rand, error) {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("digitalid: seed: %w", err)
	}
	return mrand.New(mrand.NewChaCha8(seed)), nil
}
