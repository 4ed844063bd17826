package digitalid

import (
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestVerifyAgeOver18(t *testing.T) {
	sdjwt := issue(t, holderEd.Public())
	p := present(t, sdjwt, holderEd, ClaimAgeOver18)
	if _, ds, _ := parts(p); len(ds) != 1 {
		t.Fatalf("presentation has %d disclosures, want 1", len(ds))
	}
	o := verifyOptions(t)
	o.Allowed = []string{ClaimAgeOver18}
	o.Required = []string{ClaimAgeOver18}
	res, err := Verify(p, o)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{ClaimAgeOver18: true}; !maps.Equal(res.Claims, want) {
		t.Errorf("claims %v, want %v", res.Claims, want)
	}
	if res.Issuer != testIssuer || res.Subject != "account-42" || res.Type != VCT {
		t.Errorf("result %+v", res)
	}
	if !res.IssuedAt.Equal(t0) || !res.Expires.Equal(t0.Add(30*24*time.Hour)) {
		t.Errorf("iat %v exp %v", res.IssuedAt, res.Expires)
	}
	if !holderEd.Public().(ed25519.PublicKey).Equal(res.Holder) {
		t.Errorf("holder %v", res.Holder)
	}
}

func TestHolderKeys(t *testing.T) {
	for _, tc := range []struct {
		name   string
		holder crypto.Signer
		alg    string
	}{
		{"Ed25519", holderEd, "EdDSA"},
		{"ES256", holderEC, "ES256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := present(t, issue(t, tc.holder.Public()), tc.holder, ClaimGivenName, ClaimFamilyName, ClaimAgeOver14)
			_, _, kb := parts(p)
			hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(kb, ".")[0])
			var h struct{ Alg, Typ string }
			if err := json.Unmarshal(hdr, &h); err != nil || h.Alg != tc.alg || h.Typ != TypeKB {
				t.Fatalf("KB header %s (%v)", hdr, err)
			}
			res, err := Verify(p, verifyOptions(t))
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]any{ClaimGivenName: "Ivan", ClaimFamilyName: "Petrov", ClaimAgeOver14: true}
			if !maps.Equal(res.Claims, want) {
				t.Errorf("claims %v, want %v", res.Claims, want)
			}
			pub := res.Holder.(interface{ Equal(crypto.PublicKey) bool })
			if !pub.Equal(tc.holder.Public()) {
				t.Errorf("holder %v", res.Holder)
			}
		})
	}
}

func TestVerifyRefusals(t *testing.T) {
	sdjwt := issue(t, holderEd.Public())
	ecJWT := issue(t, holderEC.Public())
	p18 := present(t, sdjwt, holderEd, ClaimAgeOver18)
	jwt, _, _ := parts(sdjwt)
	ecIss, _, _ := parts(ecJWT)
	d18 := disclosureOf(t, sdjwt, ClaimAgeOver18)
	dName := disclosureOf(t, sdjwt, ClaimGivenName)

	// A disclosure with its value edited and re-encoded.
	raw, _ := b64.DecodeString(dName)
	edited := b64.EncodeToString([]byte(strings.Replace(string(raw), "Ivan", "Petr", 1)))

	// The issuer JWT with sub changed, the signature kept.
	seg := strings.Split(jwt, ".")
	payload, _ := b64.DecodeString(seg[1])
	tampered := seg[0] + "." + b64.EncodeToString([]byte(strings.Replace(string(payload), "account-42", "account-43", 1))) + "." + seg[2]

	// A credential whose disclosure is named "_sd" (signed by the issuer).
	reservedD, _ := encodeDisclosure("_sd", true)
	reservedJWT := signIssuer(t, credential{Iss: testIssuer, Sub: "s", Iat: t0.Unix(), Exp: t0.Add(time.Hour).Unix(), Vct: VCT,
		Cnf: cnf{JWK: holderJWK(t, holderEd.Public())}, SD: []string{digest(reservedD)}, SDAlg: sdAlg}, TypeSDJWT)
	// The same digest twice in _sd.
	dupSD := signIssuer(t, credential{Iss: testIssuer, Sub: "s", Iat: t0.Unix(), Exp: t0.Add(time.Hour).Unix(), Vct: VCT,
		Cnf: cnf{JWK: holderJWK(t, holderEd.Public())}, SD: []string{digest(d18), digest(d18)}, SDAlg: sdAlg}, TypeSDJWT)
	// An unknown claim in the credential; a wrong typ.
	extra := signIssuer(t, map[string]any{"iss": testIssuer, "sub": "s", "iat": t0.Unix(), "exp": t0.Add(time.Hour).Unix(), "vct": VCT,
		"cnf": map[string]any{"jwk": holderJWK(t, holderEd.Public())}, "_sd": []string{}, "_sd_alg": sdAlg, "admin": true}, TypeSDJWT)
	plainJWT := signIssuer(t, credential{Iss: testIssuer, Sub: "s", Iat: t0.Unix(), Exp: t0.Add(time.Hour).Unix(), Vct: VCT,
		Cnf: cnf{JWK: holderJWK(t, holderEd.Public())}, SD: []string{}, SDAlg: sdAlg}, "JWT")

	// The issuer JWT re-signed with the issuer's key embedded in its header.
	embed := func() string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: issuerKey},
			(&jose.SignerOptions{EmbedJWK: true}).WithType(TypeSDJWT).WithHeader("kid", testKID))
		if err != nil {
			t.Fatal(err)
		}
		obj, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := obj.CompactSerialize()
		return out
	}()

	// alg none.
	none := b64.EncodeToString([]byte(`{"alg":"none","typ":"dc+sd-jwt","kid":"node-1"}`)) + "." + seg[1] + "."

	goodKB := func(prefix string) string { return bind(t, prefix, holderEd, jose.EdDSA) }
	kbClaimsAt := func(prefix string, iat time.Time) kbClaims {
		return kbClaims{Iat: iat.Unix(), Aud: testAud, Nonce: testNonce, SDHash: digest(prefix)}
	}

	for _, tc := range []struct {
		name   string
		p      string
		opt    func(*VerifyOptions)
		want   error
		reason string
	}{
		{name: "over-disclosed", p: present(t, sdjwt, holderEd, ClaimAgeOver18, ClaimGivenName),
			opt: func(o *VerifyOptions) { o.Allowed = []string{ClaimAgeOver18} }, want: ErrOverDisclosed, reason: "over_disclosed"},
		{name: "disclosure edited", p: goodKB(jwt + "~" + edited + "~"), want: ErrDigest, reason: "bad_disclosure"},
		{name: "disclosure edited after binding", p: strings.Replace(present(t, sdjwt, holderEd, ClaimGivenName), dName, edited, 1), want: ErrDigest},
		{name: "disclosure added", p: func() string { j, ds, kb := parts(p18); return join(j, append(ds, dName), kb) }(), want: ErrSDHash, reason: "disclosures_changed"},
		{name: "disclosure removed", p: func() string {
			j, ds, kb := parts(present(t, sdjwt, holderEd, ClaimAgeOver18, ClaimGivenName))
			return join(j, ds[:1], kb)
		}(), want: ErrSDHash},
		{name: "disclosure sent twice", p: goodKB(jwt + "~" + d18 + "~" + d18 + "~"), want: ErrDigest},
		{name: "digest twice in _sd", p: goodKB(dupSD + "~" + d18 + "~"), want: ErrDigest},
		{name: "reserved name", p: goodKB(reservedJWT + "~" + reservedD + "~"), want: ErrDigest},
		{name: "disclosure of another credential", p: goodKB(jwt + "~" + disclosureOf(t, ecJWT, ClaimAgeOver18) + "~"), want: ErrDigest},
		{name: "issuer payload tampered", p: goodKB(tampered + "~" + d18 + "~"), want: ErrSignature, reason: "tampered"},
		{name: "issuer signature cut", p: goodKB(seg[0] + "." + seg[1] + ".~"), want: ErrSignature},
		{name: "alg none", p: goodKB(none + "~"), want: ErrMalformed, reason: "malformed"},
		{name: "issuer header embeds a jwk", p: goodKB(embed + "~" + d18 + "~"), want: ErrMalformed},
		{name: "issuer typ JWT", p: goodKB(plainJWT + "~"), want: ErrMalformed},
		{name: "unknown credential claim", p: goodKB(extra + "~"), want: ErrMalformed},
		{name: "expired", p: p18, opt: func(o *VerifyOptions) { o.Now = t0.Add(30 * 24 * time.Hour) }, want: ErrExpired, reason: "expired"},
		{name: "stale KB", p: p18, opt: func(o *VerifyOptions) { o.Now = t0.Add(36 * time.Second) }, want: ErrStale, reason: "stale"},
		{name: "KB from the future", p: p18, opt: func(o *VerifyOptions) { o.Now = t0.Add(-time.Second) }, want: ErrStale},
		{name: "MaxAge", p: p18, opt: func(o *VerifyOptions) { o.MaxAge = 2 * time.Second }, want: ErrStale},
		{name: "wrong nonce", p: p18, opt: func(o *VerifyOptions) { o.Nonce = "nonce-2" }, want: ErrNonce, reason: "wrong_nonce"},
		{name: "wrong aud", p: p18, opt: func(o *VerifyOptions) { o.Audience = "verifier-2" }, want: ErrAudience, reason: "wrong_audience"},
		{name: "wrong issuer", p: p18, opt: func(o *VerifyOptions) { o.Issuer = "https://evil.example" }, want: ErrIssuer},
		{name: "unknown kid", p: p18, opt: func(o *VerifyOptions) {
			b, _ := JWKS(map[string]ed25519.PublicKey{"node-2": issuerKey.Public().(ed25519.PublicKey)})
			o.Keys, _ = ParseJWKS(b)
		}, want: ErrUnknownKey, reason: "unknown_key"},
		{name: "issuer key rotated away", p: p18, opt: func(o *VerifyOptions) {
			b, _ := JWKS(map[string]ed25519.PublicKey{testKID: otherEd.Public().(ed25519.PublicKey)})
			o.Keys, _ = ParseJWKS(b)
		}, want: ErrSignature},
		{name: "missing claim", p: p18, opt: func(o *VerifyOptions) { o.Required = []string{ClaimGivenName} }, want: ErrMissingClaim, reason: "missing_claim"},
		{name: "no key binding", p: sdjwt, want: ErrNoKeyBinding, reason: "no_key_binding"},
		{name: "KB by another key", p: bind(t, jwt+"~"+d18+"~", otherEd, jose.EdDSA), want: ErrKeyBinding, reason: "bad_key_binding"},
		{name: "KB alg not the holder's", p: bind(t, ecIss+"~", holderEd, jose.EdDSA), want: ErrKeyBinding},
		{name: "KB typ JWT", p: jwt + "~" + d18 + "~" + kbJWT(t, holderEd, jose.EdDSA, "JWT", kbClaimsAt(jwt+"~"+d18+"~", t0)), want: ErrKeyBinding},
		{name: "KB sd_hash missing", p: jwt + "~" + kbJWT(t, holderEd, jose.EdDSA, TypeKB, map[string]any{"iat": t0.Unix(), "aud": testAud, "nonce": testNonce}), want: ErrMalformed},
		{name: "KB garbage", p: jwt + "~" + d18 + "~x.y.z", want: ErrKeyBinding},
		{name: "too large", p: jwt + "~" + strings.Repeat("A", MaxPresentation) + "~", want: ErrMalformed},
		{name: "too many disclosures", p: jwt + strings.Repeat("~"+d18, MaxDisclosures+1) + "~", want: ErrMalformed},
		{name: "empty disclosure", p: jwt + "~~" + d18 + "~", want: ErrMalformed},
		{name: "no separator", p: jwt, want: ErrMalformed},
		{name: "empty", p: "", want: ErrMalformed},
		{name: "array-element disclosure", p: goodKB(jwt + "~" + b64.EncodeToString([]byte(`["salt","x"]`)) + "~"), want: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := verifyOptions(t)
			if tc.opt != nil {
				tc.opt(&o)
			}
			res, err := Verify(tc.p, o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, %v; want %v", res, err, tc.want)
			}
			if tc.reason != "" && Reason(err) != tc.reason {
				t.Errorf("Reason = %q, want %q", Reason(err), tc.reason)
			}
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	p := present(t, issue(t, holderEd.Public()), holderEd, ClaimAgeOver18)
	o := verifyOptions(t)
	o.Replay = NewNonceCache(time.Minute, 16)
	if _, err := Verify(p, o); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(p, o)
	if !errors.Is(err, ErrReplay) || Reason(err) != "replayed" {
		t.Fatalf("second Verify = %v, want ErrReplay", err)
	}
	// A presentation refused for another reason does not spend its nonce.
	o2 := verifyOptions(t)
	o2.Replay = NewNonceCache(time.Minute, 16)
	o2.Required = []string{ClaimGivenName}
	if _, err := Verify(p, o2); !errors.Is(err, ErrMissingClaim) {
		t.Fatal(err)
	}
	if o2.Replay.Len() != 0 {
		t.Errorf("a refused presentation spent its nonce")
	}
}

func TestVerifyOptionsRequired(t *testing.T) {
	p := present(t, issue(t, holderEd.Public()), holderEd, ClaimAgeOver18)
	for _, o := range []VerifyOptions{
		{Audience: testAud, Nonce: testNonce},
		{Keys: testKeys(t), Nonce: testNonce},
		{Keys: testKeys(t), Audience: testAud},
	} {
		if _, err := Verify(p, o); err == nil || Reason(err) != "error" {
			t.Errorf("Verify with %+v = %v, want an options error", o, err)
		}
	}
}
