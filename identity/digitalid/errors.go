package digitalid

import "errors"

// Sentinels for the reasons Verify refuses a presentation. Each is wrapped
// with detail ("digitalid: ...: %w"); test with errors.Is and name it with
// Reason.
var (
	// ErrMalformed: the presentation does not parse (size, structure,
	// base64, JSON, missing or wrongly typed claims, a header other than
	// the one expected).
	ErrMalformed = errors.New("digitalid: malformed")
	// ErrUnknownKey: the issuer JWT's kid is not in the key set.
	ErrUnknownKey = errors.New("digitalid: unknown issuer key")
	// ErrSignature: the issuer JWT's signature does not verify (its header
	// or payload was changed, or another key signed it).
	ErrSignature = errors.New("digitalid: bad issuer signature")
	// ErrIssuer: iss is not the issuer the verifier expects.
	ErrIssuer = errors.New("digitalid: wrong issuer")
	// ErrExpired: the credential's exp has passed.
	ErrExpired = errors.New("digitalid: credential expired")
	// ErrNoKeyBinding: the presentation carries no KB-JWT.
	ErrNoKeyBinding = errors.New("digitalid: no key binding")
	// ErrKeyBinding: the KB-JWT does not verify with the credential's
	// cnf.jwk, or its typ or alg is wrong.
	ErrKeyBinding = errors.New("digitalid: bad key binding")
	// ErrStale: the KB-JWT's iat is older than MaxAge or in the future.
	ErrStale = errors.New("digitalid: key binding stale")
	// ErrAudience: the KB-JWT's aud is not the verifier.
	ErrAudience = errors.New("digitalid: wrong audience")
	// ErrNonce: the KB-JWT's nonce is not the one the verifier asked with.
	ErrNonce = errors.New("digitalid: wrong nonce")
	// ErrReplay: the nonce was used before within the NonceCache's life
	// (or the cache is full of live nonces).
	ErrReplay = errors.New("digitalid: replayed")
	// ErrSDHash: the KB-JWT's sd_hash does not cover the disclosures sent:
	// one was changed, added or removed after the holder signed.
	ErrSDHash = errors.New("digitalid: disclosures changed")
	// ErrDigest: a disclosure's digest is not in the credential's _sd, a
	// digest or claim name appears twice, or a disclosed name is reserved.
	ErrDigest = errors.New("digitalid: bad disclosure")
	// ErrOverDisclosed: a claim the verifier did not ask for is disclosed.
	ErrOverDisclosed = errors.New("digitalid: over-disclosed")
	// ErrMissingClaim: a claim the verifier requires is not disclosed.
	ErrMissingClaim = errors.New("digitalid: missing claim")
)

// Errors of the issuer and holder sides.
var (
	// ErrHolderKey: the holder key is neither Ed25519 nor ECDSA P-256, or
	// it is not the key the credential is bound to.
	ErrHolderKey = errors.New("digitalid: unsupported holder key")
	// ErrUnknownClaim: Present was asked for a claim the credential does
	// not hold.
	ErrUnknownClaim = errors.New("digitalid: unknown claim")
)

var reasons = []struct {
	err  error
	word string
}{
	{ErrMalformed, "malformed"},
	{ErrUnknownKey, "unknown_key"},
	{ErrSignature, "tampered"},
	{ErrIssuer, "wrong_issuer"},
	{ErrExpired, "expired"},
	{ErrNoKeyBinding, "no_key_binding"},
	{ErrKeyBinding, "bad_key_binding"},
	{ErrStale, "stale"},
	{ErrAudience, "wrong_audience"},
	{ErrNonce, "wrong_nonce"},
	{ErrReplay, "replayed"},
	{ErrSDHash, "disclosures_changed"},
	{ErrDigest, "bad_disclosure"},
	{ErrOverDisclosed, "over_disclosed"},
	{ErrMissingClaim, "missing_claim"},
	{ErrHolderKey, "bad_holder_key"},
	{ErrUnknownClaim, "unknown_claim"},
}

// Reason returns a short stable word for err's sentinel, for the CLI and
// logs: "ok" for nil, "tampered", "expired", "replayed", "over_disclosed"
// and so on, "error" for an error that wraps none of the sentinels.
func Reason(err error) string {
	if err == nil {
		return "ok"
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.word
		}
	}
	return "error"
}
