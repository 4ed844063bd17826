package esia

import (
	"context"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/identity/internal/httpapi"
)

// Signer makes the client_secret: a detached CMS (PKCS#7) signature, DER,
// over data, made with the operator's certificate.
type Signer interface {
	Sign(ctx context.Context, data []byte) ([]byte, error)
}

// HTTPSignerOptions configures an HTTPSigner.
type HTTPSignerOptions struct {
	// URL is the signing service's endpoint, http or https. Required.
	URL string
	// AuthHeader and AuthValue, when AuthHeader is set, are one request
	// header carrying the service's credentials ("Authorization",
	// "Bearer …"). Default: none.
	AuthHeader, AuthValue string
	// Timeout bounds each attempt. Default: 5 s.
	Timeout time.Duration
	// Backoff is the wait before the first retry; it doubles for the
	// next, and each wait is jittered to between half and all of it.
	// Default: 200 ms.
	Backoff time.Duration
	// Client sends the requests. Default: a client of its own that does
	// not follow redirects (they would carry the credentials elsewhere).
	Client *http.Client
	// Metrics receives gonets_esia_requests_total{endpoint="signer",…}
	// and its latency. Default: a set of its own.
	Metrics *metrics.Set
}

// HTTPSigner is a Signer that asks a remote signing service holding the
// operator's GOST key:
//
//	POST URL   {"data":"<base64 of the bytes to sign>","detached":true}
//	→ 200      {"signature":"<base64 DER CMS SignedData>"}
//
// A non-2xx answer is an error quoting the first 200 bytes of its body.
// Network errors and 5xx are retried with backoff, at most 3 tries in all
// and all within the caller's ctx; a 4xx is ErrSignerRejected at once.
// Safe for concurrent use.
type HTTPSigner struct {
	opts    HTTPSignerOptions
	logURL  string // scheme and host: the rest may hold credentials
	metrics *callMetrics
}

// signerTries is the most attempts one Sign makes.
const signerTries = 3

// NewHTTPSigner validates o, fills defaults and returns a signer.
func NewHTTPSigner(o HTTPSignerOptions) (*HTTPSigner, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: signer URL %q is not an http(s) URL", ErrConfig, o.URL)
	}
	if o.AuthHeader == "" && o.AuthValue != "" {
		return nil, fmt.Errorf("%w: signer auth value without a header name", ErrConfig)
	}
	if o.Timeout < 0 || o.Backoff < 0 {
		return nil, fmt.Errorf("%w: negative signer timeout or backoff", ErrConfig)
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Backoff == 0 {
		o.Backoff = 200 * time.Millisecond
	}
	if o.Client == nil {
		o.Client = noRedirectClient()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	return &HTTPSigner{opts: o, logURL: u.Scheme + "://" + u.Host, metrics: newCallMetrics(o.Metrics, "signer")}, nil
}

// signRequest and signResponse are the signing service's JSON.
type signRequest struct {
	Data     string `json:"data"`
	Detached bool   `json:"detached"`
}

type signResponse struct {
	Signature string `json:"signature"`
}

// Sign returns the service's detached CMS signature over data.
func (s *HTTPSigner) Sign(ctx context.Context, data []byte) (sig []byte, err error) {
	start := time.Now()
	defer func() { s.metrics.done(start, err) }()
	body, err := json.Marshal(signRequest{Data: base64.StdEncoding.EncodeToString(data), Detached: true})
	if err != nil {
		return nil, fmt.Errorf("esia: sign: %w", err)
	}
	for try := 1; ; try++ {
		sig, retry, err := s.attempt(ctx, body)
		if err == nil {
			return sig, nil
		}
		if !retry || try == signerTries {
			return nil, fmt.Errorf("esia: sign (try %d): %w", try, err)
		}
		// Uncapped: signerTries bounds the doubling.
		d := httpapi.Delay(s.opts.Backoff, math.MaxInt64, try-1, 0)
		if !httpapi.FitsDeadline(ctx, d) {
			return nil, fmt.Errorf("esia: sign (try %d, no time left to retry): %w", try, err)
		}
		if serr := httpapi.Sleep(ctx, d); serr != nil {
			return nil, fmt.Errorf("esia: sign (try %d): %w (last: %w)", try, serr, err)
		}
	}
}

// attempt makes one request; retry says whether another may succeed.
func (s *HTTPSigner) attempt(ctx context.Context, body []byte) (sig []byte, retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := httpapi.NewRequest(ctx, http.MethodPost, s.opts.URL, body, s.opts.AuthHeader, s.opts.AuthValue)
	if err != nil {
		return nil, false, fmt.Errorf("%w: build request: %w", ErrConfig, err)
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return nil, true, fmt.Errorf("%w: %w", ErrUnavailable, httpapi.RedactURL(err, s.logURL))
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body)
	switch {
	case resp.StatusCode >= 500:
		return nil, true, fmt.Errorf("%w: signing service status %d %q", ErrUnavailable, resp.StatusCode, snippet(b))
	case resp.StatusCode >= 400:
		return nil, false, fmt.Errorf("%w: status %d %q", ErrSignerRejected, resp.StatusCode, snippet(b))
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, false, fmt.Errorf("%w: signing service status %d %q", ErrProtocol, resp.StatusCode, snippet(b))
	case errors.Is(err, ErrProtocol):
		return nil, false, fmt.Errorf("signing service: %w", err)
	case err != nil:
		return nil, true, fmt.Errorf("%w: read signing service answer: %w", ErrUnavailable, err)
	}
	var r signResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, false, fmt.Errorf("%w: signing service answer: %w", ErrProtocol, err)
	}
	sig, err = base64.StdEncoding.DecodeString(r.Signature)
	if err != nil || len(sig) == 0 {
		return nil, false, fmt.Errorf("%w: signing service signature is not base64 (%v)", ErrProtocol, err)
	}
	var v asn1.RawValue
	if rest, err := asn1.Unmarshal(sig, &v); err != nil || len(rest) != 0 || v.Tag != asn1.TagSequence {
		return nil, false, fmt.Errorf("%w: signing service signature is not a DER CMS structure", ErrProtocol)
	}
	return sig, false, nil
}

// maxBody caps the bytes read of any answer.
const maxBody = 1 << 20

// readBody reads up to maxBody bytes of r; a longer body is ErrProtocol.
func readBody(r io.Reader) ([]byte, error) {
	b, err := httpapi.ReadAtMost(r, maxBody)
	if errors.Is(err, httpapi.ErrTooLarge) {
		return b, fmt.Errorf("%w: answer over %d bytes", ErrProtocol, maxBody)
	}
	return b, err
}

// snippet returns at most the first 200 bytes of b, for an error.
func snippet(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// noRedirectClient returns a client that returns a redirect as the answer.
func noRedirectClient() *http.Client {
	c, _ := httpapi.NewClient()
	return c
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error { return httpapi.Sleep(ctx, d) }

// outcomeOf returns the metric outcome of err.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, context.Canceled):
		return outcomeCanceled
	case errors.Is(err, ErrDenied):
		return outcomeDenied
	case errors.Is(err, ErrInvalidGrant):
		return outcomeInvalidGrant
	case errors.Is(err, ErrInvalidClient), errors.Is(err, ErrSignerRejected):
		return outcomeRejected
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return outcomeUnavailable
	}
	return outcomeProtocol
}
