package identity

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// ErrServiceConfig is returned by NewService for missing or invalid options.
var ErrServiceConfig = errors.New("identity: invalid service options")

// ErrSMSRetry wraps a failed code delivery: the user may ask again after
// SMSRetryAfter. It also matches the Sender's own error.
var ErrSMSRetry = errors.New("identity: the code could not be sent; try again shortly")

// SMSRetryAfter is the retry_after a failed code delivery answers with.
const SMSRetryAfter = 10 * time.Second

// DefaultAccessTTL is how long an access token (the session token) lives.
const DefaultAccessTTL = time.Hour

// DefaultSMSText is the code message; {code} is replaced by the code.
const DefaultSMSText = "Gonets code: {code}. Do not give it to anyone."

// ServiceOptions configure a Service.
type ServiceOptions struct {
	// Countries are the country calling codes whose numbers may sign up.
	// Required (an empty list would refuse every number).
	Countries []int
	// Plan refuses numbers outside the national numbering plan and in
	// virtual operators' ranges; nil checks only libphonenumber's data.
	Plan *Plan
	// Codes and Limits configure the one-time codes and the rate limits;
	// Codes.Secret is made at random when empty.
	Codes  CodeOptions
	Limits LimitOptions
	// Sender delivers the codes. Required.
	Sender Sender
	// SMSText is the code message, with {code} where the code goes.
	// Default: DefaultSMSText.
	SMSText string
	// Accounts keeps the accounts and devices. Required.
	Accounts *Accounts
	// Signer returns the signer of access tokens in force (it changes when
	// the node's key is rotated). Required.
	Signer func() *token.Signer
	// AccessTTL is the access token's life. Default: DefaultAccessTTL.
	AccessTTL time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger and Metrics; defaults slog.Default() and a private set.
	Logger  *slog.Logger
	Metrics *metrics.Set
}

// LoginCode is what Start returns: a code is on its way.
type LoginCode struct {
	// Attempt names the attempt; Verify takes it.
	Attempt string
	// Phone is the number in E.164 form.
	Phone string
	// CodeLength is the code's digits; Expires how long it stays valid;
	// Tries how many codes the attempt takes.
	CodeLength int
	Expires    time.Duration
	Tries      int
}

// Tokens are a device's access and refresh tokens.
type Tokens struct {
	User           storage.UserID
	Device         storage.DeviceID
	Access         string
	AccessExpires  time.Time
	Refresh        string
	RefreshExpires time.Time
	// Created: Verify created the account.
	Created bool
}

// Service signs users up and in by phone number: it ties the number
// checks, the rate limits, the one-time codes, their delivery, the
// accounts and the access tokens together. Safe for concurrent use.
type Service struct {
	opts   ServiceOptions
	codes  *Codes
	limits *Limiter

	refused map[string]*metrics.Counter // by reason
	sent    *metrics.Counter
	smsFail *metrics.Counter

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Reasons a number or a code is refused, as counted in
// gonets_identity_refused_total{reason}.
const (
	RefusedBadPhone   = "bad_phone"
	RefusedCountry    = "country"
	RefusedNotMobile  = "not_mobile"
	RefusedUnknown    = "unknown_range"
	RefusedVirtual    = "virtual"
	RefusedRateNumber = "rate_number"
	RefusedRateAddr   = "rate_address"
	RefusedRatePrefix = "rate_prefix"
	RefusedWrongCode  = "wrong_code"
	RefusedExpired    = "code_expired"
	RefusedTries      = "too_many_tries"
)

// NewService returns a Service over opts and starts its sweeper, which
// drops expired codes and idle rate-limit keys each minute until Close.
func NewService(opts ServiceOptions) (*Service, error) {
	switch {
	case len(opts.Countries) == 0:
		return nil, fmt.Errorf("%w: no country codes allowed", ErrServiceConfig)
	case opts.Sender == nil:
		return nil, fmt.Errorf("%w: no SMS sender", ErrServiceConfig)
	case opts.Accounts == nil:
		return nil, fmt.Errorf("%w: no accounts", ErrServiceConfig)
	case opts.Signer == nil:
		return nil, fmt.Errorf("%w: no token signer", ErrServiceConfig)
	case opts.AccessTTL < 0:
		return nil, fmt.Errorf("%w: negative access token life", ErrServiceConfig)
	}
	if opts.SMSText == "" {
		opts.SMSText = DefaultSMSText
	}
	if !strings.Contains(opts.SMSText, "{code}") {
		return nil, fmt.Errorf("%w: the SMS text has no {code}", ErrServiceConfig)
	}
	if opts.AccessTTL == 0 {
		opts.AccessTTL = DefaultAccessTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if len(opts.Codes.Secret) == 0 {
		opts.Codes.Secret = make([]byte, 32)
		rand.Read(opts.Codes.Secret)
	}
	codes, err := NewCodes(opts.Codes)
	if err != nil {
		return nil, err
	}
	limits, err := NewLimiter(opts.Limits)
	if err != nil {
		return nil, err
	}
	m := opts.Metrics
	s := &Service{
		opts: opts, codes: codes, limits: limits,
		refused: make(map[string]*metrics.Counter),
		sent:    m.GetOrCreateCounter("gonets_identity_codes_sent_total"),
		smsFail: m.GetOrCreateCounter("gonets_identity_sms_failures_total"),
		stop:    make(chan struct{}),
	}
	for _, r := range []string{RefusedBadPhone, RefusedCountry, RefusedNotMobile, RefusedUnknown, RefusedVirtual,
		RefusedRateNumber, RefusedRateAddr, RefusedRatePrefix, RefusedWrongCode, RefusedExpired, RefusedTries} {
		s.refused[r] = m.GetOrCreateCounter(`gonets_identity_refused_total{reason="` + r + `"}`)
	}
	m.GetOrCreateGauge("gonets_identity_codes_pending", func() float64 { return float64(s.codes.Stats().Pending) })
	s.wg.Add(1)
	go s.sweep()
	return s, nil
}

// Close stops the sweeper. It does not close Accounts or the Sender.
func (s *Service) Close() {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
}

func (s *Service) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			now := s.opts.Now()
			s.codes.Sweep(now)
			s.limits.Sweep(now)
		}
	}
}

// Accounts returns the accounts the Service logs in to.
func (s *Service) Accounts() *Accounts { return s.opts.Accounts }

// UserBase returns the first user id the accounts give: ids below it
// are not accounts' (tokens an operator minted).
func (s *Service) UserBase() storage.UserID { return s.opts.Accounts.opts.UserBase }

// AccessTTL returns the access tokens' life.
func (s *Service) AccessTTL() time.Duration { return s.opts.AccessTTL }

// Start checks the number raw, asked for from addr, against the allowed
// countries, libphonenumber's data, the numbering plan and the rate
// limits, and sends it a new code. Errors: ErrBadPhone,
// ErrCountryNotAllowed, ErrNotMobile, ErrUnknownRange, ErrVirtualNumber,
// a *RateLimitError, ErrSMSRetry (wrapping the Sender's error). None
// depends on whether the number has an account.
func (s *Service) Start(ctx context.Context, raw string, addr netip.Addr) (LoginCode, error) {
	if !addr.IsValid() {
		addr = netip.IPv6Unspecified()
	}
	ph, err := ParsePhone(raw, s.opts.Countries)
	if err != nil {
		switch {
		case errors.Is(err, ErrCountryNotAllowed):
			s.refused[RefusedCountry].Inc()
		case errors.Is(err, ErrNotMobile):
			s.refused[RefusedNotMobile].Inc()
		default:
			s.refused[RefusedBadPhone].Inc()
		}
		return LoginCode{}, err
	}
	if s.opts.Plan != nil {
		if _, err := s.opts.Plan.Check(ph); err != nil {
			if errors.Is(err, ErrVirtualNumber) {
				s.refused[RefusedVirtual].Inc()
			} else {
				s.refused[RefusedUnknown].Inc()
			}
			return LoginCode{}, err
		}
	}
	now := s.opts.Now()
	if err := s.limits.Allow(ph.E164, addr, now); err != nil {
		var rl *RateLimitError
		if errors.As(err, &rl) {
			switch rl.Scope {
			case ScopeNumber:
				s.refused[RefusedRateNumber].Inc()
			case ScopeAddress:
				s.refused[RefusedRateAddr].Inc()
			case ScopePrefix:
				s.refused[RefusedRatePrefix].Inc()
			}
		}
		return LoginCode{}, err
	}
	code, attempt, err := s.codes.Issue(ph.E164, now)
	if err != nil {
		return LoginCode{}, err
	}
	text := strings.ReplaceAll(s.opts.SMSText, "{code}", code)
	if err := s.opts.Sender.Send(ctx, SMS{To: ph.E164, Text: text}); err != nil {
		s.smsFail.Inc()
		s.opts.Logger.Warn("identity: code not sent", "to", maskPhone(ph.E164), "err", err)
		return LoginCode{}, fmt.Errorf("%w: %w", ErrSMSRetry, err)
	}
	s.sent.Inc()
	return LoginCode{Attempt: attempt, Phone: ph.E164, CodeLength: len(code),
		Expires: s.codes.ttl, Tries: s.codes.maxTries}, nil
}

// Verify checks the code of attempt and logs the device in: the account
// is created on the number's first login. Errors: ErrWrongCode (a
// *WrongCodeError with the tries left), ErrCodeExpired, ErrTooManyTries,
// ErrDeviceInfo, ErrTooManyDevices, and the store's.
func (s *Service) Verify(ctx context.Context, attempt, code string, dev DeviceInfo) (Tokens, error) {
	// A bad device name must not spend the code.
	if !acctValidText(dev.Name, MaxDeviceName) || !acctValidText(dev.Platform, MaxDevicePlatform) {
		return Tokens{}, ErrDeviceInfo
	}
	// A caller gone already must not spend the code; once it is spent,
	// the login completes whatever the caller does next.
	if err := ctx.Err(); err != nil {
		return Tokens{}, err
	}
	now := s.opts.Now()
	phone, err := s.codes.Verify(attempt, code, now)
	if err != nil {
		switch {
		case errors.Is(err, ErrWrongCode):
			s.refused[RefusedWrongCode].Inc()
		case errors.Is(err, ErrTooManyTries):
			s.refused[RefusedTries].Inc()
		default:
			s.refused[RefusedExpired].Inc()
		}
		return Tokens{}, err
	}
	res, err := s.opts.Accounts.Login(context.WithoutCancel(ctx), phone, dev, now)
	if err != nil {
		return Tokens{}, err
	}
	t, err := s.tokens(res.User, res.Device, res.Refresh, now)
	t.Created = res.Created
	return t, err
}

// Refresh trades a refresh token for new tokens (Accounts.Refresh).
func (s *Service) Refresh(ctx context.Context, refresh string, addr netip.Addr) (Tokens, error) {
	now := s.opts.Now()
	user, device, next, err := s.opts.Accounts.Refresh(ctx, refresh, addr, now)
	if err != nil {
		return Tokens{}, err
	}
	return s.tokens(user, device, next, now)
}

func (s *Service) tokens(user storage.UserID, device storage.DeviceID, refresh string, now time.Time) (Tokens, error) {
	exp := now.Add(s.opts.AccessTTL)
	access, err := s.opts.Signer().Sign(token.Claims{User: uint64(user), Device: uint64(device), Expires: exp})
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{User: user, Device: device, Access: access, AccessExpires: exp,
		Refresh: refresh, RefreshExpires: now.Add(s.opts.Accounts.opts.RefreshTTL)}, nil
}

// maskPhone keeps a number's country code and last two digits, for logs.
func maskPhone(e164 string) string {
	if len(e164) < 6 {
		return "+…"
	}
	return e164[:2] + strings.Repeat("•", len(e164)-4) + e164[len(e164)-2:]
}
