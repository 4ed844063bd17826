package broker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/storage"
)

// Errors of the account requests.
var (
	// ErrAccountsOff is returned for an account request on a node without
	// accounts (Options.Accounts nil).
	ErrAccountsOff = errors.New("broker: this node has no accounts")
	// ErrDeviceEnded is returned for a token of a device that was ended.
	ErrDeviceEnded = errors.New("broker: the device was ended; log in again")
)

// maxPreAuth caps the pre-authentication requests (login_start,
// login_verify, token_refresh) one connection may send before Hello.
const maxPreAuth = 8

// preAuthTimeout bounds one pre-authentication request: an SMS gateway's
// retries included.
const preAuthTimeout = 30 * time.Second

// isPreAuth reports whether f is a pre-authentication request.
func isPreAuth(f *wire.Frame) bool {
	switch f.Body.(type) {
	case *wire.Frame_LoginStart, *wire.Frame_LoginVerify, *wire.Frame_TokenRefresh:
		return true
	}
	return false
}

// preAuth answers one pre-authentication request from addr.
func (b *Broker) preAuth(ctx context.Context, f *wire.Frame, addr netip.Addr) *wire.Frame {
	b.m.preAuth.Inc()
	resp, err := b.preAuthResult(ctx, f, addr)
	if err != nil {
		b.m.requestErrors.Inc()
		return &wire.Frame{Id: f.Id, Body: &wire.Frame_Error{Error: b.clientError(err)}}
	}
	resp.Id = f.Id
	return resp
}

func (b *Broker) preAuthResult(ctx context.Context, f *wire.Frame, addr netip.Addr) (*wire.Frame, error) {
	svc := b.opts.Accounts
	if svc == nil {
		return nil, ErrAccountsOff
	}
	ctx, cancel := context.WithTimeout(ctx, preAuthTimeout)
	defer cancel()
	switch body := f.Body.(type) {
	case *wire.Frame_LoginStart:
		lc, err := svc.Start(ctx, body.LoginStart.Phone, addr)
		if err != nil {
			return nil, err
		}
		return &wire.Frame{Body: &wire.Frame_LoginCode{LoginCode: &wire.LoginCode{
			Attempt: lc.Attempt, Phone: lc.Phone, CodeLength: uint32(lc.CodeLength),
			ExpiresMs: uint32(lc.Expires.Milliseconds()), Tries: uint32(lc.Tries),
		}}}, nil
	case *wire.Frame_LoginVerify:
		v := body.LoginVerify
		dev := identity.DeviceInfo{Name: v.DeviceName, Platform: v.Platform, Addr: addr}
		t, err := svc.Verify(ctx, v.Attempt, v.Code, dev)
		if err != nil {
			return nil, err
		}
		if !t.Created {
			// The account's other devices learn of the new one.
			b.noteNewLogin(ctx, t.User, t.Device, dev, b.opts.Now())
		}
		return loginResult(t), nil
	case *wire.Frame_TokenRefresh:
		t, err := svc.Refresh(ctx, body.TokenRefresh.RefreshToken, addr)
		if err != nil {
			return nil, err
		}
		return loginResult(t), nil
	}
	return nil, fmt.Errorf("%w: %T is not a pre-authentication request", ErrBadRequest, f.Body)
}

func loginResult(t identity.Tokens) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_LoginResult{LoginResult: &wire.LoginResult{
		User: uint64(t.User), Device: uint64(t.Device),
		AccessToken: t.Access, AccessExpiresMs: t.AccessExpires.UnixMilli(),
		RefreshToken: t.Refresh, RefreshExpiresMs: t.RefreshExpires.UnixMilli(),
		Created: t.Created,
	}}}
}

// noteNewLogin posts a new_login service message into user's service
// chat (a direct chat with storage.ServiceUser, created on first use).
// The login stands whatever happens here: a failure is logged and counted.
func (b *Broker) noteNewLogin(ctx context.Context, user storage.UserID, device storage.DeviceID, dev identity.DeviceInfo, at time.Time) {
	ev := &wire.NewLogin{Device: uint64(device), DeviceName: dev.Name, Platform: dev.Platform, AtMs: at.UnixMilli()}
	if dev.Addr.IsValid() {
		ev.Address = dev.Addr.String()
	}
	body, err := proto.Marshal(&wire.Service{Event: &wire.Service_NewLogin{NewLogin: ev}})
	if err == nil {
		err = b.postService(ctx, storage.ServiceUser, user, uint64(device), body)
	}
	if err != nil {
		b.m.serviceNoteFailures.Inc()
		b.log.Warn("broker: new login note not posted", "user", user, "device", device, "err", err)
	}
}

// ServiceChat returns the service chat of service user from with user,
// creating it if needed.
func (b *Broker) ServiceChat(ctx context.Context, from, user storage.UserID) (storage.ChatID, error) {
	if !storage.IsServiceUser(from) || storage.IsServiceUser(user) {
		return 0, fmt.Errorf("%w: a service chat is between a service user and a person", ErrBadRequest)
	}
	c, err := b.st.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatDirect, Creator: from, Members: []storage.UserID{user}})
	if err != nil && !errors.Is(err, storage.ErrChatExists) {
		return 0, err
	}
	// Also when it existed: a concurrent creator may not have brought the
	// index in line yet, and a caller going on to read the chat would be
	// told it is not a member. memberJoined reads the store: it is
	// idempotent.
	b.memberJoined(c.ID, from, storage.RoleOwner, storage.ChatDirect)
	b.memberJoined(c.ID, user, storage.RoleMember, storage.ChatDirect)
	return c.ID, nil
}

// postService appends a service message (body, an encoded wire.Service)
// from service user from to user's service chat with from, with client
// message id msgID (unique per chat: a retry with the same id is written
// once), and delivers it to user's online devices.
func (b *Broker) postService(ctx context.Context, from, user storage.UserID, msgID uint64, body []byte) error {
	chat, err := b.ServiceChat(ctx, from, user)
	if err != nil {
		return err
	}
	m := storage.Message{Chat: chat, Sender: from, Device: storage.DeviceNode, ClientMsgID: msgID,
		Kind: storage.MsgService, Body: body}
	e := b.chats.pin(chat)
	_, err = b.commit(work, e, m, nil)
	b.unpin(e)
	return err
}

// CheckDevice is checkDevice, for the node's other ways in (WHIP and
// WHEP) that take session tokens.
func (b *Broker) CheckDevice(user storage.UserID, device storage.DeviceID) error {
	return b.checkDevice(user, device)
}

// checkDevice fails with ErrDeviceEnded when user's device is an account
// device that was ended. Users below the accounts' first id (tokens an
// operator minted with gonets token) have no device records to check.
// When the accounts cannot tell (closed, a read failing) it fails with
// their error, never ErrDeviceEnded: a client told DEVICE_ENDED drops
// its tokens for good.
func (b *Broker) checkDevice(user storage.UserID, device storage.DeviceID) error {
	svc := b.opts.Accounts
	if svc == nil || user < svc.UserBase() {
		return nil
	}
	err := svc.Accounts().CheckDevice(user, device)
	if errors.Is(err, identity.ErrUnknownDevice) {
		return ErrDeviceEnded
	}
	return err
}

// DevicesEnded closes the sessions of user's ended devices within a
// second: the node wires it to the accounts' OnDeviceEnded. A session that
// asked to end its own device is answered first, then closed.
func (b *Broker) DevicesEnded(user storage.UserID, devices []storage.DeviceID) {
	for _, s := range b.reg.appendSessions(nil, user, nil) {
		for _, d := range devices {
			if s.device != d {
				continue
			}
			if s.endingSelf.Load() {
				s.deviceEnded.Store(true)
				break
			}
			b.closeEnded(s)
			break
		}
	}
}

// closeEnded closes s, whose device was ended.
func (b *Broker) closeEnded(s *Session) {
	s.reason.CompareAndSwap(int32(closeClient), int32(closeDeviceEnded))
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		s.conn.Close(wire.ErrorCode_ERROR_CODE_DEVICE_ENDED, "this device was ended; log in again")
	}()
}

// devices answers DevicesRequest.
func (s *Session) devices() (*wire.Frame, error) {
	svc := s.b.opts.Accounts
	if svc == nil {
		return nil, ErrAccountsOff
	}
	devs, err := svc.Accounts().Devices(s.user)
	if err != nil {
		return nil, err
	}
	return s.deviceList(devs), nil
}

// deviceEnd answers DeviceEnd.
func (s *Session) deviceEnd(req *wire.DeviceEnd) (*wire.Frame, error) {
	svc := s.b.opts.Accounts
	if svc == nil {
		return nil, ErrAccountsOff
	}
	if err := s.spend(); err != nil {
		return nil, err
	}
	acc := svc.Accounts()
	switch {
	case req.Others && req.Device != 0:
		return nil, fmt.Errorf("%w: name a device or others, not both", ErrBadRequest)
	case req.Others:
		if _, err := acc.EndOtherDevices(s.user, s.device); err != nil {
			return nil, err
		}
	case req.Device == 0:
		return nil, fmt.Errorf("%w: no device named", ErrBadRequest)
	default:
		own := storage.DeviceID(req.Device) == s.device
		if own {
			s.endingSelf.Store(true)
		}
		err := acc.EndDevice(s.user, storage.DeviceID(req.Device))
		if own {
			s.endingSelf.Store(false)
		}
		if err != nil {
			return nil, err
		}
	}
	devs, err := acc.Devices(s.user)
	if err != nil {
		return nil, err
	}
	return s.deviceList(devs), nil
}

func (s *Session) deviceList(devs []identity.Device) *wire.Frame {
	online := s.b.reg.appendSessions(nil, s.user, nil)
	out := &wire.DeviceList{Current: uint64(s.device), Devices: make([]*wire.DeviceInfo, 0, len(devs))}
	for _, d := range devs {
		di := &wire.DeviceInfo{Id: uint64(d.ID), Name: d.Name, Platform: d.Platform,
			CreatedMs: d.Created.UnixMilli(), LastSeenMs: d.LastSeen.UnixMilli()}
		if d.LastAddr.IsValid() {
			di.LastAddress = d.LastAddr.String()
		}
		for _, o := range online {
			if o.device == d.ID {
				di.Online = true
				break
			}
		}
		out.Devices = append(out.Devices, di)
	}
	return &wire.Frame{Body: &wire.Frame_DeviceList{DeviceList: out}}
}

// addrConn is a Conn that knows its client's address.
type addrConn interface{ remoteAddr() netip.Addr }

// remoteAddr returns c's client address, or the unspecified IPv6 address
// when c does not know it (an in-memory Conn in tests).
func remoteAddr(c Conn) netip.Addr {
	if ac, ok := c.(addrConn); ok {
		if a := ac.remoteAddr(); a.IsValid() {
			return a.Unmap()
		}
	}
	return netip.IPv6Unspecified()
}

// evictedReason is the close reason of a connection evicted by the
// unauthenticated-connection bounds.
const evictedReason = "too many unauthenticated connections; reconnect"

// errEvicted is hello's error for a connection evicted by those bounds.
var errEvicted = errors.New("broker: evicted: " + evictedReason)

// evictGuard lets a connection the bounds evict finish the
// pre-authentication request the node is serving on it: its answer (a
// code on its way, a refresh token rotated) is written, then hello
// closes it. An idle one is closed at once. A nil guard does nothing.
type evictGuard struct {
	close func() // closes the connection at once

	mu      sync.Mutex // guards the following
	busy    bool       // a request is being served
	evicted bool
}

// evict is the admission's eviction of the connection.
func (g *evictGuard) evict() {
	g.mu.Lock()
	g.evicted = true
	busy := g.busy
	g.mu.Unlock()
	if !busy {
		g.close()
	}
}

// begin marks a request served; false if the connection was evicted.
func (g *evictGuard) begin() bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy = !g.evicted
	return g.busy
}

// end marks the request answered and reports whether the connection was
// evicted meanwhile: the caller closes it.
func (g *evictGuard) end() bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy = false
	return g.evicted
}
