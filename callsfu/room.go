package callsfu

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// room is one call: its participants and the tracks they publish. Every
// change of membership or tracks happens under mu, and each participant's
// subscriptions are changed under it too, so that a participant joining
// while a track is published subscribes to that track exactly once.
type room struct {
	sfu      *SFU
	call     uint64
	started  time.Time
	detector *speakerDetector

	mu           sync.Mutex // guards the following; taken before any Participant.mu
	participants map[seat]*Participant
	publishers   map[*Participant]struct{}
	tracks       map[string]*publishedTrack // by Track.ID
	joined       bool                       // someone has joined since Start
	rec          *roomRecording             // the call's recording, while one runs (roomrecord.go)
	ended        bool
}

// seat is a participant's place in its room: its peer and whether it plays.
// A peer has one seat that publishes (a member, or an encoder) and one that
// plays (a WHEP player), so that a device can play the stream it publishes;
// a second participant of a peer in the same seat replaces the first.
type seat struct {
	peer   Peer
	player bool
}

// seat returns the participant's seat in its room.
func (p *Participant) seat() seat { return seat{peer: p.peer, player: p.role == rolePlayer} }

// newRoom returns the room of a call just started.
func newRoom(s *SFU, call uint64) *room {
	return &room{
		sfu:          s,
		call:         call,
		started:      time.Now(),
		detector:     newSpeakerDetector(),
		participants: make(map[seat]*Participant),
		publishers:   make(map[*Participant]struct{}),
		tracks:       make(map[string]*publishedTrack),
	}
}

// join adds a member for peer, tells it who is there and what they
// publish, subscribes it to every track, and tells the others it joined. A
// member or an encoder of the same peer already there is removed
// (ReasonReplaced).
func (r *room) join(peer Peer, events func(Event)) (*Participant, error) {
	p, err := newParticipant(r, peer, roleMember, events)
	if err != nil {
		return nil, err
	}
	if err := r.admit(p); err != nil {
		return nil, err
	}
	return p, nil
}

// admit adds a new participant to the room (see admitLocked), or discards
// it quietly when the call has ended.
func (r *room) admit(p *Participant) error {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		p.remove(ReasonLeft) // quietly: the caller hears of it from the error
		return fmt.Errorf("callsfu: join call %d: %w", r.call, ErrUnknownCall)
	}
	old := r.admitLocked(p)
	r.mu.Unlock()
	if old != nil {
		old.remove(ReasonReplaced)
	}
	p.negotiate() // a member's first offer, if there is anything to offer
	return nil
}

// admitLocked adds p to the room, in place of the participant in the same
// seat (see seat), which it returns for the caller to remove
// (ReasonReplaced) once the room's lock is released. A member or a publisher is announced to the
// others and told who is there; a member is told what they publish and
// subscribed to it, and the caller negotiates it once the lock is released.
// A player is neither announced nor told anything.
func (r *room) admitLocked(p *Participant) *Participant {
	old := r.participants[p.seat()]
	r.participants[p.seat()] = p
	r.joined = true
	if p.role == rolePlayer {
		return old
	}
	for _, other := range r.participants {
		if other != p && other != old && other.role != rolePlayer {
			p.emit(Event{Kind: EventJoined, Peer: other.peer})
			other.emit(Event{Kind: EventJoined, Peer: p.peer})
		}
	}
	if p.role != roleMember {
		return old
	}
	for _, t := range r.tracks {
		if t.owner != old {
			// Subscribed first: a client told of the track may ask for
			// one of its layers at once.
			p.subscribe(t)
			p.emit(Event{Kind: EventTrackPublished, Peer: t.info.Peer, Track: t.describe()})
		}
	}
	return old
}

// reservePublisher counts p among the publishers, refusing it when the room
// has limit publishers already (not counting another participant of p's
// peer, which p replaces). It reports whether p was newly counted (so a
// refusal further on can undo exactly that).
func (r *room) reservePublisher(p *Participant, limit int) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return false, fmt.Errorf("callsfu: publish in call %d: %w", r.call, ErrUnknownCall)
	}
	if _, ok := r.publishers[p]; ok {
		return false, nil
	}
	n := 0
	for other := range r.publishers {
		if other.peer != p.peer {
			n++
		}
	}
	if n >= limit {
		return false, fmt.Errorf("callsfu: publish in call %d (%d publishers): %w",
			r.call, n, ErrTooManyPublishers)
	}
	r.publishers[p] = struct{}{}
	return true, nil
}

// releasePublisher stops counting p among the publishers.
func (r *room) releasePublisher(p *Participant) {
	r.mu.Lock()
	delete(r.publishers, p)
	r.mu.Unlock()
}

// publish announces a new track of t.owner's to everyone (the owner learns
// its ID) and subscribes every other member to it (players play what was
// published when they came; publishers are sent nothing). It reports false,
// publishing nothing, when the owner is no longer in the room. The
// subscribers are offered the track once the room's lock is released.
func (r *room) publish(t *publishedTrack) bool {
	r.mu.Lock()
	if r.ended || r.participants[t.owner.seat()] != t.owner {
		r.mu.Unlock()
		return false
	}
	r.tracks[t.info.ID] = t
	r.recordLocked(t)
	var subscribed []*Participant
	for _, p := range r.participants {
		if p != t.owner && p.role == roleMember {
			p.subscribe(t)
			subscribed = append(subscribed, p)
		}
		p.emit(Event{Kind: EventTrackPublished, Peer: t.info.Peer, Track: t.describe()})
	}
	r.mu.Unlock()
	negotiateAll(subscribed)
	return true
}

// negotiateAll sends each participant its next subscriber offer. It runs
// with no room's lock held: an offer takes milliseconds, and a room with
// many members would be held for each. A participant removed meanwhile is
// offered nothing (negotiate checks), and changes made meanwhile are in the
// offer or in the one after it.
func negotiateAll(ps []*Participant) {
	for _, p := range ps {
		p.negotiate()
	}
}

// unpublish removes t from the room and from every subscriber.
func (r *room) unpublish(t *publishedTrack) {
	r.mu.Lock()
	unsubscribed := r.unpublishLocked(t, nil)
	r.mu.Unlock()
	negotiateAll(unsubscribed)
}

// unpublishLocked removes t from the room and from every subscriber, and
// tells everyone. It appends the members unsubscribed to ps and returns it:
// the caller negotiates them once the room's lock is released.
func (r *room) unpublishLocked(t *publishedTrack, ps []*Participant) []*Participant {
	if r.tracks[t.info.ID] != t {
		return ps
	}
	delete(r.tracks, t.info.ID)
	r.unrecordLocked(t)
	for _, p := range r.participants {
		if p != t.owner {
			p.unsubscribe(t)
			if p.role == roleMember && !slices.Contains(ps, p) {
				ps = append(ps, p)
			}
		}
		p.emit(Event{Kind: EventTrackRemoved, Peer: t.info.Peer, Track: t.info})
	}
	return ps
}

// setMuted tells everyone that t was muted or unmuted and stops or resumes
// its forwarding to the others.
func (r *room) setMuted(t *publishedTrack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tracks[t.info.ID] != t {
		return
	}
	info := t.describe()
	for _, p := range r.participants {
		if p != t.owner {
			p.applyMute(t)
		}
		p.emit(Event{Kind: EventTrackMuted, Peer: info.Peer, Track: info})
	}
}

// announceSpeaker pushes a change of the dominant speaker to every
// participant.
func (r *room) announceSpeaker(now time.Time) {
	id, changed := r.detector.dominant(now)
	if !changed {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var speakers []Peer
	for seat := range r.participants {
		if !seat.player && seat.peer.String() == id {
			speakers = []Peer{seat.peer}
		}
	}
	for _, p := range r.participants {
		p.emit(Event{Kind: EventSpeakers, Speakers: speakers})
	}
}

// drop takes a leaving participant out of the room: its tracks are
// unpublished and, unless a new participant in the same seat replaced it,
// the others told it left. It reports whether the room is now empty and
// ended by this departure (it then leaves the running calls at once), in
// which case the caller reports the end once the participant is torn down.
// It returns the members its tracks were taken from, for the caller to
// negotiate.
func (r *room) drop(p *Participant) (bool, []*Participant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.publishers, p)
	if r.ended {
		if r.participants[p.seat()] == p {
			delete(r.participants, p.seat())
		}
		return false, nil
	}
	var unsubscribed []*Participant
	for _, t := range r.tracks {
		if t.owner == p {
			unsubscribed = r.unpublishLocked(t, unsubscribed)
		}
	}
	if r.participants[p.seat()] != p {
		return false, unsubscribed // replaced by a new participant in the same seat
	}
	delete(r.participants, p.seat())
	for _, other := range r.participants {
		if p.role != rolePlayer {
			other.emit(Event{Kind: EventLeft, Peer: p.peer})
		}
	}
	if len(r.participants) == 0 {
		r.ended = true
		r.sfu.detach(r)
		return true, nil
	}
	return false, unsubscribed
}

// end removes every participant with reason and reports the end of the call.
// Only the first call of end does anything.
func (r *room) end(why EndReason, reason Reason) {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return
	}
	r.ended = true
	r.sfu.detach(r)
	ps := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	for _, p := range ps {
		p.remove(reason)
	}
	r.sfu.ended(r, why)
}

// sweep announces a new dominant speaker, fits subscribers' layers to their
// bandwidth estimates, removes participants silent for
// Options.SilenceTimeout and those none of whose PeerConnections connected
// within Options.SilenceTimeout plus Options.ICEFailedTimeout of joining,
// and ends the call when nobody has joined it within Options.EmptyTimeout.
func (r *room) sweep(now time.Time) {
	r.announceSpeaker(now)
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return
	}
	abandoned := !r.joined && now.Sub(r.started) > r.sfu.opts.EmptyTimeout
	var silent, unconnected []*Participant
	for _, p := range r.participants {
		p.refit()
		switch {
		case p.neverConnected(now):
			unconnected = append(unconnected, p)
		case p.silentSince(now) > r.sfu.opts.SilenceTimeout:
			silent = append(silent, p)
		}
	}
	r.mu.Unlock()
	if abandoned {
		r.end(EndEmpty, ReasonCallEnded)
		return
	}
	for _, p := range unconnected {
		p.removeAsync(ReasonNeverConnected, r.sfu.m.removedNeverConnected)
	}
	for _, p := range silent {
		p.removeAsync(ReasonSilent, r.sfu.m.removedSilent)
	}
}
