package digitalid

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// ProofType is a credential request's proof's typ, as OpenID for
// Verifiable Credential Issuance names it.
const ProofType = "openid4vci-proof+jwt"

// proofSkew is how far a proof's iat may be from the node's clock.
const proofSkew = 5 * time.Minute

// maxProof bounds a proof's size.
const maxProof = 4 << 10

// VerifyProof checks a credential request's proof of possession: a
// compact JWS, typ openid4vci-proof+jwt, EdDSA or ES256, signed by the
// key in its header's jwk, whose payload names aud (the node) and an iat
// near now. It returns that key: the holder's.
func VerifyProof(proof, aud string, now time.Time) (crypto.PublicKey, error) {
	if proof == "" || len(proof) > maxProof {
		return nil, errors.New("a credential request needs a proof of at most 4 KiB")
	}
	// Compact only: its one header is all signed (the JSON form may carry
	// unprotected values, which go-jose merges into Header).
	jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256})
	if err != nil {
		return nil, fmt.Errorf("proof: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("proof: one signature expected")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != ProofType {
		return nil, fmt.Errorf("proof: typ must be %s", ProofType)
	}
	jwk := h.JSONWebKey
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() {
		return nil, errors.New("proof: its header needs the holder's public key as jwk")
	}
	switch k := jwk.Key.(type) {
	case ed25519.PublicKey:
		if h.Algorithm != string(jose.EdDSA) {
			return nil, errors.New("proof: an Ed25519 key signs EdDSA")
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() || h.Algorithm != string(jose.ES256) {
			return nil, errors.New("proof: an EC key must be P-256, signing ES256")
		}
	default:
		return nil, errors.New("proof: the holder key must be Ed25519 or P-256")
	}
	payload, err := jws.Verify(jwk.Key)
	if err != nil {
		return nil, errors.New("proof: the signature does not verify with its jwk")
	}
	var c struct {
		Aud json.RawMessage `json:"aud"`
		Iat *int64          `json:"iat"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, errors.New("proof: payload is not a JSON object")
	}
	if !audHas(c.Aud, aud) {
		return nil, fmt.Errorf("proof: aud must be %s", aud)
	}
	if c.Iat == nil {
		return nil, errors.New("proof: iat missing")
	}
	if d := now.Sub(time.Unix(*c.Iat, 0)); d > proofSkew || d < -proofSkew {
		return nil, errors.New("proof: iat is not within 5 minutes of now")
	}
	return jwk.Key, nil
}

// audHas reports whether a JWT aud (a string or an array of them) holds
// want.
func audHas(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, a := range many {
			if a == want {
				return true
			}
		}
	}
	return false
}

// Proof makes a credential request's proof with the holder's key: what
// a client sends with a credential request (the SDK and the CLI use it).
func Proof(holder crypto.Signer, aud string, now time.Time) (string, error) {
	var alg jose.SignatureAlgorithm
	switch k := holder.Public().(type) {
	case ed25519.PublicKey:
		alg = jose.EdDSA
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", errors.New("digitalid: the holder key must be Ed25519 or P-256")
		}
		alg = jose.ES256
	default:
		return "", errors.New("digitalid: the holder key must be Ed25519 or P-256")
	}
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType(ProofType)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: holder}, opts)
	if err != nil {
		return "", fmt.Errorf("digitalid: proof: %w", err)
	}
	payload, err := json.Marshal(map[string]any{"aud": aud, "iat": now.Unix()})
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("digitalid: proof: %w", err)
	}
	return jws.CompactSerialize()
}
