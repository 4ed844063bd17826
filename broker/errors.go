package broker

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// Errors of the broker's own, each with its stable client code (see
// codeOf).
var (
	// ErrShutdown is returned by Serve after Shutdown began.
	ErrShutdown = errors.New("broker: shutting down")
	// ErrNotMember is returned for a request in a chat the user is not in.
	ErrNotMember = errors.New("broker: not a member")
	// ErrForbidden is returned when the user's role does not allow a request.
	ErrForbidden = errors.New("broker: forbidden")
	// ErrRateLimited is returned when a user sends faster than its bucket.
	ErrRateLimited = errors.New("broker: rate limited")
	// ErrTooManyChats is returned when a user would join too many chats.
	ErrTooManyChats = errors.New("broker: too many chats")
	// ErrBadRequest is returned for a request with an invalid field.
	ErrBadRequest = errors.New("broker: bad request")
	// ErrUnknownCall is returned for a call that does not exist or has
	// ended; CallMedia wraps it for a participant or room it lacks.
	ErrUnknownCall = errors.New("broker: unknown call")
	// ErrCallRunning is returned for a start in a chat that has a call.
	ErrCallRunning = errors.New("broker: a call runs in the chat")
	// ErrTooManyPublishers is wrapped by CallMedia for a publisher beyond
	// its limit.
	ErrTooManyPublishers = errors.New("broker: too many publishers")
	// ErrBadSDP is returned for an empty or oversized session
	// description, and wrapped by CallMedia for one it cannot use.
	ErrBadSDP = errors.New("broker: bad SDP")
	// ErrCallsOff is returned for call requests on a node without
	// Options.Calls.
	ErrCallsOff = errors.New("broker: calls are off on this node")
)

// codeOf maps an error onto the stable code a client sees.
func codeOf(err error) wire.ErrorCode {
	if c, ok := accountCode(err); ok {
		return c
	}
	switch {
	case errors.Is(err, ErrBadContent):
		return wire.ErrorCode_ERROR_CODE_BAD_CONTENT
	case errors.Is(err, ErrUnknownFile):
		return wire.ErrorCode_ERROR_CODE_UNKNOWN_FILE
	case errors.Is(err, ErrNoButton):
		return wire.ErrorCode_ERROR_CODE_NO_BUTTON
	case errors.Is(err, ErrNoMiniApp):
		return wire.ErrorCode_ERROR_CODE_NO_MINI_APP
	case errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, storage.ErrTooLarge):
		return wire.ErrorCode_ERROR_CODE_TOO_LARGE
	case errors.Is(err, wire.ErrBadFrame), errors.Is(err, wire.ErrTruncated):
		return wire.ErrorCode_ERROR_CODE_BAD_FRAME
	case errors.Is(err, token.ErrExpired):
		return wire.ErrorCode_ERROR_CODE_TOKEN_EXPIRED
	case errors.Is(err, token.ErrMalformed), errors.Is(err, token.ErrForged):
		return wire.ErrorCode_ERROR_CODE_UNAUTHENTICATED
	case errors.Is(err, ErrBadRequest), errors.Is(err, storage.ErrBadID), errors.Is(err, storage.ErrBadKind),
		errors.Is(err, storage.ErrEmptyBody), errors.Is(err, storage.ErrBadRange), errors.Is(err, storage.ErrAlreadyMember),
		errors.Is(err, storage.ErrChatExists):
		return wire.ErrorCode_ERROR_CODE_BAD_REQUEST
	case errors.Is(err, storage.ErrUnknownChat):
		return wire.ErrorCode_ERROR_CODE_UNKNOWN_CHAT
	case errors.Is(err, ErrNotMember), errors.Is(err, storage.ErrNotMember):
		return wire.ErrorCode_ERROR_CODE_NOT_MEMBER
	case errors.Is(err, ErrForbidden), errors.Is(err, storage.ErrNotAllowed):
		return wire.ErrorCode_ERROR_CODE_FORBIDDEN
	case errors.Is(err, storage.ErrNoTarget), errors.Is(err, storage.ErrTooManyReactions):
		return wire.ErrorCode_ERROR_CODE_NO_TARGET
	case errors.Is(err, ErrUnknownCall):
		return wire.ErrorCode_ERROR_CODE_UNKNOWN_CALL
	case errors.Is(err, ErrCallRunning):
		return wire.ErrorCode_ERROR_CODE_CALL_RUNNING
	case errors.Is(err, ErrTooManyPublishers):
		return wire.ErrorCode_ERROR_CODE_TOO_MANY_PUBLISHERS
	case errors.Is(err, ErrBadSDP):
		return wire.ErrorCode_ERROR_CODE_BAD_SDP
	case errors.Is(err, ErrCallsOff):
		return wire.ErrorCode_ERROR_CODE_CALLS_OFF
	case errors.Is(err, ErrRateLimited):
		return wire.ErrorCode_ERROR_CODE_RATE_LIMITED
	case errors.Is(err, storage.ErrTooManyMembers):
		return wire.ErrorCode_ERROR_CODE_TOO_MANY_MEMBERS
	case errors.Is(err, ErrTooManyChats), errors.Is(err, storage.ErrTooManyChats):
		return wire.ErrorCode_ERROR_CODE_TOO_MANY_CHATS
	case errors.Is(err, ErrShutdown), errors.Is(err, storage.ErrClosed), errors.Is(err, storage.ErrFailed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return wire.ErrorCode_ERROR_CODE_UNAVAILABLE
	}
	return wire.ErrorCode_ERROR_CODE_INTERNAL
}

// clientError is what a client is told of err: its stable code and a
// message. INTERNAL and UNAVAILABLE failures may carry storage detail
// (paths, Pebble's messages): the client gets a generic message and an
// error id, and the node logs the detail under that id.
func (b *Broker) clientError(err error) *wire.Error {
	e := &wire.Error{Code: codeOf(err)}
	switch e.Code {
	case wire.ErrorCode_ERROR_CODE_INTERNAL:
		e.ErrorId = newErrorID()
		e.Message = "internal error; the node logged it as " + e.ErrorId
		b.log.Error("broker: internal error", "error_id", e.ErrorId, "err", err)
	case wire.ErrorCode_ERROR_CODE_UNAVAILABLE:
		e.ErrorId = newErrorID()
		switch {
		case errors.Is(err, ErrShutdown):
			e.Message = "node shutting down; reconnect and sync"
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			e.Message = "request timed out; retry"
		default:
			e.Message = "storage unavailable; retry later"
		}
		b.log.Warn("broker: request unavailable", "error_id", e.ErrorId, "err", err)
	default:
		e.Message = err.Error()
	}
	var rl *rateLimitError
	if errors.As(err, &rl) {
		e.RetryAfterMs = uint32(max(1, rl.wait.Milliseconds()))
	}
	var rle *identity.RateLimitError
	if errors.As(err, &rle) {
		e.RetryAfterMs = uint32(max(1, rle.RetryAfter.Milliseconds()))
		e.Limit = rle.Scope
	}
	var wc *identity.WrongCodeError
	if errors.As(err, &wc) {
		e.TriesLeft = uint32(max(0, wc.TriesLeft))
	}
	if e.Code == wire.ErrorCode_ERROR_CODE_SMS_UNAVAILABLE {
		// The gateway's own error stays in the node's log.
		e.Message = identity.ErrSMSRetry.Error()
		e.RetryAfterMs = uint32(identity.SMSRetryAfter.Milliseconds())
	}
	var cr *callRunningError
	if errors.As(err, &cr) {
		e.Call = uint64(cr.call)
	}
	return e
}

// newErrorID returns a random id naming one failure in the log.
func newErrorID() string {
	return strconv.FormatUint(rand.Uint64(), 36)
}

// accountCode maps the account errors, before the generic ones: a failed
// SMS delivery may wrap a context's error, and is still SMS_UNAVAILABLE.
func accountCode(err error) (wire.ErrorCode, bool) {
	switch {
	case errors.Is(err, ErrAccountsOff):
		return wire.ErrorCode_ERROR_CODE_ACCOUNTS_OFF, true
	case errors.Is(err, ErrDeviceEnded):
		return wire.ErrorCode_ERROR_CODE_DEVICE_ENDED, true
	case errors.Is(err, identity.ErrSMSRetry):
		return wire.ErrorCode_ERROR_CODE_SMS_UNAVAILABLE, true
	case errors.Is(err, identity.ErrBadPhone):
		return wire.ErrorCode_ERROR_CODE_BAD_PHONE, true
	case errors.Is(err, identity.ErrNotMobile):
		return wire.ErrorCode_ERROR_CODE_NOT_MOBILE, true
	case errors.Is(err, identity.ErrCountryNotAllowed), errors.Is(err, identity.ErrUnknownRange):
		return wire.ErrorCode_ERROR_CODE_NUMBER_NOT_ALLOWED, true
	case errors.Is(err, identity.ErrVirtualNumber):
		return wire.ErrorCode_ERROR_CODE_VIRTUAL_NUMBER, true
	case errors.Is(err, identity.ErrRateNumber), errors.Is(err, identity.ErrRateAddress), errors.Is(err, identity.ErrRatePrefix):
		return wire.ErrorCode_ERROR_CODE_RATE_LIMITED, true
	case errors.Is(err, identity.ErrWrongCode):
		return wire.ErrorCode_ERROR_CODE_WRONG_CODE, true
	case errors.Is(err, identity.ErrCodeExpired):
		return wire.ErrorCode_ERROR_CODE_CODE_EXPIRED, true
	case errors.Is(err, identity.ErrTooManyTries):
		return wire.ErrorCode_ERROR_CODE_TOO_MANY_TRIES, true
	case errors.Is(err, identity.ErrRefreshReused):
		return wire.ErrorCode_ERROR_CODE_REFRESH_REUSED, true
	case errors.Is(err, identity.ErrRefreshInvalid):
		return wire.ErrorCode_ERROR_CODE_REFRESH_INVALID, true
	case errors.Is(err, identity.ErrTooManyDevices):
		return wire.ErrorCode_ERROR_CODE_TOO_MANY_DEVICES, true
	case errors.Is(err, identity.ErrUnknownDevice):
		return wire.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE, true
	case errors.Is(err, identity.ErrDeviceInfo), errors.Is(err, identity.ErrCodeNumber):
		return wire.ErrorCode_ERROR_CODE_BAD_REQUEST, true
	case errors.Is(err, identity.ErrStateOff):
		return wire.ErrorCode_ERROR_CODE_STATE_SERVICES_OFF, true
	case errors.Is(err, identity.ErrNotLinked):
		return wire.ErrorCode_ERROR_CODE_NOT_LINKED, true
	case errors.Is(err, identity.ErrUnknownRequest):
		return wire.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST, true
	case errors.Is(err, identity.ErrRequestEnded):
		return wire.ErrorCode_ERROR_CODE_REQUEST_ENDED, true
	case errors.Is(err, identity.ErrAccountsClosed):
		return wire.ErrorCode_ERROR_CODE_UNAVAILABLE, true
	}
	return 0, false
}
