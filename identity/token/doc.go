// Package token mints and verifies Gonets session tokens: JWTs signed with
// Ed25519 (alg EdDSA) that carry a user id, a device id and an expiry.
//
// A node verifies tokens against a set of public keys, each named by a key
// id (kid) derived from the key itself, so keys can be rotated by adding the
// new one before signing with it. Until the identity service lands, a node
// signs tokens with its own key, kept in its data directory (KeyFile); the
// `gonets token` command mints them.
//
// Verification accepts only EdDSA, requires sub (the user id), dev (the
// device id) and exp, and allows Options.Leeway of clock skew. It has no
// goroutines and no shared mutable state: Signer and Verifier are safe for
// concurrent use.
package token
