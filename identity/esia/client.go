package esia

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// TimestampLayout is the Go layout of ESIA's timestamp parameter,
// "yyyy.MM.dd HH:mm:ss Z".
const TimestampLayout = "2006.01.02 15:04:05 -0700"

// Config configures a Client.
type Config struct {
	// BaseURL is ESIA's address, e.g. https://esia.gosuslugi.ru. Required.
	BaseURL string
	// ClientID is the operator's mnemonic in ESIA. Required.
	ClientID string
	// Scopes are the scopes asked for, e.g. openid fullname birthdate
	// snils; openid is required.
	Scopes []string
	// RedirectURI is where ESIA sends the browser back. Required.
	RedirectURI string
	// Signer makes the client_secret. Required.
	Signer Signer
	// Issuer, when set, is the id_token's expected iss
	// ("http://esia.gosuslugi.ru/"). Default: not checked.
	Issuer string
	// HTTP sends the requests. Default: a client of its own that does not
	// follow redirects, with Timeout as its overall timeout.
	HTTP *http.Client
	// Timeout bounds each call, signing included. Default: 10 s.
	Timeout time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Metrics receives gonets_esia_requests_total and
	// gonets_esia_request_duration_seconds. Default: a set of its own.
	Metrics *metrics.Set
	// Log receives one line per failed call. Default: slog.Default().
	Log *slog.Logger
}

// Client speaks ESIA's authorisation-code flow for one operator. Safe for
// concurrent use.
type Client struct {
	c      Config
	scope  string // Scopes, space-separated
	base   string // BaseURL without a trailing slash
	ac     *callMetrics
	te     *callMetrics
	prns   *callMetrics
	retryW time.Duration // the first wait before retrying a person read
}

// Token is what the token endpoint granted.
type Token struct {
	// Access is the access token, sent as Bearer to the person endpoint.
	Access string
	// OID is the person's id in ESIA (the id_token's urn:esia:sbj_id).
	OID string
	// Expires is when the access token expires.
	Expires time.Time
	// Scopes are the scopes granted.
	Scopes []string
}

// New validates c, fills defaults and returns a client.
func New(c Config) (*Client, error) {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: base URL %q is not an http(s) URL", ErrConfig, c.BaseURL)
	}
	if c.ClientID == "" {
		return nil, fmt.Errorf("%w: no client id", ErrConfig)
	}
	if r, err := url.Parse(c.RedirectURI); err != nil || !r.IsAbs() || r.Host == "" {
		return nil, fmt.Errorf("%w: redirect URI %q is not an absolute URL", ErrConfig, c.RedirectURI)
	}
	if c.Signer == nil {
		return nil, fmt.Errorf("%w: no signer", ErrConfig)
	}
	openid := false
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return nil, fmt.Errorf("%w: scope %q", ErrConfig, s)
		}
		openid = openid || s == "openid"
	}
	if !openid {
		return nil, fmt.Errorf("%w: scopes %q lack openid", ErrConfig, c.Scopes)
	}
	c.Scopes = append([]string(nil), c.Scopes...)
	if c.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative timeout", ErrConfig)
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.HTTP == nil {
		c.HTTP = noRedirectClient()
		c.HTTP.Timeout = c.Timeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return &Client{
		c:      c,
		scope:  strings.Join(c.Scopes, " "),
		base:   strings.TrimRight(c.BaseURL, "/"),
		ac:     newCallMetrics(c.Metrics, "ac"),
		te:     newCallMetrics(c.Metrics, "te"),
		prns:   newCallMetrics(c.Metrics, "prns"),
		retryW: 200 * time.Millisecond,
	}, nil
}

// NewState returns a random UUID v4 (crypto/rand), ESIA's state.
func NewState() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidState reports whether s is a UUID, as ESIA's state must be.
func ValidState(s string) bool { return uuidRE.MatchString(s) }

// AuthURL returns the URL of ESIA's v2 authorisation endpoint that the
// browser is sent to, with state (NewState) and a client_secret signed now
// over client_id + scope + timestamp + state + redirect_uri.
func (c *Client) AuthURL(ctx context.Context, state string) (_ string, err error) {
	start := time.Now()
	defer func() { c.done(c.ac, start, err) }()
	if !ValidState(state) {
		return "", fmt.Errorf("%w: state %q is not a UUID", ErrConfig, state)
	}
	ctx, cancel := context.WithTimeout(ctx, c.c.Timeout)
	defer cancel()
	ts := c.c.Now().Format(TimestampLayout)
	sig, err := c.c.Signer.Sign(ctx, []byte(c.c.ClientID+c.scope+ts+state+c.c.RedirectURI))
	if err != nil {
		return "", fmt.Errorf("esia: auth URL: %w", err)
	}
	q := url.Values{
		"client_id":     {c.c.ClientID},
		"client_secret": {EncodeSecret(sig)},
		"redirect_uri":  {c.c.RedirectURI},
		"scope":         {c.scope},
		"response_type": {"code"},
		"state":         {state},
		"timestamp":     {ts},
		"access_type":   {"online"},
	}
	return c.base + "/aas/oauth2/v2/ac?" + q.Encode(), nil
}

// tokenResponse is the token endpoint's JSON.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
	ExpiresIn   int64  `json:"expires_in"`
	State       string `json:"state"`
	TokenType   string `json:"token_type"`
}

// oauthError is an OAuth error answer.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// Exchange trades code at the v3 token endpoint. state is the state the
// callback carried, which the caller has matched against the one it sent
// in AuthURL; it must be a UUID. The request itself carries a new state and
// a fresh timestamp, and a client_secret over client_id + scope + timestamp
// + state + redirect_uri + code; the answer must echo that new state. The
// code is not retried: it is single-use.
func (c *Client) Exchange(ctx context.Context, code, state string) (_ Token, err error) {
	start := time.Now()
	defer func() { c.done(c.te, start, err) }()
	if code == "" || !ValidState(state) {
		return Token{}, fmt.Errorf("%w: exchange: empty code or callback state %q not a UUID", ErrProtocol, state)
	}
	ctx, cancel := context.WithTimeout(ctx, c.c.Timeout)
	defer cancel()
	newState := NewState()
	now := c.c.Now()
	ts := now.Format(TimestampLayout)
	sig, err := c.c.Signer.Sign(ctx, []byte(c.c.ClientID+c.scope+ts+newState+c.c.RedirectURI+code))
	if err != nil {
		return Token{}, fmt.Errorf("esia: exchange: %w", err)
	}
	form := url.Values{
		"client_id":     {c.c.ClientID},
		"code":          {code},
		"grant_type":    {"authorization_code"},
		"client_secret": {EncodeSecret(sig)},
		"state":         {newState},
		"redirect_uri":  {c.c.RedirectURI},
		"scope":         {c.scope},
		"timestamp":     {ts},
		"token_type":    {"Bearer"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/aas/oauth2/v3/te", strings.NewReader(form.Encode()))
	if err != nil {
		return Token{}, fmt.Errorf("%w: exchange: %w", ErrConfig, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	status, body, err := c.do(req)
	if err != nil {
		return Token{}, fmt.Errorf("esia: exchange: %w", err)
	}
	if status != http.StatusOK {
		return Token{}, fmt.Errorf("esia: exchange: %w", statusError(status, body))
	}
	var r tokenResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Token{}, fmt.Errorf("%w: exchange: token answer: %w", ErrProtocol, err)
	}
	switch {
	case r.State != newState:
		return Token{}, fmt.Errorf("%w: exchange: answer's state %q is not the one sent", ErrProtocol, r.State)
	case r.AccessToken == "":
		return Token{}, fmt.Errorf("%w: exchange: no access_token", ErrProtocol)
	case !strings.EqualFold(r.TokenType, "Bearer"):
		return Token{}, fmt.Errorf("%w: exchange: token_type %q", ErrProtocol, r.TokenType)
	case r.ExpiresIn <= 0:
		return Token{}, fmt.Errorf("%w: exchange: expires_in %d", ErrProtocol, r.ExpiresIn)
	}
	oid, err := c.idTokenSubject(r.IDToken, now)
	if err != nil {
		return Token{}, fmt.Errorf("esia: exchange: %w", err)
	}
	return Token{
		Access:  r.AccessToken,
		OID:     oid,
		Expires: now.Add(time.Duration(r.ExpiresIn) * time.Second),
		Scopes:  append([]string(nil), c.c.Scopes...),
	}, nil
}

// idTokenSubject returns the urn:esia:sbj_id of the id_token jwt after
// checking its aud, exp and (when configured) iss. The signature (GOST) is
// not checked: the token came straight from the token endpoint over TLS
// (OpenID Connect Core §3.1.3.7).
func (c *Client) idTokenSubject(jwt string, now time.Time) (string, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("%w: id_token is not a JWS compact serialization", ErrProtocol)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", fmt.Errorf("%w: id_token payload: %w", ErrProtocol, err)
	}
	var claims struct {
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
		Exp json.Number     `json:"exp"`
		Sbj json.RawMessage `json:"urn:esia:sbj_id"`
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return "", fmt.Errorf("%w: id_token claims: %w", ErrProtocol, err)
	}
	if !audHas(claims.Aud, c.c.ClientID) {
		return "", fmt.Errorf("%w: id_token aud %s is not the client id", ErrProtocol, claims.Aud)
	}
	if c.c.Issuer != "" && claims.Iss != c.c.Issuer {
		return "", fmt.Errorf("%w: id_token iss %q, want %q", ErrProtocol, claims.Iss, c.c.Issuer)
	}
	exp, err := claims.Exp.Float64()
	if err != nil || now.After(time.Unix(int64(exp), 0)) {
		return "", fmt.Errorf("%w: id_token expired or without exp (%q)", ErrProtocol, claims.Exp)
	}
	// A JSON number, written as an integer: not a string, not a float.
	oid, err := strconv.ParseUint(string(claims.Sbj), 10, 63)
	if err != nil || oid == 0 {
		return "", fmt.Errorf("%w: id_token urn:esia:sbj_id %q is not a positive integer", ErrProtocol, claims.Sbj)
	}
	return strconv.FormatUint(oid, 10), nil
}

// audHas reports whether the aud claim raw (a string or an array of
// strings) names id.
func audHas(raw json.RawMessage, id string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == id
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, a := range many {
			if a == id {
				return true
			}
		}
	}
	return false
}

// do sends req and returns the status and the body (up to 1 MiB).
// Network errors and unreadable bodies are ErrUnavailable.
func (c *Client) do(req *http.Request) (int, []byte, error) {
	resp, err := c.c.HTTP.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			ue.URL = req.URL.Scheme + "://" + req.URL.Host + req.URL.Path // no query: it may hold a token
		}
		return 0, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body)
	if errors.Is(err, ErrProtocol) {
		return resp.StatusCode, nil, err
	}
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%w: read answer: %w", ErrUnavailable, err)
	}
	return resp.StatusCode, b, nil
}

// statusError returns the error of a non-200 answer: its OAuth error
// mapped onto the package's errors.
func statusError(status int, body []byte) error {
	var e oauthError
	_ = json.Unmarshal(body, &e)
	detail := fmt.Sprintf("status %d, error %q: %q", status, e.Error, snippet([]byte(e.Description)))
	if e.Error == "" {
		detail = fmt.Sprintf("status %d %q", status, snippet(body))
	}
	switch {
	case e.Error == "invalid_grant":
		return fmt.Errorf("%w: %s", ErrInvalidGrant, detail)
	case e.Error == "invalid_client" || e.Error == "unauthorized_client":
		return fmt.Errorf("%w: %s", ErrInvalidClient, detail)
	case e.Error == "access_denied":
		return fmt.Errorf("%w: %s", ErrDenied, detail)
	case status >= 500:
		return fmt.Errorf("%w: %s", ErrUnavailable, detail)
	}
	return fmt.Errorf("%w: %s", ErrProtocol, detail)
}

// done records a call on m and logs its failure.
func (c *Client) done(m *callMetrics, start time.Time, err error) {
	m.done(start, err)
	if err != nil && !errors.Is(err, context.Canceled) {
		c.c.Log.Warn("esia: call failed", "endpoint", m.endpoint, "err", err)
	}
}
