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

// maxEndingCalls caps the calls Shutdown finishes at once.
const maxEndingCalls = 16

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
	lost    *metrics.Counter // needed call pushes beyond a session's backlog

	// wg counts the ring timers armed, the removals the SFU asked for,
	// each ended by its own goroutine, and the joins waiting for the SFU;
	// Shutdown waits for them.
	wg sync.WaitGroup

	mu        sync.Mutex // guards the following, and every call's fields
	closed    bool
	joins     uint64 // the last participant's join id
	byID      map[CallID]*call
	byChat    map[storage.ChatID]*call
	bySession map[*Session]*participant
	// rings lists, per user being rung, the calls ringing it, so that a
	// device connecting during a ring rings too.
	rings map[storage.UserID][]*call
}

// call is one call. Its fields are guarded by callTable.mu; id, chat,
// kind, video, caller, callerDevice and started never change.
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
	// audience is who hears of the call's changes: the users it rang and
	// those who joined, while members of its chat.
	audience map[storage.UserID]struct{}
	joining  []*participant // reserved, waiting for the SFU's Join
	timer    *time.Timer    // the ring timeout, while it is armed
	rec      *callRecording // its recording, while one runs or starts (callrecording.go)
	ended    bool
}

// participant is one session in a call, or on its way in: a join
// reserves it (in bySession only) while the SFU's Join runs, and commits
// it (into its call's parts) once that succeeded.
type participant struct {
	c    *call
	s    *Session
	join uint64 // its join id, unique on the node
	in   bool   // committed
	// cands counts the candidates relayed per PeerConnection (index
	// CallPC) since its last offer.
	cands [3]int
}

// key names p for CallMedia.
func (p *participant) key() CallParticipant {
	return CallParticipant{Call: p.c.id, User: p.s.user, Device: p.s.device, Join: p.join}
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
	audience []storage.UserID
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
		lost:      o.Metrics.NewCounter("gonets_broker_call_pushes_lost_total"),
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
func mediaCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callMediaTimeout)
}

// infoLocked describes c for a CallInfo.
func (c *call) infoLocked() *wire.CallInfo {
	info := &wire.CallInfo{Call: uint64(c.id), Chat: uint64(c.chat), Video: c.video, Caller: uint64(c.caller), StartedUs: c.started.UnixMicro()}
	info.Recording = c.recordingLocked()
	for _, p := range c.parts {
		info.Participants = append(info.Participants, &wire.CallPeer{User: uint64(p.s.user), Device: uint64(p.s.device)})
	}
	slices.SortFunc(info.Participants, func(a, b *wire.CallPeer) int { return cmpU64(a.User, b.User) })
	return info
}

// reserveLocked reserves a place in c for s while the SFU's Join runs,
// counted in t.wg so that Shutdown waits for it; commitJoin ends it.
func (t *callTable) reserveLocked(c *call, s *Session) *participant {
	t.joins++
	p := &participant{c: c, s: s, join: t.joins}
	t.bySession[s] = p
	c.joining = append(c.joining, p)
	t.wg.Add(1)
	return p
}

// commitJoin ends p's reservation after the SFU's Join answered err: it
// reports, with p committed by commit under the lock, whether p is in the
// call. A p that failed, left or whose call ended in the meantime is
// taken out of the SFU's room again, or the room ended, and nothing of
// the call changes.
func (b *Broker) commitJoin(p *participant, err error, commit func()) error {
	t := b.calls
	defer t.wg.Done()
	c := p.c
	t.mu.Lock()
	c.joining = slices.DeleteFunc(c.joining, func(x *participant) bool { return x == p })
	current := t.bySession[p.s] == p
	ok := err == nil && current && !c.ended
	if ok {
		p.in = true
		commit()
	} else if current {
		delete(t.bySession, p.s)
	}
	// A call that only its own caller's start would have joined goes.
	discard := !ok && !c.ended && c.answered.IsZero() && len(c.parts) == 0 && len(c.ringing) == 0
	if discard {
		t.endLocked(c, 0)
	}
	ended := c.ended
	t.mu.Unlock()
	switch {
	case ok:
		return nil
	case err != nil:
		if discard {
			b.endMedia(context.Background(), c.id)
		}
		return fmt.Errorf("broker: join call %d: %w", c.id, err)
	case ended: // the SFU's room, ended before this Join, came back
		b.endMedia(context.Background(), c.id)
	default:
		b.leaveMedia(p)
	}
	return fmt.Errorf("%w: call %d ended or was left while joining", ErrUnknownCall, c.id)
}

// joinMedia asks the SFU to join p to its call's room.
func (b *Broker) joinMedia(p *participant) error {
	ctx, cancel := mediaCtx(context.Background())
	defer cancel()
	return b.calls.media.Join(ctx, p.key(), p.c.video, b.callEvents(p))
}

// leaveMedia takes p out of its call's room, logging a refusal: the
// broker's state has moved on whatever the SFU says.
func (b *Broker) leaveMedia(p *participant) {
	ctx, cancel := mediaCtx(context.Background())
	defer cancel()
	if err := b.calls.media.Leave(ctx, p.key()); err != nil {
		b.log.Debug("broker: call media leave", "call", p.c.id, "user", p.s.user, "err", err)
	}
}

// participantOf returns the session's participation in call id, or why
// it has none.
func (t *callTable) participantOf(s *Session, id CallID) (*participant, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.bySession[s]; p != nil && p.in && p.c.id == id {
		return p, nil
	}
	if t.byID[id] == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownCall, id)
	}
	return nil, fmt.Errorf("%w: this device is not in call %d", ErrForbidden, id)
}

// dropParticipant takes p out of its call, if it is still in it, tells
// the call's audience but except, and ends the call when p was its last
// participant, or either of a direct call once answered. media says
// whether the SFU must be told (it is not when it removed p itself). It
// reports whether p was in the call. A p still joining only loses its
// reservation: its join finds that and undoes itself.
func (b *Broker) dropParticipant(p *participant, media bool, except *Session) bool {
	t := b.calls
	c := p.c
	t.mu.Lock()
	if t.bySession[p.s] != p {
		t.mu.Unlock()
		return false
	}
	delete(t.bySession, p.s)
	if !p.in {
		t.mu.Unlock()
		return false
	}
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
		b.finishCall(context.Background(), end, except)
	}
	return true
}

// removeParticipant takes p out of its call for reason, and tells it.
func (b *Broker) removeParticipant(p *participant, reason wire.CallRemoveReason, msg string, media bool) {
	if b.dropParticipant(p, media, p.s) {
		b.pushSession(p.s, removedFrame(p.c.id, reason, msg), true)
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
		b.finishCall(context.Background(), end, nil)
		return
	}
	for _, u := range missed {
		b.pushUser(u, nil, missedFrame(c, u), true)
	}
}

// missedFrame is the MISSED update that stops c's ring on user's devices.
func missedFrame(c *call, user storage.UserID) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallUpdate{CallUpdate: &wire.CallUpdate{
		Call: uint64(c.id), Chat: uint64(c.chat), Kind: wire.CallUpdateKind_CALL_UPDATE_KIND_MISSED, User: uint64(user),
	}}}
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
		at: t.now(), joined: slices.Clone(c.joined), audience: c.audienceLocked(), reason: reason,
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

// callMemberLeft takes a user who left chat out of its call there: a
// participant is removed (LEFT_CHAT), a ring stops (MISSED to the user's
// devices; a call that then rings no one, and that no one answered,
// ends), and the user hears no more of the call.
func (b *Broker) callMemberLeft(chat storage.ChatID, user storage.UserID) {
	t := b.calls
	t.mu.Lock()
	c := t.byChat[chat]
	if c == nil {
		t.mu.Unlock()
		return
	}
	p := c.parts[user]
	for _, j := range c.joining {
		if j.s.user == user && t.bySession[j.s] == j {
			delete(t.bySession, j.s) // its join finds that and undoes itself
		}
	}
	rung := t.unringLocked(c, user)
	var end *endedCall
	if rung && len(c.ringing) == 0 {
		t.disarmLocked(c)
		if c.answered.IsZero() && p == nil {
			end = t.endLocked(c, wire.CallEndReason_CALL_END_REASON_NO_ANSWER)
		}
	}
	if end == nil {
		delete(c.audience, user) // told below, or by the end
	}
	t.mu.Unlock()
	if rung {
		b.pushUser(user, nil, missedFrame(c, user), true)
	}
	if end != nil {
		b.finishCall(context.Background(), end, nil)
	}
	if p != nil {
		b.removeParticipant(p, wire.CallRemoveReason_CALL_REMOVE_REASON_LEFT_CHAT, "left the chat", true)
	}
}

// endCalls ends every call, as the node shuts down, finishing up to
// maxEndingCalls at once, and waits for the ring timers, removals and
// joins in flight; it gives up on what is left when ctx is done.
func (b *Broker) endCalls(ctx context.Context) {
	t := b.calls
	t.mu.Lock()
	t.closed = true
	ends := make([]*endedCall, 0, len(t.byID))
	for _, c := range t.byID {
		reason := wire.CallEndReason_CALL_END_REASON_SHUTDOWN
		if len(c.parts) == 0 {
			reason = 0 // its start is still joining: it rang no one
		}
		ends = append(ends, t.endLocked(c, reason))
	}
	t.mu.Unlock()
	sem := make(chan struct{}, maxEndingCalls)
	var wg sync.WaitGroup
	left := len(ends)
	for _, end := range ends {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		left--
		wg.Go(func() {
			defer func() { <-sem }()
			b.finishCall(ctx, end, nil)
		})
	}
	wg.Wait()
	if left > 0 {
		b.log.Warn("broker: calls not finished before the shutdown's deadline", "calls", left)
	}
	idle := make(chan struct{})
	go func() { // ends with the last timer, removal or join, each bounded
		t.wg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-ctx.Done():
	}
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
// It holds the session's callMu throughout, so that a push stopping one
// of the rings follows it.
func (b *Broker) ringLate(s *Session) {
	t := b.calls
	s.callMu.Lock()
	defer s.callMu.Unlock()
	t.mu.Lock()
	cs := slices.Clone(t.rings[s.user])
	t.mu.Unlock()
	for _, c := range cs {
		f := c.ringFrame()
		if p := b.encodeCallPush(f); p != nil {
			b.pushNeededLocked(s, p, f)
			p.Release()
		}
	}
}
