package status

import "errors"

var (
	// ErrUnavailable reports that the state-service side did not answer
	// (network error, timeout, 429 or 5xx after the retries).
	ErrUnavailable = errors.New("status: state service unavailable")
	// ErrRejected reports a 4xx answer other than 404 and 429: bad
	// credentials or a request the state service refuses.
	ErrRejected = errors.New("status: state service refused the request")
	// ErrInvalidResponse reports an answer outside the documented contract
	// or its limits; nothing of it is used.
	ErrInvalidResponse = errors.New("status: invalid answer from the state service")
	// ErrInvalidPerson reports a Person without a valid OID or SNILS.
	ErrInvalidPerson = errors.New("status: invalid person")
	// ErrConfig reports invalid options.
	ErrConfig = errors.New("status: invalid options")
	// ErrRunning is returned by Run while another Run of the poller runs.
	ErrRunning = errors.New("status: poller already running")
	// ErrCorruptCursor reports a stored cursor that does not parse; the
	// user's polls fail until it is removed (Forget), rather than posting
	// the history again.
	ErrCorruptCursor = errors.New("status: corrupt cursor")
)
