package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/token"
)

// acctWait bounds every wait on the network in the account tests.
const acctWait = 15 * time.Second

var acctQuiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func acctCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), acctWait)
	t.Cleanup(cancel)
	return ctx
}

// jwtOf returns a token whose payload is the JSON payload, unsigned: the
// client reads claims without verifying.
func jwtOf(payload string) string {
	return "eyJhbGciOiJFZERTQSJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestTokenTimes(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	signed, err := token.NewSigner(key).Sign(token.Claims{User: 7, Device: 1, Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	f := func(tok string, wantExp, wantIat time.Time, wantOK bool) {
		t.Helper()
		gotExp, gotIat, ok := tokenTimes(tok)
		if ok != wantOK || !gotExp.Equal(wantExp) || !gotIat.Equal(wantIat) {
			t.Fatalf("tokenTimes(%q) = %v, %v, %v; want %v, %v, %v", tok, gotExp, gotIat, ok, wantExp, wantIat, wantOK)
		}
	}
	_, iat, _ := tokenTimes(signed)
	if d := time.Since(iat); d < 0 || d > time.Minute {
		t.Fatalf("iat of a token signed now: %v", iat)
	}
	f(signed, exp, iat, true)
	f(jwtOf(`{"exp":1700000000}`), time.Unix(1700000000, 0), time.Time{}, true)
	f(jwtOf(`{"exp":1700000000.5,"iat":1699996400}`), time.Unix(1700000000, 5e8), time.Unix(1699996400, 0), true)
	f(jwtOf(`{"exp":"1700000000"}`), time.Unix(1700000000, 0), time.Time{}, true)
	f(jwtOf(`{"exp":0.5}`), time.Unix(0, 5e8), time.Time{}, true)
	// Padding some encoders leave on is tolerated.
	f("h."+base64.URLEncoding.EncodeToString([]byte(`{"exp":17}`))+".s", time.Unix(17, 0), time.Time{}, true)
	var zero time.Time
	for _, bad := range []string{
		"", "opaque", "a.b", "..", "a.!!!.c",
		jwtOf(`{}`), jwtOf(`{"exp":0}`), jwtOf(`{"exp":-5}`), jwtOf(`{"exp":1e300}`), jwtOf(`{"exp":"soon"}`),
		jwtOf(`{"exp":true}`), jwtOf(`[1]`), jwtOf(`{"exp":17`),
	} {
		f(bad, zero, zero, false)
	}
	// A bad iat leaves exp usable.
	f(jwtOf(`{"exp":17,"iat":-1}`), time.Unix(17, 0), zero, true)
}

func FuzzTokenTimes(f *testing.F) {
	for _, s := range []string{"", "a.b.c", jwtOf(`{"exp":1700000000,"iat":1699996400}`), jwtOf(`{"exp":1.5}`), jwtOf(`{"exp":"1e3"}`)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		exp, iat, ok := tokenTimes(tok)
		if !ok && (!exp.IsZero() || !iat.IsZero()) {
			t.Fatalf("%q: not ok, yet %v %v", tok, exp, iat)
		}
		if ok && !exp.After(time.Unix(0, 0)) {
			t.Fatalf("%q: exp %v", tok, exp)
		}
	})
}

func TestRenewAt(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	f := func(exp, iat time.Time, fresh bool, want time.Duration) {
		t.Helper()
		if got := renewAt(now, exp, iat, fresh).Sub(now); got != want {
			t.Fatalf("renewAt(exp %v, iat %v, fresh %v) = now+%v, want now+%v", exp.Sub(now), iat.Sub(now), fresh, got, want)
		}
	}
	// A token the app held: three quarters of what is left.
	f(now.Add(time.Hour), time.Time{}, false, 45*time.Minute)
	f(now.Add(time.Hour), now.Add(-50*time.Minute), false, 45*time.Minute)
	// A fresh token: three quarters of its life less a second (its
	// claims are whole seconds), even when the client's clock is behind
	// the node's (here by 10 minutes)...
	f(now.Add(70*time.Minute), now.Add(10*time.Minute), true, 45*time.Minute-750*time.Millisecond)
	f(now.Add(5*time.Second), now, true, 3*time.Second)
	// ... and of what is left by the client's clock when that is less.
	f(now.Add(40*time.Minute), now.Add(-20*time.Minute), true, 30*time.Minute)
	f(now.Add(time.Hour), time.Time{}, true, 45*time.Minute)
	// Past or nearly past: not sooner than minRenewGap, nor, for a fresh
	// token, than a quarter of its life.
	f(now.Add(-time.Hour), time.Time{}, false, minRenewGap)
	f(now.Add(time.Second), time.Time{}, false, minRenewGap)
	f(now.Add(-time.Minute), now.Add(-61*time.Minute), true, 15*time.Minute)
	f(now.Add(2*time.Second), now, true, minRenewGap)
}

func TestAccountErrors(t *testing.T) {
	e := errorFromWire(&wire.Error{Code: wire.ErrorCode_ERROR_CODE_WRONG_CODE, Message: "no", TriesLeft: 3})
	if e.TriesLeft != 3 || !errors.Is(e, ErrWrongCode) || errors.Is(e, ErrCodeExpired) {
		t.Fatalf("WRONG_CODE: %+v", e)
	}
	e = errorFromWire(&wire.Error{Code: wire.ErrorCode_ERROR_CODE_RATE_LIMITED, RetryAfterMs: 1500, Limit: "number"})
	if e.Limit != "number" || e.RetryAfter != 1500*time.Millisecond || !errors.Is(e, ErrRateLimited) {
		t.Fatalf("RATE_LIMITED: %+v", e)
	}
	if got, want := ErrDeviceEnded.Error(), "gonets: DEVICE_ENDED"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}

	// A close code stands for the Error frame it followed, when that was
	// lost; the account codes too.
	closed := fmt.Errorf("read: %w", &quic.ApplicationError{Remote: true, ErrorCode: quic.ApplicationErrorCode(wire.ErrorCode_ERROR_CODE_DEVICE_ENDED), ErrorMessage: "ended"})
	if err := closedWith(closed); !errors.Is(err, ErrDeviceEnded) {
		t.Fatalf("closedWith(%v) = %v", closed, err)
	}
	for _, keep := range []error{
		nil, io.EOF, ErrNotMember,
		&quic.ApplicationError{Remote: false, ErrorCode: 34},
		&quic.ApplicationError{Remote: true, ErrorCode: 0},
		&quic.ApplicationError{Remote: true, ErrorCode: 9999},
	} {
		if got := closedWith(keep); got != keep {
			t.Fatalf("closedWith(%v) = %v, want it unchanged", keep, got)
		}
	}

	for _, err := range []error{ErrDeviceEnded, ErrRefreshInvalid, ErrRefreshReused, fmt.Errorf("%w: %w", ErrRefreshLost, io.EOF), ErrTokenExpired} {
		if !fatal(err) {
			t.Fatalf("fatal(%v) = false", err)
		}
	}
	if fatal(ErrUnknownDevice) || fatal(ErrSMSUnavailable) {
		t.Fatal("fatal: a request's refusal stops the client")
	}

	for _, c := range []struct {
		err  error
		want bool
	}{
		{errors.New("dial tcp: connection refused"), true},
		{context.Canceled, true},
		{ErrRateLimited, true},
		{ErrUnavailable, true},
		{ErrRefreshReused, false},
		{ErrRefreshInvalid, false},
		{ErrDeviceEnded, false},
		{ErrAccountsOff, false},
		{fmt.Errorf("%w: %w", ErrRefreshLost, ErrInternal), false},
		{fmt.Errorf("%w: %w", ErrRefreshLost, lost(io.EOF)), false},
	} {
		if got := retryableRefresh(c.err); got != c.want {
			t.Fatalf("retryableRefresh(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// fakeNode serves TLS over TCP as a node would, as far as the tests
// need: it reads the frames of each connection and writes what answer
// returns for each (nil: it closes the connection instead). It counts the
// frames it read.
type fakeNode struct {
	addr, fingerprint string
	requests          atomic.Int32
}

func startFakeNode(t *testing.T, answer func(*wire.Frame) *wire.Frame) *fakeNode {
	t.Helper()
	cert, _, err := nodecert.LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{addr: ln.Addr().String(), fingerprint: nodecert.Fingerprint(cert.Certificate[0])}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := wire.NewReader(c, 1<<20)
				for {
					var req wire.Frame
					if err := r.Read(&req); err != nil {
						return
					}
					n.requests.Add(1)
					resp := answer(&req)
					if resp == nil {
						return
					}
					resp.Id = req.Id
					b, err := wire.AppendFrame(nil, resp, 1<<20)
					if err != nil {
						panic(err)
					}
					if _, err := c.Write(b); err != nil {
						return
					}
				}
			}()
		}
	}()
	return n
}

func (n *fakeNode) opts() Options {
	return Options{Via: TransportTCP, Fingerprint: n.fingerprint, Logger: acctQuiet, DialTimeout: 2 * time.Second}
}

func refusal(code wire.ErrorCode) func(*wire.Frame) *wire.Frame {
	return func(*wire.Frame) *wire.Frame {
		return &wire.Frame{Body: &wire.Frame_Error{Error: &wire.Error{Code: code}}}
	}
}

// A refresh whose answer never comes may have rotated the token on the
// node: it is ErrRefreshLost, not a plain failure to retry; so is an
// INTERNAL answer. A refusal is the node's *Error, and a connection that
// fails before the request went out is neither.
func TestRefreshOutcomes(t *testing.T) {
	ctx := acctCtx(t)

	silent := startFakeNode(t, func(*wire.Frame) *wire.Frame { return nil })
	_, err := RefreshTokens(ctx, silent.addr, "r1", silent.opts())
	if !errors.Is(err, ErrRefreshLost) || !errors.Is(err, ErrConnLost) || retryableRefresh(err) || silent.requests.Load() != 1 {
		t.Fatalf("unanswered refresh: %v (%d requests)", err, silent.requests.Load())
	}

	internal := startFakeNode(t, refusal(wire.ErrorCode_ERROR_CODE_INTERNAL))
	if _, err := RefreshTokens(ctx, internal.addr, "r1", internal.opts()); !errors.Is(err, ErrRefreshLost) || !errors.Is(err, ErrInternal) {
		t.Fatalf("INTERNAL: %v", err)
	}

	odd := startFakeNode(t, func(*wire.Frame) *wire.Frame { return &wire.Frame{Body: &wire.Frame_Done{Done: &wire.Done{}}} })
	if _, err := RefreshTokens(ctx, odd.addr, "r1", odd.opts()); !errors.Is(err, ErrRefreshLost) || !errors.Is(err, ErrProtocol) || retryableRefresh(err) {
		t.Fatalf("refresh answered Done: %v", err)
	}

	reused := startFakeNode(t, refusal(wire.ErrorCode_ERROR_CODE_REFRESH_REUSED))
	_, err = RefreshTokens(ctx, reused.addr, "r1", reused.opts())
	var e *Error
	if !errors.As(err, &e) || e.Code != wire.ErrorCode_ERROR_CODE_REFRESH_REUSED || errors.Is(err, ErrRefreshLost) {
		t.Fatalf("REFRESH_REUSED: %v", err)
	}

	limited := startFakeNode(t, refusal(wire.ErrorCode_ERROR_CODE_RATE_LIMITED))
	if _, err := RefreshTokens(ctx, limited.addr, "r1", limited.opts()); !errors.Is(err, ErrRateLimited) || !retryableRefresh(err) {
		t.Fatalf("RATE_LIMITED: %v", err)
	}

	o := silent.opts()
	o.DialTCP = func(context.Context, string) (net.Conn, error) { return nil, errors.New("network down") }
	_, err = RefreshTokens(ctx, silent.addr, "r1", o)
	if err == nil || errors.Is(err, ErrRefreshLost) || errors.Is(err, ErrConnLost) || !retryableRefresh(err) || silent.requests.Load() != 1 {
		t.Fatalf("refresh not sent: %v", err)
	}

	ok := startFakeNode(t, func(f *wire.Frame) *wire.Frame {
		if f.GetTokenRefresh().GetRefreshToken() != "r1" {
			return nil
		}
		return &wire.Frame{Body: &wire.Frame_LoginResult{LoginResult: &wire.LoginResult{
			User: 5, Device: 2, AccessToken: "a2", AccessExpiresMs: 2_000_000, RefreshToken: "r2", RefreshExpiresMs: 3_000_000}}}
	})
	got, err := RefreshTokens(ctx, ok.addr, "r1", ok.opts())
	want := Tokens{User: 5, Device: 2, Access: "a2", AccessExpires: time.UnixMilli(2_000_000), Refresh: "r2", RefreshExpires: time.UnixMilli(3_000_000)}
	if err != nil || got != want {
		t.Fatalf("refresh: %+v, %v; want %+v", got, err, want)
	}
}

// An unanswered login request is ErrConnLost: it may have taken effect.
func TestLoginAnswerLost(t *testing.T) {
	ctx := acctCtx(t)
	silent := startFakeNode(t, func(*wire.Frame) *wire.Frame { return nil })
	if _, err := StartLogin(ctx, silent.addr, "+79000000001", silent.opts()); !errors.Is(err, ErrConnLost) {
		t.Fatalf("StartLogin: %v", err)
	}
	if _, err := VerifyLogin(ctx, silent.addr, "a", "123456", DeviceName{}, silent.opts()); !errors.Is(err, ErrConnLost) {
		t.Fatalf("VerifyLogin: %v", err)
	}
	wrong := startFakeNode(t, func(*wire.Frame) *wire.Frame { return &wire.Frame{Body: &wire.Frame_Done{Done: &wire.Done{}}} })
	if _, err := StartLogin(ctx, wrong.addr, "+79000000001", wrong.opts()); !errors.Is(err, ErrProtocol) {
		t.Fatalf("StartLogin answered Done: %v", err)
	}
}

// acctNode starts a node with accounts.
func acctNode(t *testing.T, opts brokertest.Options) *brokertest.Node {
	opts.Accounts = true
	return brokertest.Start(t, opts)
}

// acctOpts are the options of a client of n over via.
func acctOpts(n *brokertest.Node, via Transport) Options {
	return Options{Via: via, TCPAddr: n.TCPAddr, Fingerprint: n.Fingerprint, Logger: acctQuiet, DialTimeout: 5 * time.Second}
}

// acctLogin logs phone in as a new device called name.
func acctLogin(t *testing.T, n *brokertest.Node, o Options, phone, name string) Tokens {
	t.Helper()
	ctx := acctCtx(t)
	lc, err := StartLogin(ctx, n.Addr, phone, o)
	if err != nil {
		t.Fatalf("start %s: %v", phone, err)
	}
	tok, err := VerifyLogin(ctx, n.Addr, lc.Attempt, n.Code(t, lc.Phone), DeviceName{Name: name, Platform: "test"}, o)
	if err != nil {
		t.Fatalf("verify %s: %v", phone, err)
	}
	return tok
}

// acctDial connects with tok and closes the client when the test ends.
func acctDial(t *testing.T, n *brokertest.Node, tok string, o Options) *Client {
	t.Helper()
	c, err := Dial(acctCtx(t), n.Addr, tok, o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if o.Via != TransportAuto && c.Transport() != o.Via {
		t.Fatalf("connected over %v, want %v", c.Transport(), o.Via)
	}
	return c
}

// acctStopped waits up to limit for c to stop and returns why.
func acctStopped(t *testing.T, c *Client, limit time.Duration) error {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case _, ok := <-c.Events():
			if !ok {
				return c.Err()
			}
		case <-deadline:
			t.Fatalf("client still running after %v", limit)
		}
	}
}

// acctWaitFor waits up to limit for cond.
func acctWaitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, limit)
		}
	}
}

func eachVia(t *testing.T, f func(t *testing.T, via Transport)) {
	for _, via := range []Transport{TransportQUIC, TransportTCP} {
		t.Run(via.String(), func(t *testing.T) { f(t, via) })
	}
}

// Start, a wrong code, the right one, then a session with the access
// token: the SDK's login end to end.
func TestLoginThenDial(t *testing.T) {
	eachVia(t, func(t *testing.T, via Transport) {
		n := acctNode(t, brokertest.Options{})
		o := acctOpts(n, via)
		ctx := acctCtx(t)
		lc, err := StartLogin(ctx, n.Addr, "+7 900 000-00-11", o)
		if err != nil {
			t.Fatal(err)
		}
		if lc.Phone != "+79000000011" || lc.CodeLength != 6 || lc.Tries != 5 || lc.Expires != 5*time.Minute || lc.Attempt == "" {
			t.Fatalf("login code %+v", lc)
		}
		code := n.Code(t, lc.Phone)
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		_, err = VerifyLogin(ctx, n.Addr, lc.Attempt, wrong, DeviceName{Name: "phone", Platform: "android"}, o)
		var e *Error
		if !errors.As(err, &e) || e.Code != wire.ErrorCode_ERROR_CODE_WRONG_CODE || e.TriesLeft != 4 {
			t.Fatalf("wrong code: %v (%+v)", err, e)
		}
		tok, err := VerifyLogin(ctx, n.Addr, lc.Attempt, code, DeviceName{Name: "phone", Platform: "android"}, o)
		if err != nil {
			t.Fatal(err)
		}
		if !tok.Created || tok.User == 0 || tok.Device == 0 || tok.Access == "" || tok.Refresh == "" {
			t.Fatalf("tokens %+v", tok)
		}
		if d := time.Until(tok.AccessExpires); d < 59*time.Minute || d > time.Hour+time.Minute {
			t.Fatalf("access token lives %v, want 1h", d)
		}
		if exp, _, ok := tokenTimes(tok.Access); !ok || exp.Sub(tok.AccessExpires).Abs() > time.Second {
			t.Fatalf("access token's exp %v, LoginResult's %v", exp, tok.AccessExpires)
		}
		if _, err := VerifyLogin(ctx, n.Addr, lc.Attempt, code, DeviceName{}, o); !errors.Is(err, ErrCodeExpired) {
			t.Fatalf("a used code: %v", err)
		}
		if _, err := StartLogin(ctx, n.Addr, "not a number", o); !errors.Is(err, ErrBadPhone) {
			t.Fatalf("bad phone: %v", err)
		}

		c := acctDial(t, n, tok.Access, o)
		if c.User() != tok.User || c.Device() != tok.Device {
			t.Fatalf("session of %d/%d, want %d/%d", c.User(), c.Device(), tok.User, tok.Device)
		}
		devs, err := c.Devices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) != 1 || devs[0].ID != tok.Device || !devs[0].Current || !devs[0].Online || devs[0].Name != "phone" ||
			devs[0].Platform != "android" || devs[0].Created.IsZero() || devs[0].LastAddress == "" {
			t.Fatalf("devices %+v", devs)
		}
	})
}

// A refresh rotates both tokens; the spent refresh token used again ends
// the device: the node answers REFRESH_REUSED, its session closes and the
// pair it had stops working.
func TestRefreshRotation(t *testing.T) {
	eachVia(t, func(t *testing.T, via Transport) {
		n := acctNode(t, brokertest.Options{})
		o := acctOpts(n, via)
		ctx := acctCtx(t)
		t1 := acctLogin(t, n, o, "+79000000012", "phone")
		t2, err := RefreshTokens(ctx, n.Addr, t1.Refresh, o)
		if err != nil {
			t.Fatal(err)
		}
		if t2.User != t1.User || t2.Device != t1.Device || t2.Refresh == t1.Refresh || t2.Access == "" || t2.Created {
			t.Fatalf("refreshed %+v from %+v", t2, t1)
		}
		c := acctDial(t, n, t2.Access, o)
		_, err = RefreshTokens(ctx, n.Addr, t1.Refresh, o)
		if !errors.Is(err, ErrRefreshReused) {
			t.Fatalf("reused refresh token: %v", err)
		}
		if err := acctStopped(t, c, 2*time.Second); !errors.Is(err, ErrDeviceEnded) {
			t.Fatalf("session of the ended device stopped with %v", err)
		}
		if _, err := RefreshTokens(ctx, n.Addr, t2.Refresh, o); !errors.Is(err, ErrRefreshInvalid) {
			t.Fatalf("refresh token of an ended device: %v", err)
		}
		if _, err := Dial(ctx, n.Addr, t2.Access, o); !errors.Is(err, ErrDeviceEnded) {
			t.Fatalf("access token of an ended device: %v", err)
		}
	})
}

// tokenLog records OnTokens calls.
type tokenLog struct {
	mu   sync.Mutex
	got  []Tokens
	more chan struct{}
}

func newTokenLog() *tokenLog { return &tokenLog{more: make(chan struct{}, 16)} }

func (l *tokenLog) add(t Tokens) {
	l.mu.Lock()
	l.got = append(l.got, t)
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
}

func (l *tokenLog) all() []Tokens {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Tokens(nil), l.got...)
}

// wait waits until n pairs came.
func (l *tokenLog) wait(t *testing.T, n int, limit time.Duration) []Tokens {
	t.Helper()
	deadline := time.After(limit)
	for {
		if got := l.all(); len(got) >= n {
			return got
		}
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("%d token refreshes after %v, want %d", len(l.all()), limit, n)
		}
	}
}

// A Client with a refresh token renews its short-lived access token by
// itself at three quarters of its life, hands each pair to OnTokens
// (each refresh token used once, the next rotated from it) and stays
// usable throughout.
func TestClientRenewsToken(t *testing.T) {
	eachVia(t, func(t *testing.T, via Transport) {
		n := acctNode(t, brokertest.Options{Identity: identity.ServiceOptions{AccessTTL: 3 * time.Second}})
		o := acctOpts(n, via)
		t1 := acctLogin(t, n, o, "+79000000013", "phone")
		log := newTokenLog()
		o.Refresh, o.OnTokens = t1.Refresh, log.add
		start := time.Now()
		c := acctDial(t, n, t1.Access, o)
		got := log.wait(t, 3, 15*time.Second)
		if d := time.Since(start); d < 3*time.Second {
			t.Fatalf("three renewals of a 3 s token within %v: want one per 1.5 s", d)
		}
		seen := map[string]bool{t1.Refresh: true}
		for _, tok := range got {
			if tok.User != t1.User || tok.Device != t1.Device || seen[tok.Refresh] {
				t.Fatalf("renewed %+v", tok)
			}
			seen[tok.Refresh] = true
		}
		if _, err := c.Ping(acctCtx(t)); err != nil {
			t.Fatal(err)
		}
		if err := c.Err(); err != nil {
			t.Fatal(err)
		}
		c.Close()
		// The latest pair is good: the client never spent it.
		last := log.all()
		if _, err := RefreshTokens(acctCtx(t), n.Addr, last[len(last)-1].Refresh, acctOpts(n, via)); err != nil {
			t.Fatalf("the last refresh token handed to OnTokens: %v", err)
		}
	})
}

// A Client whose token the node holds expired renews it and reconnects:
// at Dial (with no access token, or an expired one), and when a live
// session is closed TOKEN_EXPIRED (the node's clock jumps past its
// expiry: the request that finds it so is refused TOKEN_EXPIRED, the
// session closes, and the request is sent again on the next session).
func TestClientRenewsExpiredToken(t *testing.T) {
	eachVia(t, func(t *testing.T, via Transport) {
		var skew atomic.Int64
		now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		n := acctNode(t, brokertest.Options{Now: now})
		o := acctOpts(n, via)
		o.ReconnectMin = 10 * time.Millisecond
		t1 := acctLogin(t, n, o, "+79000000014", "phone")
		log := newTokenLog()
		o.Refresh, o.OnTokens = t1.Refresh, log.add

		// No access token: Dial renews first.
		c := acctDial(t, n, "", o)
		if got := log.wait(t, 1, time.Second); c.Device() != t1.Device || got[0].Device != t1.Device {
			t.Fatalf("session of device %d, tokens %+v", c.Device(), got)
		}
		c.Close()

		// An access token expired by the node's clock: Dial renews it.
		o.Refresh = log.all()[0].Refresh
		expired := n.TokenExpiring(t, t1.User, t1.Device, now().Add(-time.Hour))
		c = acctDial(t, n, expired, o)
		log.wait(t, 2, time.Second)

		// The session's token expires by the node's clock.
		skew.Store(int64(2 * time.Hour))
		// The request that finds it so goes again once the token is
		// renewed: the node refused it unread.
		if _, err := c.Ping(acctCtx(t)); err != nil {
			t.Fatalf("ping with the token expired: %v", err)
		}
		got := log.wait(t, 3, 5*time.Second)
		if _, err := c.Ping(acctCtx(t)); err != nil {
			t.Fatalf("ping after the renewal: %v", err)
		}
		if c.Err() != nil || c.Stats().Reconnects == 0 {
			t.Fatalf("client: err %v, %d reconnects", c.Err(), c.Stats().Reconnects)
		}
		if d := got[2].AccessExpires.Sub(now()); d < 59*time.Minute {
			t.Fatalf("renewed token lives %v by the node's clock", d)
		}
	})
}

// Someone else's use of the client's refresh token (a copy of it, or the
// app's own bug) ends the device: the client's next renewal is
// REFRESH_REUSED, and it stops rather than reconnect.
func TestClientStopsOnReusedRefresh(t *testing.T) {
	eachVia(t, func(t *testing.T, via Transport) {
		n := acctNode(t, brokertest.Options{Identity: identity.ServiceOptions{AccessTTL: 3 * time.Second}})
		o := acctOpts(n, via)
		t1 := acctLogin(t, n, o, "+79000000015", "phone")
		o.Refresh, o.OnTokens = t1.Refresh, func(Tokens) {}
		c := acctDial(t, n, t1.Access, o)
		if _, err := RefreshTokens(acctCtx(t), n.Addr, t1.Refresh, o); err != nil {
			t.Fatal(err)
		}
		err := acctStopped(t, c, 5*time.Second)
		if !errors.Is(err, ErrRefreshReused) && !errors.Is(err, ErrDeviceEnded) {
			t.Fatalf("client stopped with %v, want REFRESH_REUSED or DEVICE_ENDED", err)
		}
	})
}

// Two logins are two devices; ending one from the other closes its
// session within a second (DEVICE_ENDED), and ending the others leaves
// the current one.
func TestDevicesAndEndDevice(t *testing.T) {
	eachVia(t, func(t *testing.T, via Transport) {
		n := acctNode(t, brokertest.Options{})
		o := acctOpts(n, via)
		ctx := acctCtx(t)
		const phone = "+79000000016"
		ta := acctLogin(t, n, o, phone, "phone")
		tb := acctLogin(t, n, o, phone, "tablet")
		tc := acctLogin(t, n, o, phone, "laptop")
		if ta.User != tb.User || ta.Device == tb.Device || !ta.Created || tb.Created {
			t.Fatalf("logins %+v and %+v", ta, tb)
		}
		a := acctDial(t, n, ta.Access, o)
		b := acctDial(t, n, tb.Access, o)
		devs, err := a.Devices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) != 3 || devs[0].ID != ta.Device || !devs[0].Current || !devs[0].Online ||
			devs[1].ID != tb.Device || devs[1].Current || !devs[1].Online || devs[1].Name != "tablet" || devs[2].Online {
			t.Fatalf("devices %+v", devs)
		}

		if _, err := a.EndDevice(ctx, 1<<40); !errors.Is(err, ErrUnknownDevice) {
			t.Fatalf("ending an unknown device: %v", err)
		}
		devs, err = a.EndDevice(ctx, tb.Device)
		ended := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) != 2 || devs[0].ID != ta.Device || devs[1].ID != tc.Device {
			t.Fatalf("devices left %+v", devs)
		}
		if err := acctStopped(t, b, 2*time.Second); !errors.Is(err, ErrDeviceEnded) {
			t.Fatalf("ended device's client stopped with %v", err)
		}
		if d := time.Since(ended); d > time.Second+200*time.Millisecond {
			t.Fatalf("ended device's session closed after %v", d)
		}

		devs, err = a.EndOtherDevices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) != 1 || devs[0].ID != ta.Device || !devs[0].Current {
			t.Fatalf("after ending the others: %+v", devs)
		}
		if _, err := RefreshTokens(ctx, n.Addr, tc.Refresh, o); !errors.Is(err, ErrRefreshInvalid) {
			t.Fatalf("refresh token of an ended device: %v", err)
		}

		// Ending its own device logs the client out.
		if _, err := a.EndDevice(ctx, ta.Device); err != nil {
			t.Fatal(err)
		}
		if err := acctStopped(t, a, 2*time.Second); !errors.Is(err, ErrDeviceEnded) {
			t.Fatalf("logged-out client stopped with %v", err)
		}
	})
}

// fakeSession answers Hello and Auth as a node would, recording the
// tokens Auth brings, and passes other requests to refresh.
func fakeSession(auths *[]string, mu *sync.Mutex, refresh func(*wire.Frame) *wire.Frame) func(*wire.Frame) *wire.Frame {
	return func(f *wire.Frame) *wire.Frame {
		switch b := f.GetBody().(type) {
		case *wire.Frame_Hello:
			return &wire.Frame{Body: &wire.Frame_Welcome{Welcome: &wire.Welcome{Version: 1, User: 5, Device: 2}}}
		case *wire.Frame_Auth:
			mu.Lock()
			*auths = append(*auths, b.Auth.GetToken())
			mu.Unlock()
			return &wire.Frame{Body: &wire.Frame_Done{Done: &wire.Done{}}}
		case *wire.Frame_Ping:
			return &wire.Frame{Body: &wire.Frame_Pong{Pong: &wire.Pong{Nonce: b.Ping.GetNonce()}}}
		}
		return refresh(f)
	}
}

// A Client whose refresh goes unanswered stops with ErrRefreshLost and
// never sends that refresh token again.
func TestClientRefreshLost(t *testing.T) {
	var refreshes atomic.Int32
	var mu sync.Mutex
	var auths []string
	n := startFakeNode(t, fakeSession(&auths, &mu, func(f *wire.Frame) *wire.Frame {
		if f.GetTokenRefresh() != nil {
			refreshes.Add(1)
		}
		return nil
	}))
	o := n.opts()
	o.SendOnly, o.Refresh = true, "r1"
	o.OnTokens = func(Tokens) { t.Error("OnTokens without a refresh answered") }
	access := jwtOf(fmt.Sprintf(`{"exp":%d}`, time.Now().Add(2*time.Second).Unix()))
	c, err := Dial(acctCtx(t), n.addr, access, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acctWaitFor(t, 5*time.Second, "the client to stop", func() bool { return c.Err() != nil })
	if err := c.Err(); !errors.Is(err, ErrRefreshLost) {
		t.Fatalf("client stopped with %v, want ErrRefreshLost", err)
	}
	c.Close()
	if got := refreshes.Load(); got != 1 {
		t.Fatalf("%d refreshes sent, want 1", got)
	}
}

// A refresh the node refuses for now (RATE_LIMITED) is tried again with
// the same token after RetryAfter; the new pair goes to OnTokens, and the
// new access token to the session with Auth.
func TestClientRefreshRetried(t *testing.T) {
	var refreshes atomic.Int32
	var mu sync.Mutex
	var auths []string
	renewed := jwtOf(fmt.Sprintf(`{"exp":%d,"iat":%d}`, time.Now().Add(time.Hour).Unix(), time.Now().Unix()))
	n := startFakeNode(t, fakeSession(&auths, &mu, func(f *wire.Frame) *wire.Frame {
		r := f.GetTokenRefresh()
		if r == nil || r.GetRefreshToken() != "r1" {
			return nil
		}
		if refreshes.Add(1) == 1 {
			return &wire.Frame{Body: &wire.Frame_Error{Error: &wire.Error{Code: wire.ErrorCode_ERROR_CODE_RATE_LIMITED, RetryAfterMs: 50}}}
		}
		return &wire.Frame{Body: &wire.Frame_LoginResult{LoginResult: &wire.LoginResult{
			User: 5, Device: 2, AccessToken: renewed, AccessExpiresMs: time.Now().Add(time.Hour).UnixMilli(), RefreshToken: "r2"}}}
	}))
	o := n.opts()
	log := newTokenLog()
	o.SendOnly, o.Refresh, o.OnTokens = true, "r1", log.add
	access := jwtOf(fmt.Sprintf(`{"exp":%d}`, time.Now().Add(2*time.Second).Unix()))
	c, err := Dial(acctCtx(t), n.addr, access, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := log.wait(t, 1, 5*time.Second); got[0].Refresh != "r2" || got[0].Access != renewed {
		t.Fatalf("OnTokens %+v", got)
	}
	authed := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), auths...)
	}
	acctWaitFor(t, 5*time.Second, "Auth", func() bool { return len(authed()) > 0 })
	if got := authed(); len(got) != 1 || got[0] != renewed {
		t.Fatalf("Auth sent %q, want the renewed token once", got)
	}
	if got := refreshes.Load(); got != 2 || c.Err() != nil {
		t.Fatalf("%d refreshes, client err %v", got, c.Err())
	}
}

// The pre-auth requests race the transports as Dial does: to a node seen
// through a network that drops UDP, they go over TCP.
func TestLoginRacesTransports(t *testing.T) {
	n := acctNode(t, brokertest.Options{NoQUIC: true})
	o := WithFallbackDelay(acctOpts(n, TransportAuto), 20*time.Millisecond)
	tok := acctLogin(t, n, o, "+79000000017", "phone")
	if _, err := RefreshTokens(acctCtx(t), n.Addr, tok.Refresh, o); err != nil {
		t.Fatal(err)
	}
}
