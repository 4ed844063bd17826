package broker_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/storage"
	"github.com/gonets/gonets/storage/storagetest"
)

// rawConn is a connection speaking frames, over QUIC or TLS on TCP.
type rawConn interface {
	do(f *wire.Frame) *wire.Frame
	closed() bool
	nextPush() *wire.Frame
	closeCode() wire.ErrorCode
}

type quicRaw struct{ *wireClient }

func (c quicRaw) nextPush() *wire.Frame { return c.push() }

func (c quicRaw) closeCode() wire.ErrorCode {
	<-c.conn.Context().Done()
	var ae *quic.ApplicationError
	if errors.As(context.Cause(c.conn.Context()), &ae) {
		return wire.ErrorCode(ae.ErrorCode)
	}
	return 0
}

type tcpRaw struct{ *tcpClient }

func (c tcpRaw) nextPush() *wire.Frame { return c.push() }

func (c tcpRaw) closeCode() wire.ErrorCode {
	select {
	case f := <-c.controls:
		if e := f.GetError(); e != nil {
			return e.Code
		}
	case <-time.After(5 * time.Second):
	}
	return 0
}

// dialVia opens a connection with no Hello over transport ("quic" or
// "tcp").
func dialVia(t *testing.T, n *brokertest.Node, via string) rawConn {
	t.Helper()
	if via == "tcp" {
		return tcpRaw{dialTCP(t, n)}
	}
	return quicRaw{dialRaw(t, n)}
}

// hello authenticates c with tok and, over QUIC, starts reading pushes.
func hello(t *testing.T, c rawConn, tok string) *wire.Frame {
	t.Helper()
	resp := c.do(&wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: tok, Client: "test"}}})
	if q, ok := c.(quicRaw); ok && resp.GetWelcome() != nil {
		q.readPushes()
		q.readResponses()
	}
	return resp
}

func accountsNode(t *testing.T, opts brokertest.Options) *brokertest.Node {
	opts.Accounts = true
	return brokertest.Start(t, opts)
}

// login signs phone in over c as a device called name.
func login(t *testing.T, n *brokertest.Node, c rawConn, phone, name string) *wire.LoginResult {
	t.Helper()
	resp := c.do(&wire.Frame{Body: &wire.Frame_LoginStart{LoginStart: &wire.LoginStart{Phone: phone}}})
	lc := resp.GetLoginCode()
	if lc == nil {
		t.Fatalf("login_start %s: %v", phone, resp)
	}
	resp = c.do(&wire.Frame{Body: &wire.Frame_LoginVerify{LoginVerify: &wire.LoginVerify{
		Attempt: lc.Attempt, Code: n.Code(t, lc.Phone), DeviceName: name, Platform: "test"}}})
	lr := resp.GetLoginResult()
	if lr == nil {
		t.Fatalf("login_verify %s: %v", phone, resp)
	}
	return lr
}

func wantCode(t *testing.T, what string, resp *wire.Frame, code wire.ErrorCode) *wire.Error {
	t.Helper()
	e := resp.GetError()
	if e == nil || e.Code != code {
		t.Fatalf("%s: got %v, want %v", what, resp, code)
	}
	return e
}

// TestAccountsLogin runs the account's life over both transports: sign
// up, a Hello on the same connection, a second device whose login the
// first sees in its service chat, the device list, ending the second
// device (its session closes within a second; its tokens stop working).
func TestAccountsLogin(t *testing.T) {
	for _, via := range []string{"quic", "tcp"} {
		t.Run(via, func(t *testing.T) {
			n := accountsNode(t, brokertest.Options{})
			const phone = "+7 900 000-00-01"
			c1 := dialVia(t, n, via)
			// A wrong code says how many tries are left.
			lc := c1.do(&wire.Frame{Body: &wire.Frame_LoginStart{LoginStart: &wire.LoginStart{Phone: phone}}}).GetLoginCode()
			if lc == nil || lc.Phone != "+79000000001" || lc.CodeLength != 6 || lc.Tries != 5 || lc.ExpiresMs != 300_000 {
				t.Fatalf("login_code %v", lc)
			}
			code := n.Code(t, lc.Phone)
			wrong := "000000"
			if code == wrong {
				wrong = "111111"
			}
			e := wantCode(t, "wrong code", c1.do(&wire.Frame{Body: &wire.Frame_LoginVerify{LoginVerify: &wire.LoginVerify{
				Attempt: lc.Attempt, Code: wrong, DeviceName: "phone", Platform: "android"}}}), wire.ErrorCode_ERROR_CODE_WRONG_CODE)
			if e.TriesLeft != 4 {
				t.Fatalf("tries_left %d, want 4", e.TriesLeft)
			}
			lr := c1.do(&wire.Frame{Body: &wire.Frame_LoginVerify{LoginVerify: &wire.LoginVerify{
				Attempt: lc.Attempt, Code: code, DeviceName: "phone", Platform: "android"}}}).GetLoginResult()
			if lr == nil || !lr.Created || lr.User < 1<<32 || lr.Device != 1 || lr.AccessToken == "" || lr.RefreshToken == "" {
				t.Fatalf("login_result %v", lr)
			}
			if d := time.Until(time.UnixMilli(lr.AccessExpiresMs)); d < 59*time.Minute || d > time.Hour {
				t.Fatalf("access token lives %v, want 1h", d)
			}
			// Hello on the same connection.
			w := hello(t, c1, lr.AccessToken).GetWelcome()
			if w == nil || w.User != lr.User || w.Device != lr.Device {
				t.Fatalf("welcome %v", w)
			}

			// A second device: same account, not created; the first
			// device is told in its service chat.
			c2 := dialVia(t, n, via)
			lr2 := login(t, n, c2, "8 (900) 000-00-01", "laptop")
			if lr2.Created || lr2.User != lr.User || lr2.Device != 2 {
				t.Fatalf("second login %v", lr2)
			}
			if hello(t, c2, lr2.AccessToken).GetWelcome() == nil {
				t.Fatal("second device's hello refused")
			}
			d := c1.nextPush().GetDeliver()
			if d == nil || d.Message.Sender != uint64(storage.ServiceUser) || d.Message.Kind != wire.MsgKind_MSG_KIND_SERVICE {
				t.Fatalf("new login note: %v", d)
			}
			var svc wire.Service
			if err := proto.Unmarshal(d.Message.Body, &svc); err != nil {
				t.Fatal(err)
			}
			if nl := svc.GetNewLogin(); nl == nil || nl.Device != 2 || nl.DeviceName != "laptop" || nl.Platform != "test" || nl.Address != "127.0.0.1" {
				t.Fatalf("new login note body %v", &svc)
			}

			dl := c1.do(&wire.Frame{Body: &wire.Frame_Devices{Devices: &wire.DevicesRequest{}}}).GetDeviceList()
			if dl == nil || dl.Current != 1 || len(dl.Devices) != 2 || dl.Devices[0].Name != "phone" || dl.Devices[1].Name != "laptop" ||
				!dl.Devices[0].Online || !dl.Devices[1].Online || dl.Devices[1].LastAddress != "127.0.0.1" {
				t.Fatalf("device list %v", dl)
			}
			wantCode(t, "end unknown", c1.do(&wire.Frame{Body: &wire.Frame_DeviceEnd{DeviceEnd: &wire.DeviceEnd{Device: 9}}}),
				wire.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE)

			start := time.Now()
			dl = c1.do(&wire.Frame{Body: &wire.Frame_DeviceEnd{DeviceEnd: &wire.DeviceEnd{Device: 2}}}).GetDeviceList()
			if dl == nil || len(dl.Devices) != 1 || dl.Devices[0].Id != 1 {
				t.Fatalf("device list after the end %v", dl)
			}
			if !c2.closed() {
				t.Fatal("the ended device's session stayed open")
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("the ended device's session closed after %v, want within 1s", took)
			}
			if code := c2.closeCode(); code != wire.ErrorCode_ERROR_CODE_DEVICE_ENDED {
				t.Fatalf("closed with %v, want DEVICE_ENDED", code)
			}
			// Its access token opens no session, its refresh token
			// refreshes nothing.
			wantCode(t, "ended device's hello", hello(t, dialVia(t, n, via), lr2.AccessToken), wire.ErrorCode_ERROR_CODE_DEVICE_ENDED)
			wantCode(t, "ended device's refresh", dialVia(t, n, via).do(&wire.Frame{Body: &wire.Frame_TokenRefresh{
				TokenRefresh: &wire.TokenRefresh{RefreshToken: lr2.RefreshToken}}}), wire.ErrorCode_ERROR_CODE_REFRESH_INVALID)
		})
	}
}

// TestAccountsRefresh: a refresh token works once and returns a new
// pair; presented again it ends the device, whose session closes.
func TestAccountsRefresh(t *testing.T) {
	for _, via := range []string{"quic", "tcp"} {
		t.Run(via, func(t *testing.T) {
			n := accountsNode(t, brokertest.Options{})
			lr := login(t, n, dialVia(t, n, via), "+79000000002", "phone")
			s := dialVia(t, n, via)
			if hello(t, s, lr.AccessToken).GetWelcome() == nil {
				t.Fatal("hello refused")
			}
			c := dialVia(t, n, via)
			next := c.do(&wire.Frame{Body: &wire.Frame_TokenRefresh{TokenRefresh: &wire.TokenRefresh{RefreshToken: lr.RefreshToken}}}).GetLoginResult()
			if next == nil || next.User != lr.User || next.Device != lr.Device || next.RefreshToken == lr.RefreshToken || next.AccessToken == "" {
				t.Fatalf("refresh %v", next)
			}
			// The new access token renews the session.
			if r := s.do(&wire.Frame{Body: &wire.Frame_Auth{Auth: &wire.Auth{Token: next.AccessToken}}}); r.GetDone() == nil {
				t.Fatalf("auth with the refreshed token: %v", r)
			}
			// The old refresh token again: stolen, so the device ends.
			wantCode(t, "reuse", c.do(&wire.Frame{Body: &wire.Frame_TokenRefresh{TokenRefresh: &wire.TokenRefresh{RefreshToken: lr.RefreshToken}}}),
				wire.ErrorCode_ERROR_CODE_REFRESH_REUSED)
			if !s.closed() {
				t.Fatal("the session of a device whose refresh token was reused stayed open")
			}
			wantCode(t, "the new token after reuse", c.do(&wire.Frame{Body: &wire.Frame_TokenRefresh{TokenRefresh: &wire.TokenRefresh{RefreshToken: next.RefreshToken}}}),
				wire.ErrorCode_ERROR_CODE_REFRESH_INVALID)
			wantCode(t, "garbage", c.do(&wire.Frame{Body: &wire.Frame_TokenRefresh{TokenRefresh: &wire.TokenRefresh{RefreshToken: "x"}}}),
				wire.ErrorCode_ERROR_CODE_REFRESH_INVALID)
		})
	}
}

// TestAccountsEndOwnDevice: a session may end its own device (log out):
// it gets the answer, then the session closes.
func TestAccountsEndOwnDevice(t *testing.T) {
	n := accountsNode(t, brokertest.Options{})
	c := dialVia(t, n, "quic")
	lr := login(t, n, c, "+79000000003", "phone")
	hello(t, c, lr.AccessToken)
	other := dialVia(t, n, "quic")
	lr2 := login(t, n, other, "+79000000003", "tablet")
	hello(t, other, lr2.AccessToken)
	dl := c.do(&wire.Frame{Body: &wire.Frame_DeviceEnd{DeviceEnd: &wire.DeviceEnd{Device: lr.Device}}}).GetDeviceList()
	if dl == nil || len(dl.Devices) != 1 || dl.Devices[0].Id != lr2.Device {
		t.Fatalf("answer to ending its own device: %v", dl)
	}
	if !c.closed() {
		t.Fatal("the session stayed open after ending its own device")
	}
	// The other device ends every device but itself.
	c3 := dialVia(t, n, "quic")
	lr3 := login(t, n, c3, "+79000000003", "desktop")
	hello(t, c3, lr3.AccessToken)
	if dl := other.do(&wire.Frame{Body: &wire.Frame_DeviceEnd{DeviceEnd: &wire.DeviceEnd{Others: true}}}).GetDeviceList(); dl == nil || len(dl.Devices) != 1 || dl.Devices[0].Id != lr2.Device {
		t.Fatalf("end others: %v", dl)
	}
	if !c3.closed() {
		t.Fatal("end others left a session open")
	}
}

// TestAccountsRefusals: each bad number, code and flood has its own code,
// changes nothing and reveals nothing of whether the number has an
// account.
func TestAccountsRefusals(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	plan, err := identity.NewPlan(identity.RegistryOptions{DenyOperators: []string{"Виртуальные номера"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan.ReloadFile("../identity/numbering-sample.csv"); err != nil {
		t.Fatal(err)
	}
	n := accountsNode(t, brokertest.Options{Now: clock, Identity: identity.ServiceOptions{Plan: plan}})
	// A connection takes 8 pre-authentication requests: each here gets
	// its own, over QUIC and TLS on TCP in turn.
	conns := 0
	via := func() string {
		conns++
		return []string{"quic", "tcp"}[conns%2]
	}
	start := func(phone string) *wire.Frame {
		return dialVia(t, n, via()).do(&wire.Frame{Body: &wire.Frame_LoginStart{LoginStart: &wire.LoginStart{Phone: phone}}})
	}
	for _, tc := range []struct {
		phone string
		code  wire.ErrorCode
	}{
		{"+7 900 abc", wire.ErrorCode_ERROR_CODE_BAD_PHONE},
		{"", wire.ErrorCode_ERROR_CODE_BAD_PHONE},
		{strings.Repeat("9", 100), wire.ErrorCode_ERROR_CODE_BAD_PHONE},
		{"+7 495 123-45-67", wire.ErrorCode_ERROR_CODE_NOT_MOBILE},         // a Moscow landline
		{"+44 7400 123456", wire.ErrorCode_ERROR_CODE_NUMBER_NOT_ALLOWED},  // a country not served
		{"+7 999 123-45-67", wire.ErrorCode_ERROR_CODE_NUMBER_NOT_ALLOWED}, // outside every range
		{"+7 958 500-12-34", wire.ErrorCode_ERROR_CODE_VIRTUAL_NUMBER},     // a virtual operator's
	} {
		wantCode(t, "start "+tc.phone, start(tc.phone), tc.code)
	}
	if got := n.SMS().Sent(); got != 0 {
		t.Fatalf("%d codes sent for refused numbers", got)
	}

	// A known number and a new one get the same answer.
	login(t, n, dialVia(t, n, "quic"), "+79000000010", "phone")
	a, b := start("+79000000010").GetLoginCode(), start("+79000000011").GetLoginCode()
	if a == nil || b == nil || a.CodeLength != b.CodeLength || a.ExpiresMs != b.ExpiresMs || a.Tries != b.Tries || len(a.Attempt) != len(b.Attempt) {
		t.Fatalf("known and new numbers answered differently: %v, %v", a, b)
	}

	// Expired and burnt codes.
	lc := start("+79000000012").GetLoginCode()
	verify := func(attempt, code string) *wire.Frame {
		return dialVia(t, n, via()).do(&wire.Frame{Body: &wire.Frame_LoginVerify{LoginVerify: &wire.LoginVerify{Attempt: attempt, Code: code, DeviceName: "p", Platform: "t"}}})
	}
	code := n.Code(t, "+79000000012")
	now.Add(int64(5*time.Minute + time.Second))
	wantCode(t, "expired code", verify(lc.Attempt, code), wire.ErrorCode_ERROR_CODE_CODE_EXPIRED)
	lc = start("+79000000012").GetLoginCode()
	code = n.Code(t, "+79000000012")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	for i := range 4 {
		if e := wantCode(t, "wrong code", verify(lc.Attempt, wrong), wire.ErrorCode_ERROR_CODE_WRONG_CODE); e.TriesLeft != uint32(4-i) {
			t.Fatalf("tries_left %d, want %d", e.TriesLeft, 4-i)
		}
	}
	wantCode(t, "fifth wrong code", verify(lc.Attempt, wrong), wire.ErrorCode_ERROR_CODE_TOO_MANY_TRIES)
	wantCode(t, "right code after the attempt burnt", verify(lc.Attempt, code), wire.ErrorCode_ERROR_CODE_CODE_EXPIRED)
	// A bad device name is refused before the code is spent.
	lc = start("+79000000013").GetLoginCode()
	code = n.Code(t, "+79000000013")
	wantCode(t, "bad device name", dialVia(t, n, "quic").do(&wire.Frame{Body: &wire.Frame_LoginVerify{LoginVerify: &wire.LoginVerify{
		Attempt: lc.Attempt, Code: code, DeviceName: strings.Repeat("n", 65), Platform: "t"}}}), wire.ErrorCode_ERROR_CODE_BAD_REQUEST)
	if verify(lc.Attempt, code).GetLoginResult() == nil {
		t.Fatal("the code did not work after a refused device name")
	}

	// Per number: 3 codes in 10 minutes.
	now.Add(int64(time.Hour))
	for range 3 {
		if start("+79000000020").GetLoginCode() == nil {
			t.Fatal("start refused within the number's limit")
		}
	}
	e := wantCode(t, "fourth start", start("+79000000020"), wire.ErrorCode_ERROR_CODE_RATE_LIMITED)
	if e.Limit != "number" || e.RetryAfterMs == 0 || e.RetryAfterMs > 10*60*1000 {
		t.Fatalf("number limit: %v", e)
	}
	// A range: 30 numbers sharing all but their last 4 digits a minute.
	now.Add(int64(time.Hour))
	var refused *wire.Error
	for i := range 40 {
		resp := start("+7900050" + strings.Repeat("0", 4-len(itoa(i))) + itoa(i))
		if e := resp.GetError(); e != nil {
			refused = e
			break
		}
	}
	if refused == nil || refused.Code != wire.ErrorCode_ERROR_CODE_RATE_LIMITED || refused.Limit != "prefix" || refused.RetryAfterMs == 0 {
		t.Fatalf("range flood: %v", refused)
	}

	// SMS delivery failing is retryable.
	now.Add(int64(time.Hour))
	n.SMS().FailNext(1)
	e = wantCode(t, "sms down", start("+79000000030"), wire.ErrorCode_ERROR_CODE_SMS_UNAVAILABLE)
	if e.RetryAfterMs != 10_000 || strings.Contains(e.Message, "brokertest") {
		t.Fatalf("sms failure: %v", e)
	}
	if start("+79000000030").GetLoginCode() == nil {
		t.Fatal("start refused after the gateway came back")
	}
}

// TestAccountsAddressLimit: one address gets 120 starts a minute.
func TestAccountsAddressLimit(t *testing.T) {
	n := accountsNode(t, brokertest.Options{Identity: identity.ServiceOptions{Limits: identity.LimitOptions{
		Address: identity.Rate{Burst: 5, Per: time.Minute}}}})
	var e *wire.Error
	for i := range 10 {
		c := dialVia(t, n, "tcp")
		resp := c.do(&wire.Frame{Body: &wire.Frame_LoginStart{LoginStart: &wire.LoginStart{Phone: "+7900" + strings.Repeat("5", 3) + "000" + itoa(i)}}})
		if e = resp.GetError(); e != nil {
			if i != 5 {
				t.Fatalf("refused at start %d, want 5", i)
			}
			break
		}
	}
	if e == nil || e.Code != wire.ErrorCode_ERROR_CODE_RATE_LIMITED || e.Limit != "address" || e.RetryAfterMs == 0 {
		t.Fatalf("address flood: %v", e)
	}
}

// TestAccountsPreAuthBounded: a connection gets 8 pre-authentication
// requests; the ninth frame must be Hello.
func TestAccountsPreAuthBounded(t *testing.T) {
	n := accountsNode(t, brokertest.Options{})
	c := dialVia(t, n, "quic")
	for range 8 {
		wantCode(t, "refresh", c.do(&wire.Frame{Body: &wire.Frame_TokenRefresh{TokenRefresh: &wire.TokenRefresh{RefreshToken: "x"}}}),
			wire.ErrorCode_ERROR_CODE_REFRESH_INVALID)
	}
	wantCode(t, "ninth", c.do(&wire.Frame{Body: &wire.Frame_TokenRefresh{TokenRefresh: &wire.TokenRefresh{RefreshToken: "x"}}}),
		wire.ErrorCode_ERROR_CODE_BAD_FRAME)
	if !c.closed() {
		t.Fatal("connection stayed open")
	}
}

// TestAccountsOff: a node without accounts says so, and a session cannot
// list devices.
func TestAccountsOff(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	c := dialVia(t, n, "quic")
	wantCode(t, "start", c.do(&wire.Frame{Body: &wire.Frame_LoginStart{LoginStart: &wire.LoginStart{Phone: "+79000000001"}}}),
		wire.ErrorCode_ERROR_CODE_ACCOUNTS_OFF)
	s := dial(t, n, n.Token(t, 5, 1))
	wantCode(t, "devices", s.do(&wire.Frame{Body: &wire.Frame_Devices{Devices: &wire.DevicesRequest{}}}), wire.ErrorCode_ERROR_CODE_ACCOUNTS_OFF)
	// The service user's id opens no session.
	wantCode(t, "service user", hello(t, dialVia(t, n, "quic"), n.Token(t, uint64(storage.ServiceUser), 1)), wire.ErrorCode_ERROR_CODE_UNAUTHENTICATED)
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestAccountsPreAuthOutlivesHelloWindow: the node's own time on a
// pre-authentication request (a slow SMS gateway) does not count against
// the hello window: the answer comes, and the client still has its window
// for the Hello.
func TestAccountsPreAuthOutlivesHelloWindow(t *testing.T) {
	for _, via := range []string{"quic", "tcp"} {
		t.Run(via, func(t *testing.T) {
			n := accountsNode(t, brokertest.Options{Broker: broker.Options{HelloTimeout: 500 * time.Millisecond}})
			n.SMS().Delay(time.Second)
			c := dialVia(t, n, via)
			resp := c.do(&wire.Frame{Body: &wire.Frame_LoginStart{LoginStart: &wire.LoginStart{Phone: "+79000000040"}}})
			lc := resp.GetLoginCode()
			if lc == nil {
				t.Fatalf("login_start with a gateway slower than the hello window: %v", resp)
			}
			n.SMS().Delay(0)
			resp = c.do(&wire.Frame{Body: &wire.Frame_LoginVerify{LoginVerify: &wire.LoginVerify{
				Attempt: lc.Attempt, Code: n.Code(t, lc.Phone), DeviceName: "phone", Platform: "test"}}})
			lr := resp.GetLoginResult()
			if lr == nil {
				t.Fatalf("login_verify: %v", resp)
			}
			if w := hello(t, c, lr.AccessToken).GetWelcome(); w == nil {
				t.Fatal("hello after the login refused")
			}
		})
	}
}

// TestAccountsUnavailableIsNotEnded: when the accounts cannot say whether
// a device is live (closed here; a failing read alike), its Hello is
// refused UNAVAILABLE, to retry, never DEVICE_ENDED, which makes a client
// drop its tokens for good.
func TestAccountsUnavailableIsNotEnded(t *testing.T) {
	n := accountsNode(t, brokertest.Options{})
	lr := login(t, n, dialVia(t, n, "quic"), "+79000000041", "phone")
	if err := n.Accounts().Close(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "hello with the accounts closed", hello(t, dialVia(t, n, "quic"), lr.AccessToken), wire.ErrorCode_ERROR_CODE_UNAVAILABLE)
}

// TestAccountsPreAuthSurvivesEviction: a flood of unauthenticated
// connections evicts the oldest, but one the node is answering a
// pre-authentication request on (its SMS on the way, a refresh token
// rotated) gets its answer first, and is closed after it.
func TestAccountsPreAuthSurvivesEviction(t *testing.T) {
	for _, via := range []string{"quic", "tcp"} {
		t.Run(via, func(t *testing.T) {
			n := accountsNode(t, brokertest.Options{Broker: broker.Options{MaxUnauthenticated: 2, MaxUnauthenticatedPerAddr: 2}})
			n.SMS().Delay(500 * time.Millisecond)
			c := dialVia(t, n, via)
			got := make(chan *wire.Frame, 1)
			go func() {
				got <- c.do(&wire.Frame{Body: &wire.Frame_LoginStart{LoginStart: &wire.LoginStart{Phone: "+79000000042"}}})
			}()
			storagetest.WaitFor(t, "the code's send to start", func() bool { return n.SMS().Sending() == 1 })
			for range 3 {
				dialVia(t, n, via) // each evicts the oldest
			}
			select {
			case f := <-got:
				if f.GetLoginCode() == nil {
					t.Fatalf("the evicted connection's login_start: %v", f)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no answer to the evicted connection's login_start")
			}
			if !c.closed() {
				t.Fatal("the evicted connection stayed open after its answer")
			}
		})
	}
}
