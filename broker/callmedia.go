package broker

import (
	"context"
	"time"

	"github.com/gonets/gonets/storage"
)

// CallID names a call. Ids are random, so that one from a crashed node's
// call is not reused by its successor for another call (a call's id is
// its record's client message id, deduplicated for a day).
type CallID uint64

// CallParticipant is one participant of a call: a user, in it from one
// device (a user is in a call from one device at a time), for one join.
type CallParticipant struct {
	Call   CallID
	User   storage.UserID
	Device storage.DeviceID
	// Join tells the joins of one device apart: the broker gives each a
	// fresh one, so that a late Leave of a device's earlier join (its
	// session ended, the device rejoined at once) never takes out the
	// join that followed it. A Speaker event may leave it zero.
	Join uint64
}

// CallPC names one of a participant's two PeerConnections.
type CallPC uint8

// The PeerConnections.
const (
	// CallPCPublish sends the participant's tracks to the SFU; the client
	// offers.
	CallPCPublish CallPC = 1
	// CallPCSubscribe receives the others' tracks; the SFU offers.
	CallPCSubscribe CallPC = 2
)

// ICECandidate is a trickled ICE candidate, as WebRTC's
// RTCIceCandidateInit has it. An empty Candidate ends the candidates of
// its PeerConnection.
type ICECandidate struct {
	Candidate        string
	SDPMid           string
	SDPMLineIndex    uint16
	UsernameFragment string
}

// CallTrack is a kind of published track.
type CallTrack uint8

// The track kinds.
const (
	CallTrackAudio  CallTrack = 1
	CallTrackVideo  CallTrack = 2
	CallTrackScreen CallTrack = 3
)

// CallQuality is a simulcast layer.
type CallQuality uint8

// The layers, lowest first (rids q, h, f), and none.
const (
	CallQualityLow    CallQuality = 1
	CallQualityMedium CallQuality = 2
	CallQualityHigh   CallQuality = 3
	// CallQualityOff stops the track's forwarding to the subscriber.
	CallQualityOff CallQuality = 4
)

// CallEventKind says what a CallEvent carries.
type CallEventKind uint8

// The events the SFU tells a participant.
const (
	// CallEventOffer carries SDP, the SFU's offer for the participant's
	// subscribing PeerConnection (first, and after each renegotiation).
	CallEventOffer CallEventKind = iota + 1
	// CallEventCandidate carries one of the SFU's ICE candidates for PC.
	CallEventCandidate
	// CallEventSpeaker carries Speaker, the participant speaking now.
	CallEventSpeaker
	// CallEventRemoved says the SFU dropped the participant, for Reason
	// (and Message). It is the participant's last event.
	CallEventRemoved
)

// CallRemoveReason says why the SFU dropped a participant.
type CallRemoveReason uint8

// The reasons.
const (
	// CallRemovedMedia is any reason of the SFU's but the two below; the
	// event's Message says which.
	CallRemovedMedia CallRemoveReason = iota
	// CallRemovedICEFailed: the participant's connectivity failed.
	CallRemovedICEFailed
	// CallRemovedSilent: no RTP or RTCP came from it for too long.
	CallRemovedSilent
)

// CallEvent is one thing the SFU tells a participant; the broker pushes it
// to the participant's session.
type CallEvent struct {
	Kind      CallEventKind
	SDP       string
	PC        CallPC
	Candidate ICECandidate
	Speaker   CallParticipant
	Reason    CallRemoveReason
	Message   string
}

// CallMedia is the media side of calls, the SFU, as the broker drives it.
// The broker owns who is in which call (membership, ringing, the call
// record); CallMedia owns the PeerConnections and the forwarding of one
// room per call, with two PeerConnections per participant: the publishing
// one, which the client offers, and the subscribing one, which the SFU
// offers (CallEventOffer) and the client answers.
//
// Methods may be called concurrently, for one participant too (a Leave as
// its Publish runs); one for a participant who has left, or a call that
// has ended, returns an error wrapping ErrUnknownCall. Errors a client
// caused wrap ErrBadSDP, ErrTooManyPublishers or ErrBadRequest (a bad
// candidate, an unknown track); any other is the node's fault. The broker
// never holds a lock of its own while it calls a method.
type CallMedia interface {
	// Join adds p to its call's room, creating the room with its first
	// participant. events receives what the SFU tells p until Leave, End
	// or a CallEventRemoved; it must not block, and is called from one
	// goroutine at a time per participant, never under the broker's
	// locks. video says whether the call started as a video call.
	Join(ctx context.Context, p CallParticipant, video bool, events func(CallEvent)) error
	// Publish applies the client's offer for p's publishing
	// PeerConnection and returns the SFU's answer.
	Publish(ctx context.Context, p CallParticipant, offer string) (answer string, err error)
	// Answer applies the client's answer to the SFU's latest offer for p's
	// subscribing PeerConnection.
	Answer(ctx context.Context, p CallParticipant, answer string) error
	// Candidate adds one of the client's ICE candidates to p's
	// PeerConnection pc.
	Candidate(ctx context.Context, p CallParticipant, pc CallPC, c ICECandidate) error
	// Mute stops (or resumes) forwarding p's track trackID (the client's
	// own id for it, from its publish offer) or, when trackID is empty,
	// every track of p's of kind.
	Mute(ctx context.Context, p CallParticipant, kind CallTrack, trackID string, muted bool) error
	// RequestLayer asks for a simulcast layer of track (another
	// participant's, by its id in p's subscriber offer) for p, or for
	// none of it (CallQualityOff).
	RequestLayer(ctx context.Context, p CallParticipant, track string, q CallQuality) error
	// Leave removes p from its call's room and closes its PeerConnections.
	Leave(ctx context.Context, p CallParticipant) error
	// End closes the call's room and every participant's PeerConnections.
	End(ctx context.Context, call CallID) error
}

// CallRecorder is the recording side of the SFU, which a CallMedia may
// implement: the broker records calls (CallRecordingStart) only through
// one that does, and refuses the start (ErrForbidden) otherwise. It is
// kept apart from CallMedia so that a media side without recording (a
// test's fake) need not say so.
//
// A recording belongs to the call's room: it ends with StopRecording or
// with the room (End, or the SFU's own end of it, or its close), and done
// hears of it either way.
type CallRecorder interface {
	// StartRecording starts recording by's call (by is the participant
	// who asked; chat is the call's, kept for the announcement): every
	// track published in it from now on, each into its own file. done
	// is called once, when the recording stops, with what was recorded:
	// on the goroutine that stopped it, never under the broker's locks,
	// and never if StartRecording fails; it returns the announcement's
	// error, and a recording whose announcement failed is kept to be
	// announced again (at the node's next start). It fails wrapping
	// ErrUnknownCall for a call whose room has gone, ErrBadRequest for
	// one being recorded already, and ErrForbidden when the node records
	// no calls.
	StartRecording(ctx context.Context, by CallParticipant, chat storage.ChatID, done func(CallRecordingSummary) error) error
	// StopRecording stops the call's recording and returns once its
	// files are finished and its done has returned. It fails wrapping
	// ErrUnknownCall for a call whose room has gone (whose end stopped
	// its recording), and ErrBadRequest for one not being recorded.
	StopRecording(ctx context.Context, call CallID) error
}

// CallRecordingSummary describes a call's recording once it stopped: what
// the broker announces in the chat.
type CallRecordingSummary struct {
	Call CallID
	Chat storage.ChatID
	// By is the user who started the recording.
	By storage.UserID
	// Dir is the recording's directory under the node's recordings
	// directory, slash-separated: "<call>/<n>".
	Dir              string
	Started, Stopped time.Time
	// Recovered says the node died while recording, and finished the
	// files when it started again.
	Recovered bool
	Files     []CallRecordedFile
}

// CallRecordedFile is one track's file of a recording.
type CallRecordedFile struct {
	// Name is the file's path under the node's recordings directory,
	// slash-separated: Dir, "/", the file's name.
	Name   string
	User   storage.UserID
	Device storage.DeviceID
	// Kind is CallTrackAudio or CallTrackVideo; Codec "opus" or "vp8".
	Kind  CallTrack
	Codec string
	// Offset is when the file's first frame came after Started: where it
	// starts on the recording's timeline.
	Offset, Duration time.Duration
	Bytes            int64
	// Error is the write error that ended the file early, if any.
	Error string
}
