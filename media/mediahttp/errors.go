package mediahttp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/gonets/gonets/media"
)

// Errors of Resolve.
var (
	// ErrNotReady: the bot upload has not received all of its file yet.
	ErrNotReady = errors.New("mediahttp: upload not ready")
	// ErrUnknownToken: a bot upload token that is malformed, forged,
	// expired, or another user's.
	ErrUnknownToken = errors.New("mediahttp: unknown upload token")
	// ErrUploadFailed: the bot upload's file was lost before it was
	// recorded (a failed completion, an expired upload, a crash that lost
	// the store's record of the completion too); the bot uploads it again with a new token. The
	// Bot API answers 400 "upload failed: upload again".
	ErrUploadFailed = errors.New("mediahttp: upload failed: upload again")
	// ErrTooManyUploads: NewBotUpload for a user holding
	// Options.MaxBotUploadsPerUser tokens still waiting for their file.
	// The Bot API answers 429.
	ErrTooManyUploads = errors.New("mediahttp: too many open bot uploads")
)

// errUploadFailed answers a bot upload whose file was lost.
var errUploadFailed = fmt.Errorf("%w", ErrUploadFailed)

// Error is the JSON body of every error answer: a stable code, a message
// for people and, for the node's own failures, an id under which the node
// logged the detail.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	ID      string `json:"id,omitempty"`
}

// Stable error codes, with their HTTP status (see docs/media.md).
const (
	CodeBadRequest     = "bad_request"      // 400: a malformed request
	CodeSizeMismatch   = "size_mismatch"    // 400: a body shorter or longer than declared
	CodeUnauthorized   = "unauthorized"     // 401: no or a bad session token
	CodeBadSignature   = "bad_signature"    // 403: a signed URL or upload token that does not verify
	CodeExpired        = "expired"          // 403: a signed URL past its expiry
	CodeNotFound       = "not_found"        // 404: no such file, or not one the caller may read
	CodeUnknownUpload  = "unknown_upload"   // 404: no such upload of the caller's (or completed long ago)
	CodeOverlap        = "overlap"          // 409: a chunk overlapping received bytes or one in flight
	CodeIncomplete     = "incomplete"       // 409: completion before every byte arrived
	CodeTimeout        = "timeout"          // 408: the body stalled for Options.IdleTimeout
	CodeUploadFailed   = "upload_failed"    // 400: a bot upload whose file was lost; upload again
	CodeLengthRequired = "length_required"  // 411: no Content-Length
	CodeTooLarge       = "too_large"        // 413: over the file or chunk limit
	CodeBadRange       = "bad_range"        // 416: a malformed or impossible Content-Range
	CodeQuota          = "quota"            // 429: the user's bytes for the day are spent
	CodeTooManyUploads = "too_many_uploads" // 429: too many open uploads
	CodeUnavailable    = "unavailable"      // 503: the store is closed
	CodeInternal       = "internal"         // 500: the node failed; see its log under the id
)

// mediaCodes maps the media store's sentinels to their answers.
var mediaCodes = []struct {
	err    error
	status int
	code   string
}{
	{media.ErrTooLarge, http.StatusRequestEntityTooLarge, CodeTooLarge},
	{media.ErrQuota, http.StatusTooManyRequests, CodeQuota},
	{media.ErrTooManyUploads, http.StatusTooManyRequests, CodeTooManyUploads},
	{media.ErrOverlap, http.StatusConflict, CodeOverlap},
	{media.ErrIncomplete, http.StatusConflict, CodeIncomplete},
	{media.ErrBadRange, http.StatusRequestedRangeNotSatisfiable, CodeBadRange},
	{media.ErrSizeMismatch, http.StatusBadRequest, CodeSizeMismatch},
	{media.ErrUnknownUpload, http.StatusNotFound, CodeUnknownUpload},
	{media.ErrNotFound, http.StatusNotFound, CodeNotFound},
	{media.ErrClosed, http.StatusServiceUnavailable, CodeUnavailable},
	{ErrUploadFailed, http.StatusBadRequest, CodeUploadFailed},
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// fail answers a client error with its code.
func fail(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gonets"`)
	}
	writeJSON(w, status, Error{Code: code, Message: msg})
}

// failErr answers err: a media sentinel or a too-large body with its
// code, anything else as internal, logged under a fresh id.
func (s *Server) failErr(w http.ResponseWriter, r *http.Request, err error) {
	for _, m := range mediaCodes {
		if errors.Is(err, m.err) {
			fail(w, m.status, m.code, err.Error())
			return
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		fail(w, http.StatusRequestEntityTooLarge, CodeTooLarge, "request body too large")
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The body stalled past the read deadline; the connection is
		// done, the answer probably unread.
		fail(w, http.StatusRequestTimeout, CodeTimeout, "the request body stalled")
		return
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		fail(w, http.StatusBadRequest, CodeBadRequest, "request canceled")
		return
	}
	var b [8]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	s.opts.Log.Error("mediahttp: request failed", "id", id, "method", r.Method, "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, Error{Code: CodeInternal, Message: "internal error", ID: id})
}
