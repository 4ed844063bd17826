package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/wire"
)

// A call belongs to the session that joined it: when the connection is
// lost the node takes this device out of its call (the others hear it
// left), so no call request is repeated on the next connection; after a
// reconnection join the call again and negotiate afresh. The call pushes
// a device needs (rings, offers, candidates, removals, ENDED) are not lost
// to a Resync: the node pushes those it could not queue again once the
// client's sync after the Resync resumes its pushes.

// CallInfo describes a call, as StartCall, AcceptCall and JoinCall return
// it.
type CallInfo struct {
	Call    uint64
	Chat    uint64
	Video   bool
	Caller  uint64
	Started time.Time
	// Participants are in the call now, this device included, by user.
	Participants []CallPeer
	// ICEServers are the STUN and TURN servers for this call's
	// PeerConnections: the node's TURN relay, when it runs one, with a
	// credential that expires (an hour by default; a later CallInfo brings
	// a fresh one). A pion client passes them on as they are:
	//
	//	for _, s := range info.ICEServers {
	//		cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{
	//			URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	//	}
	//
	// Empty when the node offers none.
	ICEServers []ICEServer
	// Recording says the call is being recorded (see StartRecording).
	Recording bool
}

// ICEServer is a STUN or TURN server, as WebRTC's RTCIceServer has it.
type ICEServer struct {
	URLs       []string
	Username   string
	Credential string
}

// CallPeer is a participant: a user, in the call from one device.
type CallPeer struct {
	User, Device uint64
}

// ICECandidate is a trickled ICE candidate, as WebRTC's
// RTCIceCandidateInit has it. An empty Candidate ends the candidates of
// its PeerConnection.
type ICECandidate struct {
	Candidate        string
	SDPMid           string
	SDPMLineIndex    uint16
	UsernameFragment string
}

// CallPush is what a call push (the EventCall* kinds) carries; each kind
// sets the fields its comment names.
type CallPush struct {
	Call uint64
	// Chat is set by rings and updates.
	Chat uint64
	// User and Device: the caller (ring), whose state changed (update),
	// who speaks (speaker).
	User, Device uint64
	// Video and Started are set by a ring.
	Video   bool
	Started time.Time
	// Update says what changed (update); EndReason why the call ended
	// (an ENDED update); Track, TrackID and Muted what was muted (a
	// MUTED update).
	Update    wire.CallUpdateKind
	EndReason wire.CallEndReason
	Track     wire.CallTrack
	TrackID   string
	Muted     bool
	// SDP is the SFU's subscriber offer (offer).
	SDP string
	// PC and Candidate are one of the SFU's candidates (candidate).
	PC        wire.CallPc
	Candidate ICECandidate
	// Removed and Message say why the device was taken out (removed).
	Removed wire.CallRemoveReason
	Message string
}

// CallRecord is the body of a CALL message, which the node appends to a
// chat when a call in it ends (see CallRecordOf).
type CallRecord struct {
	Call   uint64
	Caller uint64
	Video  bool
	// Joined are the users who were in the call, the caller first.
	Joined  []uint64
	Started time.Time
	// Duration runs from the first answer to the end.
	Duration time.Duration
	// Missed: no one but the caller joined.
	Missed bool
	Reason wire.CallEndReason
}

// CallRecordOf decodes the record of a CALL message.
func CallRecordOf(m Message) (CallRecord, error) {
	if m.Kind != wire.MsgKind_MSG_KIND_CALL {
		return CallRecord{}, fmt.Errorf("client: message %d/%d is %v, not a call record", m.Chat, m.Seq, m.Kind)
	}
	var r wire.CallRecord
	if err := proto.Unmarshal(m.Body, &r); err != nil {
		return CallRecord{}, fmt.Errorf("client: call record %d/%d: %w", m.Chat, m.Seq, err)
	}
	return CallRecord{
		Call: r.GetCall(), Caller: r.GetCaller(), Video: r.GetVideo(), Joined: r.GetJoined(),
		Started: fromMicros(r.GetStartedUs()), Duration: time.Duration(r.GetDurationMs()) * time.Millisecond,
		Missed: r.GetMissed(), Reason: r.GetReason(),
	}, nil
}

// StartCall starts a call in chat (a direct chat or group) with this
// device in it, and rings the other members' online devices. A chat holds
// one call: when one runs already the error is ErrCallRunning, its Call
// field the call to join.
func (c *Client) StartCall(ctx context.Context, chat uint64, video bool) (CallInfo, error) {
	return c.callInfo(ctx, &wire.Frame{Body: &wire.Frame_CallStart{CallStart: &wire.CallStart{Chat: chat, Video: video}}})
}

// AcceptCall answers a ring: this device joins the call and the user's
// other devices stop ringing.
func (c *Client) AcceptCall(ctx context.Context, call uint64) (CallInfo, error) {
	return c.callInfo(ctx, &wire.Frame{Body: &wire.Frame_CallAccept{CallAccept: &wire.CallAccept{Call: call}}})
}

// JoinCall joins this device to a running call of one of the user's
// chats; a device of the user's already in it is taken out.
func (c *Client) JoinCall(ctx context.Context, call uint64) (CallInfo, error) {
	return c.callInfo(ctx, &wire.Frame{Body: &wire.Frame_CallJoin{CallJoin: &wire.CallJoin{Call: call}}})
}

// DeclineCall declines a ring on all the user's devices; one that finds
// the ring stopped already (answered elsewhere, timed out) succeeds.
func (c *Client) DeclineCall(ctx context.Context, call uint64) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_CallDecline{CallDecline: &wire.CallDecline{Call: call}}}, false)
}

// LeaveCall takes this device out of the call.
func (c *Client) LeaveCall(ctx context.Context, call uint64) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_CallLeave{CallLeave: &wire.CallLeave{Call: call}}}, false)
}

// HangUp ends the call for everyone: allowed in a direct chat's call, and
// to a group's admins and owner.
func (c *Client) HangUp(ctx context.Context, call uint64) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_CallHangUp{CallHangUp: &wire.CallHangUp{Call: call}}}, false)
}

// PublishOffer sends the offer of this device's publishing
// PeerConnection and returns the SFU's answer.
func (c *Client) PublishOffer(ctx context.Context, call uint64, offer string) (answer string, err error) {
	resp, err := c.call(ctx, &wire.Frame{Body: &wire.Frame_CallPublish{CallPublish: &wire.CallSdp{Call: call, Sdp: offer}}}, false)
	if err != nil {
		return "", err
	}
	a := resp.GetCallAnswer()
	if a == nil {
		return "", unexpected("CallAnswer", resp)
	}
	return a.GetSdp(), nil
}

// AnswerSubscriber answers the SFU's latest offer (EventCallOffer) for
// this device's subscribing PeerConnection.
func (c *Client) AnswerSubscriber(ctx context.Context, call uint64, answer string) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_CallSubscriberAnswer{CallSubscriberAnswer: &wire.CallSdp{Call: call, Sdp: answer}}}, false)
}

// AddCandidate trickles one of this device's ICE candidates for its
// PeerConnection pc to the SFU.
func (c *Client) AddCandidate(ctx context.Context, call uint64, pc wire.CallPc, cand ICECandidate) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_CallCandidate{CallCandidate: &wire.CallCandidate{
		Call: call, Pc: pc, Candidate: cand.Candidate, SdpMid: cand.SDPMid,
		SdpMlineIndex: uint32(cand.SDPMLineIndex), UsernameFragment: cand.UsernameFragment,
	}}}, false)
}

// MuteCall mutes (or unmutes) this device's tracks of kind track, or only
// the one whose id (from its publish offer) is trackID; the others hear
// of it.
func (c *Client) MuteCall(ctx context.Context, call uint64, track wire.CallTrack, trackID string, muted bool) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_CallMute{CallMute: &wire.CallMute{Call: call, Track: track, TrackId: trackID, Muted: muted}}}, false)
}

// RequestLayer asks the SFU for a simulcast layer of another
// participant's track (its id in the subscriber offer), or for none
// (CALL_QUALITY_OFF).
func (c *Client) RequestLayer(ctx context.Context, call uint64, trackID string, q wire.CallQuality) error {
	return c.done(ctx, &wire.Frame{Body: &wire.Frame_CallLayers{CallLayers: &wire.CallLayers{Call: call, Track: trackID, Quality: q}}}, false)
}

// callInfo sends a request answered by CallInfo.
func (c *Client) callInfo(ctx context.Context, f *wire.Frame) (CallInfo, error) {
	resp, err := c.call(ctx, f, false)
	if err != nil {
		return CallInfo{}, err
	}
	ci := resp.GetCallInfo()
	if ci == nil {
		return CallInfo{}, unexpected("CallInfo", resp)
	}
	info := CallInfo{Call: ci.GetCall(), Chat: ci.GetChat(), Video: ci.GetVideo(), Caller: ci.GetCaller(), Started: fromMicros(ci.GetStartedUs())}
	info.Recording = ci.GetRecording()
	for _, p := range ci.GetParticipants() {
		info.Participants = append(info.Participants, CallPeer{User: p.GetUser(), Device: p.GetDevice()})
	}
	for _, s := range ci.GetIceServers() {
		info.ICEServers = append(info.ICEServers, ICEServer{URLs: s.GetUrls(), Username: s.GetUsername(), Credential: s.GetCredential()})
	}
	return info, nil
}

// callEvent converts a call push, and reports whether f is one.
func callEvent(f *wire.Frame) (Event, bool) {
	switch b := f.GetBody().(type) {
	case *wire.Frame_CallRing:
		r := b.CallRing
		return Event{Kind: EventCallRing, Call: CallPush{
			Call: r.GetCall(), Chat: r.GetChat(), User: r.GetCaller(), Device: r.GetDevice(),
			Video: r.GetVideo(), Started: fromMicros(r.GetStartedUs()),
		}}, true
	case *wire.Frame_CallUpdate:
		u := b.CallUpdate
		return Event{Kind: EventCallUpdate, Call: CallPush{
			Call: u.GetCall(), Chat: u.GetChat(), User: u.GetUser(), Device: u.GetDevice(), Update: u.GetKind(),
			EndReason: u.GetReason(), Track: u.GetTrack(), TrackID: u.GetTrackId(), Muted: u.GetMuted(),
		}}, true
	case *wire.Frame_CallOffer:
		return Event{Kind: EventCallOffer, Call: CallPush{Call: b.CallOffer.GetCall(), SDP: b.CallOffer.GetSdp()}}, true
	case *wire.Frame_CallCandidate:
		cc := b.CallCandidate
		return Event{Kind: EventCallCandidate, Call: CallPush{Call: cc.GetCall(), PC: cc.GetPc(), Candidate: ICECandidate{
			Candidate: cc.GetCandidate(), SDPMid: cc.GetSdpMid(), SDPMLineIndex: uint16(cc.GetSdpMlineIndex()), UsernameFragment: cc.GetUsernameFragment(),
		}}}, true
	case *wire.Frame_CallSpeaker:
		s := b.CallSpeaker
		return Event{Kind: EventCallSpeaker, Call: CallPush{Call: s.GetCall(), User: s.GetUser(), Device: s.GetDevice()}}, true
	case *wire.Frame_CallRemoved:
		r := b.CallRemoved
		return Event{Kind: EventCallRemoved, Call: CallPush{Call: r.GetCall(), Removed: r.GetReason(), Message: r.GetMessage()}}, true
	}
	return Event{}, false
}
