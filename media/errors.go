package media

import "errors"

// Sentinel errors. Each is returned wrapped with detail; test with
// errors.Is. Their meaning is stable, so the HTTP layer can map each to a
// status code and a client error code.
var (
	// ErrTooLarge: a file is over Options.MaxFile, a chunk over
	// Options.MaxChunk, or a name over 255 bytes.
	ErrTooLarge = errors.New("media: too large")
	// ErrQuota: the user's bytes for the current UTC day would pass
	// Options.MaxPerUserDay.
	ErrQuota = errors.New("media: daily quota exceeded")
	// ErrOverlap: a chunk overlaps bytes already received (and is not a
	// retry of received bytes) or a chunk still being written.
	ErrOverlap = errors.New("media: chunk overlaps received bytes")
	// ErrBadRange: a malformed Content-Range, a chunk outside the file, or
	// an upload fragmented into too many ranges.
	ErrBadRange = errors.New("media: bad range")
	// ErrSizeMismatch: a body or chunk ended before, or went on after, the
	// size declared for it.
	ErrSizeMismatch = errors.New("media: size mismatch")
	// ErrUnknownUpload: no open upload has this id for this user (another
	// user's id reads the same, so ids cannot be probed).
	ErrUnknownUpload = errors.New("media: unknown upload")
	// ErrIncomplete: Complete was called before every byte was received,
	// or while chunks are still being written.
	ErrIncomplete = errors.New("media: upload incomplete")
	// ErrTooManyUploads: the user already has Options.MaxUploadsPerUser
	// open uploads.
	ErrTooManyUploads = errors.New("media: too many open uploads")
	// ErrNotFound: no blob has this hash (or it was collected).
	ErrNotFound = errors.New("media: not found")
	// ErrRefCount: Unref would take a blob's reference count below zero.
	ErrRefCount = errors.New("media: reference count below zero")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("media: store closed")
)
