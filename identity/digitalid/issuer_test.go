package digitalid

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIssueFormat(t *testing.T) {
	claims := Claims(testAttributes(), t0)
	sdjwt := issue(t, holderEC.Public())
	if !strings.HasSuffix(sdjwt, "~") {
		t.Fatalf("SD-JWT does not end in ~")
	}
	jwt, ds, _ := parts(sdjwt)
	if len(ds) != len(claims) {
		t.Fatalf("%d disclosures, want %d", len(ds), len(claims))
	}
	seg := strings.Split(jwt, ".")
	var h map[string]any
	hb, _ := b64.DecodeString(seg[0])
	if err := json.Unmarshal(hb, &h); err != nil {
		t.Fatal(err)
	}
	if h["alg"] != "EdDSA" || h["typ"] != TypeSDJWT || h["kid"] != testKID || len(h) != 3 {
		t.Errorf("header %v", h)
	}
	pb, _ := b64.DecodeString(seg[1])
	c, err := decodeCredential(pb)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.SD) - len(claims); n < minDecoys || n > maxDecoys {
		t.Errorf("%d decoys", n)
	}
	if c.Vct != VCT || c.SDAlg != "sha-256" || c.Exp-c.Iat != int64(30*24*time.Hour/time.Second) {
		t.Errorf("credential %+v", c)
	}
	// Plain-text claims stay out of the signed payload.
	if strings.Contains(string(pb), "Ivan") || strings.Contains(string(pb), "given_name") {
		t.Errorf("payload discloses a claim: %s", pb)
	}
	for _, raw := range ds {
		b, _ := b64.DecodeString(raw)
		var arr []any
		if err := json.Unmarshal(b, &arr); err != nil || len(arr) != 3 {
			t.Fatalf("disclosure %s", b)
		}
		if salt, _ := b64.DecodeString(arr[0].(string)); len(salt) != 16 {
			t.Errorf("salt of %d bytes", len(salt))
		}
	}
	got, err := Disclosable(sdjwt)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, claims) {
		t.Errorf("Disclosable = %v, want %v", got, claims)
	}
	// Two issues of the same claims share no digest.
	jwt2, _, _ := parts(issue(t, holderEC.Public()))
	pb2, _ := b64.DecodeString(strings.Split(jwt2, ".")[1])
	c2, _ := decodeCredential(pb2)
	for _, d := range c.SD {
		for _, d2 := range c2.SD {
			if d == d2 {
				t.Errorf("digest %s in both", d)
			}
		}
	}
}

func TestIssueRefusals(t *testing.T) {
	iss, err := NewIssuer(IssuerOptions{Issuer: testIssuer, Key: issuerKey, KeyID: testKID})
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, holder := range map[string]crypto.PublicKey{
		"P-384": p384.Public(), "nil": nil, "short Ed25519": ed25519.PublicKey{1, 2}, "private": issuerKey,
	} {
		if _, err := iss.Issue("s", holder, nil); !errors.Is(err, ErrHolderKey) {
			t.Errorf("%s: Issue = %v, want ErrHolderKey", name, err)
		}
	}
	for _, name := range []string{"_sd", "...", "iss", "cnf", ""} {
		if _, err := iss.Issue("s", holderEd.Public(), map[string]any{name: 1}); err == nil {
			t.Errorf("claim %q issued", name)
		}
	}
	if _, err := iss.Issue("", holderEd.Public(), nil); err == nil {
		t.Errorf("empty subject issued")
	}
	if _, err := iss.Issue("s", holderEd.Public(), map[string]any{"x": func() {}}); err == nil {
		t.Errorf("unmarshalable claim issued")
	}
	for _, o := range []IssuerOptions{
		{Key: issuerKey, KeyID: testKID},
		{Issuer: testIssuer, Key: issuerKey},
		{Issuer: testIssuer, KeyID: testKID, Key: issuerKey[:10]},
	} {
		if _, err := NewIssuer(o); err == nil {
			t.Errorf("NewIssuer(%+v) accepted", o)
		}
	}
}

func TestIssueConcurrent(t *testing.T) {
	iss, err := NewIssuer(IssuerOptions{Issuer: testIssuer, Key: issuerKey, KeyID: testKID, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	out := make([]string, 8)
	for i := range out {
		wg.Go(func() {
			out[i], _ = iss.Issue("account-42", holderEd.Public(), map[string]any{ClaimAgeOver18: true})
		})
	}
	wg.Wait()
	for _, sdjwt := range out {
		if _, err := Verify(present(t, sdjwt, holderEd, ClaimAgeOver18), verifyOptions(t)); err != nil {
			t.Fatal(err)
		}
	}
}
