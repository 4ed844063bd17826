package digitalid

import (
	"crypto/ed25519"
	"slices"
	"strings"
	"testing"
)

func TestJWKSRoundTrip(t *testing.T) {
	keys := map[string]ed25519.PublicKey{
		"b": otherEd.Public().(ed25519.PublicKey),
		"a": issuerKey.Public().(ed25519.PublicKey),
	}
	b, err := JWKS(keys)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + b64.EncodeToString(keys["a"]) + `","kid":"a","use":"sig","alg":"EdDSA"},` +
		`{"kty":"OKP","crv":"Ed25519","x":"` + b64.EncodeToString(keys["b"]) + `","kid":"b","use":"sig","alg":"EdDSA"}]}`
	if string(b) != want {
		t.Errorf("JWKS\n%s\nwant\n%s", b, want)
	}
	ks, err := ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	if ids := ks.KeyIDs(); !slices.Equal(ids, []string{"a", "b"}) {
		t.Errorf("kids %v", ids)
	}
	for kid, k := range keys {
		if got, ok := ks.Key(kid); !ok || !got.Equal(k) {
			t.Errorf("key %q: %v %v", kid, got, ok)
		}
	}
	if _, ok := ks.Key("c"); ok {
		t.Errorf("key c found")
	}
}

func TestParseJWKS(t *testing.T) {
	x := b64.EncodeToString(issuerKey.Public().(ed25519.PublicKey))
	d := b64.EncodeToString(issuerKey.Seed())
	ec := `{"kty":"EC","crv":"P-256","kid":"ec","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}`
	for _, tc := range []struct {
		name, jwks string
		ok         bool
		kids       []string
	}{
		{"bare key", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"k"}]}`, true, []string{"k"}},
		{"other types skipped", `{"keys":[` + ec + `,{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"k"}]}`, true, []string{"k"}},
		{"encryption key skipped", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"e","use":"enc"},{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"k"}]}`, true, []string{"k"}},
		{"only EC", `{"keys":[` + ec + `]}`, false, nil},
		{"no keys", `{"keys":[]}`, false, nil},
		{"no kid", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}]}`, false, nil},
		{"kid twice", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"k"},{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"k"}]}`, false, nil},
		{"private key", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `","d":"` + d + `","kid":"k"}]}`, false, nil},
		{"short x", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"k"}]}`, false, nil},
		{"alg RS256", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"k","alg":"RS256"}]}`, false, nil},
		{"not JSON", `{"keys":`, false, nil},
		{"too large", `{"keys":[],"pad":"` + strings.Repeat("a", 1<<17) + `"}`, false, nil},
	} {
		ks, err := ParseJWKS([]byte(tc.jwks))
		if (err == nil) != tc.ok {
			t.Errorf("%s: ParseJWKS error %v, want ok %v", tc.name, err, tc.ok)
			continue
		}
		if tc.ok && !slices.Equal(ks.KeyIDs(), tc.kids) {
			t.Errorf("%s: kids %v, want %v", tc.name, ks.KeyIDs(), tc.kids)
		}
	}
	if _, err := JWKS(map[string]ed25519.PublicKey{"": issuerKey.Public().(ed25519.PublicKey)}); err == nil {
		t.Errorf("JWKS took an empty kid")
	}
	if _, err := JWKS(map[string]ed25519.PublicKey{"k": {1, 2, 3}}); err == nil {
		t.Errorf("JWKS took a short key")
	}
}
