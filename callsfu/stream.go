package callsfu

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// A live stream is a call with a publish-only participant, the encoder
// (JoinPublisher, WHIP), and players (Play, WHEP). Neither kind hears
// offers: the encoder's PeerConnection is the one it offered, and a player's
// is the one it offered, answered once with the call's tracks of that
// moment. A player is never renegotiated: when the tracks it plays end (the
// encoder stops or leaves, or restarts, which replaces its tracks), the
// player is removed (ReasonStreamEnded) and its PeerConnection closed, and
// the client plays the new stream by asking again.

// JoinPublisher joins peer to a started call as a participant that only
// publishes, and applies offer to its publisher PeerConnection: a WHIP
// encoder's publish, in one step, so that a refusal changes nothing of the
// call. It returns the participant and the SFU's answer, which carries all
// of the SFU's ICE candidates. The participant has no subscriber
// PeerConnection and is offered nothing; events hears the rest (see Event),
// EventRemoved included. An offer that sends no media or does not parse is
// refused with ErrBadSDP, and so is one a section of which the SFU would
// reject (a codec it does not forward: VP9 from an encoder, say, where a
// call in a browser would have gone on without the track), one with more
// than Options.MaxTracks sections with
// ErrTooManyTracks, and a call with Options.MaxStreamPublishers publishers
// already (another publishing participant of the same peer, which this
// one replaces, not counted) with ErrTooManyPublishers. The peer may play
// the call at the same time (Play).
func (s *SFU) JoinPublisher(call uint64, peer Peer, offer string, events func(Event)) (*Participant, string, error) {
	o, err := parseOffer(offer)
	if err == nil && !o.sends {
		err = errors.New("it sends no media")
	}
	if err != nil {
		return nil, "", fmt.Errorf("callsfu: publish %s in call %d: %w: %v", peer, call, ErrBadSDP, err)
	}
	if len(o.sending) > s.opts.MaxTracks {
		return nil, "", fmt.Errorf("callsfu: publish %s (%d tracks): %w", peer, len(o.sending), ErrTooManyTracks)
	}
	r, err := s.room(call)
	if err != nil {
		return nil, "", fmt.Errorf("callsfu: publish %s in call %d: %w", peer, call, err)
	}
	p, err := newParticipant(r, peer, rolePublisher, orNothing(events))
	if err != nil {
		return nil, "", err
	}
	if _, err := r.reservePublisher(p, s.opts.MaxStreamPublishers); err != nil {
		p.remove(ReasonLeft) // quietly: it was never in the room
		return nil, "", err
	}
	answer, _, err := p.applyOffer(offer, o)
	if err == nil {
		err = checkAccepted(offer, answer)
	}
	if err != nil {
		p.remove(ReasonLeft)
		return nil, "", fmt.Errorf("callsfu: publish %s in call %d: %w", peer, call, err)
	}
	if err := r.admit(p); err != nil {
		return nil, "", err
	}
	return p, answer, nil
}

// Play joins peer to a started call as a player of what is published in it
// now: a WHEP player's offer (its media sections recvonly, as the WHEP
// draft has them) is answered with one published track for each section of
// its kind, in the order of the tracks' IDs; sections left over carry
// nothing. It returns the participant and the answer, which carries all of
// the SFU's ICE candidates. events hears only the player's removal
// (EventRemoved; ReasonStreamEnded when the tracks it plays have all ended).
// A bad offer is refused with ErrBadSDP, and so is one that lacks the codec
// of a track it would play (VP8 only, of an H.264 stream); a call with
// nothing the offer can receive is refused with ErrNotLive; neither changes
// anything of the call. A player replaces an earlier player of the same
// peer (ReasonReplaced), not the peer's publishing participant: a device
// may play what it publishes.
func (s *SFU) Play(call uint64, peer Peer, offer string, events func(Event)) (*Participant, string, error) {
	if err := checkPlayOffer(offer); err != nil {
		return nil, "", fmt.Errorf("callsfu: play call %d for %s: %w: %v", call, peer, ErrBadSDP, err)
	}
	r, err := s.room(call)
	if err != nil {
		return nil, "", fmt.Errorf("callsfu: play call %d for %s: %w", call, peer, err)
	}
	p, err := newParticipant(r, peer, rolePlayer, orNothing(events))
	if err != nil {
		return nil, "", err
	}
	err = p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer})
	if err != nil {
		p.remove(ReasonLeft) // quietly: it was never in the room
		return nil, "", fmt.Errorf("callsfu: play call %d for %s: %w: %v", call, peer, ErrBadSDP, err)
	}
	if err := r.admitPlayer(p); err != nil {
		return nil, "", err
	}
	answer, err := p.answerPlay()
	if err != nil {
		p.Leave()
		return nil, "", err
	}
	return p, answer, nil
}

// checkAccepted refuses an answer that rejects (port 0) a media section
// the offer sends on, naming the codecs the SFU forwards. The answer's
// sections are the offer's, in order (a rejected one may lack its mid).
func checkAccepted(offer, answer string) error {
	var o, a sdp.SessionDescription
	if err := o.UnmarshalString(offer); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	if err := a.UnmarshalString(answer); err != nil {
		return fmt.Errorf("%w: the answer: %v", ErrBadSDP, err)
	}
	for i, m := range o.MediaDescriptions {
		if i >= len(a.MediaDescriptions) || m.MediaName.Port.Value == 0 || !sends(m) {
			continue
		}
		if a.MediaDescriptions[i].MediaName.Port.Value == 0 {
			mid, _ := m.Attribute("mid")
			return fmt.Errorf("%w: no codec of the %s section (mid %q) in common: the SFU forwards %s",
				ErrBadSDP, m.MediaName.Media, mid, forwardedCodecs)
		}
	}
	return nil
}

// orNothing returns events, or a function that ignores every event.
func orNothing(events func(Event)) func(Event) {
	if events == nil {
		return func(Event) {}
	}
	return events
}

// checkPlayOffer refuses a player's offer that does not parse, has no audio
// or video section, or has a section that sends: a player sends nothing, and
// media it sent would be read by nobody.
func checkPlayOffer(offer string) error {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return err
	}
	media := 0
	for _, m := range d.MediaDescriptions {
		if kind := m.MediaName.Media; kind != "audio" && kind != "video" {
			continue
		}
		media++
		if m.MediaName.Port.Value != 0 && sends(m) {
			return fmt.Errorf("%s section sends: a player's must be recvonly", m.MediaName.Media)
		}
	}
	if media == 0 {
		return errors.New("no audio or video section")
	}
	return nil
}

// admitPlayer adds a player to the room and subscribes it to the tracks its
// offer can receive, or discards it quietly when the call has ended
// (ErrUnknownCall) or there is nothing it could play (ErrNotLive).
func (r *room) admitPlayer(p *Participant) error {
	r.mu.Lock()
	var err error
	var plan []*publishedTrack
	if r.ended {
		err = fmt.Errorf("callsfu: play call %d for %s: %w", r.call, p.peer, ErrUnknownCall)
	} else if r.awaitingLocked(time.Now()) {
		err = fmt.Errorf("callsfu: play call %d for %s: %w: a publisher's tracks are still coming", r.call, p.peer, ErrNotLive)
	} else if plan = r.playableLocked(p.sub); len(plan) == 0 {
		err = fmt.Errorf("callsfu: play call %d for %s: %w", r.call, p.peer, ErrNotLive)
	} else if cerr := checkPlayable(p.sub.RemoteDescription().SDP, plan); cerr != nil {
		err = fmt.Errorf("callsfu: play call %d for %s: %w: %v", r.call, p.peer, ErrBadSDP, cerr)
	}
	if err != nil {
		r.mu.Unlock()
		p.remove(ReasonLeft)
		return err
	}
	old := r.admitLocked(p)
	for _, t := range plan {
		p.subscribe(t)
	}
	r.mu.Unlock()
	if old != nil {
		old.remove(ReasonReplaced)
	}
	return nil
}

// playWait is how long, at most, players are refused ErrNotLive after a
// publisher joined while a media section its offer sends has no track
// yet: a player's answer cannot gain a track later (WHEP has no
// renegotiation), so one admitted when the video of a stream had come
// and its audio not yet would play no sound for good.
const playWait = 3 * time.Second

// awaitingLocked reports whether a publisher that joined less than
// playWait before now has published fewer tracks than its offer sends
// audio or video sections.
func (r *room) awaitingLocked(now time.Time) bool {
	for pub := range r.publishers {
		if now.Sub(pub.joined) >= playWait {
			continue
		}
		pub.mu.Lock()
		pc := pub.pub
		pub.mu.Unlock()
		if pc == nil {
			continue
		}
		rd := pc.RemoteDescription()
		if rd == nil {
			continue
		}
		// Parsed into a description of our own: rd is the
		// PeerConnection's, and its Unmarshal caches the parse in it,
		// racing pion's own readers.
		var d sdp.SessionDescription
		if err := d.UnmarshalString(rd.SDP); err != nil {
			continue
		}
		offered := 0
		for _, m := range d.MediaDescriptions {
			if kind := m.MediaName.Media; (kind == "audio" || kind == "video") && m.MediaName.Port.Value != 0 && sends(m) {
				offered++
			}
		}
		published := 0
		for _, t := range r.tracks {
			if t.owner == pub {
				published++
			}
		}
		if published < offered {
			return true
		}
	}
	return false
}

// playableLocked returns the tracks a player's PeerConnection, with the
// client's offer applied, can be sent: for each kind, as many as the offer
// has sections of that kind that may receive, in the order of their IDs.
func (r *room) playableLocked(pc *webrtc.PeerConnection) []*publishedTrack {
	free := map[Kind]int{}
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() != nil || tr.Direction() == webrtc.RTPTransceiverDirectionInactive {
			continue
		}
		switch tr.Kind() {
		case webrtc.RTPCodecTypeAudio:
			free[KindAudio]++
		case webrtc.RTPCodecTypeVideo:
			free[KindVideo]++
		}
	}
	tracks := make([]*publishedTrack, 0, len(r.tracks))
	for _, t := range r.tracks {
		tracks = append(tracks, t)
	}
	slices.SortFunc(tracks, func(a, b *publishedTrack) int { return strings.Compare(a.info.ID, b.info.ID) })
	var plan []*publishedTrack
	for _, t := range tracks {
		if free[t.info.Kind] > 0 {
			free[t.info.Kind]--
			plan = append(plan, t)
		}
	}
	return plan
}

// answerPlay answers the player's offer, its tracks added, once the SFU's
// candidates are gathered into the answer.
func (p *Participant) answerPlay() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left {
		return "", fmt.Errorf("callsfu: play for %s: %w", p.peer, ErrLeft)
	}
	answer, err := p.sub.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("callsfu: play for %s: answer: %w", p.peer, err)
	}
	gathered := webrtc.GatheringCompletePromise(p.sub)
	if err := p.sub.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("callsfu: play for %s: answer: %w", p.peer, err)
	}
	p.mu.Unlock()
	waitGathered(gathered)
	p.mu.Lock()
	if p.left {
		return "", fmt.Errorf("callsfu: play for %s: %w", p.peer, ErrLeft)
	}
	return p.sub.LocalDescription().SDP, nil
}
