package client

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/wire"
)

// Error is a request the node refused: its stable code, its human message
// and, for RATE_LIMITED and SMS_UNAVAILABLE, how long to wait. Branch on Code (or compare with
// errors.Is against the sentinels below), never on Message:
//
//	var e *client.Error
//	if errors.As(err, &e) && e.Code == wire.ErrorCode_ERROR_CODE_RATE_LIMITED {
//		time.Sleep(e.RetryAfter)
//	}
//	if errors.Is(err, client.ErrNotMember) { ... }
type Error struct {
	Code       wire.ErrorCode
	Message    string
	RetryAfter time.Duration
	// ID names an INTERNAL or UNAVAILABLE failure in the node's log,
	// where its detail is; quote it when reporting one.
	ID string
	// Call is the call running in the chat, with CALL_RUNNING: join it.
	Call uint64
	// TriesLeft is how many more codes a login attempt takes, with
	// WRONG_CODE.
	TriesLeft int
	// Limit names the rate limit a login hit, with RATE_LIMITED:
	// "number", "address" or "prefix".
	Limit string
}

// Error returns "gonets: CODE: message".
func (e *Error) Error() string {
	code := strings.TrimPrefix(e.Code.String(), "ERROR_CODE_")
	if e.Message == "" {
		return "gonets: " + code
	}
	return "gonets: " + code + ": " + e.Message
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, ErrNotMember) matches whatever the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// errorFromWire converts an Error frame.
func errorFromWire(w *wire.Error) *Error {
	return &Error{
		Code: w.GetCode(), Message: w.GetMessage(), RetryAfter: time.Duration(w.GetRetryAfterMs()) * time.Millisecond,
		ID: w.GetErrorId(), Call: w.GetCall(), TriesLeft: int(w.GetTriesLeft()), Limit: w.GetLimit(),
	}
}

// closedWith returns the *Error of a connection the node closed with an
// error code as its QUIC application error code, the Error frame itself
// lost, and err otherwise. It covers every code the wire defines (the
// session's nodeClosed stops at INTERNAL, below the account codes).
func closedWith(err error) error {
	var e *Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	var ae *quic.ApplicationError
	if !errors.As(err, &ae) || !ae.Remote || ae.ErrorCode == 0 || ae.ErrorCode > 1<<31-1 {
		return err
	}
	if _, ok := wire.ErrorCode_name[int32(ae.ErrorCode)]; !ok {
		return err
	}
	return &Error{Code: wire.ErrorCode(ae.ErrorCode), Message: ae.ErrorMessage}
}

// Sentinels, one per code, for errors.Is. They carry no message.
var (
	ErrBadFrame          = &Error{Code: wire.ErrorCode_ERROR_CODE_BAD_FRAME}
	ErrUnsupported       = &Error{Code: wire.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION}
	ErrUnauthenticated   = &Error{Code: wire.ErrorCode_ERROR_CODE_UNAUTHENTICATED}
	ErrTokenExpired      = &Error{Code: wire.ErrorCode_ERROR_CODE_TOKEN_EXPIRED}
	ErrBadRequest        = &Error{Code: wire.ErrorCode_ERROR_CODE_BAD_REQUEST}
	ErrTooLarge          = &Error{Code: wire.ErrorCode_ERROR_CODE_TOO_LARGE}
	ErrUnknownChat       = &Error{Code: wire.ErrorCode_ERROR_CODE_UNKNOWN_CHAT}
	ErrNotMember         = &Error{Code: wire.ErrorCode_ERROR_CODE_NOT_MEMBER}
	ErrForbidden         = &Error{Code: wire.ErrorCode_ERROR_CODE_FORBIDDEN}
	ErrNoTarget          = &Error{Code: wire.ErrorCode_ERROR_CODE_NO_TARGET}
	ErrRateLimited       = &Error{Code: wire.ErrorCode_ERROR_CODE_RATE_LIMITED}
	ErrTooManyMembers    = &Error{Code: wire.ErrorCode_ERROR_CODE_TOO_MANY_MEMBERS}
	ErrTooManyChats      = &Error{Code: wire.ErrorCode_ERROR_CODE_TOO_MANY_CHATS}
	ErrUnavailable       = &Error{Code: wire.ErrorCode_ERROR_CODE_UNAVAILABLE}
	ErrInternal          = &Error{Code: wire.ErrorCode_ERROR_CODE_INTERNAL}
	ErrUnknownCall       = &Error{Code: wire.ErrorCode_ERROR_CODE_UNKNOWN_CALL}
	ErrCallRunning       = &Error{Code: wire.ErrorCode_ERROR_CODE_CALL_RUNNING}
	ErrTooManyPublishers = &Error{Code: wire.ErrorCode_ERROR_CODE_TOO_MANY_PUBLISHERS}
	ErrBadSDP            = &Error{Code: wire.ErrorCode_ERROR_CODE_BAD_SDP}
	ErrCallsOff          = &Error{Code: wire.ErrorCode_ERROR_CODE_CALLS_OFF}
	ErrAccountsOff       = &Error{Code: wire.ErrorCode_ERROR_CODE_ACCOUNTS_OFF}
	ErrBadPhone          = &Error{Code: wire.ErrorCode_ERROR_CODE_BAD_PHONE}
	ErrNotMobile         = &Error{Code: wire.ErrorCode_ERROR_CODE_NOT_MOBILE}
	ErrNumberNotAllowed  = &Error{Code: wire.ErrorCode_ERROR_CODE_NUMBER_NOT_ALLOWED}
	ErrVirtualNumber     = &Error{Code: wire.ErrorCode_ERROR_CODE_VIRTUAL_NUMBER}
	ErrWrongCode         = &Error{Code: wire.ErrorCode_ERROR_CODE_WRONG_CODE}
	ErrCodeExpired       = &Error{Code: wire.ErrorCode_ERROR_CODE_CODE_EXPIRED}
	ErrTooManyTries      = &Error{Code: wire.ErrorCode_ERROR_CODE_TOO_MANY_TRIES}
	ErrSMSUnavailable    = &Error{Code: wire.ErrorCode_ERROR_CODE_SMS_UNAVAILABLE}
	ErrRefreshInvalid    = &Error{Code: wire.ErrorCode_ERROR_CODE_REFRESH_INVALID}
	ErrRefreshReused     = &Error{Code: wire.ErrorCode_ERROR_CODE_REFRESH_REUSED}
	ErrTooManyDevices    = &Error{Code: wire.ErrorCode_ERROR_CODE_TOO_MANY_DEVICES}
	ErrUnknownDevice     = &Error{Code: wire.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE}
	ErrDeviceEnded       = &Error{Code: wire.ErrorCode_ERROR_CODE_DEVICE_ENDED}
	ErrStateServicesOff  = &Error{Code: wire.ErrorCode_ERROR_CODE_STATE_SERVICES_OFF}
	ErrNotLinked         = &Error{Code: wire.ErrorCode_ERROR_CODE_NOT_LINKED}
	ErrUnknownRequest    = &Error{Code: wire.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST}
	ErrRequestEnded      = &Error{Code: wire.ErrorCode_ERROR_CODE_REQUEST_ENDED}
	ErrBadContent        = &Error{Code: wire.ErrorCode_ERROR_CODE_BAD_CONTENT}
	ErrUnknownFile       = &Error{Code: wire.ErrorCode_ERROR_CODE_UNKNOWN_FILE}
	ErrNoButton          = &Error{Code: wire.ErrorCode_ERROR_CODE_NO_BUTTON}
	ErrNoMiniApp         = &Error{Code: wire.ErrorCode_ERROR_CODE_NO_MINI_APP}
)

// Errors of the client itself.
var (
	// ErrClosed is returned by calls on a Client after Close.
	ErrClosed = errors.New("client: closed")
	// ErrConnLost is returned (wrapped, with the cause) by a request that
	// is not safe to repeat and was in flight when the connection broke:
	// it may or may not have taken effect. See Client for which requests
	// are repeated instead.
	ErrConnLost = errors.New("client: connection lost")
	// ErrProtocol is returned when the node answers with a frame the
	// request does not expect.
	ErrProtocol = errors.New("client: protocol violation")
	// ErrRefreshLost is returned (wrapped, with the cause) when a token
	// refresh was sent and its answer never came: the node may have
	// rotated the refresh token, and using it again would end the
	// device (REFRESH_REUSED). Discard that refresh token and log in
	// again. A Client with Options.Refresh stops with it.
	ErrRefreshLost = errors.New("client: refresh answer lost; the refresh token may be spent")
)

// fatal reports whether err, from a connection attempt or ending a
// session, means that trying again cannot help: the node rejected the
// token or the protocol version, the device was ended, or its refresh
// token is dead (a Client with Options.Refresh renews an expired token
// first; see Client.expired).
func fatal(err error) bool {
	return errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrTokenExpired) || errors.Is(err, ErrUnsupported) ||
		errors.Is(err, ErrDeviceEnded) || errors.Is(err, ErrRefreshInvalid) || errors.Is(err, ErrRefreshReused) ||
		errors.Is(err, ErrRefreshLost)
}

// unexpected returns the ErrProtocol for a response of the wrong type.
func unexpected(want string, got *wire.Frame) error {
	return fmt.Errorf("%w: want %s, got %T", ErrProtocol, want, got.GetBody())
}
