// Package esiasim simulates ESIA's endpoints that package esia speaks, for
// tests and the demo (`gonets sim esia`): the v2 authorisation endpoint,
// which auto-approves a configured test person (or refuses, with Deny), the
// v3 token endpoint and the person record.
//
// Sim checks what ESIA checks: the client id, the redirect URI (exact match
// against the allowed ones, and at the token endpoint against the one the
// code was issued for), the timestamp (within MaxSkew of now) and the
// client_secret, a detached CMS signature over the v2 or v3 concatenation
// that must verify under the operator's certificate (esia.VerifySecret).
// Where ESIA signs with GOST, the simulator signs its id_tokens with an
// ECDSA P-256 key of its own (ES256; IDTokenKey returns it).
//
// Codes are single-use: a second exchange of a code is refused and revokes
// the access tokens the first one got (RFC 6749 §4.1.2). Codes and tokens
// are kept in memory, bounded, and expired ones are evicted as new ones are
// issued. The person record carries this deployment's student and
// pensioner booleans when those scopes were granted (see package esia).
//
// Sim is an http.Handler, safe for concurrent use; it starts no
// goroutines. Its state is guarded by one mutex.
package esiasim
