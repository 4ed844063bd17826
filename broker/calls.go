package broker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
)

// callMediaTimeout bounds each call into CallMedia.
const callMediaTimeout = 10 * time.Second

// callTable holds the node's calls: who is in which, who is being rung.
// Calls live in the node's memory only: a restart ends them, and a crash
// ends them without a record. The SFU holds the media; the broker owns
// the rest, because it alone knows chats, members and sessions (see
// docs/architecture.md).
type callTable struct {
	media   CallMedia
	ring    time.Duration
	now     func() time.Time
	started *metrics.Counter
	ended   *metrics.Counter
	missed  *metrics.Counter

	// wg counts the ring timers armed and the removals the SFU asked
	// for, each ended by its own goroutine; Shutdown waits for them.
	wg sync.WaitGroup

	mu        sync.Mutex // guards the following, and every call's fields
	closed    bool
	byID      map[CallID]*call
	byChat    map[storage.ChatID]*call
	bySession map[*Session]*participant
	// rings lists, per user being rung, the calls ringing it, so that a
	// device connecting during a ring rings too.
	rings map[storage.UserID][]*call
}

// call is one call. Its fields are guarded by callTable.mu.
type call struct {
	id           CallID
	chat         storage.ChatID
	kind         storage.ChatKind
	video        bool
	caller       storage.UserID
	callerDevice storage.DeviceID
	started      time.Time
	answered     time.Time // when a second user joined; zero until then
	parts        map[storage.UserID]*participant
	ringing      map[storage.UserID]struct{}
	joined       []storage.UserID // everyone who was in it, in order
	declined     bool
	timer        *time.Timer // the ring timeout, while it is armed
	ended        bool
}

// participant is one session in a call.
type participant struct {
	c *call
	s *Session
}

// key names p for CallMedia.
func (p *participant) key() CallParticipant {
	return CallParticipant{Call: p.c.id, User: p.s.user, Device: p.s.device}
}

// endedCall is what finishing a call needs, taken under the lock.
type endedCall struct {
	id       CallID
	chat     storage.ChatID
	video    bool
	caller   storage.UserID
	started  time.Time
	answered time.Time
	at       time.Time
	joined   []storage.UserID
	reason   wire.CallEndReason
}

func newCallTable(o Options) *callTable {
	t := &callTable{
		media:     o.Calls,
		ring:      o.CallRingTimeout,
		now:       o.Now,
		started:   o.Metrics.NewCounter("gonets_broker_calls_started_total"),
		ended:     o.Metrics.NewCounter("gonets_broker_calls_ended_total"),
		missed:    o.Metrics.NewCounter("gonets_broker_calls_missed_total"),
		byID:      make(map[CallID]*call),
		byChat:    make(map[storage.ChatID]*call),
		bySession: make(map[*Session]*participant),
		rings:     make(map[storage.UserID][]*call),
	}
	o.Metrics.NewGauge("gonets_broker_calls", func() float64 { return float64(t.count(false)) })
	o.Metrics.NewGauge("gonets_broker_call_participants", func() float64 { return float64(t.count(true)) })
	return t
}

// count returns the calls running, or their participants.
func (t *callTable) count(participants bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if participants {
		return len(t.bySession)
	}
	return len(t.byID)
}

// callRunningError names the call running in a chat a start found.
type callRunningError struct{ call CallID }

func (e *callRunningError) Error() string {
	return fmt.Sprintf("broker: call %d runs in the chat already; join it", e.call)
}

func (e *callRunningError) Unwrap() error { return ErrCallRunning }

// newCallID returns a fresh random call id, above 0 and below 2^63.
func newCallID() CallID {
	return CallID(rand.Uint64()>>1 | 1)
}

// lookup returns the running call id, or ErrUnknownCall.
func (t *callTable) lookup(id CallID) (*call, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.byID[id]
	if c == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownCall, id)
	}
	return c, nil
}

// mediaCtx returns the context of one call into CallMedia.
func mediaCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callMediaTimeout)
}

// startCall starts a call in a chat the user is in, joins the session to
// it and rings the chat's other members' online sessions.
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
		joined: []storage.UserID{s.user},
	}
	for t.byID[c.id] != nil {
		c.id = newCallID()
	}
	for _, u := range rung {
		t.ringLocked(c, u)
	}
	p := &participant{c: c, s: s}
	c.parts[s.user] = p
	t.byID[c.id], t.byChat[c.chat], t.bySession[s] = c, c, p
	t.armRingLocked(s.b, c)
	info := c.infoLocked()
	t.mu.Unlock()

	if err := s.b.joinMedia(p); err != nil {
		return nil, err
	}
	t.started.Inc()
	s.announceCall(e, c)
	return &wire.Frame{Body: &wire.Frame_CallInfo{CallInfo: info}}, nil
}

// rungUsers returns the users a call the session starts in the chat of e
// rings: the other member of a direct chat, online or not (an answer from
// a device that connects in time is an accept), or a group's other
// members online, up to maxRelayMembers.
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

// announceCall rings the other members' online sessions of the chat of e
// for c, the session's new call, and tells the caller's other devices
// that it is in a call (not a ring).
func (s *Session) announceCall(e *chatEntry, c *call) {
	ring := &wire.Frame{Body: &wire.Frame_CallRing{CallRing: &wire.CallRing{
		Call: uint64(c.id), Chat: uint64(c.chat), Caller: uint64(s.user), Device: uint64(s.device),
		Video: c.video, StartedUs: c.started.UnixMicro(),
	}}}
	if p := s.b.encodeCallPush(ring); p != nil {
		s.b.relay(e, p, s, s.user)
		p.Release()
	}
	s.b.pushUser(s.user, s, &wire.Frame{Body: &wire.Frame_CallUpdate{CallUpdate: &wire.CallUpdate{
		Call: uint64(c.id), Chat: uint64(c.chat), Kind: wire.CallUpdateKind_CALL_UPDATE_KIND_JOINED,
		User: uint64(s.user), Device: uint64(s.device),
	}}})
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

// infoLocked describes c for a CallInfo.
func (c *call) infoLocked() *wire.CallInfo {
	info := &wire.CallInfo{Call: uint64(c.id), Chat: uint64(c.chat), Video: c.video, Caller: uint64(c.caller), StartedUs: c.started.UnixMicro()}
	for _, p := range c.parts {
		info.Participants = append(info.Participants, &wire.CallPeer{User: uint64(p.s.user), Device: uint64(p.s.device)})
	}
	slices.SortFunc(info.Participants, func(a, b *wire.CallPeer) int { return cmpU64(a.User, b.User) })
	return info
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
	t.mu.Lock()
	if c.ended {
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: %d", ErrUnknownCall, id)
	}
	if p := t.bySession[s]; p != nil {
		if p.c == c { // joined already: the same answer again
			info := c.infoLocked()
			t.mu.Unlock()
			return &wire.Frame{Body: &wire.Frame_CallInfo{CallInfo: info}}, nil
		}
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: this device is in call %d; leave it first", ErrForbidden, p.c.id)
	}
	replaced := c.parts[s.user]
	if replaced != nil {
		delete(t.bySession, replaced.s)
	}
	p := &participant{c: c, s: s}
	c.parts[s.user], t.bySession[s] = p, p
	rung := t.unringLocked(c, s.user)
	if len(c.ringing) == 0 {
		t.disarmLocked(c)
	}
	if !slices.Contains(c.joined, s.user) {
		c.joined = append(c.joined, s.user)
	}
	if c.answered.IsZero() && s.user != c.caller {
		c.answered = t.now()
	}
	info := c.infoLocked()
	t.mu.Unlock()

	if replaced != nil {
		s.b.leaveMedia(replaced)
		s.b.pushSession(replaced.s, removedFrame(c.id, wire.CallRemoveReason_CALL_REMOVE_REASON_REPLACED, "joined from another device"))
	}
	if err := s.b.joinMedia(p); err != nil {
		return nil, err
	}
	kind := wire.CallUpdateKind_CALL_UPDATE_KIND_JOINED
	if rung {
		kind = wire.CallUpdateKind_CALL_UPDATE_KIND_ACCEPTED
	}
	s.b.callUpdate(c, &wire.CallUpdate{Kind: kind, User: uint64(s.user), Device: uint64(s.device)}, s)
	return &wire.Frame{Body: &wire.Frame_CallInfo{CallInfo: info}}, nil
}

// joinMedia joins p to its call's room. When the SFU refuses, p leaves
// again; a call that only p started is dropped without a trace.
func (b *Broker) joinMedia(p *participant) error {
	ctx, cancel := mediaCtx()
	defer cancel()
	err := b.calls.media.Join(ctx, p.key(), p.c.video, b.callEvents(p))
	if err == nil {
		return nil
	}
	t := b.calls
	t.mu.Lock()
	c := p.c
	discard := t.bySession[p.s] == p && len(c.parts) == 1 && c.answered.IsZero() && p.s.user == c.caller && !c.ended
	if discard {
		t.endLocked(c, 0)
	}
	t.mu.Unlock()
	if discard {
		b.endMedia(c.id)
	} else {
		b.dropParticipant(p, true, p.s)
	}
	return fmt.Errorf("broker: join call %d: %w", c.id, err)
}

// leaveMedia takes p out of its call's room, logging a refusal: the
// broker's state has moved on whatever the SFU says.
func (b *Broker) leaveMedia(p *participant) {
	ctx, cancel := mediaCtx()
	defer cancel()
	if err := b.calls.media.Leave(ctx, p.key()); err != nil {
		b.log.Debug("broker: call media leave", "call", p.c.id, "user", p.s.user, "err", err)
	}
}

// declineCall declines a ring for all the user's devices. A call no one
// but its caller joined ends, missed, when no one is rung any more.
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
	if c.ended || !t.unringLocked(c, s.user) {
		t.mu.Unlock()
		return nil, fmt.Errorf("%w: call %d does not ring user %d", ErrBadRequest, id, s.user)
	}
	c.declined = true
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
		s.b.finishCall(end, s)
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
		s.b.finishCall(end, s)
	}
	return done(), nil
}

// participantOf returns the session's participation in call id, or why
// it has none.
func (t *callTable) participantOf(s *Session, id CallID) (*participant, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.bySession[s]; p != nil && p.c.id == id {
		return p, nil
	}
	if t.byID[id] == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownCall, id)
	}
	return nil, fmt.Errorf("%w: this device is not in call %d", ErrForbidden, id)
}

// dropParticipant takes p out of its call, if it is still in it, tells
// the chat's sessions but except, and ends the call when p was its last
// participant, or either of a direct call once answered. media says
// whether the SFU must be told (it is not when it removed p itself). It
// reports whether p was in the call.
func (b *Broker) dropParticipant(p *participant, media bool, except *Session) bool {
	t := b.calls
	c := p.c
	t.mu.Lock()
	if t.bySession[p.s] != p {
		t.mu.Unlock()
		return false
	}
	delete(t.bySession, p.s)
	if c.parts[p.s.user] == p {
		delete(c.parts, p.s.user)
	}
	var end *endedCall
	if len(c.parts) == 0 || (c.kind == storage.ChatDirect && !c.answered.IsZero()) {
		end = t.endLocked(c, wire.CallEndReason_CALL_END_REASON_LEFT)
	}
	t.mu.Unlock()
	if media && end == nil {
		b.leaveMedia(p)
	}
	b.callUpdate(c, &wire.CallUpdate{Kind: wire.CallUpdateKind_CALL_UPDATE_KIND_LEFT, User: uint64(p.s.user), Device: uint64(p.s.device)}, except)
	if end != nil {
		b.finishCall(end, except)
	}
	return true
}

// removeParticipant takes p out of its call for reason, and tells it.
func (b *Broker) removeParticipant(p *participant, reason wire.CallRemoveReason, msg string, media bool) {
	if b.dropParticipant(p, media, p.s) {
		b.pushSession(p.s, removedFrame(p.c.id, reason, msg))
	}
}

// armRingLocked starts c's ring timeout when it rings someone.
func (t *callTable) armRingLocked(b *Broker, c *call) {
	if len(c.ringing) == 0 {
		return
	}
	t.wg.Add(1)
	c.timer = time.AfterFunc(t.ring, func() {
		defer t.wg.Done()
		b.ringTimedOut(c)
	})
}

// disarmLocked stops c's ring timeout, if armed; one that fires already
// finds c.timer gone and does nothing.
func (t *callTable) disarmLocked(c *call) {
	if c.timer != nil && c.timer.Stop() {
		t.wg.Done()
	}
	c.timer = nil
}

// ringTimedOut ends the rings no one answered: the users' devices stop
// ringing, and a call no one but its caller joined ends, missed.
func (b *Broker) ringTimedOut(c *call) {
	t := b.calls
	t.mu.Lock()
	if c.ended || c.timer == nil {
		t.mu.Unlock()
		return
	}
	c.timer = nil
	missed := make([]storage.UserID, 0, len(c.ringing))
	for u := range c.ringing {
		missed = append(missed, u)
	}
	t.unringAllLocked(c)
	var end *endedCall
	if c.answered.IsZero() {
		end = t.endLocked(c, wire.CallEndReason_CALL_END_REASON_NO_ANSWER)
	}
	t.mu.Unlock()
	if end != nil {
		b.finishCall(end, nil)
		return
	}
	for _, u := range missed {
		b.pushUser(u, nil, &wire.Frame{Body: &wire.Frame_CallUpdate{CallUpdate: &wire.CallUpdate{
			Call: uint64(c.id), Chat: uint64(c.chat), Kind: wire.CallUpdateKind_CALL_UPDATE_KIND_MISSED, User: uint64(u),
		}}})
	}
}

// endLocked ends c: it leaves the table, its participants with it, and
// returns what finishing it needs. A zero reason discards a call that
// never rang anyone.
func (t *callTable) endLocked(c *call, reason wire.CallEndReason) *endedCall {
	c.ended = true
	t.disarmLocked(c)
	delete(t.byID, c.id)
	if t.byChat[c.chat] == c {
		delete(t.byChat, c.chat)
	}
	for _, p := range c.parts {
		if t.bySession[p.s] == p {
			delete(t.bySession, p.s)
		}
	}
	t.unringAllLocked(c)
	return &endedCall{
		id: c.id, chat: c.chat, video: c.video, caller: c.caller, started: c.started, answered: c.answered,
		at: t.now(), joined: slices.Clone(c.joined), reason: reason,
	}
}

// sessionEnded takes an ending session out of its call.
func (b *Broker) sessionEnded(s *Session) {
	t := b.calls
	t.mu.Lock()
	p := t.bySession[s]
	t.mu.Unlock()
	if p != nil {
		b.dropParticipant(p, true, s)
	}
}

// callMemberLeft takes a user who left chat out of its call there, and
// stops ringing it.
func (b *Broker) callMemberLeft(chat storage.ChatID, user storage.UserID) {
	t := b.calls
	t.mu.Lock()
	c := t.byChat[chat]
	var p *participant
	if c != nil {
		p = c.parts[user]
		t.unringLocked(c, user)
	}
	t.mu.Unlock()
	if p != nil {
		b.removeParticipant(p, wire.CallRemoveReason_CALL_REMOVE_REASON_LEFT_CHAT, "left the chat", true)
	}
}

// endCalls ends every call, as the node shuts down, and waits for the
// ring timers and removals in flight.
func (b *Broker) endCalls() {
	t := b.calls
	t.mu.Lock()
	t.closed = true
	ends := make([]*endedCall, 0, len(t.byID))
	for _, c := range t.byID {
		ends = append(ends, t.endLocked(c, wire.CallEndReason_CALL_END_REASON_SHUTDOWN))
	}
	t.mu.Unlock()
	for _, end := range ends {
		b.finishCall(end, nil)
	}
	t.wg.Wait()
}

// ringLocked makes c ring user.
func (t *callTable) ringLocked(c *call, user storage.UserID) {
	c.ringing[user] = struct{}{}
	t.rings[user] = append(t.rings[user], c)
}

// unringLocked stops c ringing user, and reports whether it did.
func (t *callTable) unringLocked(c *call, user storage.UserID) bool {
	if _, ok := c.ringing[user]; !ok {
		return false
	}
	delete(c.ringing, user)
	cs := slices.DeleteFunc(t.rings[user], func(x *call) bool { return x == c })
	if len(cs) == 0 {
		delete(t.rings, user)
	} else {
		t.rings[user] = cs
	}
	return true
}

// unringAllLocked stops c ringing anyone.
func (t *callTable) unringAllLocked(c *call) {
	for u := range c.ringing {
		t.unringLocked(c, u)
	}
}

// ringLate rings a session that came online while calls ring its user.
func (b *Broker) ringLate(s *Session) {
	t := b.calls
	t.mu.Lock()
	var rings []*wire.CallRing
	for _, c := range t.rings[s.user] {
		rings = append(rings, &wire.CallRing{
			Call: uint64(c.id), Chat: uint64(c.chat), Caller: uint64(c.caller), Device: uint64(c.callerDevice),
			Video: c.video, StartedUs: c.started.UnixMicro(),
		})
	}
	t.mu.Unlock()
	for _, r := range rings {
		b.pushSession(s, &wire.Frame{Body: &wire.Frame_CallRing{CallRing: r}})
	}
}
