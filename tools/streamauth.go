package tools

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/callsfu"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// channelStreams is the node's callsfu.Authorizer: live streams into
// channels over WHIP and WHEP. The URL's {call} is the channel's chat id in
// decimal and its stream is the SFU call streamCall derives from it; the
// bearer token is a session token, verified as the broker verifies a
// Hello's. A channel's owner and admins publish (their publish starts the
// stream's call), its members of any role play. A publisher's session is
// followed by live, which announces the stream's start and end in the
// channel.
type channelStreams struct {
	sfu      *callsfu.SFU
	store    *storage.Store
	verifier *token.Verifier
	live     *liveStreams // nil: no announcements
	// device fails for an account device that was ended (its access token
	// lives on until it expires), as the broker's Hello does; nil: no
	// check.
	device func(storage.UserID, storage.DeviceID) error
}

// Authorize implements callsfu.Authorizer.
func (a *channelStreams) Authorize(ctx context.Context, req callsfu.AuthRequest) (callsfu.Grant, error) {
	claims, err := a.verifier.Verify(req.Token)
	if err == nil && storage.DeviceID(claims.Device) == storage.DeviceNode {
		err = fmt.Errorf("%w: device %d is the node's own", token.ErrForged, claims.Device)
	}
	if err == nil && storage.IsServiceUser(storage.UserID(claims.User)) {
		err = fmt.Errorf("%w: user %d is one of the node's service users", token.ErrForged, claims.User)
	}
	if err != nil {
		return callsfu.Grant{}, fmt.Errorf("%w: %w", callsfu.ErrUnauthorized, err)
	}
	if a.device != nil {
		switch err := a.device(storage.UserID(claims.User), storage.DeviceID(claims.Device)); {
		case errors.Is(err, broker.ErrDeviceEnded):
			return callsfu.Grant{}, fmt.Errorf("%w: %w", callsfu.ErrUnauthorized, err)
		case err != nil:
			return callsfu.Grant{}, err
		}
	}
	call, id, ok := streamCall(req.Call)
	if !ok {
		return callsfu.Grant{}, fmt.Errorf("%w: %q is not a channel's id", callsfu.ErrUnknownCall, req.Call)
	}
	chat, err := a.store.Chat(storage.ChatID(id))
	switch {
	case errors.Is(err, storage.ErrUnknownChat):
		return callsfu.Grant{}, fmt.Errorf("%w: no channel %d", callsfu.ErrUnknownCall, id)
	case err != nil:
		return callsfu.Grant{}, err
	case chat.Kind != storage.ChatChannel:
		return callsfu.Grant{}, fmt.Errorf("%w: chat %d is a %s; live streams go into channels", callsfu.ErrUnknownCall, id, chat.Kind)
	}
	user := storage.UserID(claims.User)
	m, err := a.store.Member(chat.ID, user)
	switch {
	case errors.Is(err, storage.ErrNotMember), errors.Is(err, storage.ErrBadID):
		return callsfu.Grant{}, fmt.Errorf("%w: user %d is not in channel %d", callsfu.ErrForbidden, user, id)
	case err != nil:
		return callsfu.Grant{}, err
	case req.Publish && m.Role < storage.RoleAdmin:
		return callsfu.Grant{}, fmt.Errorf("%w: user %d is a %s of channel %d; its owner and admins publish", callsfu.ErrForbidden, user, m.Role, id)
	}
	if req.Publish {
		if err := a.sfu.Start(call); err != nil && !errors.Is(err, callsfu.ErrCallExists) {
			return callsfu.Grant{}, err
		}
	}
	g := callsfu.Grant{Call: call, Peer: callsfu.Peer{User: claims.User, Device: claims.Device}}
	if req.Publish && a.live != nil {
		g.Events = a.live.session(chat.ID, g.Peer)
	}
	return g, nil
}

// liveStreams announces the channels' live streams in them (a service
// message, wire.Service's live_started and live_ended): players learn so
// that there is something to play. A channel's stream starts when the
// first media of one of its encoders arrives (the SFU publishes the
// encoder's first track: a WHEP play finds it from then on, where after
// the WHIP answer alone it may still be refused not_live), and ends when
// its last live encoder stops (DELETE, or it closed its connection), is
// lost (silent, ICE failed), or the node shuts down: the SFU's close
// removes every encoder, after the broker told the sessions to go away,
// and the end is written then, for members to find when they sync. An
// encoder that reconnects, its new session replacing the old, hands the
// stream over: the new session's first media goes on with the same
// stream, and only a new session that ends without any ends it. A node
// that dies (SIGKILL, power) writes no end then: each stream live keeps a
// file in dir (liveDir) from before its start is written until its end
// is, and at the next start recoverLive writes the end (LOST) of each one
// left.
//
// A channel's announcements are written one at a time, in the order of
// its events: a stream's end never overtakes its start. Each is queued
// under mu, and the event that finds its channel's queue idle writes the
// queue out, with mu let go while it writes, so that one channel's slow
// write holds back no other channel's (a node's streams ending together at
// its shutdown are written together, in the store's group commits). They
// run on the SFU participants' events goroutines (and a DELETE's), which
// the SFU owns and waits for; liveStreams has none of its own.
type liveStreams struct {
	announce func(broker.LiveNote) error
	log      *slog.Logger
	now      func() time.Time
	// dir holds the files of the streams live (liveDir): "" keeps none.
	dir string

	mu        sync.Mutex // guards the following, and orders the announcements
	channels  map[storage.ChatID]*liveChannel
	lastStart time.Time // of the latest stream of any channel
	// writing holds the notes of each channel whose notes are being
	// written, those not taken yet: its writer takes them in order.
	writing map[storage.ChatID][]broker.LiveNote
}

// liveChannel is a channel whose stream is live.
type liveChannel struct {
	started time.Time
	peer    callsfu.Peer // who started it
	live    map[*liveSession]struct{}
	// handover holds the peers whose live session was replaced by a new
	// one of theirs, not live yet, which will take the stream over.
	handover map[callsfu.Peer]struct{}
}

// liveLocked reports whether a session of peer is live in the channel.
func (ch *liveChannel) liveLocked(peer callsfu.Peer) bool {
	for s := range ch.live {
		if s.peer == peer {
			return true
		}
	}
	return false
}

// liveSession is one WHIP publisher session of a channel.
type liveSession struct {
	l     *liveStreams
	chat  storage.ChatID
	peer  callsfu.Peer
	live  bool // its first track was published
	ended bool
}

// newLiveStreams returns the announcer of a node's streams, writing
// through announce (broker.AnnounceLive).
func newLiveStreams(announce func(broker.LiveNote) error, log *slog.Logger) *liveStreams {
	return &liveStreams{announce: announce, log: log, now: time.Now, channels: make(map[storage.ChatID]*liveChannel),
		writing: make(map[storage.ChatID][]broker.LiveNote)}
}

// session returns the events function (callsfu.Grant.Events) of a new
// publisher session of peer in chat.
func (l *liveStreams) session(chat storage.ChatID, peer callsfu.Peer) func(callsfu.Event) {
	s := &liveSession{l: l, chat: chat, peer: peer}
	return s.event
}

// event follows the session's participant: its own first track makes it
// live, its removal ends it.
func (s *liveSession) event(e callsfu.Event) {
	switch {
	case e.Kind == callsfu.EventTrackPublished && e.Peer == s.peer:
		s.l.goLive(s)
	case e.Kind == callsfu.EventRemoved:
		s.l.end(s, e.Reason)
	}
}

// goLive marks s live, and announces the channel's stream if it was not
// live yet (nor handed over from a replaced session of the same peer).
func (l *liveStreams) goLive(s *liveSession) {
	l.mu.Lock()
	if !l.goLiveLocked(s) {
		l.mu.Unlock()
		return
	}
	l.writeQueued(s.chat) // unlocks
}

// goLiveLocked is goLive's bookkeeping; it reports whether it queued a
// note.
func (l *liveStreams) goLiveLocked(s *liveSession) bool {
	if s.live || s.ended {
		return false
	}
	s.live = true
	ch := l.channels[s.chat]
	if ch != nil {
		ch.live[s] = struct{}{}
		delete(ch.handover, s.peer)
		return false
	}
	ch = &liveChannel{
		started: l.startLocked(), peer: s.peer,
		live: map[*liveSession]struct{}{s: {}}, handover: make(map[callsfu.Peer]struct{}),
	}
	l.channels[s.chat] = ch
	l.queueLocked(broker.LiveNote{Chat: s.chat, User: storage.UserID(s.peer.User), Device: storage.DeviceID(s.peer.Device),
		Started: ch.started})
	return true
}

// startLocked returns now, to the microsecond the note carries, or a
// microsecond after the last start if that is not earlier: two streams of
// a channel must not share their start, which pairs their notes and makes
// their client message ids.
func (l *liveStreams) startLocked() time.Time {
	t := l.now().Round(0).Truncate(time.Microsecond)
	if !t.After(l.lastStart) {
		t = l.lastStart.Add(time.Microsecond)
	}
	l.lastStart = t
	return t
}

// end ends s (once), and the channel's stream with it when s was its last
// live session and none takes over.
func (l *liveStreams) end(s *liveSession, reason callsfu.Reason) {
	l.mu.Lock()
	if !l.endLocked(s, reason) {
		l.mu.Unlock()
		return
	}
	l.writeQueued(s.chat) // unlocks
}

// endLocked is end's bookkeeping; it reports whether it queued a note.
func (l *liveStreams) endLocked(s *liveSession, reason callsfu.Reason) bool {
	if s.ended {
		return false
	}
	s.ended = true
	ch := l.channels[s.chat]
	if ch == nil {
		return false
	}
	_, handing := ch.handover[s.peer]
	switch {
	case s.live:
		delete(ch.live, s)
		if reason == callsfu.ReasonReplaced && !ch.liveLocked(s.peer) {
			// The new session, not live yet, takes over. One heard live
			// already (each participant's events come on its own
			// goroutine) has taken over: no handover to wait for.
			ch.handover[s.peer] = struct{}{}
		}
	case handing && reason != callsfu.ReasonReplaced:
		delete(ch.handover, s.peer) // the new session ended without media
	default:
		return false
	}
	if len(ch.live) > 0 || len(ch.handover) > 0 {
		return false
	}
	delete(l.channels, s.chat)
	l.queueLocked(broker.LiveNote{Chat: s.chat, User: storage.UserID(ch.peer.User), Device: storage.DeviceID(ch.peer.Device),
		Started: ch.started, Ended: l.now(), Reason: liveEndReason(reason)})
	return true
}

// queueLocked queues n behind its channel's notes not written yet.
func (l *liveStreams) queueLocked(n broker.LiveNote) {
	l.writing[n.Chat] = append(l.writing[n.Chat], n)
}

// writeQueued is called with mu held, after queueLocked queued a note of
// chat, and unlocks it. When no other call writes chat's notes it writes
// them, in order, until none is left; with mu let go while each is
// written. Else the call writing them takes this note too.
func (l *liveStreams) writeQueued(chat storage.ChatID) {
	if q := l.writing[chat]; len(q) != 1 {
		l.mu.Unlock() // another call is writing the channel's notes
		return
	}
	for {
		n := l.writing[chat][0]
		l.mu.Unlock()
		l.write(n)
		l.mu.Lock()
		q := l.writing[chat][1:]
		if len(q) == 0 {
			delete(l.writing, chat)
			l.mu.Unlock()
			return
		}
		l.writing[chat] = q
	}
}

// write announces n, logging a failure: the stream goes on either way.
func (l *liveStreams) write(n broker.LiveNote) {
	what := "started"
	if !n.Ended.IsZero() {
		what = "ended"
	}
	if l.dir != "" && n.Ended.IsZero() {
		// Marked before it is announced: a start without its mark would
		// never get its end after a crash.
		if err := markLive(l.dir, n); err != nil {
			l.log.Error("live stream not marked: a crash would leave it without its end", "chat", n.Chat, "err", err)
		}
	}
	if err := l.announce(n); err != nil {
		l.log.Warn("live stream note not written", "chat", n.Chat, "note", what, "err", err)
		return
	}
	if l.dir != "" && !n.Ended.IsZero() {
		if err := unmarkLive(l.dir, n); err != nil {
			l.log.Error("live stream ended, not unmarked: its end would be written again", "chat", n.Chat, "err", err)
		}
	}
	l.log.Info("live stream "+what, "chat", n.Chat, "user", n.User, "device", n.Device, "reason", n.Reason.String())
}

// liveEndReason is why a stream whose last session was removed for
// reason ended.
func liveEndReason(reason callsfu.Reason) wire.LiveEndReason {
	switch reason {
	case callsfu.ReasonLeft, callsfu.ReasonClientClosed, callsfu.ReasonCallEnded:
		return wire.LiveEndReason_LIVE_END_REASON_STOPPED
	case callsfu.ReasonClosed:
		return wire.LiveEndReason_LIVE_END_REASON_SHUTDOWN
	}
	return wire.LiveEndReason_LIVE_END_REASON_LOST // silent, ICE failed, slow, a successor that never went live
}
