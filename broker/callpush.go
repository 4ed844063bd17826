package broker

import (
	"fmt"
	"slices"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// Call pushes come in two kinds. What a device needs to follow its call
// or its ring — a ring, the end of a ring (its user's ACCEPTED, DECLINED
// or MISSED) or of the call (ENDED), the SFU's offers and candidates, a
// removal — is pushed like a message (Outbox.Push): a session that reads
// too slowly stalls and is told to Resync. Those of them its stalled
// outbox refused wait in the session's call backlog, which drops what
// they make stale (an end drops the call's earlier pushes, an offer the
// earlier offer and subscriber candidates, a stopped ring the ring), and
// are pushed again when the session's sync resumes its outbox
// (Session.resume): call pushes are in no history, so this is how the
// client catches up. The rest (JOINED, LEFT, MUTED, the speaker, other
// users' ACCEPTED and DECLINED) is best effort (Outbox.Offer).
//
// A session's callMu serialises its needed call pushes with its resume
// and with the rings it is sent (Broker.ringSession), so that a push made
// after a ring stopped is never overtaken by that ring.

// maxCallBacklog caps a session's call backlog; a push beyond it is lost
// and counted.
const maxCallBacklog = 256

// encodeCallPush encodes a call push, logging the failure of one that
// does not fit a frame (the SFU's SDP is the only large part).
func (b *Broker) encodeCallPush(f *wire.Frame) *Payload {
	p := NewPayload()
	buf, err := wire.AppendFrame(p.B, f, b.opts.MaxFrameBytes)
	if err != nil {
		p.Release()
		b.log.Warn("broker: call push not encodable", "type", fmt.Sprintf("%T", f.Body), "err", err)
		return nil
	}
	p.B = buf
	return p
}

// pushSession pushes f to s: needed (kept for the resume when refused),
// or best effort.
func (b *Broker) pushSession(s *Session, f *wire.Frame, needed bool) {
	p := b.encodeCallPush(f)
	if p == nil {
		return
	}
	if needed {
		s.callMu.Lock()
		b.pushNeededLocked(s, p, f)
		s.callMu.Unlock()
	} else {
		s.out.Offer(p)
	}
	p.Release()
}

// pushNeededLocked pushes p, the encoding of f, to s, keeping f in the
// session's backlog when the outbox refuses it. s.callMu is held.
func (b *Broker) pushNeededLocked(s *Session, p *Payload, f *wire.Frame) {
	if s.out.Push(p) {
		return
	}
	var kept bool
	if s.callLost, kept = keepLost(s.callLost, f); !kept {
		b.calls.lost.Inc()
	}
}

// pushUser pushes f to user's sessions but except.
func (b *Broker) pushUser(user storage.UserID, except *Session, f *wire.Frame, needed bool) {
	b.pushUsers([]storage.UserID{user}, except, f, needed)
}

// pushUsers pushes f to the sessions of users but except.
func (b *Broker) pushUsers(users []storage.UserID, except *Session, f *wire.Frame, needed bool) {
	if len(users) == 0 {
		return
	}
	p := b.encodeCallPush(f)
	if p == nil {
		return
	}
	defer p.Release()
	if !needed {
		bp := outboxPool.Get().(*[]*Outbox)
		to := (*bp)[:0]
		for _, u := range users {
			to = b.reg.appendOutboxes(to, u, except)
		}
		Offer(p, to)
		clear(to)
		*bp = to[:0]
		outboxPool.Put(bp)
		return
	}
	var ss []*Session
	for _, u := range users {
		ss = b.reg.appendSessions(ss[:0], u, except)
		for _, s := range ss {
			s.callMu.Lock()
			b.pushNeededLocked(s, p, f)
			s.callMu.Unlock()
		}
	}
}

// resume lets the session's live pushes in again after a stall, and
// pushes the call pushes the stall refused. It reports whether the
// outbox was stalled.
func (s *Session) resume() bool {
	s.callMu.Lock()
	defer s.callMu.Unlock()
	if !s.out.Resume() {
		return false
	}
	lost := s.callLost
	s.callLost = nil
	for _, f := range lost {
		if p := s.b.encodeCallPush(f); p != nil {
			s.b.pushNeededLocked(s, p, f)
			p.Release()
		}
	}
	return true
}

// keepLost adds f, a needed push a stalled outbox refused, to lost,
// dropping what f makes stale, and reports whether f is (or need not
// be) kept.
func keepLost(lost []*wire.Frame, f *wire.Frame) ([]*wire.Frame, bool) {
	call := callOfPush(f)
	switch {
	case isCallEnd(f):
		lost = slices.DeleteFunc(lost, func(x *wire.Frame) bool { return callOfPush(x) == call })
	case isRingStop(f):
		n := len(lost)
		lost = slices.DeleteFunc(lost, func(x *wire.Frame) bool { return x.GetCallRing().GetCall() == call })
		if len(lost) < n {
			return lost, true // the ring was never seen; nor need its stop be
		}
	case isRecordingUpdate(f):
		// Only the latest says whether the call is recorded: a start and
		// stop repeated cannot fill the backlog and push out what is not
		// stale (another call's offer, its end).
		lost = slices.DeleteFunc(lost, func(x *wire.Frame) bool { return isRecordingUpdate(x) && callOfPush(x) == call })
	case f.GetCallOffer() != nil:
		lost = slices.DeleteFunc(lost, func(x *wire.Frame) bool {
			return x.GetCallOffer().GetCall() == call ||
				x.GetCallCandidate().GetCall() == call && x.GetCallCandidate().GetPc() == wire.CallPc_CALL_PC_SUBSCRIBE
		})
	}
	if len(lost) >= maxCallBacklog {
		return lost, false
	}
	return append(lost, f), true
}

// callOfPush returns the call a call push is about.
func callOfPush(f *wire.Frame) uint64 {
	switch b := f.Body.(type) {
	case *wire.Frame_CallRing:
		return b.CallRing.GetCall()
	case *wire.Frame_CallUpdate:
		return b.CallUpdate.GetCall()
	case *wire.Frame_CallOffer:
		return b.CallOffer.GetCall()
	case *wire.Frame_CallCandidate:
		return b.CallCandidate.GetCall()
	case *wire.Frame_CallSpeaker:
		return b.CallSpeaker.GetCall()
	case *wire.Frame_CallRemoved:
		return b.CallRemoved.GetCall()
	}
	return 0
}

// isCallEnd reports whether f ends the device's part in its call: ENDED,
// or its removal.
func isCallEnd(f *wire.Frame) bool {
	return f.GetCallRemoved() != nil || f.GetCallUpdate().GetKind() == wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED
}

// isRecordingUpdate reports whether f says a call's recording started or
// stopped.
func isRecordingUpdate(f *wire.Frame) bool {
	switch f.GetCallUpdate().GetKind() {
	case wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STARTED, wire.CallUpdateKind_CALL_UPDATE_KIND_RECORDING_STOPPED:
		return true
	}
	return false
}

// isRingStop reports whether f stops a ring (sent to the rung user's own
// devices).
func isRingStop(f *wire.Frame) bool {
	switch f.GetCallUpdate().GetKind() {
	case wire.CallUpdateKind_CALL_UPDATE_KIND_ACCEPTED, wire.CallUpdateKind_CALL_UPDATE_KIND_DECLINED,
		wire.CallUpdateKind_CALL_UPDATE_KIND_MISSED:
		return true
	}
	return false
}

// callUpdate pushes a change of c to its audience (the users it rang
// and those who joined it) but except. The update's own user's devices
// need an ACCEPTED, DECLINED or MISSED (it stops their ring); the rest
// is best effort, but for ENDED, which everyone needs.
func (b *Broker) callUpdate(c *call, u *wire.CallUpdate, except *Session) {
	u.Call, u.Chat = uint64(c.id), uint64(c.chat)
	f := &wire.Frame{Body: &wire.Frame_CallUpdate{CallUpdate: u}}
	users := b.calls.audienceOf(c)
	if isRingStop(f) {
		me := storage.UserID(u.User)
		b.pushUser(me, except, f, true)
		users = slices.DeleteFunc(users, func(x storage.UserID) bool { return x == me })
	}
	b.pushUsers(users, except, f, u.Kind == wire.CallUpdateKind_CALL_UPDATE_KIND_ENDED)
}

// audienceOf returns the users c's updates go to.
func (t *callTable) audienceOf(c *call) []storage.UserID {
	t.mu.Lock()
	defer t.mu.Unlock()
	return c.audienceLocked()
}

// audienceLocked lists c's audience.
func (c *call) audienceLocked() []storage.UserID {
	users := make([]storage.UserID, 0, len(c.audience))
	for u := range c.audience {
		users = append(users, u)
	}
	return users
}

// ringSession pushes f, c's ring encoded as p, to s unless c no longer
// rings its user. It checks under s.callMu, so that a push stopping the
// ring, made after it stopped, follows the ring.
func (b *Broker) ringSession(s *Session, c *call, p *Payload, f *wire.Frame) {
	s.callMu.Lock()
	defer s.callMu.Unlock()
	t := b.calls
	t.mu.Lock()
	_, ringing := c.ringing[s.user]
	ringing = ringing && !c.ended
	t.mu.Unlock()
	if ringing {
		b.pushNeededLocked(s, p, f)
	}
}

// ringFrame is c's CallRing push.
func (c *call) ringFrame() *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallRing{CallRing: &wire.CallRing{
		Call: uint64(c.id), Chat: uint64(c.chat), Caller: uint64(c.caller), Device: uint64(c.callerDevice),
		Video: c.video, StartedUs: c.started.UnixMicro(),
	}}}
}
