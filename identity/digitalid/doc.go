// Package digitalid is the node's digital ID: an SD-JWT (RFC 9901,
// "Selective Disclosure for JSON Web Tokens") that the node issues from the
// attributes a state identity provider verified, bound to a key on the
// holder's device, presented with only the claims a verifier asks for, and
// verified offline with the node's JWKS.
//
// The credential the node issues is
//
//	<issuer-jwt>~<disclosure>~<disclosure>~...~
//
// The issuer JWT (typ "dc+sd-jwt", alg EdDSA, kid of the node's key) holds
// iss, sub, iat, exp, vct ("urn:gonets:digital-id:1") and cnf.jwk, the
// holder's public key (Ed25519, or ECDSA P-256 for phones' secure
// elements), in the clear; every other claim is selectively disclosable.
// A disclosure is base64url(JSON [salt, name, value]) with a 128-bit random
// salt; the JWT's _sd lists the base64url SHA-256 of each disclosure, among
// decoy digests and in random order, so the JWT alone tells neither the
// claims nor how many there are (_sd_alg "sha-256").
//
// To present it the holder drops the disclosures the verifier did not ask
// for and appends a key-binding JWT (typ "kb+jwt", signed with the device
// key) over iat, aud (the verifier), nonce (the verifier's challenge) and
// sd_hash, the SHA-256 of everything before it:
//
//	<issuer-jwt>~<age_over_18 disclosure>~<kb-jwt>
//
// The verifier checks the issuer's signature with the JWKS, each disclosure
// against _sd, the KB-JWT against cnf.jwk, that sd_hash covers exactly the
// disclosures sent, that the KB-JWT is fresh (30 s by default, a QR code's
// life) and names its audience and nonce, and that nothing beyond what it
// asked for is disclosed. A NonceCache makes each nonce good once.
//
// The flow:
//
//	// node
//	iss, _ := digitalid.NewIssuer(digitalid.IssuerOptions{Issuer: url, Key: key, KeyID: "k1"})
//	sdjwt, _ := iss.Issue(accountID, devicePub, digitalid.Claims(attrs, time.Now()))
//	jwks, _ := digitalid.JWKS(map[string]ed25519.PublicKey{"k1": key.Public().(ed25519.PublicKey)})
//
//	// verifier: shows a QR code with its id and a nonce
//	cache := digitalid.NewNonceCache(time.Minute, 0) // one per verifier
//	nonce := digitalid.NewNonce()
//
//	// holder's device
//	p, _ := digitalid.Present(sdjwt, deviceKey, []string{"age_over_18"}, verifierID, nonce, time.Now())
//
//	// verifier, offline
//	keys, _ := digitalid.ParseJWKS(jwks)
//	res, err := digitalid.Verify(p, digitalid.VerifyOptions{
//		Keys: keys, Issuer: url, Audience: verifierID, Nonce: nonce,
//		Allowed: []string{"age_over_18"}, Required: []string{"age_over_18"},
//		Replay: cache,
//	})
//	// res.Claims["age_over_18"] == true; digitalid.Reason(err) names a refusal
//
// Verify is strict: EdDSA only for the issuer JWT and EdDSA or ES256 (after
// the key in cnf.jwk) for the KB-JWT, never "none"; typ headers checked;
// unknown credential claims refused; inputs bounded to MaxPresentation
// bytes and MaxDisclosures disclosures. Every refusal wraps one sentinel
// of errors.go. This credential has no nested disclosures or array-element
// disclosures: a two-element disclosure is refused, and a disclosed value
// is returned as the issuer signed it, not searched for further digests.
//
// The package holds no goroutines. Issuer, KeySet and NonceCache are safe
// for concurrent use; NonceCache's mutex is its only lock.
package digitalid
