package signing

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/identity/internal/httpapi"
)

// HTTPOptions configures an HTTPProvider.
type HTTPOptions struct {
	// BaseURL is the signing service's API root, http or https; the API's
	// paths (/v1/signatures…) are appended to it. Required.
	BaseURL string
	// AuthHeader and AuthValue set one request header carrying the node's
	// credentials ("Authorization", "Bearer …"). Default: none.
	AuthHeader string
	AuthValue  string
	// Timeout bounds each attempt (connect, request, response). Default: 10 s.
	Timeout time.Duration
	// Retries is the number of attempts after the first on a network error,
	// a timeout or a 5xx. Default: 3; negative means none.
	Retries int
	// BackoffBase is the wait before the first retry; it doubles each retry
	// up to BackoffMax, each wait jittered to between half and all of it.
	// Default: 200 ms.
	BackoffBase time.Duration
	// BackoffMax caps one backoff wait. Default: 5 s.
	BackoffMax time.Duration
	// MaxResponse caps the response bytes read. Default: 1 MiB.
	MaxResponse int64
	// Client sends the requests. Default: a client of its own that does not
	// follow redirects (they would carry the credentials elsewhere).
	Client *http.Client
	// Metrics receives gonets_signing_provider_calls_total{endpoint,outcome}
	// and gonets_signing_provider_call_seconds{endpoint}. Default: a set of
	// its own.
	Metrics *metrics.Set
	// Log receives one line per failed call (never the document or the
	// person). Default: slog.Default().
	Log *slog.Logger
}

// HTTPProvider is the Provider speaking the signing-service API described
// in the package documentation. Safe for concurrent use.
type HTTPProvider struct {
	opts   HTTPOptions
	base   string // BaseURL without a trailing slash
	logURL string // scheme and host only
	own    *http.Transport
}

// NewHTTPProvider validates o, fills defaults and returns a provider.
// Invalid options return ErrConfig.
func NewHTTPProvider(o HTTPOptions) (*HTTPProvider, error) {
	ho := httpapi.Options{
		BaseURL: o.BaseURL, AuthHeader: o.AuthHeader, AuthValue: o.AuthValue,
		Timeout: o.Timeout, Retries: o.Retries, BackoffBase: o.BackoffBase, BackoffMax: o.BackoffMax,
		MaxResponse: o.MaxResponse,
	}
	u, err := ho.Normalize(httpapi.Options{
		Timeout: 10 * time.Second, Retries: 3, BackoffBase: 200 * time.Millisecond, BackoffMax: 5 * time.Second,
		MaxResponse: 1 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	o.Timeout, o.Retries, o.BackoffBase, o.BackoffMax, o.MaxResponse = ho.Timeout, ho.Retries, ho.BackoffBase, ho.BackoffMax, ho.MaxResponse
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p := &HTTPProvider{opts: o, base: strings.TrimRight(u.String(), "/"), logURL: u.Scheme + "://" + u.Host}
	// Every series exists from the start, so a scrape shows the zeros.
	for _, endpoint := range []string{"start", "status"} {
		o.Metrics.GetOrCreatePrometheusHistogram(`gonets_signing_provider_call_seconds{endpoint="` + endpoint + `"}`)
		for _, name := range outcomeNames {
			o.Metrics.GetOrCreateCounter(`gonets_signing_provider_calls_total{endpoint="` + endpoint + `",outcome="` + name + `"}`)
		}
	}
	if p.opts.Client == nil {
		p.opts.Client, p.own = httpapi.NewClient()
	}
	return p, nil
}

// Close releases the idle connections of the provider's own client.
func (p *HTTPProvider) Close() {
	if p.own != nil {
		p.own.CloseIdleConnections()
	}
}

// startRequest is the body of POST /v1/signatures.
type startRequest struct {
	RequestID string     `json:"request_id"`
	Signer    signerJSON `json:"signer"`
	Title     string     `json:"title"`
	Document  string     `json:"document"` // base64
	SHA256    string     `json:"sha256"`   // hex
}

type signerJSON struct {
	OID   string `json:"oid"`
	SNILS string `json:"snils"`
}

// startResponse is the answer to POST /v1/signatures.
type startResponse struct {
	OperationID string `json:"operation_id"`
	State       string `json:"state"`
}

// statusResponse is the answer to GET /v1/signatures/{operation_id}.
type statusResponse struct {
	State     string `json:"state"`
	Signature string `json:"signature,omitempty"` // base64 DER
	Reason    string `json:"reason,omitempty"`
}

// errorResponse is the body of a 4xx or 5xx answer.
type errorResponse struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// maxOperationID bounds an operation ID the service hands out.
const maxOperationID = 256

// Start posts d to the service. Retrying is safe: the service answers the
// same request_id with the same operation.
func (p *HTTPProvider) Start(ctx context.Context, d Document) (string, error) {
	body, err := json.Marshal(startRequest{
		RequestID: d.RequestID,
		Signer:    signerJSON{OID: d.Signer.OID, SNILS: d.Signer.SNILS},
		Title:     d.Title,
		Document:  base64.StdEncoding.EncodeToString(d.Data),
		SHA256:    hex.EncodeToString(d.SHA256[:]),
	})
	if err != nil {
		return "", fmt.Errorf("signing: encode start: %w", err)
	}
	var resp startResponse
	if err := p.call(ctx, "start", http.MethodPost, p.base+"/v1/signatures", body, &resp); err != nil {
		return "", err
	}
	if resp.OperationID == "" || len(resp.OperationID) > maxOperationID {
		return "", fmt.Errorf("%w: start: operation_id of %d bytes", ErrProtocol, len(resp.OperationID))
	}
	if _, err := ParseState(resp.State); err != nil && resp.State != "" {
		return "", fmt.Errorf("signing: start: %w", err)
	}
	return resp.OperationID, nil
}

// Status asks the service where operation stands. It does not verify a
// signature: it lacks the document; the Manager verifies (see Verify).
func (p *HTTPProvider) Status(ctx context.Context, operation string) (Status, error) {
	if operation == "" || len(operation) > maxOperationID {
		return Status{}, fmt.Errorf("%w: operation id of %d bytes", ErrBadRequest, len(operation))
	}
	var resp statusResponse
	if err := p.call(ctx, "status", http.MethodGet, p.base+"/v1/signatures/"+url.PathEscape(operation), nil, &resp); err != nil {
		return Status{}, err
	}
	st, err := ParseState(resp.State)
	if err != nil {
		return Status{}, fmt.Errorf("signing: status: %w", err)
	}
	out := Status{State: st, Reason: resp.Reason}
	if st == Signed {
		out.Signature, err = base64.StdEncoding.DecodeString(resp.Signature)
		if err != nil || len(out.Signature) == 0 {
			return Status{}, fmt.Errorf("%w: status: signed without a base64 signature", ErrProtocol)
		}
	}
	return out, nil
}

// outcome classifies one attempt.
type outcome int

const (
	outcomeOK       outcome = iota
	outcomeRetry            // network error, timeout, 5xx
	outcomeRejected         // 4xx other than the ones below
	outcomeRefused          // 401, 403, 408, 429: not this request's fault, not retried here
	outcomeBad              // an answer off the API
)

var outcomeNames = [...]string{"ok", "retry", "rejected", "refused", "bad"}

// call makes the request, retrying network errors and 5xx with backoff,
// and decodes a 2xx JSON answer into out.
func (p *HTTPProvider) call(ctx context.Context, endpoint, method, u string, body []byte, out any) error {
	for attempt := 0; ; attempt++ {
		res, err := p.attempt(ctx, endpoint, method, u, body, out)
		switch res {
		case outcomeOK:
			return nil
		case outcomeRejected:
			p.opts.Log.Warn("signing: signing service refused", "endpoint", endpoint, "err", err)
			return fmt.Errorf("%w: %s: %w", ErrRejected, endpoint, err)
		case outcomeRefused:
			p.opts.Log.Warn("signing: signing service refused the node", "endpoint", endpoint, "err", err)
			return fmt.Errorf("%w: %s: %w", ErrUnavailable, endpoint, err)
		case outcomeBad:
			p.opts.Log.Warn("signing: malformed answer", "endpoint", endpoint, "err", err)
			return fmt.Errorf("%w: %s: %w", ErrProtocol, endpoint, err)
		}
		if attempt >= p.opts.Retries || ctx.Err() != nil {
			p.opts.Log.Warn("signing: signing service unreachable", "endpoint", endpoint, "attempts", attempt+1, "err", err)
			return fmt.Errorf("%w: %s after %d attempts: %w", ErrUnavailable, endpoint, attempt+1, err)
		}
		if serr := httpapi.Sleep(ctx, httpapi.Delay(p.opts.BackoffBase, p.opts.BackoffMax, attempt, 0)); serr != nil {
			return fmt.Errorf("%w: %s: %w (last: %w)", ErrUnavailable, endpoint, serr, err)
		}
	}
}

// attempt makes one request under the per-attempt timeout and counts it.
func (p *HTTPProvider) attempt(ctx context.Context, endpoint, method, u string, body []byte, out any) (res outcome, err error) {
	start := time.Now()
	defer func() {
		p.opts.Metrics.GetOrCreateCounter(`gonets_signing_provider_calls_total{endpoint="` + endpoint + `",outcome="` + outcomeNames[res] + `"}`).Inc()
		p.opts.Metrics.GetOrCreatePrometheusHistogram(`gonets_signing_provider_call_seconds{endpoint="` + endpoint + `"}`).UpdateDuration(start)
	}()
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	req, err := httpapi.NewRequest(ctx, method, u, body, p.opts.AuthHeader, p.opts.AuthValue)
	if err != nil {
		return outcomeBad, fmt.Errorf("build request: %w", err)
	}
	resp, err := p.opts.Client.Do(req)
	if err != nil {
		return outcomeRetry, httpapi.RedactURL(err, p.logURL)
	}
	defer resp.Body.Close()
	data, rerr := httpapi.ReadAtMost(resp.Body, p.opts.MaxResponse)
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		if errors.Is(rerr, httpapi.ErrTooLarge) {
			return outcomeBad, fmt.Errorf("answer over %d bytes", p.opts.MaxResponse)
		}
		if rerr != nil {
			return outcomeRetry, fmt.Errorf("read answer: %w", rerr)
		}
		if err := json.Unmarshal(data, out); err != nil {
			return outcomeBad, fmt.Errorf("decode answer: %w", err)
		}
		return outcomeOK, nil
	case code >= 500:
		return outcomeRetry, apiError(code, data)
	case code == http.StatusUnauthorized, code == http.StatusForbidden,
		code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return outcomeRefused, apiError(code, data)
	case code >= 400:
		return outcomeRejected, apiError(code, data)
	default:
		return outcomeBad, fmt.Errorf("status %d (redirects are not followed)", code)
	}
}

// apiError describes an error answer: its status and the API's
// {"error","message"}, cut short.
func apiError(code int, data []byte) error {
	var e errorResponse
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		return fmt.Errorf("status %d", code)
	}
	msg := e.Message
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return fmt.Errorf("status %d %s: %q", code, e.Error, msg)
}

// backoff returns base doubled attempt times, capped at max.
func backoff(base, max time.Duration, attempt int) time.Duration {
	return httpapi.Backoff(base, max, attempt)
}

// jitter returns between half and all of d.
func jitter(d time.Duration) time.Duration { return httpapi.Jitter(d) }
