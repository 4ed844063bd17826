package broker

import (
	"context"
	"fmt"

	"github.com/gonets/gonets/broker/wire"
)

// Limits on the signalling a client relays to the SFU.
const (
	// maxSDPBytes caps an offer or answer: a simulcast offer with a
	// screen share is a few KiB.
	maxSDPBytes = 64 << 10
	// maxCandidateBytes caps one ICE candidate line.
	maxCandidateBytes = 1 << 10
	// maxTrackIDBytes caps a track id in a layer request.
	maxTrackIDBytes = 256
	// maxCandidates caps the candidates a client relays per
	// PeerConnection and negotiation (its publish offer, or the SFU's
	// subscriber offer): a client gathers a handful per network path.
	maxCandidates = 50
)

// handleCall runs a call request, and reports whether f was one.
func (s *Session) handleCall(f *wire.Frame) (resp *wire.Frame, ok bool, err error) {
	switch f.Body.(type) {
	case *wire.Frame_CallStart, *wire.Frame_CallAccept, *wire.Frame_CallJoin, *wire.Frame_CallDecline,
		*wire.Frame_CallLeave, *wire.Frame_CallHangUp, *wire.Frame_CallPublish, *wire.Frame_CallSubscriberAnswer,
		*wire.Frame_CallCandidate, *wire.Frame_CallMute, *wire.Frame_CallLayers,
		*wire.Frame_CallRecordingStart, *wire.Frame_CallRecordingStop:
	default:
		return nil, false, nil
	}
	if s.b.calls.media == nil {
		return nil, true, ErrCallsOff
	}
	resp, err = s.callRequest(f)
	return resp, true, err
}

// callRequest runs one call request.
func (s *Session) callRequest(f *wire.Frame) (*wire.Frame, error) {
	switch body := f.Body.(type) {
	case *wire.Frame_CallStart:
		return s.startCall(body.CallStart)
	case *wire.Frame_CallAccept:
		return s.joinCall(CallID(body.CallAccept.Call))
	case *wire.Frame_CallJoin:
		return s.joinCall(CallID(body.CallJoin.Call))
	case *wire.Frame_CallDecline:
		return s.declineCall(CallID(body.CallDecline.Call))
	case *wire.Frame_CallLeave:
		return s.leaveCall(CallID(body.CallLeave.Call))
	case *wire.Frame_CallHangUp:
		return s.hangUp(CallID(body.CallHangUp.Call))
	case *wire.Frame_CallPublish:
		return s.publish(body.CallPublish)
	case *wire.Frame_CallSubscriberAnswer:
		return s.subscriberAnswer(body.CallSubscriberAnswer)
	case *wire.Frame_CallCandidate:
		return s.candidate(body.CallCandidate)
	case *wire.Frame_CallMute:
		return s.mute(body.CallMute)
	case *wire.Frame_CallLayers:
		return s.layers(body.CallLayers)
	case *wire.Frame_CallRecordingStart:
		return s.startRecording(body.CallRecordingStart)
	case *wire.Frame_CallRecordingStop:
		return s.stopRecording(body.CallRecordingStop)
	}
	return nil, fmt.Errorf("%w: %T is not a call request", ErrBadRequest, f.Body)
}

// checkSDP refuses a session description the SFU need not see.
func checkSDP(sdp string) error {
	if len(sdp) == 0 || len(sdp) > maxSDPBytes {
		return fmt.Errorf("%w: a session description of %d bytes (1 to %d)", ErrBadSDP, len(sdp), maxSDPBytes)
	}
	return nil
}

// publish relays the client's offer for its publishing PeerConnection and
// answers with the SFU's answer.
func (s *Session) publish(req *wire.CallSdp) (*wire.Frame, error) {
	if err := checkSDP(req.Sdp); err != nil {
		return nil, err
	}
	p, err := s.b.calls.participantOf(s, CallID(req.Call))
	if err != nil {
		return nil, err
	}
	if err := s.spend(); err != nil {
		return nil, err
	}
	ctx, cancel := mediaCtx(context.Background())
	defer cancel()
	answer, err := s.b.calls.media.Publish(ctx, p.key(), req.Sdp)
	if err != nil {
		return nil, fmt.Errorf("broker: publish in call %d: %w", req.Call, err)
	}
	s.b.calls.newNegotiation(p, CallPCPublish)
	return &wire.Frame{Body: &wire.Frame_CallAnswer{CallAnswer: &wire.CallSdp{Call: req.Call, Sdp: answer}}}, nil
}

// subscriberAnswer relays the client's answer to the SFU's subscriber
// offer.
func (s *Session) subscriberAnswer(req *wire.CallSdp) (*wire.Frame, error) {
	if err := checkSDP(req.Sdp); err != nil {
		return nil, err
	}
	p, err := s.b.calls.participantOf(s, CallID(req.Call))
	if err != nil {
		return nil, err
	}
	ctx, cancel := mediaCtx(context.Background())
	defer cancel()
	if err := s.b.calls.media.Answer(ctx, p.key(), req.Sdp); err != nil {
		return nil, fmt.Errorf("broker: subscriber answer in call %d: %w", req.Call, err)
	}
	return done(), nil
}

// candidate relays one of the client's ICE candidates.
func (s *Session) candidate(req *wire.CallCandidate) (*wire.Frame, error) {
	pc := CallPC(req.Pc)
	switch {
	case pc != CallPCPublish && pc != CallPCSubscribe:
		return nil, fmt.Errorf("%w: candidate for PeerConnection %v", ErrBadRequest, req.Pc)
	case len(req.Candidate) > maxCandidateBytes || len(req.SdpMid) > maxCandidateBytes || len(req.UsernameFragment) > maxCandidateBytes:
		return nil, fmt.Errorf("%w: a candidate over %d bytes", ErrBadRequest, maxCandidateBytes)
	case req.SdpMlineIndex > 1<<16-1:
		return nil, fmt.Errorf("%w: m-line index %d", ErrBadRequest, req.SdpMlineIndex)
	}
	p, err := s.b.calls.participantOf(s, CallID(req.Call))
	if err != nil {
		return nil, err
	}
	if !s.b.calls.countCandidate(p, pc) {
		return nil, fmt.Errorf("%w: over %d candidates for PeerConnection %v in one negotiation", ErrBadRequest, maxCandidates, req.Pc)
	}
	c := ICECandidate{Candidate: req.Candidate, SDPMid: req.SdpMid, SDPMLineIndex: uint16(req.SdpMlineIndex), UsernameFragment: req.UsernameFragment}
	ctx, cancel := mediaCtx(context.Background())
	defer cancel()
	if err := s.b.calls.media.Candidate(ctx, p.key(), pc, c); err != nil {
		return nil, fmt.Errorf("broker: candidate in call %d: %w", req.Call, err)
	}
	return done(), nil
}

// mute mutes or unmutes one of the session's tracks and tells the chat.
func (s *Session) mute(req *wire.CallMute) (*wire.Frame, error) {
	track := CallTrack(req.Track)
	switch {
	case track < CallTrackAudio || track > CallTrackScreen:
		return nil, fmt.Errorf("%w: track kind %v", ErrBadRequest, req.Track)
	case len(req.TrackId) > maxTrackIDBytes:
		return nil, fmt.Errorf("%w: a track id of %d bytes (at most %d)", ErrBadRequest, len(req.TrackId), maxTrackIDBytes)
	}
	p, err := s.b.calls.participantOf(s, CallID(req.Call))
	if err != nil {
		return nil, err
	}
	if err := s.spend(); err != nil {
		return nil, err
	}
	ctx, cancel := mediaCtx(context.Background())
	defer cancel()
	if err := s.b.calls.media.Mute(ctx, p.key(), track, req.TrackId, req.Muted); err != nil {
		return nil, fmt.Errorf("broker: mute in call %d: %w", req.Call, err)
	}
	s.b.callUpdate(p.c, &wire.CallUpdate{
		Kind: wire.CallUpdateKind_CALL_UPDATE_KIND_MUTED, User: uint64(s.user), Device: uint64(s.device),
		Track: req.Track, Muted: req.Muted, TrackId: req.TrackId,
	}, s)
	return done(), nil
}

// newNegotiation restarts the count of p's candidates for pc.
func (t *callTable) newNegotiation(p *participant, pc CallPC) {
	t.mu.Lock()
	p.cands[pc] = 0
	t.mu.Unlock()
}

// countCandidate counts one of p's candidates for pc, and reports whether
// it is within maxCandidates.
func (t *callTable) countCandidate(p *participant, pc CallPC) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.cands[pc] >= maxCandidates {
		return false
	}
	p.cands[pc]++
	return true
}

// layers asks the SFU for a simulcast layer of a track.
func (s *Session) layers(req *wire.CallLayers) (*wire.Frame, error) {
	q := CallQuality(req.Quality)
	switch {
	case q < CallQualityLow || q > CallQualityOff:
		return nil, fmt.Errorf("%w: quality %v", ErrBadRequest, req.Quality)
	case len(req.Track) == 0 || len(req.Track) > maxTrackIDBytes:
		return nil, fmt.Errorf("%w: a track id of %d bytes (1 to %d)", ErrBadRequest, len(req.Track), maxTrackIDBytes)
	}
	p, err := s.b.calls.participantOf(s, CallID(req.Call))
	if err != nil {
		return nil, err
	}
	if err := s.spend(); err != nil {
		return nil, err
	}
	ctx, cancel := mediaCtx(context.Background())
	defer cancel()
	if err := s.b.calls.media.RequestLayer(ctx, p.key(), req.Track, q); err != nil {
		return nil, fmt.Errorf("broker: layer request in call %d: %w", req.Call, err)
	}
	return done(), nil
}

// callEvents returns the function the SFU tells p's events to: each
// becomes a push to p's session while p is in the call; a removal takes
// p out, on a goroutine of its own (it may end the call and write its
// record, which the SFU's goroutine must not wait for).
func (b *Broker) callEvents(p *participant) func(CallEvent) {
	id := uint64(p.c.id)
	return func(ev CallEvent) {
		t := b.calls
		t.mu.Lock()
		current := t.bySession[p.s] == p && !t.closed
		switch {
		case !current:
		case ev.Kind == CallEventRemoved:
			t.wg.Add(1)
		case ev.Kind == CallEventOffer:
			p.cands[CallPCSubscribe] = 0 // a new negotiation
		}
		t.mu.Unlock()
		if !current {
			return
		}
		var f *wire.Frame
		switch ev.Kind {
		case CallEventOffer:
			f = &wire.Frame{Body: &wire.Frame_CallOffer{CallOffer: &wire.CallSdp{Call: id, Sdp: ev.SDP}}}
		case CallEventCandidate:
			c := ev.Candidate
			f = &wire.Frame{Body: &wire.Frame_CallCandidate{CallCandidate: &wire.CallCandidate{
				Call: id, Pc: wire.CallPc(ev.PC), Candidate: c.Candidate, SdpMid: c.SDPMid,
				SdpMlineIndex: uint32(c.SDPMLineIndex), UsernameFragment: c.UsernameFragment,
			}}}
		case CallEventSpeaker:
			f = &wire.Frame{Body: &wire.Frame_CallSpeaker{CallSpeaker: &wire.CallSpeaker{
				Call: id, User: uint64(ev.Speaker.User), Device: uint64(ev.Speaker.Device),
			}}}
		case CallEventRemoved:
			go func() {
				defer t.wg.Done()
				b.removeParticipant(p, removeReason(ev.Reason), ev.Message, false)
			}()
			return
		default:
			b.log.Warn("broker: unknown call media event", "kind", ev.Kind, "call", id)
			return
		}
		b.pushSession(p.s, f, ev.Kind != CallEventSpeaker)
	}
}

// removeReason maps the SFU's reason for a removal.
func removeReason(r CallRemoveReason) wire.CallRemoveReason {
	switch r {
	case CallRemovedICEFailed:
		return wire.CallRemoveReason_CALL_REMOVE_REASON_ICE_FAILED
	case CallRemovedSilent:
		return wire.CallRemoveReason_CALL_REMOVE_REASON_SILENT
	}
	return wire.CallRemoveReason_CALL_REMOVE_REASON_MEDIA
}

// removedFrame is the CallRemoved push.
func removedFrame(call CallID, reason wire.CallRemoveReason, msg string) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_CallRemoved{CallRemoved: &wire.CallRemoved{Call: uint64(call), Reason: reason, Message: msg}}}
}
