package callsfu

import "errors"

// Code is the stable identifier of a refusal. The broker maps each code onto
// its own wire error code; the numbers never change meaning.
type Code uint8

// The refusal codes. CodeInternal covers everything that is not the caller's
// fault (a socket or DTLS failure inside the SFU).
const (
	CodeInternal Code = iota
	CodeBadSDP
	CodeUnknownCall
	CodeTooManyPublishers
	CodeClosed
	CodeUnknownTrack
	CodeBadCandidate
	CodeCallExists
	CodeLeft
	CodeTooManyTracks
	CodeBadRequest
	CodeNotLive
	CodeUnauthorized
	CodeForbidden
)

// Error is a refusal with a stable code. The sentinels below are *Error, so
// both errors.Is(err, ErrBadSDP) and CodeOf(err) work on wrapped errors.
type Error struct {
	Code Code
	msg  string
}

// Error returns the human message.
func (e *Error) Error() string { return e.msg }

// The sentinels; every refusal of the package wraps one of them.
var (
	// ErrBadSDP: an offer or answer that does not parse, or that pion
	// refuses (no ICE credentials, no codec in common, wrong type).
	ErrBadSDP = &Error{CodeBadSDP, "callsfu: bad SDP"}
	// ErrUnknownCall: the call was never started, or has ended.
	ErrUnknownCall = &Error{CodeUnknownCall, "callsfu: unknown call"}
	// ErrTooManyPublishers: the room already has Options.MaxPublishers
	// participants publishing media.
	ErrTooManyPublishers = &Error{CodeTooManyPublishers, "callsfu: too many publishers"}
	// ErrClosed: the SFU is closed.
	ErrClosed = &Error{CodeClosed, "callsfu: closed"}
	// ErrUnknownTrack: no track of that ID in the call (or not the caller's own
	// track where it must be).
	ErrUnknownTrack = &Error{CodeUnknownTrack, "callsfu: unknown track"}
	// ErrBadCandidate: a trickled ICE candidate that does not parse, or names
	// a PeerConnection the participant does not have.
	ErrBadCandidate = &Error{CodeBadCandidate, "callsfu: bad ICE candidate"}
	// ErrCallExists: Start of a call that is already running.
	ErrCallExists = &Error{CodeCallExists, "callsfu: call exists"}
	// ErrLeft: the participant has left or was removed.
	ErrLeft = &Error{CodeLeft, "callsfu: participant left"}
	// ErrTooManyTracks: an offer sending more than Options.MaxTracks media
	// sections.
	ErrTooManyTracks = &Error{CodeTooManyTracks, "callsfu: too many tracks"}
	// ErrBadRequest: an argument out of its range (a Quality, a Target).
	ErrBadRequest = &Error{CodeBadRequest, "callsfu: bad request"}
	// ErrNotLive: Play of a call in which nothing is published, or nothing
	// the player's offer can receive.
	ErrNotLive = &Error{CodeNotLive, "callsfu: nothing is published in the call"}
	// ErrUnauthorized: a WHIP or WHEP request without a valid bearer token
	// (an Authorizer's refusal).
	ErrUnauthorized = &Error{CodeUnauthorized, "callsfu: unauthorized"}
	// ErrForbidden: a WHIP or WHEP request of a peer that may not publish,
	// or not play, in the call (an Authorizer's refusal).
	ErrForbidden = &Error{CodeForbidden, "callsfu: forbidden"}
)

// CodeOf returns the code of the first *Error in err's chain, CodeInternal if
// there is none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
