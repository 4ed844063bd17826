package esia

import (
	"errors"
	"fmt"
	"net/url"
)

var (
	// ErrDenied reports that the user refused the authorisation on ESIA's
	// consent page (error=access_denied in the redirect).
	ErrDenied = errors.New("esia: access denied by the user")
	// ErrInvalidGrant reports an authorisation code that ESIA does not
	// take (unknown, expired or already used, or issued for another
	// redirect URI), or an access token it no longer takes.
	ErrInvalidGrant = errors.New("esia: invalid grant")
	// ErrInvalidClient reports that ESIA refused the operator's
	// credentials: the client id or the client_secret's signature.
	ErrInvalidClient = errors.New("esia: invalid client")
	// ErrProtocol reports an answer or a redirect that is malformed or
	// that does not match the request.
	ErrProtocol = errors.New("esia: protocol error")
	// ErrUnavailable reports a network error, a timeout or a 5xx answer.
	ErrUnavailable = errors.New("esia: unavailable")
	// ErrSignerRejected reports a signing service that refused a request
	// (4xx).
	ErrSignerRejected = errors.New("esia: signing service refused")
	// ErrConfig reports invalid options.
	ErrConfig = errors.New("esia: invalid config")
)

// CallbackError returns the error that ESIA's redirect to redirect_uri
// carries in its query q, or nil when it carries none (a code). A refusal
// (error=access_denied) is ErrDenied; any other error is ErrProtocol; both
// quote error_description.
func CallbackError(q url.Values) error {
	e := q.Get("error")
	if e == "" {
		if q.Get("code") == "" {
			return fmt.Errorf("%w: callback without code or error", ErrProtocol)
		}
		return nil
	}
	desc := q.Get("error_description")
	if len(desc) > 200 {
		desc = desc[:200]
	}
	if e == "access_denied" {
		return fmt.Errorf("%w: %q", ErrDenied, desc)
	}
	return fmt.Errorf("%w: callback error %q: %q", ErrProtocol, e, desc)
}
