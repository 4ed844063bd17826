package token

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of Verify. Each maps to a stable client error code: ErrExpired to
// TOKEN_EXPIRED, the others to UNAUTHENTICATED.
var (
	// ErrMalformed is returned for a token that is not a well-formed JWT
	// with the claims Gonets needs.
	ErrMalformed = errors.New("token: malformed")
	// ErrForged is returned for a token whose signature does not verify
	// against any configured key, or that names another algorithm.
	ErrForged = errors.New("token: bad signature")
	// ErrExpired is returned for a token past its expiry.
	ErrExpired = errors.New("token: expired")
)

// Claims are what a session token asserts.
type Claims struct {
	User    uint64
	Device  uint64
	Expires time.Time
}

// KeyID names a public key: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// jwtClaims is the token's JSON payload.
type jwtClaims struct {
	Device string `json:"dev"`
	jwt.RegisteredClaims
}

// Signer mints tokens with one private key.
type Signer struct {
	key ed25519.PrivateKey
	kid string
	now func() time.Time
}

// NewSigner returns a Signer for key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, kid: KeyID(key.Public().(ed25519.PublicKey)), now: time.Now}
}

// Sign returns a token asserting c.
func (s *Signer) Sign(c Claims) (string, error) {
	if c.User == 0 || c.Device == 0 {
		return "", fmt.Errorf("token: user and device must be non-zero")
	}
	if c.Expires.IsZero() {
		return "", fmt.Errorf("token: no expiry")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwtClaims{
		Device: strconv.FormatUint(c.Device, 10),
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   strconv.FormatUint(c.User, 10),
			ExpiresAt: jwt.NewNumericDate(c.Expires),
			IssuedAt:  jwt.NewNumericDate(s.now()),
		},
	})
	t.Header["kid"] = s.kid
	out, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return out, nil
}

// Options configure a Verifier.
type Options struct {
	// Keys are the public keys tokens may be signed with. Required.
	Keys []ed25519.PublicKey
	// Leeway is the clock skew allowed around the expiry. Default: 30s.
	Leeway time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// CacheSize caps the tokens whose verified claims are remembered, so
	// that a token presented again (a reconnect storm) skips the
	// signature check; expiry is still checked each time. Negative turns
	// the cache off. Default: 65,536.
	CacheSize int
}

// Verifier checks tokens against a set of public keys, which SetKeys may
// replace while it runs (key rotation).
type Verifier struct {
	leeway time.Duration
	now    func() time.Time
	parser *jwt.Parser

	// keys maps a key id to its key. The map is never changed once
	// stored; SetKeys stores another, with mu held.
	keys atomic.Pointer[map[string]ed25519.PublicKey]

	cacheSize int
	mu        sync.Mutex        // guards the following
	verified  map[string]Claims // verified under the keys now stored
}

// NewVerifier returns a Verifier for opts.
func NewVerifier(opts Options) (*Verifier, error) {
	if opts.Leeway == 0 {
		opts.Leeway = 30 * time.Second
	}
	if opts.Leeway < 0 {
		return nil, fmt.Errorf("token: negative leeway %v", opts.Leeway)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 1 << 16
	}
	v := &Verifier{leeway: opts.Leeway, now: opts.Now,
		cacheSize: max(opts.CacheSize, 0), verified: make(map[string]Claims)}
	keys, err := keyMap(opts.Keys)
	if err != nil {
		return nil, err
	}
	v.keys.Store(&keys)
	// Expiry is checked below against our clock, so that the leeway and the
	// error are ours; the parser checks only the signature and algorithm.
	v.parser = jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}), jwt.WithoutClaimsValidation())
	return v, nil
}

// keyMap maps each of keys by its key id.
func keyMap(keys []ed25519.PublicKey) (map[string]ed25519.PublicKey, error) {
	if len(keys) == 0 {
		return nil, errors.New("token: no verification keys")
	}
	m := make(map[string]ed25519.PublicKey, len(keys))
	for _, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("token: public key of %d bytes", len(k))
		}
		m[KeyID(k)] = k
	}
	return m, nil
}

// SetKeys replaces the keys tokens may be signed with. It is safe to call
// while Verify runs: a Verify that returns after SetKeys has returned
// checks against the new keys, and the cache of verified tokens is
// dropped, so a token of a key no longer in keys stops verifying at once.
// keys must be non-empty, as for NewVerifier; on error nothing changes.
func (v *Verifier) SetKeys(keys []ed25519.PublicKey) error {
	m, err := keyMap(keys)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.keys.Store(&m)
	clear(v.verified)
	return nil
}

// Verify checks tok's signature and expiry and returns its claims.
func (v *Verifier) Verify(tok string) (Claims, error) {
	v.mu.Lock()
	c, seen := v.verified[tok]
	v.mu.Unlock()
	if !seen {
		keys := v.keys.Load()
		var err error
		if c, err = v.verifySignature(tok, *keys); err != nil {
			return Claims{}, err
		}
		v.remember(tok, c, keys)
	}
	if !v.now().Before(c.Expires.Add(v.leeway)) {
		return Claims{}, fmt.Errorf("%w at %s", ErrExpired, c.Expires.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// remember caches the claims of a token verified under keys, dropping
// arbitrary ones (map order) when the cache is full. If SetKeys has
// replaced keys since, it caches nothing: the cache holds only tokens of
// the keys now stored.
func (v *Verifier) remember(tok string, c Claims, keys *map[string]ed25519.PublicKey) {
	if v.cacheSize == 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keys.Load() != keys {
		return
	}
	for k := range v.verified {
		if len(v.verified) < v.cacheSize {
			break
		}
		delete(v.verified, k)
	}
	v.verified[tok] = c
}

// verifySignature checks tok's signature against keys and its claims'
// shape.
func (v *Verifier) verifySignature(tok string, keys map[string]ed25519.PublicKey) (Claims, error) {
	var jc jwtClaims
	_, err := v.parser.ParseWithClaims(tok, &jc, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := keys[kid]
		if !ok {
			return nil, ErrForged
		}
		return k, nil
	})
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenMalformed):
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	default:
		// A bad signature, an unknown key or a method other than EdDSA.
		return Claims{}, fmt.Errorf("%w: %v", ErrForged, err)
	}
	user, uerr := strconv.ParseUint(jc.Subject, 10, 64)
	dev, derr := strconv.ParseUint(jc.Device, 10, 64)
	if uerr != nil || derr != nil || user == 0 || dev == 0 || jc.ExpiresAt == nil {
		return Claims{}, fmt.Errorf("%w: needs sub, dev and exp", ErrMalformed)
	}
	return Claims{User: user, Device: dev, Expires: jc.ExpiresAt.Time}, nil
}
