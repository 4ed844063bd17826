// Package signsim simulates the signing service of package signing: the
// same API as an http.Handler (the contract in signing's documentation)
// and as an in-process signing.Provider, both backed by one Sim, for tests
// and the demo.
//
// A Sim answers Start with an operation per request ID (the same ID, the
// same operation), answers the first Delay polls of an operation pending,
// then asks Options.Approve what the person did: Signed produces a real
// detached CMS SignedData (SHA-256, ECDSA) over the document by the
// signer's certificate, embedded. The sim is a small CA: it issues each
// person a certificate (PersonCertificate) whose subject carries the
// document's Signer.SNILS as qualified certificates do (signing.OIDSNILS,
// a NumericString without separators), cached per SNILS up to
// MaxCertificates, so the Manager's signer check is exercised. Roots (or
// VerifySignature with Certificate) verifies these signatures. Everything is kept in memory; a Sim is safe
// for concurrent use.
//
// Over HTTP a Start answers 201; errors carry {"error","message"}: 400
// bad_json, bad_document (no request_id or signer.oid, or a document not
// matching sha256), bad_sha256; 404 unknown_operation or not_found; 405
// method_not_allowed; 413 too_large; 503 busy (past MaxOperations). The
// Sim does not check credentials: put it behind a handler that does when
// a test needs it.
package signsim
