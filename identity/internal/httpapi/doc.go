// Package httpapi holds the HTTP plumbing the identity adapters for outside
// state services share: the HTTP client adapters in identity/signing
// (HTTPProvider), identity/status (HTTPSource) and identity/esia
// (HTTPSigner).
//
// It owns no goroutines and no state. Options validates a base URL and an
// auth header and fills each adapter's own defaults; Delay is the wait
// between attempts (exponential, capped, jittered, or a Retry-After when
// longer); Sleep waits within a ctx; ReadAtMost reads an answer up to a
// bound; NewClient builds the client that does not follow redirects;
// NewRequest and RedactURL build a request and keep a client error from
// quoting the URL's path and query.
//
// What stays in each adapter is what differs between them: its exported
// options, its retry loop's errors and metrics, and the decoding of its
// API. Errors here carry no package prefix: the adapters wrap them in
// their own sentinels ("signing: invalid options: …").
package httpapi
