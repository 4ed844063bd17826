// Package signing runs Goskey-style document signing for the node: a
// service sends a user a document to sign in a chat; the user's device
// confirms; the node asks a signing service (where a qualified-signature
// provider sits) to sign; the person approves on the signing service's
// side; the node posts the detached signature into the chat. The broker's
// side (frames, chat messages) is not here: the node gives the Manager a
// Finish callback that posts the outcome.
//
// # Signing-service API
//
// Provider is the signing service; HTTPProvider speaks this API, and
// package signsim serves it:
//
//	POST {base}/v1/signatures
//	  {"request_id":"…","signer":{"oid":"…","snils":"…"},"title":"…",
//	   "document":"<base64>","sha256":"<hex>"}
//	  → 200 or 201 {"operation_id":"…","state":"pending"}
//	  The same request_id returns the same operation, so a retry after a
//	  lost answer is safe.
//	GET {base}/v1/signatures/{operation_id}
//	  → 200 {"state":"pending|signed|declined|expired|failed",
//	         "signature":"<base64 DER CMS>","reason":"…"}
//	  signature is set when signed: a detached CMS SignedData over the
//	  document's bytes, the signer's certificate embedded.
//	Errors: 4xx or 5xx with {"error":"<code>","message":"…"}.
//
// The node's credentials go in one header (HTTPOptions.AuthHeader). Every
// attempt has a timeout; network errors and 5xx are retried with jittered
// backoff (Start too, thanks to request_id); 4xx never is. 401, 403, 408
// and 429 return ErrUnavailable (the node's configuration or load, not
// the request: the Manager retries later); other 4xx return ErrRejected
// (the request ends Failed). Responses are read up to MaxResponse. Each
// attempt counts in gonets_signing_provider_calls_total{endpoint,outcome}
// and gonets_signing_provider_call_seconds{endpoint}.
//
// # Signatures
//
// The Manager checks each signature before it ends a request Signed (see
// Verify): it must be a detached CMS SignedData over the request's
// document with one signer whose certificate it embeds, and that
// signature must verify. A signature failing this ends the request Failed
// with the reason. Without ManagerOptions.Roots this proves integrity
// over the document and the certificate's presence, not the chain to a
// qualified CA: that is the signing service's business. With Roots the
// chain is verified too. The check is the Manager's rather than the
// provider's because Status sees only an operation, not the document.
//
// The signature must also be the signer's (CheckSigner): Russian
// qualified certificates carry the holder's SNILS in the subject
// (OIDSNILS, 1.2.643.100.3, 11 digits), and when the certificate carries
// one it must equal the request's Person.SNILS without separators, or the
// request ends Failed ("signed by another person"). A certificate without
// a SNILS passes unless ManagerOptions.RequireSNILS, which production
// deployments behind a qualified provider should set, with Roots.
//
// # State machine
//
// Each request has one record in the KV (key signing/r/<id>, the document
// inside), written before any outside effect that depends on it:
//
//	Submit ─→ awaiting ─Decide(approve)─→ approved ─Start ok─→ signing
//	             │  └─Decide(decline)─→ ended(declined)           │
//	             └──deadline──→ ended(expired)      poll: pending ─┘ (backoff)
//	approved ──deadline──→ ended(expired)
//	approved ──Start refused (ErrRejected)──→ ended(failed)
//	signing ──poll──→ ended(signed | declined | expired | failed)
//	signing ──deadline (after a last poll)──→ ended(expired)
//	ended ──Finish returns nil──→ tombstone (signing/t/<id>, no document)
//
// Every transition is a read-modify-write of the record under the
// request's own mutex, and none leaves ended: the first outcome persisted
// is the only one, whatever races (Decide against expiry or a poll).
// Finish is called only with the persisted outcome, so it never sees two
// different outcomes for a request; it is called again (after a failure
// or a restart) until it returns nil, then the tombstone replaces the
// record. The tombstone is written before the record is deleted; a
// restart between the two deletes the record without calling Finish.
//
// CancelSigner (when a signer unlinks their account) ends each of the
// signer's requests that has not ended as Failed, under the request's
// mutex like any transition, and Run finishes them as usual.
//
// After a restart NewManager loads every record: approved → Start again
// (the service answers the same operation for the request ID); signing →
// poll; ended → Finish again; awaiting → wait for Decide or the deadline.
// Provider errors are retried with backoff (PollMin doubling to PollMax,
// jittered) until the deadline, when the request ends Expired with the
// last error as the reason; a provider's failed state or ErrRejected ends
// it Failed.
//
// # Memory, retention and goroutines
//
// In memory the Manager keeps only the pending requests' IDs and when
// they are due (a heap), and how many each requester and each signer
// has; documents stay in the KV, read when a step needs them. MaxPending
// caps the requests not yet acknowledged, MaxPerRequester (1,000) those
// one user asked for and MaxPerSigner (100) those one user is asked to
// sign; Submit refuses beyond with ErrTooMany. The counts are rebuilt
// from the KV at load. Tombstones (the request without its document,
// the outcome with its signature) answer Get and a late Decide for
// Retention (30 days), then Run's hourly sweep deletes them.
//
// Run is the loop: it takes due requests off the heap and gives each to
// a goroutine of its own, at most Concurrency at once, which makes one
// step (expire, Start, poll, Finish) and puts the request back with its
// next due time. A request is in at most one step at a time. Lock order:
// a request's mutex, then the Manager's. No KV call is made inside a KV
// Scan callback (a sealed table holds a read lock for the Scan: a nested
// read would deadlock with a writer waiting between the two).
package signing
