package digitalid

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

const (
	// VCT is the credential type (vct) of the digital ID.
	VCT = "urn:gonets:digital-id:1"
	// TypeSDJWT is the issuer JWT's typ header (RFC 9901 §9.2).
	TypeSDJWT = "dc+sd-jwt"
	// TypeKB is the KB-JWT's typ header (RFC 9901 §4.3).
	TypeKB = "kb+jwt"

	// MaxPresentation bounds the bytes of an SD-JWT or presentation that
	// Verify, Present and Disclosable accept.
	MaxPresentation = 16 << 10
	// MaxDisclosures bounds the disclosures of one SD-JWT; Issue refuses
	// more claims than this.
	MaxDisclosures = 64

	sdAlg    = "sha-256"
	saltSize = 16 // 128 bits, RFC 9901 §9.3
)

var b64 = base64.RawURLEncoding.Strict()

// reserved are the names a disclosure may not carry: the SD-JWT's own
// ("_sd", "...", "_sd_alg") and the claims the issuer JWT holds in the
// clear, which a disclosure would collide with (RFC 9901 §7.1, step 3.2.2).
var reserved = map[string]bool{
	"_sd": true, "...": true, "_sd_alg": true,
	"iss": true, "sub": true, "iat": true, "exp": true, "nbf": true,
	"vct": true, "cnf": true, "status": true, "aud": true, "jti": true,
}

// credential is the issuer JWT's payload. Verify decodes it with unknown
// fields refused, so a disclosure can only collide with these names.
type credential struct {
	Iss   string   `json:"iss"`
	Sub   string   `json:"sub"`
	Iat   int64    `json:"iat"`
	Exp   int64    `json:"exp"`
	Vct   string   `json:"vct"`
	Cnf   cnf      `json:"cnf"`
	SD    []string `json:"_sd"`
	SDAlg string   `json:"_sd_alg"`
}

type cnf struct {
	JWK json.RawMessage `json:"jwk"`
}

// kbClaims is the KB-JWT's payload (RFC 9901 §4.3).
type kbClaims struct {
	Iat    int64  `json:"iat"`
	Aud    string `json:"aud"`
	Nonce  string `json:"nonce"`
	SDHash string `json:"sd_hash"`
}

// disclosure is one decoded disclosure: [salt, name, value].
type disclosure struct {
	raw    string // base64url, as sent
	digest string // base64url SHA-256 of raw
	name   string
	value  any
}

// digest returns base64url(SHA-256(s)), the digest of a disclosure
// (RFC 9901 §4.2.3) and the sd_hash of a presentation (§4.3.1).
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return b64.EncodeToString(sum[:])
}

// encodeDisclosure makes the disclosure of one claim with a fresh salt.
func encodeDisclosure(name string, value any) (string, error) {
	var salt [saltSize]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return "", fmt.Errorf("digitalid: salt: %w", err)
	}
	b, err := json.Marshal([]any{b64.EncodeToString(salt[:]), name, value})
	if err != nil {
		return "", fmt.Errorf("digitalid: claim %q: %w", name, err)
	}
	return b64.EncodeToString(b), nil
}

// decodeDisclosure parses one disclosure; it refuses anything but a
// three-element array of salt, a name that is not reserved, and a value.
func decodeDisclosure(raw string) (disclosure, error) {
	d := disclosure{raw: raw}
	b, err := b64.DecodeString(raw)
	if err != nil {
		return d, fmt.Errorf("digitalid: disclosure: %w", ErrMalformed)
	}
	var arr []any
	if err := json.Unmarshal(b, &arr); err != nil || len(arr) != 3 {
		return d, fmt.Errorf("digitalid: disclosure is not [salt, name, value]: %w", ErrMalformed)
	}
	salt, ok1 := arr[0].(string)
	name, ok2 := arr[1].(string)
	if !ok1 || !ok2 || salt == "" || name == "" {
		return d, fmt.Errorf("digitalid: disclosure salt or name: %w", ErrMalformed)
	}
	if reserved[name] {
		return d, fmt.Errorf("digitalid: disclosure of reserved name %q: %w", name, ErrDigest)
	}
	d.digest = digest(raw)
	d.name = name
	d.value = arr[2]
	return d, nil
}

// split cuts "<jwt>~<d1>~...~<dn>~<kb>" into its parts; kb is empty for an
// SD-JWT without key binding. It bounds the size and the disclosures.
func split(s string) (jwt string, discl []string, kb string, err error) {
	if len(s) > MaxPresentation {
		return "", nil, "", fmt.Errorf("digitalid: %d bytes, over %d: %w", len(s), MaxPresentation, ErrMalformed)
	}
	n := strings.Count(s, "~")
	if n == 0 {
		return "", nil, "", fmt.Errorf("digitalid: no '~' separator: %w", ErrMalformed)
	}
	if n-1 > MaxDisclosures {
		return "", nil, "", fmt.Errorf("digitalid: %d disclosures, over %d: %w", n-1, MaxDisclosures, ErrMalformed)
	}
	parts := strings.Split(s, "~")
	jwt, discl, kb = parts[0], parts[1:len(parts)-1], parts[len(parts)-1]
	if jwt == "" {
		return "", nil, "", fmt.Errorf("digitalid: no issuer JWT: %w", ErrMalformed)
	}
	for _, d := range discl {
		if d == "" {
			return "", nil, "", fmt.Errorf("digitalid: empty disclosure: %w", ErrMalformed)
		}
	}
	return jwt, discl, kb, nil
}

// parseJWS parses a compact JWS signed with one of algs and checks its
// header: typ must be typ, and nothing but alg, kid and typ may be there
// (no embedded jwk, nonce, crit or b64; an x5c go-jose parses is ignored).
func parseJWS(s string, typ string, algs []jose.SignatureAlgorithm) (*jose.JSONWebSignature, error) {
	obj, err := jose.ParseSignedCompact(s, algs)
	if err != nil {
		return nil, err
	}
	if len(obj.Signatures) != 1 {
		return nil, fmt.Errorf("%d signatures", len(obj.Signatures))
	}
	h := obj.Signatures[0].Protected
	if h.JSONWebKey != nil || h.Nonce != "" {
		return nil, fmt.Errorf("unexpected header parameter")
	}
	for k := range h.ExtraHeaders {
		if k != jose.HeaderType {
			return nil, fmt.Errorf("unexpected header parameter %q", k)
		}
	}
	if t, _ := h.ExtraHeaders[jose.HeaderType].(string); t != typ {
		return nil, fmt.Errorf("typ %q, want %q", t, typ)
	}
	return obj, nil
}

// holderAlg returns the JWS algorithm of a holder key: EdDSA for Ed25519,
// ES256 for ECDSA P-256; any other key is refused.
func holderAlg(pub any) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return jose.EdDSA, nil
		}
	case *ecdsa.PublicKey:
		if k != nil && k.Curve == elliptic.P256() {
			return jose.ES256, nil
		}
	}
	return "", fmt.Errorf("digitalid: holder key %T: %w", pub, ErrHolderKey)
}

// parseHolderJWK parses cnf.jwk into a public key Verify can check a
// KB-JWT with, and that key's algorithm.
func parseHolderJWK(raw json.RawMessage) (any, jose.SignatureAlgorithm, error) {
	if len(raw) == 0 {
		return nil, "", fmt.Errorf("digitalid: no cnf.jwk: %w", ErrMalformed)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil || !jwk.IsPublic() {
		return nil, "", fmt.Errorf("digitalid: cnf.jwk: %w", ErrMalformed)
	}
	alg, err := holderAlg(jwk.Key)
	if err != nil {
		return nil, "", fmt.Errorf("digitalid: cnf.jwk: %w", ErrMalformed)
	}
	return jwk.Key, alg, nil
}
