package digitalid

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/go-jose/go-jose/v4"
)

// KeySet is an issuer's parsed JWKS: its Ed25519 signing keys by kid.
// It is read-only once parsed and safe for concurrent use.
type KeySet struct {
	keys map[string]ed25519.PublicKey
}

// ParseJWKS parses a JWKS ({"keys":[...]}) into a KeySet. It keeps the
// Ed25519 (OKP) public keys meant for signatures (use absent or "sig", alg
// absent or "EdDSA") and skips keys of other types or uses; a key without
// a kid, a kid twice, private key material, or a set with no usable key
// is an error.
func ParseJWKS(b []byte) (*KeySet, error) {
	if len(b) > MaxPresentation*4 {
		return nil, errors.New("digitalid: jwks: too large")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("digitalid: jwks: %w", err)
	}
	ks := &KeySet{keys: make(map[string]ed25519.PublicKey, len(set.Keys))}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("digitalid: jwks: key %q holds private material", k.KeyID)
		}
		pub, ok := k.Key.(ed25519.PublicKey)
		if !ok || (k.Use != "" && k.Use != "sig") || (k.Algorithm != "" && k.Algorithm != string(jose.EdDSA)) {
			continue
		}
		if k.KeyID == "" {
			return nil, errors.New("digitalid: jwks: an Ed25519 key without a kid")
		}
		if _, dup := ks.keys[k.KeyID]; dup {
			return nil, fmt.Errorf("digitalid: jwks: kid %q twice", k.KeyID)
		}
		ks.keys[k.KeyID] = pub
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("digitalid: jwks: no Ed25519 signing key")
	}
	return ks, nil
}

// Key returns the key of kid, or ok false.
func (s *KeySet) Key(kid string) (ed25519.PublicKey, bool) {
	k, ok := s.keys[kid]
	return k, ok
}

// KeyIDs returns the kids in the set, sorted.
func (s *KeySet) KeyIDs() []string {
	ids := make([]string, 0, len(s.keys))
	for id := range s.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

type jwkJSON struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// JWKS returns the JSON the node serves at /.well-known/jwks.json for its
// signing keys, kid to key: {"keys":[{"kty":"OKP","crv":"Ed25519","x":...,
// "kid":...,"use":"sig","alg":"EdDSA"}]}, kids in sorted order.
func JWKS(keys map[string]ed25519.PublicKey) ([]byte, error) {
	kids := make([]string, 0, len(keys))
	for kid := range keys {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	out := struct {
		Keys []jwkJSON `json:"keys"`
	}{Keys: make([]jwkJSON, 0, len(keys))}
	for _, kid := range kids {
		k := keys[kid]
		if kid == "" || len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("digitalid: jwks: key %q is not an Ed25519 public key with a kid", kid)
		}
		out.Keys = append(out.Keys, jwkJSON{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(k), Kid: kid, Use: "sig", Alg: string(jose.EdDSA)})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("digitalid: jwks: %w", err)
	}
	return b, nil
}
