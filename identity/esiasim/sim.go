package esiasim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gonets/gonets/identity/esia"
)

// Issuer is the iss of the simulator's id_tokens.
const Issuer = "http://esia-sim/"

// Options configures a Sim.
type Options struct {
	// ClientID is the operator's mnemonic the simulator knows. Required.
	ClientID string
	// RedirectURIs are the allowed redirect URIs (exact match). Required.
	RedirectURIs []string
	// Trusted is the operator's certificate: every client_secret must
	// verify under it. Required.
	Trusted *x509.Certificate
	// Person is the test person the consent page auto-approves; its OID
	// must be a positive integer. Required.
	Person esia.Person
	// Deny makes the consent page refuse (error=access_denied).
	Deny bool
	// MaxSkew is how far a request's timestamp may be from now.
	// Default: 5 min.
	MaxSkew time.Duration
	// CodeTTL is how long a code may be exchanged. Default: 5 min.
	CodeTTL time.Duration
	// TokenTTL is how long an access token is taken. Default: 1 h.
	TokenTTL time.Duration
	// MaxEntries caps the codes and, apart, the tokens kept; when full
	// of unexpired ones, new ones are refused with 503. Default: 10,000.
	MaxEntries int
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Log receives one line per request refused. Default: slog.Default().
	Log *slog.Logger
}

// Sim is the simulator: an http.Handler serving GET /aas/oauth2/v2/ac,
// POST /aas/oauth2/v3/te and GET /rs/prns/{oid}.
type Sim struct {
	opts    Options
	oid     int64
	idKey   *ecdsa.PrivateKey
	mux     *http.ServeMux
	allowed map[string]bool // RedirectURIs

	mu      sync.Mutex // guards the following
	codes   map[string]*grant
	tokens  map[string]*access
	refused map[string]int
	issued  int
}

// grant is an issued code.
type grant struct {
	redirectURI string
	scopes      []string
	expires     time.Time
	used        bool
	tokens      []string // the access tokens its exchange issued
}

// access is an issued access token.
type access struct {
	oid     string
	scopes  []string
	expires time.Time
}

// knownScopes are the scopes the simulator serves.
var knownScopes = map[string]bool{"openid": true, "fullname": true, "birthdate": true, "snils": true, "student": true, "pensioner": true}

// New validates o, fills defaults and returns a simulator.
func New(o Options) (*Sim, error) {
	switch {
	case o.ClientID == "":
		return nil, fmt.Errorf("esiasim: no client id")
	case len(o.RedirectURIs) == 0:
		return nil, fmt.Errorf("esiasim: no redirect URIs")
	case o.Trusted == nil:
		return nil, fmt.Errorf("esiasim: no trusted certificate")
	case o.MaxSkew < 0 || o.CodeTTL < 0 || o.TokenTTL < 0 || o.MaxEntries < 0:
		return nil, fmt.Errorf("esiasim: negative skew, TTL or limit")
	}
	oid, err := strconv.ParseInt(o.Person.OID, 10, 64)
	if err != nil || oid <= 0 {
		return nil, fmt.Errorf("esiasim: person oid %q is not a positive integer", o.Person.OID)
	}
	if o.Person.SNILS != "" && !esia.ValidSNILS(o.Person.SNILS) {
		return nil, fmt.Errorf("esiasim: person snils %q is not a valid SNILS", o.Person.SNILS)
	}
	if o.Person.BirthDate != "" && o.Person.BirthDateISO() == "" {
		return nil, fmt.Errorf("esiasim: person birthDate %q is not dd.mm.yyyy", o.Person.BirthDate)
	}
	allowed := make(map[string]bool, len(o.RedirectURIs))
	for _, u := range o.RedirectURIs {
		if p, err := url.Parse(u); err != nil || !p.IsAbs() || p.Host == "" {
			return nil, fmt.Errorf("esiasim: redirect URI %q is not an absolute URL", u)
		}
		allowed[u] = true
	}
	o.RedirectURIs = slices.Clone(o.RedirectURIs)
	if o.MaxSkew == 0 {
		o.MaxSkew = 5 * time.Minute
	}
	if o.CodeTTL == 0 {
		o.CodeTTL = 5 * time.Minute
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = time.Hour
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("esiasim: id_token key: %w", err)
	}
	s := &Sim{opts: o, oid: oid, idKey: key, allowed: allowed,
		codes: make(map[string]*grant), tokens: make(map[string]*access), refused: make(map[string]int)}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /aas/oauth2/v2/ac", s.authorize)
	s.mux.HandleFunc("POST /aas/oauth2/v3/te", s.token)
	s.mux.HandleFunc("GET /rs/prns/{oid}", s.person)
	return s, nil
}

// ServeHTTP serves the simulated endpoints.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// IDTokenKey returns the public key the simulator's id_tokens verify
// under (ES256).
func (s *Sim) IDTokenKey() *ecdsa.PublicKey { return &s.idKey.PublicKey }

// Codes returns how many codes are kept (issued, not yet evicted).
func (s *Sim) Codes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.codes)
}

// Tokens returns how many access tokens are taken (not revoked, not yet
// evicted).
func (s *Sim) Tokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens)
}

// Issued returns how many codes were issued in all.
func (s *Sim) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// Refused returns the counts of refused requests by reason: client_id,
// redirect_uri, response_type, scope, state, timestamp, client_secret,
// grant_type, token_type, code_unknown, code_expired, code_reused,
// code_redirect, code_scope, token, oid, full and denied (a refusal on the
// consent page).
func (s *Sim) Refused() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.refused)
}

// refuse counts reason, logs it and answers status with an OAuth error.
func (s *Sim) refuse(w http.ResponseWriter, r *http.Request, status int, reason, code, desc string) {
	s.mu.Lock()
	s.refused[reason]++
	s.mu.Unlock()
	s.opts.Log.Info("esiasim: refused", "path", r.URL.Path, "reason", reason, "error", code, "detail", desc)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// checkClient checks the parameters both endpoints share: client_id,
// redirect_uri (allowed), scope, state, timestamp, and the client_secret
// over client_id + scope + timestamp + state + redirect_uri + extra. It
// returns the reason, the OAuth error and a description of a refusal, or
// reason "" and the scopes.
func (s *Sim) checkClient(q url.Values, extra string) (reason, code, desc string, scopes []string) {
	if q.Get("client_id") != s.opts.ClientID {
		return "client_id", "invalid_client", fmt.Sprintf("unknown client_id %q", q.Get("client_id")), nil
	}
	redirect := q.Get("redirect_uri")
	if !s.allowed[redirect] {
		return "redirect_uri", "invalid_request", fmt.Sprintf("redirect_uri %q is not registered for the client", redirect), nil
	}
	scope := q.Get("scope")
	scopes = strings.Fields(scope)
	if !slices.Contains(scopes, "openid") {
		return "scope", "invalid_scope", "scope lacks openid", nil
	}
	for _, sc := range scopes {
		if !knownScopes[sc] {
			return "scope", "invalid_scope", fmt.Sprintf("unknown scope %q", sc), nil
		}
	}
	if !esia.ValidState(q.Get("state")) {
		return "state", "invalid_request", "state is not a UUID", nil
	}
	ts := q.Get("timestamp")
	t, err := time.Parse(esia.TimestampLayout, ts)
	if err != nil {
		return "timestamp", "invalid_request", fmt.Sprintf("timestamp %q is not yyyy.MM.dd HH:mm:ss Z", ts), nil
	}
	if d := s.opts.Now().Sub(t); d > s.opts.MaxSkew || d < -s.opts.MaxSkew {
		return "timestamp", "invalid_request", fmt.Sprintf("timestamp %q is %v from now, more than %v", ts, d.Round(time.Second), s.opts.MaxSkew), nil
	}
	data := q.Get("client_id") + scope + ts + q.Get("state") + redirect + extra
	if err := esia.VerifySecret(q.Get("client_secret"), []byte(data), s.opts.Trusted); err != nil {
		return "client_secret", "invalid_client", err.Error(), nil
	}
	return "", "", "", scopes
}

// authorize is GET /aas/oauth2/v2/ac: checks the request and, as the user
// would on the consent page, approves it (a redirect with a code) or, with
// Deny, refuses it (error=access_denied). A request that does not check out
// gets 400 and is not redirected: its redirect_uri is not trusted.
func (s *Sim) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" {
		s.refuse(w, r, http.StatusBadRequest, "response_type", "unsupported_response_type", "response_type must be code")
		return
	}
	if a := q.Get("access_type"); a != "" && a != "online" && a != "offline" {
		s.refuse(w, r, http.StatusBadRequest, "access_type", "invalid_request", "access_type must be online or offline")
		return
	}
	reason, code, desc, scopes := s.checkClient(q, "")
	if reason != "" {
		s.refuse(w, r, http.StatusBadRequest, reason, code, desc)
		return
	}
	redirect, _ := url.Parse(q.Get("redirect_uri")) // checkClient checked it is a registered one
	back := redirect.Query()
	back.Set("state", q.Get("state"))
	if s.opts.Deny {
		s.mu.Lock()
		s.refused["denied"]++
		s.mu.Unlock()
		back.Set("error", "access_denied")
		back.Set("error_description", "ESIA-007004: the user refused access")
	} else {
		c := randomToken()
		now := s.opts.Now()
		s.mu.Lock()
		full := !room(s.codes, s.opts.MaxEntries, func(g *grant) bool { return now.After(g.expires) })
		if !full {
			s.codes[c] = &grant{redirectURI: q.Get("redirect_uri"), scopes: scopes, expires: now.Add(s.opts.CodeTTL)}
			s.issued++
		}
		s.mu.Unlock()
		if full {
			s.refuse(w, r, http.StatusServiceUnavailable, "full", "temporarily_unavailable", "too many codes outstanding")
			return
		}
		back.Set("code", c)
	}
	redirect.RawQuery = back.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// room reports whether m has room for one more entry under max, evicting
// the expired ones when it is full.
func room[V any](m map[string]V, max int, expired func(V) bool) bool {
	if len(m) < max {
		return true
	}
	maps.DeleteFunc(m, func(_ string, v V) bool { return expired(v) })
	return len(m) < max
}

// maxForm caps a token request's body.
const maxForm = 64 << 10

// token is POST /aas/oauth2/v3/te: the code exchange.
func (s *Sim) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.refuse(w, r, http.StatusBadRequest, "form", "invalid_request", "form: "+err.Error())
		return
	}
	q := r.PostForm
	if q.Get("grant_type") != "authorization_code" {
		s.refuse(w, r, http.StatusBadRequest, "grant_type", "unsupported_grant_type", "grant_type must be authorization_code")
		return
	}
	if q.Get("token_type") != "Bearer" {
		s.refuse(w, r, http.StatusBadRequest, "token_type", "invalid_request", "token_type must be Bearer")
		return
	}
	c := q.Get("code")
	reason, code, desc, scopes := s.checkClient(q, c)
	if reason != "" {
		s.refuse(w, r, http.StatusBadRequest, reason, code, desc)
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	g := s.codes[c]
	switch {
	case g == nil:
		reason, desc = "code_unknown", "unknown code"
	case now.After(g.expires):
		delete(s.codes, c)
		reason, desc = "code_expired", "the code expired"
	case g.used:
		for _, t := range g.tokens {
			delete(s.tokens, t)
		}
		g.tokens = nil
		reason, desc = "code_reused", "the code was already used; the tokens it got are revoked"
	case g.redirectURI != q.Get("redirect_uri"):
		reason, desc = "code_redirect", "redirect_uri is not the one the code was issued for"
	case !slices.Equal(g.scopes, scopes):
		s.mu.Unlock()
		s.refuse(w, r, http.StatusBadRequest, "code_scope", "invalid_scope", "scope is not the one the code was issued for")
		return
	case !room(s.tokens, s.opts.MaxEntries, func(a *access) bool { return now.After(a.expires) }):
		s.mu.Unlock()
		s.refuse(w, r, http.StatusServiceUnavailable, "full", "temporarily_unavailable", "too many tokens outstanding")
		return
	}
	if reason != "" {
		s.mu.Unlock()
		s.refuse(w, r, http.StatusBadRequest, reason, "invalid_grant", desc)
		return
	}
	at := randomToken()
	g.used = true
	g.tokens = append(g.tokens, at)
	s.tokens[at] = &access{oid: s.opts.Person.OID, scopes: g.scopes, expires: now.Add(s.opts.TokenTTL)}
	s.mu.Unlock()

	idToken, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss":             Issuer,
		"sub":             s.opts.Person.OID,
		"aud":             s.opts.ClientID,
		"iat":             now.Unix(),
		"nbf":             now.Unix(),
		"exp":             now.Add(s.opts.TokenTTL).Unix(),
		"auth_time":       now.Unix(),
		"amr":             "PWD",
		"urn:esia:sbj_id": s.oid,
	}).SignedString(s.idKey)
	if err != nil {
		s.opts.Log.Error("esiasim: sign id_token", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": at,
		"id_token":     idToken,
		"expires_in":   int64(s.opts.TokenTTL / time.Second),
		"state":        q.Get("state"),
		"token_type":   "Bearer",
	})
}

// person is GET /rs/prns/{oid}: the person record, as far as the token's
// scopes cover it.
func (s *Sim) person(w http.ResponseWriter, r *http.Request) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	now := s.opts.Now()
	s.mu.Lock()
	a := s.tokens[bearer]
	if a != nil && now.After(a.expires) {
		delete(s.tokens, bearer)
		a = nil
	}
	s.mu.Unlock()
	if !ok || a == nil {
		s.refuse(w, r, http.StatusUnauthorized, "token", "invalid_token", "unknown, expired or revoked access token")
		return
	}
	if r.PathValue("oid") != a.oid {
		s.refuse(w, r, http.StatusForbidden, "oid", "insufficient_scope", "the token is another person's")
		return
	}
	p := s.opts.Person
	rec := map[string]any{"trusted": p.Trusted}
	for _, sc := range a.scopes {
		switch sc {
		case "fullname":
			rec["firstName"], rec["lastName"], rec["middleName"] = p.FirstName, p.LastName, p.MiddleName
		case "birthdate":
			rec["birthDate"] = p.BirthDate
		case "snils":
			rec["snils"] = p.SNILS
		case "student":
			if p.Student != nil {
				rec["student"] = *p.Student
			}
		case "pensioner":
			if p.Pensioner != nil {
				rec["pensioner"] = *p.Pensioner
			}
		}
	}
	writeJSON(w, http.StatusOK, rec)
}

// randomToken returns 32 random bytes, URL-safe base64.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
