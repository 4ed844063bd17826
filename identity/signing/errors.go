package signing

import "errors"

var (
	// ErrBadRequest is returned by Submit for a request that lacks what
	// signing needs (an ID, a chat, a signer, a person, a document).
	ErrBadRequest = errors.New("signing: bad request")
	// ErrHashMismatch is returned by Submit when SHA256 is not the digest of
	// Document.
	ErrHashMismatch = errors.New("signing: document digest mismatch")
	// ErrTooLarge is returned by Submit for a document over MaxDocument.
	ErrTooLarge = errors.New("signing: document too large")
	// ErrTooMany is returned by Submit while MaxPending requests await their
	// end, or MaxPerRequester of the requester's or MaxPerSigner of the
	// signer's: the wrapping message says which.
	ErrTooMany = errors.New("signing: too many pending requests")
	// ErrRunning is returned by Run while another Run works.
	ErrRunning = errors.New("signing: Run already running")
	// ErrUnknownRequest is returned by Decide for an ID the manager never
	// accepted (or whose tombstone retention passed).
	ErrUnknownRequest = errors.New("signing: unknown request")
	// ErrNotSigner is returned by Decide when the deciding user is not the
	// request's signer.
	ErrNotSigner = errors.New("signing: not the signer")
	// ErrEnded is returned by Decide for a request that was already decided:
	// the wrapping message says whether it was approved or how it ended.
	ErrEnded = errors.New("signing: request already decided")

	// ErrRejected is returned by a Provider that refused a call for good
	// (HTTP 4xx other than 401, 403, 408 and 429): retrying will not help,
	// and the manager ends the request Failed.
	ErrRejected = errors.New("signing: refused by the signing service")
	// ErrUnavailable is returned by a Provider that could not be reached or
	// answered with a server error after its retries; the manager retries
	// later, until the request expires.
	ErrUnavailable = errors.New("signing: signing service unavailable")
	// ErrProtocol is returned by a Provider whose answer did not follow the
	// API; the manager retries later, until the request expires.
	ErrProtocol = errors.New("signing: malformed answer from the signing service")
	// ErrConfig is returned by NewHTTPProvider and NewManager for invalid
	// options.
	ErrConfig = errors.New("signing: invalid options")
	// ErrSignature is returned by Verify for a signature that is not a valid
	// detached CMS over the document.
	ErrSignature = errors.New("signing: bad signature")
	// ErrOtherSigner is returned by CheckSigner for a signature whose
	// certificate names another person than the request's signer (or,
	// with ManagerOptions.RequireSNILS, names nobody).
	ErrOtherSigner = errors.New("signing: signed by another person")
)
