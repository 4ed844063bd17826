package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"text/template"
	"time"

	"golang.org/x/net/http/httpguts"
)

// HTTPSenderOptions configures an HTTPSender for a generic SMS gateway.
type HTTPSenderOptions struct {
	// URL is the gateway's endpoint; only http and https are accepted.
	// Required.
	URL string
	// Method is the request method. Default: POST.
	Method string
	// HeaderName and HeaderValue set one request header, typically the
	// gateway's credentials ("Authorization", "Bearer …"). Default: none.
	HeaderName  string
	HeaderValue string
	// BodyTemplate is a text/template rendering the request body from .To
	// and .Text. The func json quotes a value as a JSON string, so a JSON
	// body is built safely: {"phone":{{json .To}},"message":{{json .Text}}}.
	// Default: {"to":{{json .To}},"text":{{json .Text}}}.
	BodyTemplate string
	// ContentType is the request's Content-Type. Default: application/json.
	ContentType string
	// Timeout bounds each attempt (connect, request, response). Default: 5 s.
	Timeout time.Duration
	// Retries is the number of attempts after the first on a network error,
	// a timeout, 429 or 5xx. Default: 3; negative means none.
	Retries int
	// BackoffBase is the wait before the first retry; it doubles each
	// retry, capped at BackoffMax, and each wait is jittered to between half
	// and all of it. Default: 100 ms.
	BackoffBase time.Duration
	// BackoffMax caps one backoff wait. Default: 2 s.
	BackoffMax time.Duration
	// RetryAfterMax caps how long a 429's Retry-After is honoured; a longer
	// one waits this long. Default: 10 s.
	RetryAfterMax time.Duration
	// MaxResponse caps the response bytes read (and drained). Default: 64 KiB.
	MaxResponse int64
	// Client sends the requests. Default: a client of its own that does not
	// follow redirects (a redirect would carry the credentials elsewhere;
	// it is reported as ErrSMSUnavailable).
	Client *http.Client
	// Sleep waits d or until ctx is done, returning ctx's error in the
	// latter case. Tests inject a fake. Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives one line per failed Send: the error, with the
	// gateway's status and at most 128 bytes of its answer. The sender
	// never logs the number or the text itself. Default: slog.Default().
	Logger *slog.Logger
}

// HTTPSender sends SMS through an HTTP gateway. A 2xx response is delivery;
// network errors, timeouts, 429 and 5xx are retried with backoff, then
// reported as ErrSMSUnavailable; any other 4xx is ErrSMSRejected at once.
// A retry after a timeout may deliver a message twice, which is harmless for
// the one-time codes identity sends (the same code twice). Safe for
// concurrent use.
type HTTPSender struct {
	opts    HTTPSenderOptions
	url     string
	logURL  string // url's scheme and host only: the rest may hold credentials
	tmpl    *template.Template
	own     *http.Transport // the default client's transport, closed by Close
	sent    atomic.Uint64
	failed  atomic.Uint64
	retried atomic.Uint64
}

const defaultBodyTemplate = `{"to":{{json .To}},"text":{{json .Text}}}`

// NewHTTPSender validates opts, fills defaults and returns a sender. Invalid
// options return ErrSMSConfig.
func NewHTTPSender(opts HTTPSenderOptions) (*HTTPSender, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: gateway URL %q is not an http(s) URL", ErrSMSConfig, opts.URL)
	}
	if opts.Method == "" {
		opts.Method = http.MethodPost
	}
	if !httpguts.ValidHeaderFieldName(opts.Method) { // a method is a token, like a field name
		return nil, fmt.Errorf("%w: method %q", ErrSMSConfig, opts.Method)
	}
	if opts.HeaderName != "" && (!httpguts.ValidHeaderFieldName(opts.HeaderName) || !httpguts.ValidHeaderFieldValue(opts.HeaderValue)) {
		return nil, fmt.Errorf("%w: header %q is not a valid header", ErrSMSConfig, opts.HeaderName)
	}
	if opts.HeaderName == "" && opts.HeaderValue != "" {
		return nil, fmt.Errorf("%w: header value without a header name", ErrSMSConfig)
	}
	if opts.BodyTemplate == "" {
		opts.BodyTemplate = defaultBodyTemplate
	}
	tmpl, err := template.New("sms").Option("missingkey=error").Funcs(template.FuncMap{"json": jsonString}).Parse(opts.BodyTemplate)
	if err != nil {
		return nil, fmt.Errorf("%w: body template: %w", ErrSMSConfig, err)
	}
	if err := tmpl.Execute(io.Discard, SMS{To: "+10000000000", Text: "probe"}); err != nil {
		return nil, fmt.Errorf("%w: body template: %w", ErrSMSConfig, err)
	}
	if opts.ContentType == "" {
		opts.ContentType = "application/json"
	}
	if !httpguts.ValidHeaderFieldValue(opts.ContentType) {
		return nil, fmt.Errorf("%w: content type %q", ErrSMSConfig, opts.ContentType)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Retries == 0 {
		opts.Retries = 3
	} else if opts.Retries < 0 {
		opts.Retries = 0
	}
	if opts.BackoffBase == 0 {
		opts.BackoffBase = 100 * time.Millisecond
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = 2 * time.Second
	}
	if opts.RetryAfterMax == 0 {
		opts.RetryAfterMax = 10 * time.Second
	}
	if opts.MaxResponse == 0 {
		opts.MaxResponse = 64 << 10
	}
	if opts.Timeout < 0 || opts.BackoffBase < 0 || opts.BackoffMax < opts.BackoffBase || opts.RetryAfterMax < 0 || opts.MaxResponse < 0 {
		return nil, fmt.Errorf("%w: negative timeout, backoff or limit", ErrSMSConfig)
	}
	if opts.Sleep == nil {
		opts.Sleep = sleepCtx
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &HTTPSender{opts: opts, url: u.String(), logURL: u.Scheme + "://" + u.Host, tmpl: tmpl}
	if s.opts.Client == nil {
		s.own = http.DefaultTransport.(*http.Transport).Clone()
		s.opts.Client = &http.Client{
			Transport: s.own,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	return s, nil
}

// jsonString renders v as a JSON string literal (quotes included).
func jsonString(v string) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// attemptResult classifies one attempt.
type attemptResult int

const (
	attemptOK       attemptResult = iota
	attemptRetry                  // network error, timeout, 429, 5xx
	attemptRejected               // 4xx other than 429
	attemptFatal                  // anything else: retrying will not help
)

// Send delivers m, retrying where safe, within ctx.
func (s *HTTPSender) Send(ctx context.Context, m SMS) error {
	err := s.send(ctx, m)
	if err != nil {
		s.failed.Add(1)
		if !errors.Is(err, ErrSMSInvalid) {
			s.opts.Logger.Warn("identity: sms gateway send failed", "err", err)
		}
		return err
	}
	s.sent.Add(1)
	return nil
}

func (s *HTTPSender) send(ctx context.Context, m SMS) error {
	if err := m.validate(); err != nil {
		return err
	}
	var body bytes.Buffer
	if err := s.tmpl.Execute(&body, m); err != nil {
		return fmt.Errorf("%w: body template: %w", ErrSMSInvalid, err)
	}
	for attempt := 0; ; attempt++ {
		res, retryAfter, err := s.attempt(ctx, body.Bytes())
		switch res {
		case attemptOK:
			return nil
		case attemptRejected:
			return fmt.Errorf("%w: %w", ErrSMSRejected, err)
		case attemptFatal:
			return fmt.Errorf("%w: %w", ErrSMSUnavailable, err)
		}
		if attempt >= s.opts.Retries {
			return fmt.Errorf("%w: after %d attempts: %w", ErrSMSUnavailable, attempt+1, err)
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%w: %w (last: %w)", ErrSMSUnavailable, cerr, err)
		}
		wait := s.backoff(attempt)
		if retryAfter > 0 {
			wait = min(retryAfter, s.opts.RetryAfterMax)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return fmt.Errorf("%w: next attempt in %v is past the deadline (last: %w)", ErrSMSUnavailable, wait, err)
		}
		s.retried.Add(1)
		if serr := s.opts.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w: %w (last: %w)", ErrSMSUnavailable, serr, err)
		}
	}
}

// backoff returns the jittered wait before retry number attempt+1.
func (s *HTTPSender) backoff(attempt int) time.Duration {
	d := s.opts.BackoffBase
	for i := 0; i < attempt && d < s.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.opts.BackoffMax)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// attempt makes one request under the per-attempt timeout. It returns the
// Retry-After of a 429 (0 when absent or unparseable).
func (s *HTTPSender) attempt(ctx context.Context, body []byte) (attemptResult, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, s.opts.Method, s.url, bytes.NewReader(body))
	if err != nil {
		return attemptFatal, 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", s.opts.ContentType)
	if s.opts.HeaderName != "" {
		req.Header.Set(s.opts.HeaderName, s.opts.HeaderValue)
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		// The client's error quotes the URL, whose path or query may hold
		// the gateway's credentials (api_key=…); name only its host.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			ue.URL = s.logURL
		}
		return attemptRetry, 0, fmt.Errorf("gateway request: %w", err)
	}
	defer resp.Body.Close()
	// Drain (bounded) so the connection can be reused. A read error does not
	// change the outcome: the status line already said what happened.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, s.opts.MaxResponse))
	// The body goes into the error and the log: a gateway may echo the
	// number and the text, whose code is a secret.
	snippet = redactDigits(snippet)
	if len(snippet) > 128 {
		snippet = snippet[:128]
	}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return attemptOK, 0, nil
	case code == http.StatusTooManyRequests:
		return attemptRetry, parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
			fmt.Errorf("gateway status %d %q", code, snippet)
	case code >= 500:
		return attemptRetry, 0, fmt.Errorf("gateway status %d %q", code, snippet)
	case code >= 400:
		return attemptRejected, 0, fmt.Errorf("gateway status %d %q", code, snippet)
	default:
		return attemptFatal, 0, fmt.Errorf("gateway status %d (redirects are not followed)", code)
	}
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(24*time.Hour/time.Second) {
			n = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Stats returns the sender's counters.
func (s *HTTPSender) Stats() SenderStats {
	return SenderStats{Sent: s.sent.Load(), Failed: s.failed.Load(), Retried: s.retried.Load()}
}

// Close releases the idle connections of the sender's own client (not of a
// Client passed in Options). Sends may still be made after it; they dial anew.
func (s *HTTPSender) Close() {
	if s.own != nil {
		s.own.CloseIdleConnections()
	}
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// redactDigits replaces each run of digits and the characters numbers are
// written with ("+-(). ") that holds 4 digits or more, such as a phone
// number or a code, with "…"; shorter ones (a status, a count) stay.
func redactDigits(b []byte) []byte {
	isNum := func(c byte) bool { return c >= '0' && c <= '9' || strings.IndexByte("+-(). ", c) >= 0 }
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		if !isNum(b[i]) {
			out = append(out, b[i])
			i++
			continue
		}
		j, digits := i, 0
		for j < len(b) && isNum(b[j]) {
			if b[j] >= '0' && b[j] <= '9' {
				digits++
			}
			j++
		}
		run := b[i:j]
		if digits >= 4 {
			lead := len(run) - len(bytes.TrimLeft(run, " "))
			trail := len(run) - len(bytes.TrimRight(run, " "))
			out = append(out, run[:lead]...)
			out = append(out, "…"...)
			out = append(out, run[len(run)-trail:]...)
		} else {
			out = append(out, run...)
		}
		i = j
	}
	return out
}
