package tools

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/digitalid"
	"github.com/gonets/gonets/identity/esia"
	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/signing/signsim"
	"github.com/gonets/gonets/identity/statesvc"
	"github.com/gonets/gonets/identity/status"
	"github.com/gonets/gonets/identity/token"
)

// stateConfig is the [state] section: the state services (identity/statesvc)
// joined to the accounts. Digital IDs need nothing outside the node and are
// on by default; ESIA linking, document signing and application statuses
// name an outside system each and are off until configured.
type stateConfig struct {
	// PublicURL is the node's public URL: the digital IDs' iss, the aud
	// of a credential request's proof and the base of ESIA's redirect
	// URI. Default: https://127.0.0.1:<the public listener's port>, where
	// `gonets sim esia` and the CLI's --issuer look by default.
	PublicURL string `toml:"public_url"`
	// DigitalID issues digital IDs to users with a linked account; on
	// only while the accounts and the public listener (which serves the
	// JWKS) are.
	DigitalID     bool               `toml:"digital_id"`
	CredentialTTL duration           `toml:"credential_ttl"`
	ESIA          stateESIAConfig    `toml:"esia"`
	Signing       stateSigningConfig `toml:"signing"`
	Status        stateStatusConfig  `toml:"status"`
}

// stateESIAConfig is [state.esia]: linking a Gosuslugi account (esia.Config).
type stateESIAConfig struct {
	Enabled  bool     `toml:"enabled"`
	BaseURL  string   `toml:"base_url"`
	ClientID string   `toml:"client_id"`
	Scopes   []string `toml:"scopes"`
	// RedirectURI is ESIA's way back; default PublicURL + CallbackPath.
	RedirectURI string   `toml:"redirect_uri"`
	LinkTTL     duration `toml:"link_ttl"`
	// AppRedirect is the app's deep link the callback sends the browser
	// to with the code that finishes a link; default "gonets://link".
	AppRedirect string `toml:"app_redirect"`
	// Signer makes the client_secret: "dev" (the key pair in DevKeyDir,
	// as gonets sim esia writes it) or "http" (SignerHTTP).
	Signer     string                `toml:"signer"`
	DevKeyDir  string                `toml:"dev_key_dir"`
	SignerHTTP stateSignerHTTPConfig `toml:"signer_http"`
}

// stateSignerHTTPConfig is [state.esia.signer_http], esia.HTTPSignerOptions.
type stateSignerHTTPConfig struct {
	URL         string   `toml:"url"`
	HeaderName  string   `toml:"header_name"`
	HeaderValue string   `toml:"header_value"`
	Timeout     duration `toml:"timeout"`
}

// stateSigningConfig is [state.signing]: document signing.
type stateSigningConfig struct {
	// Provider is "" (off), "http" (HTTP) or "sim" (an in-process
	// simulator that approves every request: demo only).
	Provider string          `toml:"provider"`
	Expiry   duration        `toml:"expiry"`
	HTTP     stateHTTPConfig `toml:"http"`
	// Roots is a PEM file of the CAs a signature's certificate must
	// chain to; "" checks only the signature over the document.
	Roots string `toml:"roots"`
	// RequireSNILS refuses a signature whose certificate does not name
	// the signer's SNILS (a qualified certificate does).
	RequireSNILS bool `toml:"require_snils"`
}

// stateStatusConfig is [state.status]: application statuses.
type stateStatusConfig struct {
	// Source is "" (off) or "http" (HTTP).
	Source      string          `toml:"source"`
	Interval    duration        `toml:"interval"`
	Concurrency int             `toml:"concurrency"`
	HTTP        stateHTTPConfig `toml:"http"`
}

// stateHTTPConfig is an outside API's address and credentials:
// [state.signing.http] and [state.status.http].
type stateHTTPConfig struct {
	BaseURL     string   `toml:"base_url"`
	HeaderName  string   `toml:"header_name"`
	HeaderValue string   `toml:"header_value"`
	Timeout     duration `toml:"timeout"`
}

// Defaults of [state].
const (
	defaultESIABaseURL = "https://esia.gosuslugi.ru"
	defaultESIASigner  = "dev"
)

func defaultState() stateConfig {
	return stateConfig{
		DigitalID:     true,
		CredentialTTL: duration(30 * 24 * time.Hour),
		ESIA: stateESIAConfig{
			BaseURL:    defaultESIABaseURL,
			Scopes:     []string{"openid", "fullname", "birthdate", "snils"},
			LinkTTL:    duration(10 * time.Minute),
			Signer:     defaultESIASigner,
			SignerHTTP: stateSignerHTTPConfig{Timeout: duration(5 * time.Second)},
		},
		Signing: stateSigningConfig{Expiry: duration(24 * time.Hour), HTTP: stateHTTPConfig{Timeout: duration(10 * time.Second)}},
		Status:  stateStatusConfig{Interval: duration(5 * time.Minute), Concurrency: 8, HTTP: stateHTTPConfig{Timeout: duration(10 * time.Second)}},
	}
}

// validateState checks [state] as far as it can without files or the
// network.
func (c *config) validateState() error {
	s := &c.State
	for _, d := range []struct {
		key string
		v   duration
	}{
		{"state.credential_ttl", s.CredentialTTL},
		{"state.esia.link_ttl", s.ESIA.LinkTTL},
		{"state.esia.signer_http.timeout", s.ESIA.SignerHTTP.Timeout},
		{"state.signing.expiry", s.Signing.Expiry},
		{"state.signing.http.timeout", s.Signing.HTTP.Timeout},
		{"state.status.interval", s.Status.Interval},
		{"state.status.http.timeout", s.Status.HTTP.Timeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s %v is negative", d.key, time.Duration(d.v))
		}
	}
	if s.Status.Concurrency < 0 {
		return fmt.Errorf("state.status.concurrency %d is negative", s.Status.Concurrency)
	}
	if s.PublicURL != "" {
		if err := checkBaseURL(s.PublicURL); err != nil {
			return fmt.Errorf("state.public_url: %w", err)
		}
	}
	if err := c.validateStateESIA(); err != nil {
		return err
	}
	switch p := s.Signing.Provider; p {
	case "", "sim":
	case "http":
		if err := checkBaseURL(s.Signing.HTTP.BaseURL); err != nil {
			return fmt.Errorf(`state.signing.provider = "http" needs state.signing.http.base_url: %w`, err)
		}
	default:
		return fmt.Errorf(`state.signing.provider %q: want "" (off), "http" or "sim"`, p)
	}
	switch src := s.Status.Source; src {
	case "":
	case "http":
		if err := checkBaseURL(s.Status.HTTP.BaseURL); err != nil {
			return fmt.Errorf(`state.status.source = "http" needs state.status.http.base_url: %w`, err)
		}
	default:
		return fmt.Errorf(`state.status.source %q: want "" (off) or "http"`, src)
	}
	if !c.Identity.Enabled {
		for _, on := range []struct {
			key string
			on  bool
		}{
			{"state.esia.enabled", s.ESIA.Enabled},
			{"state.signing.provider", s.Signing.Provider != ""},
			{"state.status.source", s.Status.Source != ""},
		} {
			if on.on {
				return fmt.Errorf("%s needs identity.enabled: linked state accounts live in the accounts store", on.key)
			}
		}
	}
	return nil
}

// validateStateESIA checks [state.esia].
func (c *config) validateStateESIA() error {
	e := &c.State.ESIA
	if !e.Enabled {
		return nil
	}
	switch {
	case e.ClientID == "":
		return errors.New("state.esia.enabled needs state.esia.client_id, the operator's mnemonic registered with ESIA")
	case e.BaseURL == "":
		return errors.New("state.esia.enabled needs state.esia.base_url")
	case !slices.Contains(e.Scopes, "openid"):
		return fmt.Errorf("state.esia.scopes %q: openid is required", e.Scopes)
	case c.publicAddr() == "":
		return errors.New(`state.esia.enabled needs the public listener (node.public_addr is "off"): ESIA sends the browser back to it`)
	}
	if err := checkBaseURL(e.BaseURL); err != nil {
		return fmt.Errorf("state.esia.base_url: %w", err)
	}
	if e.RedirectURI != "" {
		if u, err := url.Parse(e.RedirectURI); err != nil || !u.IsAbs() || u.Host == "" {
			return fmt.Errorf("state.esia.redirect_uri %q is not an absolute URL", e.RedirectURI)
		}
	}
	switch e.Signer {
	case "dev":
	case "http":
		if err := checkBaseURL(e.SignerHTTP.URL); err != nil {
			return fmt.Errorf(`state.esia.signer = "http" needs state.esia.signer_http.url: %w`, err)
		}
	default:
		return fmt.Errorf(`state.esia.signer %q: want "dev" or "http"`, e.Signer)
	}
	return nil
}

// checkBaseURL checks that u is an absolute http(s) URL without a query
// or fragment.
func checkBaseURL(u string) error {
	p, err := url.Parse(u)
	switch {
	case u == "":
		return errors.New("empty")
	case err != nil:
		return err
	case p.Scheme != "http" && p.Scheme != "https" || p.Host == "":
		return fmt.Errorf("%q is not an http or https URL", u)
	case p.RawQuery != "" || p.Fragment != "":
		return fmt.Errorf("%q has a query or fragment", u)
	}
	return nil
}

// stateNode is the node's state services and the adapters it opened.
type stateNode struct {
	svc       *statesvc.Services
	publicURL string
	digitalID bool   // digital IDs are issued and the JWKS served
	esia      string // ESIA's base URL; "" when linking is off
	signing   string // the signing provider's kind; "" when off
	status    string // the status source's kind; "" when off

	signHTTP   *signing.HTTPProvider // nil unless signing is "http"
	statusHTTP *status.HTTPSource    // nil unless statuses are "http"
	log        *slog.Logger

	cancel context.CancelFunc // stops Run; nil before start
	done   chan struct{}      // closed when Run has returned
}

// stateParts reports which state services cfg turns on: digital IDs only
// with the accounts and the public listener, the rest as configured.
func (c *config) stateParts() (digitalID, esiaOn bool, signingOn, statusOn string) {
	s := &c.State
	if !c.Identity.Enabled {
		return false, false, "", ""
	}
	return s.DigitalID && c.publicAddr() != "", s.ESIA.Enabled, s.Signing.Provider, s.Status.Source
}

// startState builds the state services cfg turns on over accounts; nil
// when none is. publicPort is the public listener's bound port, for the
// default public URL; keys sign the digital IDs.
func startState(cfg config, dataDir, publicPort string, accounts *identity.Accounts, keys *token.Keyring,
	log *slog.Logger, set *metrics.Set) (_ *stateNode, err error) {
	digital, esiaOn, signingOn, statusOn := cfg.stateParts()
	if !digital && !esiaOn && signingOn == "" && statusOn == "" {
		if cfg.Identity.Enabled && cfg.State.DigitalID {
			log.Info("state services off: digital IDs need the public listener (node.public_addr is \"off\")")
		}
		return nil, nil
	}
	sc := cfg.State
	sn := &stateNode{publicURL: strings.TrimRight(sc.PublicURL, "/"), digitalID: digital, signing: signingOn, status: statusOn, log: log}
	if sn.publicURL == "" && publicPort != "" {
		sn.publicURL = "https://" + net.JoinHostPort("127.0.0.1", publicPort)
	}
	defer func() {
		if err != nil {
			sn.close()
		}
	}()
	var signingRoots *x509.CertPool
	if sc.Signing.Provider != "" && sc.Signing.Roots != "" {
		pem, err := os.ReadFile(sc.Signing.Roots)
		if err != nil {
			return nil, fmt.Errorf("state.signing.roots: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("state.signing.roots: %s holds no PEM certificate", sc.Signing.Roots)
		}
		signingRoots = roots
	}
	opts := statesvc.Options{
		SigningRoots:        signingRoots,
		Accounts:            accounts,
		IssuerURL:           sn.publicURL,
		CredentialTTL:       time.Duration(sc.CredentialTTL),
		LinkTTL:             time.Duration(sc.ESIA.LinkTTL),
		AppRedirect:         sc.ESIA.AppRedirect,
		SigningExpiry:       time.Duration(sc.Signing.Expiry),
		SigningRequireSNILS: sc.Signing.RequireSNILS,
		StatusInterval:      time.Duration(sc.Status.Interval),
		StatusConcurrency:   sc.Status.Concurrency,
		Log:                 log,
		Metrics:             set,
	}
	if digital {
		opts.Keys = keys.Current
	}
	if esiaOn {
		if opts.ESIA, err = newESIAClient(sc.ESIA, sn.publicURL, dataDir, log, set); err != nil {
			return nil, err
		}
		sn.esia = sc.ESIA.BaseURL
	}
	switch signingOn {
	case "http":
		h := sc.Signing.HTTP
		if sn.signHTTP, err = signing.NewHTTPProvider(signing.HTTPOptions{BaseURL: h.BaseURL, AuthHeader: h.HeaderName,
			AuthValue: h.HeaderValue, Timeout: time.Duration(h.Timeout), Metrics: set, Log: log}); err != nil {
			return nil, fmt.Errorf("state.signing.http: %w", err)
		}
		opts.Signing = sn.signHTTP
	case "sim":
		sim, err := signsim.New(signsim.Options{})
		if err != nil {
			return nil, fmt.Errorf("state.signing: %w", err)
		}
		opts.Signing = sim.Provider()
		log.Warn(`state.signing.provider = "sim": every signing request is approved by a simulator, for demos only`)
	}
	if statusOn == "http" {
		h := sc.Status.HTTP
		if sn.statusHTTP, err = status.NewHTTPSource(status.HTTPOptions{BaseURL: h.BaseURL, AuthHeader: h.HeaderName,
			AuthValue: h.HeaderValue, Timeout: time.Duration(h.Timeout), Metrics: set, Log: log}); err != nil {
			return nil, fmt.Errorf("state.status.http: %w", err)
		}
		opts.Status = sn.statusHTTP
	}
	if sn.svc, err = statesvc.New(opts); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	log.Info("state services", "on", sn.describe(), "public_url", sn.publicURL)
	return sn, nil
}

// newESIAClient returns the ESIA client of [state.esia].
func newESIAClient(e stateESIAConfig, publicURL, dataDir string, log *slog.Logger, set *metrics.Set) (*esia.Client, error) {
	var signer esia.Signer
	switch e.Signer {
	case "http":
		h := e.SignerHTTP
		s, err := esia.NewHTTPSigner(esia.HTTPSignerOptions{URL: h.URL, AuthHeader: h.HeaderName, AuthValue: h.HeaderValue,
			Timeout: time.Duration(h.Timeout), Metrics: set})
		if err != nil {
			return nil, fmt.Errorf("state.esia.signer_http: %w", err)
		}
		signer = s
	default:
		dir := cmpPath(e.DevKeyDir, dataDir, "")
		cert, key, err := esia.LoadDevKey(dir)
		if err != nil {
			return nil, fmt.Errorf("state.esia.signer = \"dev\" wants the dev key pair in %s (gonets sim esia --dir %s writes it): %w", dir, dir, err)
		}
		signer = esia.NewDevSigner(cert, key)
		log.Warn(`state.esia.signer = "dev": client secrets are signed with the simulator's dev key, which only the simulator trusts`, "dir", dir)
	}
	redirect := e.RedirectURI
	if redirect == "" {
		redirect = publicURL + statesvc.CallbackPath
	}
	c, err := esia.New(esia.Config{BaseURL: e.BaseURL, ClientID: e.ClientID, Scopes: e.Scopes, RedirectURI: redirect,
		Signer: signer, Metrics: set, Log: log})
	if err != nil {
		return nil, fmt.Errorf("state.esia: %w", err)
	}
	return c, nil
}

// checkState builds the outside systems' clients of [state] as startState
// would, for --check-config: the ESIA dev key pair must load, the URLs
// and credentials' headers must be valid. It opens no connection.
func checkState(cfg config) error {
	_, esiaOn, signingOn, statusOn := cfg.stateParts()
	set, log := metrics.NewSet(), slog.New(slog.DiscardHandler)
	if esiaOn {
		if _, err := newESIAClient(cfg.State.ESIA, "https://localhost", cfg.Node.DataDir, log, set); err != nil {
			return err
		}
	}
	if signingOn == "http" {
		h := cfg.State.Signing.HTTP
		p, err := signing.NewHTTPProvider(signing.HTTPOptions{BaseURL: h.BaseURL, AuthHeader: h.HeaderName,
			AuthValue: h.HeaderValue, Timeout: time.Duration(h.Timeout), Metrics: set, Log: log})
		if err != nil {
			return fmt.Errorf("state.signing.http: %w", err)
		}
		p.Close()
	}
	if statusOn == "http" {
		h := cfg.State.Status.HTTP
		s, err := status.NewHTTPSource(status.HTTPOptions{BaseURL: h.BaseURL, AuthHeader: h.HeaderName,
			AuthValue: h.HeaderValue, Timeout: time.Duration(h.Timeout), Metrics: set, Log: log})
		if err != nil {
			return fmt.Errorf("state.status.http: %w", err)
		}
		s.Close()
	}
	return nil
}

// describe names the services that are on, for the log and the banner.
func (sn *stateNode) describe() string {
	var on []string
	if sn.digitalID {
		on = append(on, "digital IDs")
	}
	if sn.esia != "" {
		on = append(on, "Gosuslugi link via "+sn.esia)
	}
	if sn.signing != "" {
		on = append(on, "signing ("+sn.signing+")")
	}
	if sn.status != "" {
		on = append(on, "application statuses ("+sn.status+")")
	}
	return strings.Join(on, ", ")
}

// start attaches the services to the broker they post through and runs
// them until stop.
func (sn *stateNode) start(p statesvc.Poster) {
	if sn == nil {
		return
	}
	sn.svc.Attach(p)
	ctx, cancel := context.WithCancel(context.Background())
	sn.cancel, sn.done = cancel, make(chan struct{})
	go func() {
		defer close(sn.done)
		if err := sn.svc.Run(ctx); err != nil {
			sn.log.Error("state services stopped", "err", err)
		}
	}()
}

// stop stops the services' loops and waits for them until deadline;
// before the broker they post through shuts down.
func (sn *stateNode) stop(deadline time.Time) {
	if sn == nil || sn.cancel == nil {
		return
	}
	sn.cancel()
	t := time.NewTimer(max(time.Until(deadline), 0))
	defer t.Stop()
	select {
	case <-sn.done:
	case <-t.C:
		sn.log.Warn("the state services did not stop in time; leaving them to the exit")
	}
}

// close releases the adapters' connections; after stop.
func (sn *stateNode) close() {
	if sn == nil {
		return
	}
	if sn.signHTTP != nil {
		sn.signHTTP.Close()
	}
	if sn.statusHTTP != nil {
		sn.statusHTTP.Close()
	}
}

// routes adds the public listener's state-service paths to mux: the JWKS
// while digital IDs are on, ESIA's callback while linking is.
func (sn *stateNode) routes(mux *http.ServeMux, keys *token.Keyring) {
	if sn == nil {
		return
	}
	if sn.digitalID {
		mux.Handle("GET "+jwksPath, jwksHandler(keys, sn.log))
	}
	if sn.esia != "" {
		mux.Handle(statesvc.CallbackPath, sn.svc.Callback())
	}
}

// jwksPath is where verifiers fetch the keys digital IDs are signed with.
const jwksPath = "/.well-known/jwks.json"

// jwksHandler serves the keyring's public keys as a JWKS, read at each
// request so that a rotation shows at once.
func jwksHandler(keys *token.Keyring, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pubs := keys.PublicKeys()
		byKid := make(map[string]ed25519.PublicKey, len(pubs))
		for _, k := range pubs {
			byKid[token.KeyID(k)] = k
		}
		b, err := digitalid.JWKS(byKid)
		if err != nil {
			log.Error("jwks", "err", err)
			publicError(w, http.StatusInternalServerError, "internal", "the key set is unavailable")
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "max-age=300")
		w.Write(b)
	})
}

// printState writes the banner's line of the state services.
func (n *node) printState(w io.Writer) {
	switch {
	case n.ident == nil:
		fmt.Fprintf(w, "  state off  (identity.enabled = false: no linked accounts)\n")
	case n.state == nil:
		fmt.Fprintf(w, "  state off  ([state]: nothing on)\n")
	default:
		what := n.state.describe()
		if n.state.digitalID {
			what += "; JWKS " + jwksPath
		}
		if n.state.esia != "" {
			what += "; callback " + statesvc.CallbackPath
		}
		url := n.state.publicURL
		if url == "" {
			url = "on" // no public listener: nothing needs the URL
		}
		fmt.Fprintf(w, "  state %s  (%s)\n", url, what)
	}
}
