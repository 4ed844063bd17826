// Package token mints and verifies Gonets session tokens: JWTs signed with
// Ed25519 (alg EdDSA) that carry a user id, a device id and an expiry.
//
// A node verifies tokens against a set of public keys, each named by a key
// id (kid) derived from the key itself, so keys can be rotated by adding the
// new one before signing with it. A node signs tokens with its own key,
// kept in its data directory (KeyFile): its Keyring holds that current key
// and the previous one RotateKey kept (`gonets keys rotate`), whose tokens
// verify until they expire. Logins (identity.Service) and `gonets token`
// mint tokens with the current key.
//
// Verification accepts only EdDSA, requires sub (the user id), dev (the
// device id) and exp, and allows Options.Leeway of clock skew. It has no
// goroutines; Signer, Verifier (whose keys SetKeys replaces) and Keyring
// are safe for concurrent use.
package token
