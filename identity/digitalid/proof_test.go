package digitalid

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func TestProof(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, key := range map[string]any{"es256": ec, "eddsa": ed} {
		var p string
		var err error
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			p, err = Proof(k, "https://node", now)
		case ed25519.PrivateKey:
			p, err = Proof(k, "https://node", now)
		}
		if err != nil {
			t.Fatal(name, err)
		}
		got, err := VerifyProof(p, "https://node", now.Add(time.Minute))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			if !k.PublicKey.Equal(got) {
				t.Fatalf("%s: holder key differs", name)
			}
		case ed25519.PrivateKey:
			if !k.Public().(ed25519.PublicKey).Equal(got) {
				t.Fatalf("%s: holder key differs", name)
			}
		}
		for why, bad := range map[string]func() (string, time.Time, string){
			"another audience": func() (string, time.Time, string) { return p, now, "https://other" },
			"too old":          func() (string, time.Time, string) { return p, now.Add(6 * time.Minute), "https://node" },
			"from the future":  func() (string, time.Time, string) { return p, now.Add(-6 * time.Minute), "https://node" },
			"a changed payload": func() (string, time.Time, string) {
				parts := strings.Split(p, ".")
				return parts[0] + "." + parts[0] + "." + parts[2], now, "https://node"
			},
			"empty": func() (string, time.Time, string) { return "", now, "https://node" },
		} {
			pp, at, aud := bad()
			if _, err := VerifyProof(pp, aud, at); err == nil {
				t.Errorf("%s: a proof %s verified", name, why)
			}
		}
	}
}

// TestProofJSONRefused: the JSON serialization, whose unprotected header
// could carry typ and jwk unsigned, is refused.
func TestProofJSONRefused(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ec}, (&jose.SignerOptions{EmbedJWK: true}).WithType(ProofType))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"aud": "https://node", "iat": time.Now().Unix()})
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	full := jws.FullSerialize()
	if _, err := VerifyProof(full, "https://node", time.Now()); err == nil {
		t.Fatal("a proof in the JSON serialization verified")
	}
	// Without typ: refused.
	s2, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ec}, &jose.SignerOptions{EmbedJWK: true})
	jws2, _ := s2.Sign(payload)
	compact, _ := jws2.CompactSerialize()
	if _, err := VerifyProof(compact, "https://node", time.Now()); err == nil {
		t.Fatal("a proof without its typ verified")
	}
}

// TestReplayCacheTooShort: a replay cache that forgets before a
// presentation is too old is refused, not trusted.
func TestReplayCacheTooShort(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	b, _ := JWKS(map[string]ed25519.PublicKey{"k": pub})
	keys, err := ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify("x~", VerifyOptions{Keys: keys, Audience: "a", Nonce: "n", Replay: NewNonceCache(10*time.Second, 10)})
	if err == nil || !strings.Contains(err.Error(), "replay cache") {
		t.Fatalf("Verify with a 10 s replay cache: %v", err)
	}
}
