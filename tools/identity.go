package tools

import (
	"crypto/rand"
	"encoding"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// identityConfig is the [identity] section: accounts and phone login.
type identityConfig struct {
	// Enabled serves phone login and accounts. Default: true.
	Enabled bool `toml:"enabled"`
	// Countries are the country calling codes whose numbers may sign up.
	Countries []int `toml:"countries"`
	// Registry is the national numbering registry (CSV); "" checks
	// numbers against libphonenumber's data only. DenyOperators are the
	// registry's operators refused as virtual.
	Registry      string   `toml:"registry"`
	DenyOperators []string `toml:"deny_operators"`
	// AccessTTL and RefreshTTL are the tokens' lives.
	AccessTTL  duration `toml:"access_ttl"`
	RefreshTTL duration `toml:"refresh_ttl"`
	MaxDevices int      `toml:"max_devices"`
	CodeTTL    duration `toml:"code_ttl"`
	CodeTries  int      `toml:"code_tries"`
	// LimitNumber, LimitAddress and LimitPrefix are the rate limits of
	// login_start, "N/duration".
	LimitNumber  rateLimit `toml:"limit_number"`
	LimitAddress rateLimit `toml:"limit_address"`
	LimitPrefix  rateLimit `toml:"limit_prefix"`
	// SMS is the code delivery adapter: "file" or "http".
	SMS       string        `toml:"sms"`
	SMSOutbox string        `toml:"sms_outbox"`
	SMSText   string        `toml:"sms_text"`
	SMSHTTP   smsHTTPConfig `toml:"sms_http"`
	// KeyFile holds the key the accounts are encrypted and indexed with.
	KeyFile string `toml:"key_file"`
}

// smsHTTPConfig is [identity.sms_http], identity.HTTPSenderOptions.
type smsHTTPConfig struct {
	URL         string   `toml:"url"`
	Method      string   `toml:"method"`
	HeaderName  string   `toml:"header_name"`
	HeaderValue string   `toml:"header_value"`
	Body        string   `toml:"body"`
	ContentType string   `toml:"content_type"`
	Timeout     duration `toml:"timeout"`
	Retries     int      `toml:"retries"`
}

// rateLimit is "N/duration": N events, refilled over duration.
type rateLimit identity.Rate

var _ encoding.TextUnmarshaler = (*rateLimit)(nil)

func (r *rateLimit) UnmarshalText(b []byte) error {
	n, per, ok := strings.Cut(string(b), "/")
	burst, err := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err != nil || burst <= 0 {
		return fmt.Errorf("rate %q: want \"N/duration\", N above 0, as \"3/10m\"", b)
	}
	d, err := time.ParseDuration(strings.TrimSpace(per))
	if err != nil || d <= 0 {
		return fmt.Errorf("rate %q: want \"N/duration\", a positive duration, as \"3/10m\"", b)
	}
	*r = rateLimit{Burst: burst, Per: d}
	return nil
}

func (r rateLimit) MarshalText() ([]byte, error) {
	if r.Burst == 0 {
		return nil, nil
	}
	return []byte(fmt.Sprintf("%d/%v", r.Burst, r.Per)), nil
}

// Defaults of [identity].
const (
	defaultSMSOutbox   = "sms-outbox.jsonl"
	defaultIdentityKey = "identity.key"
	identityDir        = "identity"
)

func defaultIdentity() identityConfig {
	return identityConfig{Enabled: true, Countries: []int{7}, SMS: "file"}
}

// validateIdentity checks [identity] as far as it can without files.
func (c *config) validateIdentity() error {
	id := &c.Identity
	if !id.Enabled {
		return nil
	}
	switch {
	case len(id.Countries) == 0:
		return errors.New("identity.countries is empty: no number could sign up (set identity.enabled = false for no accounts)")
	case id.AccessTTL < 0 || id.RefreshTTL < 0 || id.CodeTTL < 0:
		return errors.New("identity.access_ttl, refresh_ttl and code_ttl must not be negative")
	case id.MaxDevices < 0 || id.CodeTries < 0:
		return errors.New("identity.max_devices and code_tries must not be negative")
	case id.SMS != "file" && id.SMS != "http":
		return fmt.Errorf("identity.sms %q: want \"file\" or \"http\"", id.SMS)
	case id.SMS == "http" && id.SMSHTTP.URL == "":
		return errors.New(`identity.sms = "http" needs identity.sms_http.url`)
	case id.SMSText != "" && !strings.Contains(id.SMSText, "{code}"):
		return errors.New("identity.sms_text has no {code}")
	}
	for _, cc := range id.Countries {
		if cc <= 0 || cc > 999 {
			return fmt.Errorf("identity.countries: %d is not a country calling code", cc)
		}
	}
	return nil
}

// identityNode is the node's accounts: the service the broker serves
// login with, and what it holds open.
type identityNode struct {
	svc      *identity.Service
	accounts *identity.Accounts
	plan     *identity.Plan
	registry string // the registry file, "" for none
	file     *identity.FileSender
	outbox   string // the file adapter's outbox
	http     *identity.HTTPSender
	log      *slog.Logger
}

// startIdentity opens the accounts store under dataDir and builds the
// login service. onEnded is told of ended devices (the broker closes
// their sessions); signer returns the token signer in force.
func startIdentity(cfg config, dataDir string, log *slog.Logger, set *metrics.Set, signer func() *token.Signer,
	onEnded func(storage.UserID, storage.DeviceID)) (_ *identityNode, err error) {
	ic := cfg.Identity
	in := &identityNode{log: log}
	defer func() {
		if err != nil {
			in.close()
		}
	}()
	key, err := loadIdentityKey(cmpPath(ic.KeyFile, dataDir, defaultIdentityKey))
	if err != nil {
		return nil, err
	}
	in.plan, err = identity.NewPlan(identity.RegistryOptions{DenyOperators: ic.DenyOperators})
	if err != nil {
		return nil, fmt.Errorf("identity.deny_operators: %w", err)
	}
	if ic.Registry != "" {
		in.registry = ic.Registry
		r, err := in.plan.ReloadFile(ic.Registry)
		if err != nil {
			return nil, fmt.Errorf("identity.registry: %w", err)
		}
		log.Info("numbering registry loaded", "file", ic.Registry, "ranges", r.Len())
	} else {
		log.Warn("identity.registry is not set: numbers are checked against libphonenumber's data only, and virtual operators' numbers are not refused")
	}
	var sender identity.Sender
	switch ic.SMS {
	case "http":
		h := ic.SMSHTTP
		in.http, err = identity.NewHTTPSender(identity.HTTPSenderOptions{URL: h.URL, Method: h.Method,
			HeaderName: h.HeaderName, HeaderValue: h.HeaderValue, BodyTemplate: h.Body, ContentType: h.ContentType,
			Timeout: time.Duration(h.Timeout), Retries: h.Retries})
		if err != nil {
			return nil, fmt.Errorf("identity.sms_http: %w", err)
		}
		sender = in.http
	default:
		path := cmpPath(ic.SMSOutbox, dataDir, defaultSMSOutbox)
		in.outbox = path
		if in.file, err = identity.NewFileSender(identity.FileSenderOptions{Path: path}); err != nil {
			return nil, fmt.Errorf("identity.sms_outbox: %w", err)
		}
		sender = in.file
		log.Info("login codes go to a file (identity.sms = \"file\"): development only", "file", path)
	}
	if in.accounts, err = identity.OpenAccounts(filepath.Join(dataDir, identityDir), identity.AccountsOptions{
		Key: key, MaxDevices: ic.MaxDevices, RefreshTTL: time.Duration(ic.RefreshTTL),
		OnDeviceEnded: onEnded, Logger: log, Metrics: set,
	}); err != nil {
		return nil, err
	}
	in.svc, err = identity.NewService(identity.ServiceOptions{
		Countries: ic.Countries, Plan: in.plan, Sender: sender, SMSText: ic.SMSText,
		Codes:    identity.CodeOptions{TTL: time.Duration(ic.CodeTTL), MaxTries: ic.CodeTries},
		Limits:   identity.LimitOptions{Number: identity.Rate(ic.LimitNumber), Address: identity.Rate(ic.LimitAddress), Prefix: identity.Rate(ic.LimitPrefix)},
		Accounts: in.accounts, Signer: signer, AccessTTL: time.Duration(ic.AccessTTL), Logger: log, Metrics: set,
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// reloadRegistry reads the numbering registry again (SIGHUP): on any
// error the one in force stays.
func (in *identityNode) reloadRegistry() {
	if in == nil || in.registry == "" {
		return
	}
	r, err := in.plan.ReloadFile(in.registry)
	if err != nil {
		in.log.Error("numbering registry not reloaded; the one in force stays", "err", err)
		return
	}
	in.log.Info("numbering registry reloaded", "file", in.registry, "ranges", r.Len())
}

// close closes what startIdentity opened.
func (in *identityNode) close() {
	if in == nil {
		return
	}
	if in.svc != nil {
		in.svc.Close()
	}
	if in.accounts != nil {
		if err := in.accounts.Close(); err != nil {
			in.log.Error("close accounts", "err", err)
		}
	}
	if in.file != nil {
		in.file.Close()
	}
	if in.http != nil {
		in.http.Close()
	}
}

// cmpPath is p, or name in dir when p is empty.
func cmpPath(p, dir, name string) string {
	if p != "" {
		return p
	}
	return filepath.Join(dir, name)
}

// loadIdentityKey returns the accounts key in path (32 random bytes, made
// with mode 0600 on first start). Losing it loses every account's phone
// index: back it up with the data directory.
func loadIdentityKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if len(b) < 32 {
			return nil, fmt.Errorf("identity key %s: %d bytes, want 32 or more", path, len(b))
		}
		return b, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("identity key: %w", err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	_, werr := f.Write(key)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("identity key: %w", err)
	}
	// Link, not rename: a key another process made first wins.
	if err := os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		os.Remove(tmp)
		return loadIdentityKey(path)
	} else if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("identity key: %w", err)
	}
	os.Remove(tmp)
	// The link must be durable before the accounts store writes anything
	// sealed under the key: a key lost in a crash loses every account.
	if err := syncIdentityKeyDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	return key, nil
}

// syncIdentityKeyDir syncs the directory of a new identity key; tests
// replace it.
var syncIdentityKeyDir = syncDir
