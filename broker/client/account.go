package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// Accounts: logging in by phone number, the device's tokens, and the
// user's devices (docs/protocol.md). StartLogin, VerifyLogin and
// RefreshTokens are pre-authentication requests: each dials a fresh
// connection (racing the transports as Dial does), sends its one request
// before any Hello, reads the answer and closes. The device requests are
// Client methods.

// LoginCode says that a login code is on its way by SMS.
type LoginCode struct {
	// Attempt names the login attempt; VerifyLogin takes it.
	Attempt string
	// Phone is the number in E.164 form, where the code went.
	Phone string
	// CodeLength is the code's digits (6).
	CodeLength int
	// Tries is how many codes the attempt takes before it dies.
	Tries int
	// Expires is how long the code stays valid.
	Expires time.Duration
}

// DeviceName names a new device in the user's device list.
type DeviceName struct {
	// Name is what the user calls it ("Anna's phone"), at most 64 bytes.
	Name string
	// Platform is "android", "ios", "linux", "cli"..., at most 32 bytes.
	Platform string
}

// Tokens are a device's access token, which opens sessions (Dial's token,
// Auth), and its refresh token, which gets the next pair once
// (RefreshTokens, Options.Refresh). Keep the refresh token secret and
// persist each new pair before using it: the one it replaced is spent.
type Tokens struct {
	User   uint64
	Device uint64
	// Access and AccessExpires: the access token and when it stops
	// opening sessions (the node's clock).
	Access        string
	AccessExpires time.Time
	// Refresh and RefreshExpires: the refresh token and its end.
	Refresh        string
	RefreshExpires time.Time
	// Created: this login created the account (VerifyLogin only).
	Created bool
}

// Device is one of the user's devices.
type Device struct {
	ID       uint64
	Name     string
	Platform string
	// Created is its login; LastSeen its last login or refresh, and
	// LastAddress the address that came from.
	Created     time.Time
	LastSeen    time.Time
	LastAddress string
	// Online: it has a session on the node now.
	Online bool
	// Current: it is the device of the Client that asked.
	Current bool
}

// answerWait is the least a pre-auth request waits for its answer: the
// node gives each up to 30 s (StartLogin's SMS gateway retries) and then
// answers with an error. An answer that does not come leaves the caller
// not knowing what the node did, which for a refresh costs a new login,
// so the wait is the node's bound rather than DialTimeout.
const answerWait = 35 * time.Second

// StartLogin asks the node at addr to send a login code by SMS to phone
// (international form: "+", the country code, the number). The answer is
// the same whether or not the number has an account. A refusal is an
// *Error: BAD_PHONE, NOT_MOBILE, NUMBER_NOT_ALLOWED, VIRTUAL_NUMBER,
// RATE_LIMITED (RetryAfter, Limit), SMS_UNAVAILABLE (RetryAfter),
// ACCOUNTS_OFF. opts configure the connection as for Dial (TLS, Via,
// TCPAddr, DialTimeout); once the request is sent, the answer is awaited
// for up to 35 s, or DialTimeout if longer (the node gives up on the SMS
// gateway after 30 s).
func StartLogin(ctx context.Context, addr, phone string, opts Options) (LoginCode, error) {
	p, err := newPreauth(addr, opts)
	if err != nil {
		return LoginCode{}, err
	}
	f := &wire.Frame{Body: &wire.Frame_LoginStart{LoginStart: &wire.LoginStart{Phone: phone}}}
	resp, out, err := p.exchange(ctx, f, p.answerWait(), false)
	if err != nil {
		return LoginCode{}, lostIfSent(out, err)
	}
	lc := resp.GetLoginCode()
	if lc == nil {
		return LoginCode{}, unexpected("LoginCode", resp)
	}
	return LoginCode{
		Attempt: lc.GetAttempt(), Phone: lc.GetPhone(), CodeLength: int(lc.GetCodeLength()),
		Tries: int(lc.GetTries()), Expires: time.Duration(lc.GetExpiresMs()) * time.Millisecond,
	}, nil
}

// VerifyLogin gives the node the code received for attempt and returns
// the new device's tokens; the account is created on the number's first
// login (Tokens.Created). A refusal is an *Error: WRONG_CODE (TriesLeft),
// CODE_EXPIRED or TOO_MANY_TRIES (start again), TOO_MANY_DEVICES,
// BAD_REQUEST (dev too long). Once sent, the request is answered or
// times out (35 s, as StartLogin) whatever ctx does, so that tokens the
// node issued reach the caller; an answer lost on the way is ErrConnLost
// (wrapped), after which the code may be spent (CODE_EXPIRED).
func VerifyLogin(ctx context.Context, addr, attempt, code string, dev DeviceName, opts Options) (Tokens, error) {
	p, err := newPreauth(addr, opts)
	if err != nil {
		return Tokens{}, err
	}
	f := &wire.Frame{Body: &wire.Frame_LoginVerify{LoginVerify: &wire.LoginVerify{Attempt: attempt, Code: code, DeviceName: dev.Name, Platform: dev.Platform}}}
	resp, out, err := p.exchange(ctx, f, p.answerWait(), true)
	if err != nil {
		return Tokens{}, lostIfSent(out, err)
	}
	return tokensOf(resp)
}

// RefreshTokens trades the refresh token for a new pair; the one given
// is spent. A refusal is an *Error: REFRESH_INVALID (log in again),
// REFRESH_REUSED (it was used before, so the node ended the device: log
// in again), RATE_LIMITED or UNAVAILABLE (retry later with the same
// token).
//
// Never send a refresh token twice: the node cannot tell a second use
// from a thief's and ends the device. An error that is neither an *Error
// nor ErrRefreshLost means the request was not sent (the connection
// failed first): retrying with the same token is safe. Once it is sent,
// it is answered or times out (35 s, as StartLogin) whatever ctx does,
// so that a pair the node issued reaches the caller; if no answer comes,
// or the node fails with INTERNAL, the node may or may not have rotated
// the token, and RefreshTokens returns ErrRefreshLost (wrapped, with the
// cause): discard that refresh token and log in again. (Trying it again
// would end the device if the node had rotated it, and cannot be told
// apart from a stolen token's use.)
func RefreshTokens(ctx context.Context, addr, refresh string, opts Options) (Tokens, error) {
	p, err := newPreauth(addr, opts)
	if err != nil {
		return Tokens{}, err
	}
	return p.refresh(ctx, refresh)
}

// preauth sends pre-authentication requests: a dialer and what its
// connections race over.
type preauth struct {
	d       *dialer
	order   []Transport
	timeout time.Duration // DialTimeout
}

// newPreauth fills opts' defaults and returns what sends pre-auth
// requests to addr.
func newPreauth(addr string, opts Options) (*preauth, error) {
	o, err := opts.ensureDefaults()
	if err != nil {
		return nil, err
	}
	tlsConf, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	d := newDialer(o, addr, tlsConf, new(atomic.Uint64), new(atomic.Uint64))
	return &preauth{d: d, order: o.Via.order(o.State.Transport), timeout: o.DialTimeout}, nil
}

// answerWait returns how long a sent request waits for its answer.
func (p *preauth) answerWait() time.Duration { return max(p.timeout, answerWait) }

// outcome is how far a pre-auth request got.
type outcome uint8

const (
	notSent  outcome = iota // the connection failed before the request went out
	sent                    // written (maybe in part), no answer
	answered                // the node answered it (an Error included)
)

// preauthID is the frame id of a pre-auth request, the first and only
// on its connection.
const preauthID = 1

// exchange sends f on a fresh connection and returns the node's answer;
// an Error answer is returned as *Error. Connecting (racing the
// transports as Dial does) is bounded by ctx and p.timeout. The answer is
// awaited for wait, and with detach whatever ctx does. The request goes
// out on one connection only, once: after a failed write there is no
// telling whether the node read it.
func (p *preauth) exchange(ctx context.Context, f *wire.Frame, wait time.Duration, detach bool) (*wire.Frame, outcome, error) {
	f.Id = preauthID
	b, err := wire.AppendFrame(nil, f, wire.DefaultMaxFrameBytes)
	if err != nil {
		return nil, notSent, fmt.Errorf("client: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, p.timeout)
	c, err := p.d.first(dctx, p.order)
	cancel()
	if err != nil {
		return nil, notSent, err
	}
	defer c.close(false, "bye")
	if detach {
		ctx = context.WithoutCancel(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	stop := context.AfterFunc(actx, func() { c.close(false, "no answer") })
	defer stop()
	where := fmt.Sprintf("%v %s", c.transport(), p.d.addrOf(c.transport()))
	if _, err := c.Write(b); err != nil {
		return nil, sent, fmt.Errorf("client: %s: write: %w", where, closedWith(err))
	}
	r := wire.NewReader(c, p.d.maxRecv)
	for {
		var resp wire.Frame
		if err := r.Read(&resp); err != nil {
			if actx.Err() != nil {
				err = actx.Err()
			}
			return nil, sent, fmt.Errorf("client: %s: read answer: %w", where, closedWith(err))
		}
		switch {
		case resp.GetId() == preauthID && resp.GetError() != nil:
			return nil, answered, errorFromWire(resp.GetError())
		case resp.GetId() == preauthID:
			return &resp, answered, nil
		case resp.GetId() == 0 && resp.GetError() != nil:
			// The node closes the connection; whether it acted on the
			// request first, it does not say.
			return nil, sent, errorFromWire(resp.GetError())
		case resp.GetId() == 0 && resp.GetPing() != nil:
			continue // a heartbeat
		}
		return nil, sent, fmt.Errorf("%w: %T with id %d before Hello", ErrProtocol, resp.GetBody(), resp.GetId())
	}
}

// refresh sends a TokenRefresh, sorting its failures as RefreshTokens
// documents: not sent, refused (*Error), or lost (ErrRefreshLost).
func (p *preauth) refresh(ctx context.Context, refresh string) (Tokens, error) {
	f := &wire.Frame{Body: &wire.Frame_TokenRefresh{TokenRefresh: &wire.TokenRefresh{RefreshToken: refresh}}}
	resp, out, err := p.exchange(ctx, f, p.answerWait(), true)
	switch {
	case err == nil:
		t, err := tokensOf(resp)
		if err != nil {
			// An answer, but not one to take a new pair from.
			return Tokens{}, fmt.Errorf("%w: %w", ErrRefreshLost, err)
		}
		return t, nil
	case out == notSent:
		return Tokens{}, err
	case out == answered && !errors.Is(err, ErrInternal):
		return Tokens{}, err
	}
	// Sent, and either unanswered or failed in a way that may come
	// after the node stored the new token.
	return Tokens{}, fmt.Errorf("%w: %w", ErrRefreshLost, lostIfSent(out, err))
}

// lostIfSent wraps the failure of a request that went out without an
// answer as ErrConnLost: it may or may not have taken effect.
func lostIfSent(out outcome, err error) error {
	if out != sent || isServerError(err) {
		return err
	}
	return lost(err)
}

// first connects over the transports of order, racing them as open
// does (the first has the fallback delay to itself, the second starts
// when it is up or the first fails), and returns the first connection
// established; the other attempt is abandoned. It says nothing on the
// connection.
func (d *dialer) first(ctx context.Context, order []Transport) (conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	results := make(chan dialed, len(order))
	started, pending := 0, 0
	start := func() {
		t := order[started]
		started++
		pending++
		go func() {
			c, err := d.dial(ctx, t)
			results <- dialed{t: t, c: c, err: err}
		}()
	}
	defer func() {
		cancel()
		for ; pending > 0; pending-- {
			if r := <-results; r.c != nil {
				r.c.close(false, "another transport won")
			}
		}
	}()
	start()
	var fallback <-chan time.Time
	if len(order) > 1 {
		t := time.NewTimer(d.delay)
		defer t.Stop()
		fallback = t.C
	}
	var err error
	for pending > 0 {
		select {
		case <-fallback:
			fallback = nil
			if started < len(order) {
				start()
			}
		case r := <-results:
			pending--
			if r.err == nil {
				return r.c, nil
			}
			err = joinDialErrors(err, r.err)
			if started < len(order) {
				fallback = nil
				start()
			}
		}
	}
	return nil, err
}

// tokensOf converts a LoginResult answer.
func tokensOf(resp *wire.Frame) (Tokens, error) {
	r := resp.GetLoginResult()
	if r == nil {
		return Tokens{}, unexpected("LoginResult", resp)
	}
	if r.GetAccessToken() == "" || r.GetRefreshToken() == "" {
		return Tokens{}, fmt.Errorf("%w: LoginResult without tokens", ErrProtocol)
	}
	return Tokens{
		User: r.GetUser(), Device: r.GetDevice(),
		Access: r.GetAccessToken(), AccessExpires: time.UnixMilli(r.GetAccessExpiresMs()),
		Refresh: r.GetRefreshToken(), RefreshExpires: time.UnixMilli(r.GetRefreshExpiresMs()),
		Created: r.GetCreated(),
	}, nil
}

// Devices lists the user's live devices in id order.
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	return c.deviceList(ctx, &wire.Frame{Body: &wire.Frame_Devices{Devices: &wire.DevicesRequest{}}}, true)
}

// EndDevice ends one of the user's devices and returns those left: its
// sessions close within a second (DEVICE_ENDED) and its tokens stop
// working. Ending the Client's own device logs out: the answer comes,
// then the Client stops with DEVICE_ENDED. An unknown id is
// UNKNOWN_DEVICE. Like the membership changes it is not repeated after a
// lost connection (ErrConnLost): a repeat would find the device gone.
func (c *Client) EndDevice(ctx context.Context, id uint64) ([]Device, error) {
	return c.deviceList(ctx, &wire.Frame{Body: &wire.Frame_DeviceEnd{DeviceEnd: &wire.DeviceEnd{Device: id}}}, false)
}

// EndOtherDevices ends every device of the user but the Client's own and
// returns what is left (this one). It is repeated after a lost
// connection: ending them again changes nothing.
func (c *Client) EndOtherDevices(ctx context.Context) ([]Device, error) {
	return c.deviceList(ctx, &wire.Frame{Body: &wire.Frame_DeviceEnd{DeviceEnd: &wire.DeviceEnd{Others: true}}}, true)
}

// deviceList sends a request answered by DeviceList.
func (c *Client) deviceList(ctx context.Context, f *wire.Frame, repeat bool) ([]Device, error) {
	resp, err := c.call(ctx, f, repeat)
	if err != nil {
		return nil, err
	}
	l := resp.GetDeviceList()
	if l == nil {
		return nil, unexpected("DeviceList", resp)
	}
	out := make([]Device, 0, len(l.GetDevices()))
	for _, d := range l.GetDevices() {
		out = append(out, Device{
			ID: d.GetId(), Name: d.GetName(), Platform: d.GetPlatform(),
			Created: time.UnixMilli(d.GetCreatedMs()), LastSeen: time.UnixMilli(d.GetLastSeenMs()),
			LastAddress: d.GetLastAddress(), Online: d.GetOnline(), Current: d.GetId() == l.GetCurrent(),
		})
	}
	return out, nil
}

// tokenTimes reads the exp and iat claims of a JWT without verifying it
// (the node does): when an access token expires, and when it was issued
// (zero when it does not say), to schedule its renewal. ok is false for
// anything that is not a JWT with a positive exp.
func tokenTimes(tok string) (exp, iat time.Time, ok bool) {
	_, rest, ok1 := strings.Cut(tok, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return time.Time{}, time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(payload, "="))
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
		Iat json.Number `json:"iat"`
	}
	if err := json.Unmarshal(b, &claims); err != nil {
		return time.Time{}, time.Time{}, false
	}
	exp, ok = numericDate(claims.Exp)
	if !ok {
		return time.Time{}, time.Time{}, false
	}
	iat, _ = numericDate(claims.Iat)
	return exp, iat, true
}

// numericDate converts a JWT NumericDate, seconds since the epoch that
// may have a fraction, up to the year 9999.
func numericDate(n json.Number) (time.Time, bool) {
	if n == "" {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || !(f > 0 && f < 253402300800) {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// minRenewGap is the least time between two renewals of the access
// token, so that a token whose life the client misjudges (its clock far
// ahead of the node's) is not renewed in a loop.
const minRenewGap = time.Second

// renewAt returns when to renew an access token got at now and expiring
// at exp: three quarters into what is left of its life. That is what
// the client's clock says is left, and for a token fresh from the node
// whose issue time iat is known, no more than its life exp−iat (both by
// the node's clock, so that a client clock behind the node's does not
// delay the renewal) less a second, as the claims are whole seconds and
// up to one may be gone already. Never sooner than minRenewGap, nor, for
// a fresh token, than a quarter of its life, so that a client whose
// clock is far ahead of the node's does not renew in a loop.
func renewAt(now, exp, iat time.Time, fresh bool) time.Time {
	left := exp.Sub(now)
	floor := minRenewGap
	if fresh && !iat.IsZero() && exp.After(iat) {
		life := exp.Sub(iat)
		left = min(left, life-time.Second)
		floor = max(floor, life/4)
	}
	return now.Add(max(left/4*3, floor))
}

// refresher renews a Client's access token (Options.Refresh). It owns the
// refresh token: Dial uses it before the refresher's goroutine starts,
// and then only that goroutine (run), one refresh at a time, so that the
// token is never sent twice. The run goroutine asks it for a renewal
// when a connection is refused TOKEN_EXPIRED (ask).
//
// A refresh that was sent and got no answer may have rotated the token
// on the node, and a second use would end the device (REFRESH_REUSED), so
// it is never retried: the Client stops with ErrRefreshLost and the app
// logs in again. One that was not sent (the connection failed first), or
// that the node refused for now (RATE_LIMITED, UNAVAILABLE), is retried
// with backoff; any other refusal stops the Client with it.
type refresher struct {
	c       *Client
	asks    chan renewal
	refresh string    // the refresh token; "" once it is dead
	access  string    // the access token the refresher knows as current
	due     time.Time // when to renew; zero: only when asked
	failed  error     // why refreshing stopped for good
}

// renewal is the run goroutine's request for a token to replace refused.
type renewal struct {
	refused string
	done    chan error // buffered
}

// newRefresher returns c's refresher with the app's tokens, scheduling
// the renewal of access (may be empty: Dial renews first).
func newRefresher(c *Client, refresh, access string) *refresher {
	r := &refresher{c: c, asks: make(chan renewal), refresh: refresh, access: access}
	if exp, _, ok := tokenTimes(access); ok {
		r.due = renewAt(time.Now(), exp, time.Time{}, false)
	}
	return r
}

// renew trades the refresh token for a new pair, hands the pair to the
// app (Options.OnTokens) and makes the new access token the one
// connections open with; Auth of the live session is the caller's. An
// error after which the refresh token must not be sent again is kept in
// r.failed (see refresher).
func (r *refresher) renew(ctx context.Context) error {
	if r.failed != nil {
		return r.failed
	}
	c := r.c
	p := &preauth{d: c.dialer, order: c.dialer.via.order(c.pos.lastTransport()), timeout: c.opts.DialTimeout}
	t, err := p.refresh(ctx, r.refresh)
	if err != nil {
		if !retryableRefresh(err) {
			r.failed, r.refresh = err, ""
			c.log.Warn("client: token refresh failed for good", "addr", c.addr, "err", err)
		}
		return err
	}
	if c.opts.OnTokens != nil {
		c.opts.OnTokens(t)
	}
	r.refresh, r.access = t.Refresh, t.Access
	exp, iat, ok := tokenTimes(t.Access)
	if !ok {
		exp, iat = t.AccessExpires, time.Time{}
	}
	r.due = renewAt(time.Now(), exp, iat, true)
	c.mu.Lock()
	c.token = t.Access
	c.mu.Unlock()
	c.log.Debug("client: access token renewed", "addr", c.addr, "expires", exp, "next", r.due)
	return nil
}

// retryableRefresh reports whether a refresh that failed with err may be
// tried again with the same refresh token: it was not sent, or the node
// refused it for now.
func retryableRefresh(err error) bool {
	if errors.Is(err, ErrRefreshLost) {
		return false
	}
	var e *Error
	if !errors.As(err, &e) {
		return true // not sent: RefreshTokens returns ErrRefreshLost otherwise
	}
	return e.Code == wire.ErrorCode_ERROR_CODE_RATE_LIMITED || e.Code == wire.ErrorCode_ERROR_CODE_UNAVAILABLE
}

// ask has the refresher replace the access token refused (TOKEN_EXPIRED)
// and waits for it: nil once a newer token is in place (at once when one
// is already), or why not. Called by the run goroutine.
func (r *refresher) ask(ctx context.Context, refused string) error {
	a := renewal{refused: refused, done: make(chan error, 1)}
	select {
	case r.asks <- a:
	case <-ctx.Done():
		return ErrClosed
	}
	select {
	case err := <-a.done:
		return err
	case <-ctx.Done():
		return ErrClosed
	}
}

// run renews the access token when it is due and when asked, and sends
// the current one with Auth to each session that opened with an older
// one. It ends when the client closes or stops.
func (r *refresher) run(ctx context.Context) {
	c := r.c
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	failures := 0
	for {
		var due <-chan time.Time
		if !r.due.IsZero() && r.failed == nil {
			timer.Reset(time.Until(r.due))
			due = timer.C
		}
		c.mu.Lock()
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-c.stopped:
			return
		case a := <-r.asks:
			var err error
			if a.refused == r.access {
				err = r.renew(ctx)
			}
			a.done <- err
		case <-due:
			err := r.renew(ctx)
			switch {
			case err == nil:
				failures = 0
				r.authCurrent(ctx)
			case r.failed != nil:
				c.fail(err)
			default:
				failures++
				wait := c.backoff.delay(failures)
				var e *Error
				if errors.As(err, &e) {
					wait = max(wait, e.RetryAfter)
				}
				r.due = time.Now().Add(wait)
				c.log.Info("client: token refresh failed", "addr", c.addr, "attempt", failures, "retry", wait, "err", err)
			}
		case <-changed:
			r.authCurrent(ctx)
		}
	}
}

// authCurrent sends the current access token with Auth to the live
// session, if it opened with (or was last given) an older one. A session
// that ends meanwhile needs nothing: the next one opens with it.
func (r *refresher) authCurrent(ctx context.Context) {
	c := r.c
	c.mu.Lock()
	s, authed, tok := c.sess, c.authed, c.token
	c.mu.Unlock()
	if s == nil || !s.alive() || authed == tok {
		return
	}
	actx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	_, err := s.call(actx, &wire.Frame{Body: &wire.Frame_Auth{Auth: &wire.Auth{Token: tok}}})
	cancel()
	if err != nil {
		c.log.Info("client: auth with the renewed token failed", "addr", c.addr, "err", err)
		return
	}
	c.mu.Lock()
	if c.sess == s {
		c.authed = tok
	}
	c.mu.Unlock()
}
