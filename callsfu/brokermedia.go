package callsfu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/storage"
)

// BrokerMedia is the SFU as the broker drives it: it implements
// broker.CallMedia over an *SFU, so that `gonets serve` can hand the SFU
// to the broker (broker.Options.Calls) without the broker knowing this
// package.
//
// It keeps the Participant of each broker.CallParticipant, that is of each
// join: the SFU knows a device once per call, so a device's new join
// replaces its earlier participant there (which hears a removal), and a
// late Leave of the earlier join reaches only that participant, gone
// already, leaving the new one be. It learns from the participant's own
// events which tracks it publishes (the SFU tells a publisher its tracks'
// IDs), so that a mute named by the client's track id, or by a kind,
// reaches the right SFU tracks. Of the SFU's events it passes on the
// subscriber offers, their candidates, the loudest speaker and a removal;
// the rest (joins, leaves, tracks and mutes of the others) the broker
// tells the clients itself, or the client learns from the subscriber
// offer. A removal is passed on whatever its reason: the broker ignores
// one of a participant it has already taken out (a Leave, an End, a
// replaced join).
//
// The SFU's methods do not block on the network (Publish waits for the
// SFU's own candidates, bounded inside the SFU), so the contexts are used
// only while Join waits for a room that is ending to go.
type BrokerMedia struct {
	sfu *SFU

	mu    sync.Mutex // guards the following; taken before a mediaParticipant's mu
	parts map[broker.CallParticipant]*mediaParticipant
}

// NewBrokerMedia returns the broker's view of s. Closing s is the caller's
// business, after the broker has shut down.
func NewBrokerMedia(s *SFU) *BrokerMedia {
	return &BrokerMedia{sfu: s, parts: make(map[broker.CallParticipant]*mediaParticipant)}
}

var _ broker.CallMedia = (*BrokerMedia)(nil)

// mediaParticipant is one broker participant's Participant and the tracks
// it publishes.
type mediaParticipant struct {
	key    broker.CallParticipant
	events func(broker.CallEvent)

	mu      sync.Mutex       // guards the following
	part    *Participant     // nil until the SFU's Join returns
	own     map[string]Track // its published tracks, by Track.ID
	removed bool             // the SFU removed it (its last event)
}

// joinRetry is the pause before Join tries again when the room Start found
// running ended before Join got in (its last participant leaving as the
// broker joins another): the next Start opens the call's room anew.
const joinRetry = 5 * time.Millisecond

// Join implements broker.CallMedia: it starts the call's room unless it
// runs already and joins p to it. video is not needed: what a participant
// sends is in its offers.
func (m *BrokerMedia) Join(ctx context.Context, p broker.CallParticipant, video bool, events func(broker.CallEvent)) error {
	mp := &mediaParticipant{key: p, events: events, own: make(map[string]Track)}
	call, peer := uint64(p.Call), Peer{User: uint64(p.User), Device: uint64(p.Device)}
	for {
		if err := m.sfu.Start(call); err != nil && !errors.Is(err, ErrCallExists) {
			return mediaErr("join", p, err)
		}
		part, err := m.sfu.Join(call, peer, mp.onEvent(m))
		if err == nil {
			m.keep(mp, part)
			return nil
		}
		if !errors.Is(err, ErrUnknownCall) {
			return mediaErr("join", p, err)
		}
		select {
		case <-ctx.Done():
			return mediaErr("join", p, fmt.Errorf("%w (the call's room was ending)", ctx.Err()))
		case <-time.After(joinRetry):
		}
	}
}

// keep records a joined participant, unless the SFU removed it already.
func (m *BrokerMedia) keep(mp *mediaParticipant, part *Participant) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mp.mu.Lock()
	defer mp.mu.Unlock()
	mp.part = part
	if !mp.removed {
		m.parts[mp.key] = mp
	}
}

// forget drops mp, unless a newer participant of the same key replaced it.
func (m *BrokerMedia) forget(mp *mediaParticipant) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.parts[mp.key] == mp {
		delete(m.parts, mp.key)
	}
}

// participant returns p's Participant, or ErrUnknownCall.
func (m *BrokerMedia) participant(op string, p broker.CallParticipant) (*mediaParticipant, *Participant, error) {
	m.mu.Lock()
	mp := m.parts[p]
	m.mu.Unlock()
	if mp == nil {
		return nil, nil, mediaErr(op, p, ErrUnknownCall)
	}
	mp.mu.Lock()
	defer mp.mu.Unlock()
	return mp, mp.part, nil
}

// Publish implements broker.CallMedia.
func (m *BrokerMedia) Publish(_ context.Context, p broker.CallParticipant, offer string) (string, error) {
	_, part, err := m.participant("publish", p)
	if err != nil {
		return "", err
	}
	answer, err := part.Publish(offer)
	if err != nil {
		return "", mediaErr("publish", p, err)
	}
	return answer, nil
}

// Answer implements broker.CallMedia.
func (m *BrokerMedia) Answer(_ context.Context, p broker.CallParticipant, answer string) error {
	_, part, err := m.participant("answer", p)
	if err != nil {
		return err
	}
	if err := part.Answer(answer); err != nil {
		return mediaErr("answer", p, err)
	}
	return nil
}

// Candidate implements broker.CallMedia. The candidate's username
// fragment is not needed: the SFU's PeerConnections do not restart ICE.
func (m *BrokerMedia) Candidate(_ context.Context, p broker.CallParticipant, pc broker.CallPC, c broker.ICECandidate) error {
	var target Target
	switch pc {
	case broker.CallPCPublish:
		target = TargetPublisher
	case broker.CallPCSubscribe:
		target = TargetSubscriber
	default:
		return mediaErr("candidate", p, fmt.Errorf("%w: PeerConnection %d", ErrBadCandidate, pc))
	}
	_, part, err := m.participant("candidate", p)
	if err != nil {
		return err
	}
	err = part.AddCandidate(target, Candidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
	if err != nil {
		return mediaErr("candidate", p, err)
	}
	return nil
}

// Mute implements broker.CallMedia: it mutes the participant's own track
// whose client id (its msid track id, Track.Name) is trackID or, when
// trackID is empty, its tracks of kind. The SFU knows a screen share only
// as a second video track, so with an empty trackID a participant's video
// tracks are told apart by their order in its offer: the first is the
// camera, the later ones screen shares, and a lone video track is either.
// A track is the participant's once its first packet reached the SFU; a
// mute before that is refused (ErrBadRequest), as nothing would be muted.
func (m *BrokerMedia) Mute(_ context.Context, p broker.CallParticipant, kind broker.CallTrack, trackID string, muted bool) error {
	mp, part, err := m.participant("mute", p)
	if err != nil {
		return err
	}
	ids, err := mp.tracksFor(kind, trackID)
	if err != nil {
		return mediaErr("mute", p, err)
	}
	for _, id := range ids {
		// A track of the kind that stopped since tracksFor needs no mute;
		// the one track named must still be there.
		err := part.SetMuted(id, muted)
		if err != nil && (trackID != "" || !errors.Is(err, ErrUnknownTrack)) {
			return mediaErr("mute", p, err)
		}
	}
	return nil
}

// RequestLayer implements broker.CallMedia.
func (m *BrokerMedia) RequestLayer(_ context.Context, p broker.CallParticipant, track string, q broker.CallQuality) error {
	quality, err := qualityOf(q)
	if err != nil {
		return mediaErr("request layer", p, err)
	}
	_, part, err := m.participant("request layer", p)
	if err != nil {
		return err
	}
	if err := part.RequestLayer(track, quality); err != nil {
		return mediaErr("request layer", p, err)
	}
	return nil
}

// qualityOf maps the broker's layer onto the SFU's.
func qualityOf(q broker.CallQuality) (Quality, error) {
	switch q {
	case broker.CallQualityLow:
		return QualityLow, nil
	case broker.CallQualityMedium:
		return QualityMedium, nil
	case broker.CallQualityHigh:
		return QualityHigh, nil
	case broker.CallQualityOff:
		return QualityOff, nil
	}
	return 0, fmt.Errorf("%w: quality %d", ErrBadRequest, q)
}

// Leave implements broker.CallMedia; it returns once p's PeerConnections
// are closed.
func (m *BrokerMedia) Leave(_ context.Context, p broker.CallParticipant) error {
	mp, part, err := m.participant("leave", p)
	if err != nil {
		return err
	}
	m.forget(mp)
	part.Leave()
	return nil
}

// End implements broker.CallMedia; it returns once every participant's
// PeerConnections are closed. The SFU ends a room by itself when its last
// participant leaves, so End of a call whose room has gone is
// ErrUnknownCall, which the broker only logs.
func (m *BrokerMedia) End(_ context.Context, call broker.CallID) error {
	if err := m.sfu.End(uint64(call)); err != nil {
		return mapErr(fmt.Sprintf("callsfu: end call %d", call), err)
	}
	return nil
}

// onEvent returns the SFU's events function for mp: it keeps mp's own
// tracks and passes what the broker wants on to it. It runs on the
// participant's event goroutine and does not block (the broker's events
// function only queues a push).
func (mp *mediaParticipant) onEvent(m *BrokerMedia) func(Event) {
	self := Peer{User: uint64(mp.key.User), Device: uint64(mp.key.Device)}
	return func(e Event) {
		switch e.Kind {
		case EventOffer:
			mp.events(broker.CallEvent{Kind: broker.CallEventOffer, SDP: e.SDP})
		case EventCandidate:
			mp.events(broker.CallEvent{Kind: broker.CallEventCandidate, PC: pcOf(e.Target), Candidate: broker.ICECandidate{
				Candidate: e.Candidate.Candidate, SDPMid: e.Candidate.SDPMid, SDPMLineIndex: e.Candidate.SDPMLineIndex,
			}})
		case EventSpeakers:
			if len(e.Speakers) > 0 {
				s := e.Speakers[0]
				mp.events(broker.CallEvent{Kind: broker.CallEventSpeaker, Speaker: broker.CallParticipant{
					Call: mp.key.Call, User: storage.UserID(s.User), Device: storage.DeviceID(s.Device),
				}})
			}
		case EventTrackPublished, EventTrackMuted:
			if e.Peer == self {
				mp.setOwn(e.Track, true)
			}
		case EventTrackRemoved:
			if e.Peer == self {
				mp.setOwn(e.Track, false)
			}
		case EventRemoved:
			mp.mu.Lock()
			mp.removed = true
			mp.mu.Unlock()
			m.forget(mp)
			reason, msg := removeReason(e.Reason)
			mp.events(broker.CallEvent{Kind: broker.CallEventRemoved, Reason: reason, Message: msg})
		}
	}
}

// setOwn records (or, with ok false, forgets) one of mp's own tracks.
func (mp *mediaParticipant) setOwn(t Track, ok bool) {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	if ok {
		mp.own[t.ID] = t
	} else {
		delete(mp.own, t.ID)
	}
}

// tracksFor returns the IDs of mp's own tracks a mute names: the one
// whose client id is name, or those of kind (see BrokerMedia.Mute).
func (mp *mediaParticipant) tracksFor(kind broker.CallTrack, name string) ([]string, error) {
	want := KindVideo
	switch kind {
	case broker.CallTrackAudio:
		want = KindAudio
	case broker.CallTrackVideo, broker.CallTrackScreen:
	default:
		return nil, fmt.Errorf("%w: track kind %d", ErrBadRequest, kind)
	}
	mp.mu.Lock()
	tracks := make([]Track, 0, len(mp.own))
	for _, t := range mp.own {
		if t.Kind == want {
			tracks = append(tracks, t)
		}
	}
	mp.mu.Unlock()
	slices.SortFunc(tracks, func(a, b Track) int { return compareMids(midOf(a), midOf(b)) })
	if name != "" {
		for _, t := range tracks {
			if t.Name == name {
				return []string{t.ID}, nil
			}
		}
		return nil, fmt.Errorf("%w: no %s track %q is published", ErrUnknownTrack, kindName(kind), name)
	}
	switch {
	case len(tracks) == 0:
		return nil, fmt.Errorf("%w: no %s track is published", ErrUnknownTrack, kindName(kind))
	case kind == broker.CallTrackVideo || len(tracks) == 1 && kind == broker.CallTrackScreen:
		tracks = tracks[:1]
	case kind == broker.CallTrackScreen:
		tracks = tracks[1:]
	}
	ids := make([]string, len(tracks))
	for i, t := range tracks {
		ids[i] = t.ID
	}
	return ids, nil
}

// kindName names a track kind in errors.
func kindName(k broker.CallTrack) string {
	switch k {
	case broker.CallTrackAudio:
		return "audio"
	case broker.CallTrackScreen:
		return "screen"
	}
	return "video"
}

// midOf returns the mid of the publisher's transceiver a track came on,
// the last part of its ID.
func midOf(t Track) string {
	return strings.TrimPrefix(t.ID, t.Peer.String()+".")
}

// compareMids orders mids as the offer's media sections: pion and the
// browsers number them, so a shorter number comes first.
func compareMids(a, b string) int {
	if c := cmp.Compare(len(a), len(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

// pcOf maps the SFU's PeerConnection onto the broker's.
func pcOf(t Target) broker.CallPC {
	if t == TargetPublisher {
		return broker.CallPCPublish
	}
	return broker.CallPCSubscribe
}

// removeReason maps why the SFU removed a participant onto the broker's
// reason, the SFU's own reason in the message.
func removeReason(r Reason) (broker.CallRemoveReason, string) {
	switch r {
	case ReasonSilent:
		return broker.CallRemovedSilent, "no media for too long"
	case ReasonICEFailed:
		return broker.CallRemovedICEFailed, "connectivity failed"
	}
	return broker.CallRemovedMedia, r.String()
}

// mediaError is a refusal of the SFU as the broker sees it: its message is
// the SFU's, and errors.Is finds both the broker's sentinel (which gives
// the client its code) and the SFU's.
type mediaError struct {
	kind error // a broker sentinel, nil for the node's own failures
	err  error
}

func (e *mediaError) Error() string { return e.err.Error() }

// Unwrap returns the broker's sentinel and the SFU's error.
func (e *mediaError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

// mediaErr wraps err from op on p for the broker.
func mediaErr(op string, p broker.CallParticipant, err error) error {
	return mapErr(fmt.Sprintf("callsfu: %s %d.%d in call %d", op, p.User, p.Device, p.Call), err)
}

// mapErr wraps err with context and the broker's sentinel for its code.
func mapErr(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	var kind error
	switch CodeOf(err) {
	case CodeBadSDP, CodeTooManyTracks:
		kind = broker.ErrBadSDP
	case CodeTooManyPublishers:
		kind = broker.ErrTooManyPublishers
	case CodeUnknownCall, CodeLeft:
		kind = broker.ErrUnknownCall
	case CodeUnknownTrack, CodeBadCandidate, CodeBadRequest:
		kind = broker.ErrBadRequest
	case CodeClosed:
		kind = broker.ErrShutdown
	case CodeForbidden:
		kind = broker.ErrForbidden
	}
	return &mediaError{kind: kind, err: err}
}

var _ broker.CallRecorder = (*BrokerMedia)(nil)

// StartRecording implements broker.CallRecorder over SFU.StartRecording:
// the recording's directory is <Options.RecordDir>/<call>/<n>. Once done
// has announced it, it is marked so (MarkAnnounced); one whose
// announcement failed, or that a crash cut off, is among Unannounced.
func (m *BrokerMedia) StartRecording(_ context.Context, by broker.CallParticipant, chat storage.ChatID, done func(broker.CallRecordingSummary) error) error {
	err := m.sfu.StartRecording(uint64(by.Call), RecordOptions{
		Chat: uint64(chat), By: uint64(by.User),
		Done: func(sum RecordingSummary, _ error) { // each file says its error
			if done(sum.Broker()) != nil {
				return // logged by the broker; announced at the next start
			}
			if err := MarkAnnounced(m.sfu.opts.RecordDir, sum.Dir); err != nil {
				m.sfu.log.Warn("callsfu: recording announced, not marked so: it may be announced again", "dir", sum.Dir, "err", err)
			}
		},
	})
	if err != nil {
		return mediaErr("record", by, err)
	}
	return nil
}

// StopRecording implements broker.CallRecorder.
func (m *BrokerMedia) StopRecording(_ context.Context, call broker.CallID) error {
	if err := m.sfu.StopRecording(uint64(call)); err != nil {
		return mapErr(fmt.Sprintf("callsfu: stop recording call %d", call), err)
	}
	return nil
}
