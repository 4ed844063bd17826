package broker

import (
	"context"
	"fmt"
	"slices"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// The call requests that change who is in a call. Each changes the call
// only once it has succeeded as a whole: a join reserves its place,
// waits for the SFU's Join, and commits (or takes the SFU's side back),
// so that a refused request changes nothing.

// startCall starts a call in a chat the user is in, joins the session to
// it and then rings the users rungUsers picks.
func (s *Session) startCall(req *wire.CallStart) (*wire.Frame, error) {
	t := s.b.calls
	e, kind, err := s.access(storage.ChatID(req.Chat), false)
	if err != nil {
		return nil, err
	}
	defer s.b.chats.unref(e)
	if kind == storage.ChatChannel {
		return nil, fmt.Errorf("%w: calls run in direct chats and groups; a channel streams over WHIP", ErrForbidden)
	}
	if err := s.spend(); err != nil {
		return nil, err
	}
	rung, err := s.rungUsers(e, kind)
	if err != nil {
		return nil, err
	}
	now := t.now()
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		return nil, ErrShutdown
	case t.byChat[e.id] != nil:
		id := t.byChat[e.id].id
		t.mu.Unlock()
		return nil, &callRunningError{call: id}
	case t.bySession[s] != nil:
		id := t.bySession[s].c.id
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: this device is in call %d; leave it first", ErrForbidden, id)
	}
	c := &call{
		id: newCallID(), chat: e.id, kind: kind, video: req.Video, caller: s.user, callerDevice: s.device,
		started: now, parts: make(map[storage.UserID]*participant), ringing: make(map[storage.UserID]struct{}),
		audience: make(map[storage.UserID]struct{}),
	}
	for t.byID[c.id] != nil {
		c.id = newCallID()
	}
	t.byID[c.id], t.byChat[c.chat] = c, c
	p := t.reserveLocked(c, s)
	t.mu.Unlock()

	var info *wire.CallInfo
	err = s.b.commitJoin(p, s.b.joinMedia(p), func() {
		c.parts[s.user] = p
		c.joined = append(c.joined, s.user)
		c.audience[s.user] = struct{}{}
		for _, u := range rung {
			if c.parts[u] == nil { // one who joined meanwhile is not rung
				t.ringLocked(c, u)
			}
			c.audience[u] = struct{}{}
		}
		t.armRingLocked(s.b, c)
		info = c.infoLocked()
	})
	if err != nil {
		return nil, err
	}
	t.started.Inc()
	s.announceCall(c, rung)
	return s.callInfoFrame(info), nil
}

// rungUsers returns the users a call the session starts in the chat of e
// rings: the other member of a direct chat, online or not (an answer from
// a device that connects in time is an accept), or a group's other
// members online, at most maxRelayMembers of them (in a larger group,
// the others join without a ring).
func (s *Session) rungUsers(e *chatEntry, kind storage.ChatKind) ([]storage.UserID, error) {
	if kind == storage.ChatDirect {
		return s.b.directPeer(e.id, s.user)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	rung := make([]storage.UserID, 0, min(len(e.users), maxRelayMembers))
	for _, u := range e.users {
		if u != s.user && len(rung) < maxRelayMembers {
			rung = append(rung, u)
		}
	}
	return rung, nil
}

// announceCall rings the online sessions of rung, the users c, the
// session's new call, rings, and tells the caller's other devices that it
// is in a call (not a ring).
func (s *Session) announceCall(c *call, rung []storage.UserID) {
	ring := c.ringFrame()
	if p := s.b.encodeCallPush(ring); p != nil {
		var ss []*Session
		for _, u := range rung {
			ss = s.b.reg.appendSessions(ss[:0], u, nil)
			for _, rs := range ss {
				s.b.ringSession(rs, c, p, ring)
			}
		}
		p.Release()
	}
	s.b.pushUser(s.user, s, &wire.Frame{Body: &wire.Frame_CallUpdate{CallUpdate: &wire.CallUpdate{
		Call: uint64(c.id), Chat: uint64(c.chat), Kind: wire.CallUpdateKind_CALL_UPDATE_KIND_JOINED,
		User: uint64(s.user), Device: uint64(s.device),
	}}}, false)
}

// directPeer returns the other member of a direct chat, as a list of
// one, from the store (a direct chat has exactly two members).
func (b *Broker) directPeer(chat storage.ChatID, me storage.UserID) ([]storage.UserID, error) {
	ms, err := b.st.Members(chat, 0, 3)
	if err != nil {
		return nil, fmt.Errorf("broker: members of direct chat %d: %w", chat, err)
	}
	var peer []storage.UserID
	for _, m := range ms {
		if m.User != me {
			peer = append(peer, m.User)
		}
	}
	return peer, nil
}

// joinCall joins the session to a running call of one of its user's
// chats. A rung user's join is an accept (its other devices stop
// ringing); a user in the call from another device moves to this one.
func (s *Session) joinCall(id CallID) (*wire.Frame, error) {
	t := s.b.calls
	c, err := t.lookup(id)
	if err != nil {
		return nil, err
	}
	e, _, err := s.access(c.chat, false)
	if err != nil {
		return nil, err
	}
	s.b.chats.unref(e)
	if err := s.spend(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	if c.ended || t.closed {
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: %d", ErrUnknownCall, id)
	}
	if p := t.bySession[s]; p != nil {
		if p.c == c && p.in { // joined already: the same answer again
			info := c.infoLocked()
			t.mu.Unlock()
			return s.callInfoFrame(info), nil
		}
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: this device is in call %d; leave it first", ErrForbidden, p.c.id)
	}
	p := t.reserveLocked(c, s)
	t.mu.Unlock()

	var (
		info     *wire.CallInfo
		replaced *participant
		rung     bool
	)
	err = s.b.commitJoin(p, s.b.joinMedia(p), func() {
		if replaced = c.parts[s.user]; replaced != nil && t.bySession[replaced.s] == replaced {
			delete(t.bySession, replaced.s)
		}
		c.parts[s.user] = p
		rung = t.unringLocked(c, s.user)
		if len(c.ringing) == 0 {
			t.disarmLocked(c)
		}
		if !slices.Contains(c.joined, s.user) {
			c.joined = append(c.joined, s.user)
		}
		c.audience[s.user] = struct{}{}
		if c.answered.IsZero() && s.user != c.caller {
			c.answered = t.now()
		}
		info = c.infoLocked()
	})
	if err != nil {
		return nil, err
	}
	if replaced != nil {
		s.b.leaveMedia(replaced)
		s.b.pushSession(replaced.s, removedFrame(c.id, wire.CallRemoveReason_CALL_REMOVE_REASON_REPLACED, "joined from another device"), true)
	}
	kind := wire.CallUpdateKind_CALL_UPDATE_KIND_JOINED
	if rung {
		kind = wire.CallUpdateKind_CALL_UPDATE_KIND_ACCEPTED
	}
	s.b.callUpdate(c, &wire.CallUpdate{Kind: kind, User: uint64(s.user), Device: uint64(s.device)}, s)
	return s.callInfoFrame(info), nil
}

// declineCall declines a ring for all the user's devices. A call no one
// but its caller joined ends, missed, when no one is rung any more. A
// decline of a call that no longer rings the user (answered or declined
// on another device, timed out) does nothing.
func (s *Session) declineCall(id CallID) (*wire.Frame, error) {
	t := s.b.calls
	c, err := t.lookup(id)
	if err != nil {
		return nil, err
	}
	e, _, err := s.access(c.chat, false)
	if err != nil {
		return nil, err
	}
	s.b.chats.unref(e)
	t.mu.Lock()
	if c.ended {
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: %d", ErrUnknownCall, id)
	}
	if !t.unringLocked(c, s.user) {
		t.mu.Unlock()
		return done(), nil
	}
	var end *endedCall
	if len(c.ringing) == 0 {
		t.disarmLocked(c)
		if c.answered.IsZero() {
			end = t.endLocked(c, wire.CallEndReason_CALL_END_REASON_DECLINED)
		}
	}
	t.mu.Unlock()
	s.b.callUpdate(c, &wire.CallUpdate{Kind: wire.CallUpdateKind_CALL_UPDATE_KIND_DECLINED, User: uint64(s.user), Device: uint64(s.device)}, s)
	if end != nil {
		s.b.finishCall(context.Background(), end, s)
	}
	return done(), nil
}

// leaveCall takes the session out of its call.
func (s *Session) leaveCall(id CallID) (*wire.Frame, error) {
	p, err := s.b.calls.participantOf(s, id)
	if err != nil {
		return nil, err
	}
	s.b.dropParticipant(p, true, s)
	return done(), nil
}

// hangUp ends the call for everyone: allowed to a participant of a direct
// call, and to one who is an admin or the owner of the group.
func (s *Session) hangUp(id CallID) (*wire.Frame, error) {
	t := s.b.calls
	p, err := t.participantOf(s, id)
	if err != nil {
		return nil, err
	}
	c := p.c
	if c.kind != storage.ChatDirect {
		e, _, err := s.access(c.chat, false)
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		role, _ := e.roleLocked(s.user)
		e.mu.Unlock()
		s.b.chats.unref(e)
		if role < storage.RoleAdmin {
			return nil, fmt.Errorf("%w: only a group's admins and owner end its call for everyone; leave it instead", ErrForbidden)
		}
	}
	t.mu.Lock()
	var end *endedCall
	if !c.ended {
		end = t.endLocked(c, wire.CallEndReason_CALL_END_REASON_HUNG_UP)
	}
	t.mu.Unlock()
	if end != nil {
		s.b.finishCall(context.Background(), end, s)
	}
	return done(), nil
}

// callInfoFrame answers a call request with info, and the ICE servers
// for the session's user (Options.CallICEServers).
func (s *Session) callInfoFrame(info *wire.CallInfo) *wire.Frame {
	if f := s.b.opts.CallICEServers; f != nil {
		for _, srv := range f(uint64(s.user)) {
			info.IceServers = append(info.IceServers, &wire.IceServer{
				Urls: srv.URLs, Username: srv.Username, Credential: srv.Credential,
			})
		}
	}
	return &wire.Frame{Body: &wire.Frame_CallInfo{CallInfo: info}}
}
