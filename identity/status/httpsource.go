package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/identity/internal/httpapi"
)

// HTTPOptions configures an HTTPSource.
type HTTPOptions struct {
	// BaseURL is the API's root, http or https, without a query; requests
	// go to {BaseURL}/v1/persons/…. Required.
	BaseURL string
	// AuthHeader and AuthValue set one request header with the
	// credentials ("Authorization", "Bearer …"). Default: none.
	AuthHeader string
	AuthValue  string
	// Timeout bounds each attempt (connect, request, reading the answer).
	// Default: 10 s.
	Timeout time.Duration
	// Retries is the number of attempts after the first on a network
	// error, a timeout, 429 or 5xx. Default: 3; negative means none. A 429
	// with a Retry-After (seconds or an HTTP date) waits that long, capped
	// at BackoffMax, or the backoff if longer.
	Retries int
	// BackoffBase is the wait before the first retry; it doubles each
	// retry up to BackoffMax, each wait jittered to between half and all
	// of it. Default: 200 ms.
	BackoffBase time.Duration
	// BackoffMax caps one wait between attempts. Default: 5 s.
	BackoffMax time.Duration
	// Client sends the requests. Default: a client of its own that does
	// not follow redirects (they would carry the credentials elsewhere).
	Client *http.Client
	// Metrics receives gonets_identity_status_source_requests_total{result}
	// (ok, none, rejected, invalid, 429: the last attempt was rate limited,
	// unavailable), …_retries_total and …_request_duration_seconds.
	// Default: a private set.
	Metrics *metrics.Set
	// Log receives one line per failed call: the error, which names the
	// API's host but never the person. Default: slog.Default().
	Log *slog.Logger
}

// HTTPSource is the Source that speaks the polling API in the package
// documentation. Safe for concurrent use.
type HTTPSource struct {
	opts   HTTPOptions
	base   string // BaseURL without a trailing slash
	logURL string // scheme and host only: the path and query name the person
	own    *http.Transport

	ok, none, rejected, invalid, limited, unavailable *metrics.Counter
	retries                                           *metrics.Counter
	latency                                           *metrics.PrometheusHistogram
}

// NewHTTPSource validates o, fills defaults and returns a source. Invalid
// options return ErrConfig.
func NewHTTPSource(o HTTPOptions) (*HTTPSource, error) {
	ho := httpapi.Options{
		BaseURL: o.BaseURL, AuthHeader: o.AuthHeader, AuthValue: o.AuthValue,
		Timeout: o.Timeout, Retries: o.Retries, BackoffBase: o.BackoffBase, BackoffMax: o.BackoffMax,
	}
	// No MaxResponse default: the limit is the package's MaxResponse.
	u, err := ho.Normalize(httpapi.Options{
		Timeout: 10 * time.Second, Retries: 3, BackoffBase: 200 * time.Millisecond, BackoffMax: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	o.Timeout, o.Retries, o.BackoffBase, o.BackoffMax = ho.Timeout, ho.Retries, ho.BackoffBase, ho.BackoffMax
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &HTTPSource{opts: o, base: strings.TrimRight(u.String(), "/"), logURL: u.Scheme + "://" + u.Host}
	if s.opts.Client == nil {
		s.opts.Client, s.own = httpapi.NewClient()
	}
	m := o.Metrics
	const req = "gonets_identity_status_source_requests_total"
	s.ok = m.GetOrCreateCounter(req + `{result="ok"}`)
	s.none = m.GetOrCreateCounter(req + `{result="none"}`)
	s.rejected = m.GetOrCreateCounter(req + `{result="rejected"}`)
	s.invalid = m.GetOrCreateCounter(req + `{result="invalid"}`)
	s.limited = m.GetOrCreateCounter(req + `{result="429"}`)
	s.unavailable = m.GetOrCreateCounter(req + `{result="unavailable"}`)
	s.retries = m.GetOrCreateCounter("gonets_identity_status_source_retries_total")
	s.latency = m.GetOrCreatePrometheusHistogram("gonets_identity_status_source_request_duration_seconds")
	return s, nil
}

// Close releases the idle connections of the source's own client (not of
// a Client passed in the options). Calls may still be made after it.
func (s *HTTPSource) Close() {
	if s.own != nil {
		s.own.CloseIdleConnections()
	}
}

// History implements Source: one GET, retried with backoff on network
// errors, timeouts, 429 (after its Retry-After) and 5xx within ctx.
func (s *HTTPSource) History(ctx context.Context, p Person) ([]Application, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	apps, err := s.history(ctx, p)
	s.latency.UpdateDuration(start)
	switch {
	case err == nil && apps == nil:
		s.none.Inc()
	case err == nil:
		s.ok.Inc()
	case errors.Is(err, ErrRejected):
		s.rejected.Inc()
	case errors.Is(err, ErrInvalidResponse):
		s.invalid.Inc()
	case errors.Is(err, errRateLimited):
		s.limited.Inc()
	default:
		s.unavailable.Inc()
	}
	if err != nil {
		s.opts.Log.Warn("status: state service call failed", "err", err)
	}
	return apps, err
}

// attempt outcomes.
const (
	attemptDone  = iota // apps or a final error
	attemptRetry        // network error, timeout, 429, 5xx
)

func (s *HTTPSource) history(ctx context.Context, p Person) ([]Application, error) {
	u := s.base + "/v1/persons/" + url.PathEscape(p.OID) + "/applications"
	if p.SNILS != "" {
		u += "?snils=" + url.QueryEscape(p.SNILS)
	}
	for attempt := 0; ; attempt++ {
		outcome, apps, after, err := s.attempt(ctx, u)
		if outcome == attemptDone {
			return apps, err
		}
		if attempt >= s.opts.Retries {
			return nil, fmt.Errorf("%w: after %d attempts: %w", ErrUnavailable, attempt+1, err)
		}
		wait := httpapi.Delay(s.opts.BackoffBase, s.opts.BackoffMax, attempt, after)
		if !httpapi.FitsDeadline(ctx, wait) {
			return nil, fmt.Errorf("%w: next attempt in %v is past the deadline (last: %w)", ErrUnavailable, wait, err)
		}
		s.retries.Inc()
		if serr := httpapi.Sleep(ctx, wait); serr != nil {
			return nil, fmt.Errorf("%w: %w (last: %w)", ErrUnavailable, serr, err)
		}
	}
}

// errRateLimited marks a 429 answer, counted apart from the other
// failures; the error History returns wraps ErrUnavailable too.
var errRateLimited = errors.New("rate limited")

// attempt makes one request under the per-attempt timeout. after is the
// wait a 429 asks for in its Retry-After, 0 when none.
func (s *HTTPSource) attempt(ctx context.Context, u string) (outcome int, apps []Application, after time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := httpapi.NewRequest(ctx, http.MethodGet, u, nil, s.opts.AuthHeader, s.opts.AuthValue)
	if err != nil {
		return attemptDone, nil, 0, fmt.Errorf("%w: build request: %w", ErrInvalidPerson, httpapi.RedactURL(err, s.logURL))
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return attemptRetry, nil, 0, fmt.Errorf("request: %w", httpapi.RedactURL(err, s.logURL))
	}
	defer resp.Body.Close()
	body, err := httpapi.ReadAtMost(resp.Body, MaxResponse)
	code := resp.StatusCode
	switch {
	case code == http.StatusOK:
		if errors.Is(err, httpapi.ErrTooLarge) {
			return attemptDone, nil, 0, fmt.Errorf("%w: answer over %d bytes", ErrInvalidResponse, MaxResponse)
		}
		if err != nil {
			return attemptRetry, nil, 0, fmt.Errorf("read answer: %w", httpapi.RedactURL(err, s.logURL))
		}
		apps, err := decodeHistory(body)
		if err != nil {
			return attemptDone, nil, 0, err
		}
		return attemptDone, apps, 0, nil
	case code == http.StatusNotFound:
		return attemptDone, nil, 0, nil
	case code == http.StatusTooManyRequests:
		after = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		return attemptRetry, nil, after, fmt.Errorf("%w: status %d from %s", errRateLimited, code, s.logURL)
	case code >= 500:
		return attemptRetry, nil, 0, fmt.Errorf("status %d from %s", code, s.logURL)
	case code >= 400:
		return attemptDone, nil, 0, fmt.Errorf("%w: status %d from %s", ErrRejected, code, s.logURL)
	default:
		return attemptDone, nil, 0, fmt.Errorf("%w: status %d from %s (redirects are not followed)", ErrInvalidResponse, code, s.logURL)
	}
}

// retryAfter parses a Retry-After value, delay seconds or an HTTP date,
// into the wait from now: 0 when it is absent, malformed or past.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 63); err == nil {
		if n > uint64(math.MaxInt64/time.Second) {
			return math.MaxInt64
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return max(t.Sub(now), 0)
}

// The answer's JSON.
type (
	wireHistory struct {
		Applications *[]wireApplication `json:"applications"`
	}
	wireApplication struct {
		OrderID  string       `json:"order_id"`
		Service  string       `json:"service"`
		Statuses []wireStatus `json:"statuses"`
	}
	wireStatus struct {
		Code  string `json:"code"`
		Title string `json:"title"`
		At    string `json:"at"`
		Final bool   `json:"final"`
	}
)

// decodeHistory parses and validates a 200 answer's body. Errors wrap
// ErrInvalidResponse. A person with no applications is nil.
func decodeHistory(body []byte) ([]Application, error) {
	var h wireHistory
	if err := json.Unmarshal(body, &h); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidResponse, err)
	}
	if h.Applications == nil {
		return nil, fmt.Errorf("%w: no applications list", ErrInvalidResponse)
	}
	wa := *h.Applications
	if len(wa) > MaxApplications {
		return nil, fmt.Errorf("%w: %d applications, at most %d", ErrInvalidResponse, len(wa), MaxApplications)
	}
	if len(wa) == 0 {
		return nil, nil
	}
	apps := make([]Application, len(wa))
	for i, a := range wa {
		if len(a.Statuses) > MaxStatuses {
			return nil, fmt.Errorf("%w: application %d: %d statuses, at most %d", ErrInvalidResponse, i, len(a.Statuses), MaxStatuses)
		}
		apps[i] = Application{OrderID: a.OrderID, Service: a.Service, Statuses: make([]Status, len(a.Statuses))}
		for j, st := range a.Statuses {
			at, err := time.Parse(time.RFC3339Nano, st.At)
			if err != nil {
				return nil, fmt.Errorf("%w: application %d status %d: at is not RFC 3339", ErrInvalidResponse, i, j)
			}
			apps[i].Statuses[j] = Status{Code: st.Code, Title: st.Title, At: at, Final: st.Final}
		}
	}
	if err := Validate(apps); err != nil {
		return nil, err
	}
	return apps, nil
}
