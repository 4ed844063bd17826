package mediahttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/gonets/gonets/media"
)

// maxJSONBody bounds the JSON body of POST /media/uploads.
const maxJSONBody = 4 << 10

// finishTimeout bounds the work after a file is stored: probing a picture
// and making its thumbnail. It does not bound storing the file: hashing
// a completed upload of up to MaxFile bytes takes as long as the disk
// needs. A variable for tests.
var finishTimeout = time.Minute

// CreateRequest is the body of POST /media/uploads.
type CreateRequest struct {
	Size int64  `json:"size"`
	Name string `json:"name"`
	MIME string `json:"mime"`
}

// UploadStatus is the answer of the resumable upload endpoints: what the
// node has of upload ID.
type UploadStatus struct {
	ID string `json:"id"`
	// URL is where the chunks go (PUT) and the status is read (GET).
	URL  string `json:"url"`
	Size int64  `json:"size"`
	// Received lists the durable byte ranges [start, end) (end exclusive),
	// sorted and merged.
	Received [][2]int64 `json:"received"`
	// Complete is set once every byte arrived and the file is stored;
	// File then describes it.
	Complete bool  `json:"complete"`
	File     *File `json:"file,omitempty"`
}

func (s *Server) uploadURL(id string) string { return s.opts.PublicURL + "/media/uploads/" + id }

func (s *Server) status(u media.Upload) UploadStatus {
	st := UploadStatus{ID: u.ID, URL: s.uploadURL(u.ID), Size: u.Size, Received: make([][2]int64, 0, len(u.Received))}
	for _, r := range u.Received {
		st.Received = append(st.Received, [2]int64{r.Start, r.End})
	}
	return st
}

// fileMeta returns the name and MIME type a request gives its file: the
// name from X-File-Name (or ?name=), the type from Content-Type unless it
// is absent or generic, when the store sniffs it.
func fileMeta(r *http.Request) media.Meta {
	name := r.Header.Get("X-File-Name")
	if name == "" {
		name = r.URL.Query().Get("name")
	}
	if name == "" {
		if _, p, err := mime.ParseMediaType(r.Header.Get("Content-Disposition")); err == nil {
			name = p["filename"]
		}
	}
	return media.Meta{Name: cleanName(name), MIME: cleanMIME(r.Header.Get("Content-Type"))}
}

// cleanName keeps the last element of a path-like name, without control
// characters.
func cleanName(n string) string {
	if i := strings.LastIndexAny(n, `/\`); i >= 0 {
		n = n[i+1:]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, n)
}

// cleanMIME returns t as a media type ("type/subtype" with its
// parameters), or "" when it is missing, malformed or generic, so that
// the store sniffs the content.
func cleanMIME(t string) string {
	mt, params, err := mime.ParseMediaType(t)
	if err != nil || mt == "application/octet-stream" || mt == "application/x-binary" || strings.HasPrefix(mt, "multipart/") || !strings.Contains(mt, "/") {
		return ""
	}
	if mt == "text/plain" || strings.HasPrefix(mt, "text/") {
		if cs := params["charset"]; cs != "" {
			return mime.FormatMediaType(mt, map[string]string{"charset": cs})
		}
	}
	return mt
}

// handlePut is POST /media/upload: a whole file in one request.
func (s *Server) handlePut(w http.ResponseWriter, r *http.Request, user uint64) {
	if r.ContentLength < 0 {
		fail(w, http.StatusLengthRequired, CodeLengthRequired, "Content-Length is required")
		return
	}
	if r.ContentLength > s.limits.MaxFile {
		fail(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("file of %d bytes, at most %d", r.ContentLength, s.limits.MaxFile))
		return
	}
	if !s.uploadSlot(w, r, user) {
		return
	}
	defer s.uploading.release(user)
	body := http.MaxBytesReader(w, r.Body, r.ContentLength+1)
	info, err := s.store.Put(r.Context(), user, body, r.ContentLength, fileMeta(r))
	if err == nil {
		err = s.receipt(user, info.SHA256)
	}
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.finishDetached(r.Context(), user, info))
}

// handleCreate is POST /media/uploads: start a resumable upload.
func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request, user uint64) {
	var req CreateRequest
	s.watchBody(w, r)
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, CodeBadRequest, "body: want JSON {size, name, mime}: "+err.Error())
		return
	}
	up, err := s.store.CreateUpload(user, req.Size, media.Meta{Name: cleanName(req.Name), MIME: cleanMIME(req.MIME)})
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	st := s.status(up)
	if up.Size == 0 {
		// Nothing to send: an empty file is complete at once.
		f, err := s.complete(r.Context(), user, up.ID)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		st.Complete, st.File = true, &f
	}
	w.Header().Set("Location", st.URL)
	writeJSON(w, http.StatusCreated, st)
}

// handleStatus is GET /media/uploads/{id}: what the node has, for a
// client resuming.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, user uint64) {
	id := r.PathValue("id")
	up, err := s.store.Upload(user, id)
	if err != nil {
		if st, ok := s.completed(r.Context(), user, id); ok {
			writeJSON(w, http.StatusOK, st)
			return
		}
		s.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.status(up))
}

// completed returns the status of upload id of user if it completed
// lately: remembered in memory, or after a restart from the store's
// record of the completion (then with the user's receipt, should the
// crash have come before it was written).
func (s *Server) completed(ctx context.Context, user uint64, id string) (UploadStatus, bool) {
	var f File
	if x := s.done.lookup(user, id); x != nil {
		var err error
		if f, err = x.wait(ctx); err != nil {
			return UploadStatus{}, false
		}
	} else {
		info, err := s.store.CompletedUpload(user, id)
		if err != nil {
			return UploadStatus{}, false
		}
		if !s.rcpt.has(user, info.SHA256, s.opts.Now()) && s.receipt(user, info.SHA256) != nil {
			return UploadStatus{}, false
		}
		f = fileOf(info)
	}
	return UploadStatus{ID: id, URL: s.uploadURL(id), Size: f.Size, Received: [][2]int64{{0, f.Size}}, Complete: true, File: &f}, true
}

// handleChunk is PUT /media/uploads/{id}: one chunk, with Content-Range.
func (s *Server) handleChunk(w http.ResponseWriter, r *http.Request, user uint64) {
	id := r.PathValue("id")
	start, end, total, err := media.ParseContentRange(r.Header.Get("Content-Range"))
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	n := end - start + 1
	if r.ContentLength >= 0 && r.ContentLength != n {
		fail(w, http.StatusBadRequest, CodeSizeMismatch, fmt.Sprintf("Content-Length %d, Content-Range says %d bytes", r.ContentLength, n))
		return
	}
	if n > s.limits.MaxChunk {
		fail(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("chunk of %d bytes, at most %d", n, s.limits.MaxChunk))
		return
	}
	up, err := s.store.Upload(user, id)
	if err != nil {
		if st, ok := s.completed(r.Context(), user, id); ok && end < st.Size && (total < 0 || total == st.Size) {
			// A retry of a chunk whose answer was lost after completion.
			writeJSON(w, http.StatusOK, st)
			return
		}
		s.failErr(w, r, err)
		return
	}
	if total >= 0 && total != up.Size {
		fail(w, http.StatusRequestedRangeNotSatisfiable, CodeBadRange, fmt.Sprintf("Content-Range total %d, the upload has %d bytes", total, up.Size))
		return
	}
	if !s.uploadSlot(w, r, user) {
		return
	}
	defer s.uploading.release(user)
	up, err = s.store.WriteChunk(r.Context(), user, id, start, http.MaxBytesReader(w, r.Body, n+1), n)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	st := s.status(up)
	if received(up) == up.Size {
		f, err := s.complete(r.Context(), user, id)
		if err != nil {
			if errors.Is(err, media.ErrIncomplete) {
				// Another chunk is still being written; its request completes.
				writeJSON(w, http.StatusOK, st)
				return
			}
			s.failErr(w, r, err)
			return
		}
		st.Complete, st.File = true, &f
	}
	writeJSON(w, http.StatusOK, st)
}

func received(u media.Upload) int64 {
	var n int64
	for _, r := range u.Received {
		n += r.Len()
	}
	return n
}

// handleAbort is DELETE /media/uploads/{id}.
func (s *Server) handleAbort(w http.ResponseWriter, r *http.Request, user uint64) {
	if err := s.store.Abort(user, r.PathValue("id")); err != nil {
		s.failErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// complete completes upload id of user once: concurrent callers (the
// last chunks, sent in parallel) share one completion and its result.
// It runs off the request's context, so that a client going away does
// not leave it half done.
func (s *Server) complete(ctx context.Context, user uint64, id string) (File, error) {
	x, first := s.done.start(user, id)
	if !first {
		if x.user != user {
			return File{}, fmt.Errorf("%w: %s", media.ErrUnknownUpload, id)
		}
		return x.wait(ctx)
	}
	// No deadline: the hash of a large file on a slow disk would time
	// out on every try. The store's own Close ends it.
	info, err := s.store.Complete(context.WithoutCancel(ctx), user, id)
	if err == nil {
		err = s.receipt(user, info.SHA256)
	}
	var f File
	if err == nil {
		f = s.finishDetached(ctx, user, info)
	}
	s.done.finish(x, f, err, s.opts.Now())
	if err != nil {
		// Not remembered: a later request tries again (or learns the
		// upload is gone).
		s.done.mu.Lock()
		delete(s.done.m, id)
		s.done.mu.Unlock()
	}
	return f, err
}
