package digitalid

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/gonets/gonets/identity"
)

// Fixed keys, so that fuzz corpus entries stay valid across runs.
var (
	issuerKey = ed25519.NewKeyFromSeed(seed(1))
	holderEd  = ed25519.NewKeyFromSeed(seed(2))
	otherEd   = ed25519.NewKeyFromSeed(seed(3))
	holderEC  = mustEC(seed(4))
)

const (
	testIssuer = "https://node.example:7445"
	testKID    = "node-1"
	testAud    = "verifier-1"
	testNonce  = "nonce-1"
)

// t0 is when the fixtures' credentials are issued.
var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func seed(b byte) []byte {
	s := make([]byte, 32)
	for i := range s {
		s[i] = b + byte(i)
	}
	return s
}

func mustEC(d []byte) *ecdsa.PrivateKey {
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		panic(err)
	}
	return k
}

func testKeys(t testing.TB) *KeySet {
	t.Helper()
	b, err := JWKS(map[string]ed25519.PublicKey{testKID: issuerKey.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func testAttributes() identity.Attributes {
	yes, no := true, false
	return identity.Attributes{
		FirstName: "Ivan", LastName: "Petrov", MiddleName: "Sergeevich",
		BirthDate: "2000-03-15", Student: &yes, Pensioner: &no,
	}
}

// issue returns a credential issued at t0 for holder with testAttributes.
func issue(t testing.TB, holder crypto.PublicKey) string {
	t.Helper()
	iss, err := NewIssuer(IssuerOptions{Issuer: testIssuer, Key: issuerKey, KeyID: testKID, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := iss.Issue("account-42", holder, Claims(testAttributes(), t0))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// present presents sdjwt at t0+5s to testAud with testNonce.
func present(t testing.TB, sdjwt string, holder crypto.Signer, disclose ...string) string {
	t.Helper()
	p, err := Present(sdjwt, holder, disclose, testAud, testNonce, t0.Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyOptions verifies at t0+10s.
func verifyOptions(t testing.TB) VerifyOptions {
	return VerifyOptions{Keys: testKeys(t), Issuer: testIssuer, Audience: testAud, Nonce: testNonce, Now: t0.Add(10 * time.Second)}
}

// kbJWT signs a KB-JWT by hand: any key, alg, typ and claims.
func kbJWT(t testing.TB, signer crypto.Signer, alg jose.SignatureAlgorithm, typ string, claims any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: cryptosigner.Opaque(signer)}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// bind appends to prefix ("<jwt>~<d>~...~") a KB-JWT the holder signs
// over it, as Present does, so that tests can bind presentations Present
// would not make.
func bind(t testing.TB, prefix string, holder crypto.Signer, alg jose.SignatureAlgorithm) string {
	t.Helper()
	return prefix + kbJWT(t, holder, alg, TypeKB, kbClaims{Iat: t0.Add(5 * time.Second).Unix(), Aud: testAud, Nonce: testNonce, SDHash: digest(prefix)})
}

// signIssuer signs an issuer JWT over any payload with the issuer key.
func signIssuer(t testing.TB, payload any, typ string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: issuerKey},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", testKID))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// holderJWK returns cnf.jwk for pub.
func holderJWK(t testing.TB, pub crypto.PublicKey) json.RawMessage {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: pub}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parts splits a presentation: issuer JWT, disclosures, KB-JWT.
func parts(p string) (string, []string, string) {
	s := strings.Split(p, "~")
	return s[0], s[1 : len(s)-1], s[len(s)-1]
}

// join is the inverse of parts.
func join(jwt string, ds []string, kb string) string {
	var b strings.Builder
	b.WriteString(jwt)
	b.WriteByte('~')
	for _, d := range ds {
		b.WriteString(d)
		b.WriteByte('~')
	}
	b.WriteString(kb)
	return b.String()
}

// disclosureOf finds the disclosure of name in an SD-JWT.
func disclosureOf(t testing.TB, sdjwt, name string) string {
	t.Helper()
	_, ds, _ := parts(sdjwt)
	for _, raw := range ds {
		d, err := decodeDisclosure(raw)
		if err != nil {
			t.Fatal(err)
		}
		if d.name == name {
			return raw
		}
	}
	t.Fatalf("no disclosure of %q", name)
	return ""
}

func fmtWrap(err error) error { return fmt.Errorf("digitalid: detail: %w", err) }
