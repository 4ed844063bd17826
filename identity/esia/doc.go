// Package esia is the node's client of ESIA (Gosuslugi, the Russian state
// identity provider): the OAuth 2.0 authorisation-code flow as ESIA's
// methodical recommendations (v3.x) define it, and the person record it
// reads with the token. The simulator of these endpoints, for tests and the
// demo, is package esiasim.
//
// # The flow
//
// AuthURL builds the browser's redirect to the v2 authorisation endpoint:
//
//	{BaseURL}/aas/oauth2/v2/ac?client_id=…&client_secret=…&redirect_uri=…
//	    &scope=…&response_type=code&state=…&timestamp=…&access_type=online
//
// timestamp is "yyyy.MM.dd HH:mm:ss Z" (Go: "2006.01.02 15:04:05 -0700"),
// state a random UUID v4 (NewState) and client_secret the URL-safe base64
// (padded, as ESIA takes it) of a detached CMS (PKCS#7) SignedData over the
// concatenation, in the v2 endpoint's order,
//
//	client_id + scope + timestamp + state + redirect_uri
//
// with scope space-separated. ESIA sends the browser back to redirect_uri
// with code and state, or with error (access_denied when the user refused)
// and error_description, which CallbackError turns into an error.
//
// Exchange trades the code at the v3 token endpoint, POST
// {BaseURL}/aas/oauth2/v3/te, form-encoded: client_id, code,
// grant_type=authorization_code, client_secret, state, redirect_uri, scope,
// timestamp and token_type=Bearer. The state is a NEW UUID and the timestamp
// a fresh one, and client_secret signs
//
//	client_id + scope + timestamp + state + redirect_uri + code
//
// The v3 endpoint's client_certificate_hash (a GOST hash of the operator's
// certificate) is not sent: computing it is GOST cryptography, which this
// package leaves to the signing service; a deployment whose ESIA requires it
// puts a proxy in front. The answer's state must equal the one sent. The
// person's id (oid) is the id_token's "urn:esia:sbj_id" claim. The id_token
// and access_token are signed with GOST algorithms, which are not checked
// here: the tokens came straight from the token endpoint over TLS, and
// OpenID Connect Core §3.1.3.7 allows a client to trust an ID token on that
// ground in place of checking its signature. Its aud (the client id) and
// exp are checked, and its iss when Config.Issuer is set. The client asks
// for online access only, so the refresh_token is not kept.
//
// Person reads GET {BaseURL}/rs/prns/{oid} with the access token as Bearer,
// and Person.Attributes keeps what the granted scopes cover.
//
// # Signing
//
// The client_secret is made by a Signer. HTTPSigner asks a remote signing
// service that holds the operator's GOST key and certificate:
//
//	POST URL   {"data":"<base64 of the bytes to sign>","detached":true}
//	→ 200      {"signature":"<base64 of the DER CMS SignedData>"}
//
// (standard base64, with padding). Any other status is an error that
// quotes the first 200 bytes of the body; 5xx and network errors are
// retried with backoff, at most 3 tries within the caller's context; 4xx
// never. DevSigner signs with a key of its own (ECDSA P-256, SHA-256) for
// tests and the demo, and VerifySecret checks a client_secret against a
// certificate, as the simulator does.
//
// # Deployment extension: student and pensioner
//
// ESIA's person record has no student or pensioner field. This deployment's
// convention, which the simulator and the node share, is that the scopes
// "student" and "pensioner" make the person record carry booleans of those
// names; Attributes sets them only when those scopes were granted.
//
// # Operation
//
// Every call has a timeout (Config.Timeout, default 10 s), response bodies
// are read up to 1 MiB, and each call is counted in the metrics set:
// gonets_esia_requests_total{endpoint,outcome} and
// gonets_esia_request_duration_seconds{endpoint}, with endpoint one of ac
// (signing the authorisation URL), te, prns and signer. The person read is
// retried on 5xx and network errors (it is idempotent); the code exchange
// is not (a code is single-use). The package starts no goroutines.
package esia
