package mediahttp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/media"
)

// Bot upload types, as the Bot API's POST /uploads?type= names them.
var botTypes = map[string]wire.AttachmentType{
	"image": wire.AttachmentType_ATTACHMENT_TYPE_PHOTO,
	"video": wire.AttachmentType_ATTACHMENT_TYPE_VIDEO,
	"audio": wire.AttachmentType_ATTACHMENT_TYPE_AUDIO,
	"file":  wire.AttachmentType_ATTACHMENT_TYPE_FILE,
}

// botTokenID and botTokenMAC are the byte lengths of a bot upload token's
// random id and of the HMAC that follows it.
const (
	botTokenID  = 16
	botTokenMAC = 16
)

// NewBotUpload starts a bot's upload of a file of type typ ("image",
// "video", "audio" or "file") and returns the URL the bot posts it to,
// without Authorization, and its token, a capability: 128 random bits and
// an HMAC under Options.Key. The token's record is durable before
// NewBotUpload returns; Resolve turns the token into an attachment once
// the file is complete. A user may hold Options.MaxBotUploadsPerUser
// tokens that have not received their file; one more is refused with
// ErrTooManyUploads.
func (s *Server) NewBotUpload(user uint64, typ string) (url, token string, err error) {
	if _, ok := botTypes[typ]; !ok {
		return "", "", fmt.Errorf("mediahttp: upload type %q: want image, video, audio or file", typ)
	}
	var raw [botTokenID + botTokenMAC]byte
	rand.Read(raw[:botTokenID])
	copy(raw[botTokenID:], s.botMAC(raw[:botTokenID]))
	token = base64.RawURLEncoding.EncodeToString(raw[:])
	b := &botUpload{id: hex.EncodeToString(raw[:botTokenID]), rec: botRecord{User: user, Type: typ, Created: s.opts.Now().UTC()}}
	if err := s.bots.add(b, s.opts.Now()); err != nil {
		return "", "", err
	}
	return s.opts.PublicURL + "/media/bot/" + token, token, nil
}

func (s *Server) botMAC(id []byte) []byte {
	m := hmac.New(sha256.New, s.opts.Key)
	m.Write([]byte("gonets-bot-upload-v1\n"))
	m.Write(id)
	return m.Sum(nil)[:botTokenMAC]
}

// botUpload looks token up: ErrUnknownToken when it is malformed, does
// not verify, or names no live record.
func (s *Server) botUpload(token string) (*botUpload, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != botTokenID+botTokenMAC || !hmac.Equal(raw[botTokenID:], s.botMAC(raw[:botTokenID])) {
		return nil, ErrUnknownToken
	}
	if b := s.bots.get(hex.EncodeToString(raw[:botTokenID]), s.opts.Now()); b != nil {
		return b, nil
	}
	return nil, ErrUnknownToken
}

// Resolve returns the file uploaded with token by user as an attachment:
// its type (from the upload's type), address, size, name and MIME type,
// and for pictures their dimensions and thumbnail. It returns
// ErrNotReady while the file is incomplete, ErrUploadFailed when its
// upload was lost (the bot uploads again with a new token) and
// ErrUnknownToken for a bad or expired token or another user's. The
// attachment still needs Attach (the broker's send does it) to hold the
// file; the bot's upload gave the bot the receipt Attach checks.
func (s *Server) Resolve(user uint64, token string) (*wire.Attachment, error) {
	b, err := s.botUpload(token)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rec.User != user {
		return nil, ErrUnknownToken
	}
	f := b.rec.File
	if f == nil {
		if b.rec.Failed {
			return nil, ErrUploadFailed
		}
		return nil, ErrNotReady
	}
	return &wire.Attachment{
		Type: botTypes[b.rec.Type], Sha256: f.SHA256, Size: f.Size, Name: f.Name, Mime: f.MIME,
		Width: uint32(f.Width), Height: uint32(f.Height), ThumbSha256: f.ThumbSHA256,
	}, nil
}

// botAnswer is the JSON the upload URL answers: the token, and for
// images the "photos" map MAX's upload servers return too.
func botAnswer(typ, token string) map[string]any {
	a := map[string]any{"token": token}
	if typ == "image" {
		a["photos"] = map[string]any{token: map[string]string{"token": token}}
	}
	return a
}

// handleBot is POST /media/bot/{token}: a bot's file, without
// Authorization (the token is the capability), as multipart/form-data
// with one field "data", as raw chunks with Content-Range (the MAX SDK
// sends 64 KiB ones one after another; parallel and retried ones work
// too), or as one raw body.
func (s *Server) handleBot(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	b, err := s.botUpload(token)
	if err != nil {
		fail(w, http.StatusNotFound, CodeUnknownUpload, "unknown or expired upload token")
		return
	}
	b.mu.Lock()
	user, typ, failed := b.rec.User, b.rec.Type, b.rec.Failed
	b.mu.Unlock()
	if failed {
		fail(w, http.StatusBadRequest, CodeUploadFailed, "upload failed: upload again")
		return
	}
	if !s.uploadSlot(w, r, user) {
		return
	}
	defer s.uploading.release(user)
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(strings.ToLower(ct), "multipart/form-data"):
		err = s.botMultipart(w, r, b, user)
	case r.Header.Get("Content-Range") != "":
		err = s.botChunk(w, r, b, user)
	default:
		err = s.botWhole(w, r, b, user)
	}
	if err != nil {
		if errors.Is(err, errAnswered) {
			return
		}
		s.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, botAnswer(typ, token))
}

// errAnswered: the handler answered the request itself.
var errAnswered = errors.New("mediahttp: answered")

// botMultipart stores the "data" field of a multipart body.
func (s *Server) botMultipart(w http.ResponseWriter, r *http.Request, b *botUpload, user uint64) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.limits.MaxFile+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		fail(w, http.StatusBadRequest, CodeBadRequest, "multipart body: "+err.Error())
		return errAnswered
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			fail(w, http.StatusBadRequest, CodeBadRequest, `multipart body without a "data" field`)
			return errAnswered
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return err
			}
			fail(w, http.StatusBadRequest, CodeBadRequest, "multipart body: "+err.Error())
			return errAnswered
		}
		if part.FormName() != "data" {
			part.Close()
			continue
		}
		m := media.Meta{Name: cleanName(part.FileName()), MIME: cleanMIME(part.Header.Get("Content-Type"))}
		info, err := s.store.Put(r.Context(), user, part, -1, m)
		if err == nil {
			err = s.receipt(user, info.SHA256)
		}
		if err != nil {
			return err
		}
		return s.bots.complete(b, s.finishDetached(r.Context(), user, info), s.opts.Now())
	}
}

// botWhole stores a raw body holding the whole file.
func (s *Server) botWhole(w http.ResponseWriter, r *http.Request, b *botUpload, user uint64) error {
	if r.ContentLength < 0 {
		fail(w, http.StatusLengthRequired, CodeLengthRequired, "Content-Length is required")
		return errAnswered
	}
	if r.ContentLength > s.limits.MaxFile {
		return fmt.Errorf("%w: file of %d bytes, at most %d", media.ErrTooLarge, r.ContentLength, s.limits.MaxFile)
	}
	info, err := s.store.Put(r.Context(), user, http.MaxBytesReader(w, r.Body, r.ContentLength+1), r.ContentLength, fileMeta(r))
	if err == nil {
		err = s.receipt(user, info.SHA256)
	}
	if err != nil {
		return err
	}
	return s.bots.complete(b, s.finishDetached(r.Context(), user, info), s.opts.Now())
}

// botChunk writes one chunk of a bot's upload, creating the store's
// upload with the first chunk that arrives.
func (s *Server) botChunk(w http.ResponseWriter, r *http.Request, b *botUpload, user uint64) error {
	start, end, total, err := media.ParseContentRange(r.Header.Get("Content-Range"))
	if err != nil {
		return err
	}
	if total < 0 {
		return fmt.Errorf("%w: the total size must be known", media.ErrBadRange)
	}
	n := end - start + 1
	if r.ContentLength >= 0 && r.ContentLength != n {
		return fmt.Errorf("%w: Content-Length %d, Content-Range says %d bytes", media.ErrSizeMismatch, r.ContentLength, n)
	}
	if n > s.limits.MaxChunk {
		return fmt.Errorf("%w: chunk of %d bytes, at most %d", media.ErrTooLarge, n, s.limits.MaxChunk)
	}
	id, done, err := s.bots.uploadFor(b, total, func() (string, error) {
		up, err := s.store.CreateUpload(user, total, fileMeta(r))
		return up.ID, err
	}, func(id string) { s.store.Abort(user, id) })
	if err != nil || done {
		return err // done: a retried chunk of a completed upload
	}
	up, err := s.store.WriteChunk(r.Context(), user, id, start, http.MaxBytesReader(w, r.Body, n+1), n)
	if errors.Is(err, media.ErrUnknownUpload) {
		// Completed meanwhile by a parallel chunk: this one was a retry.
		if x := s.done.lookup(user, id); x != nil {
			f, err := x.wait(r.Context())
			if err != nil {
				return err
			}
			// The record too, before the 200: the completing request
			// may have failed to write it, or not have written it yet.
			return s.bots.complete(b, f, s.opts.Now())
		}
		// Gone without a completion: expired, or its completion failed.
		return s.botLost(b, id)
	}
	if err != nil {
		return err
	}
	b.touch(up.Updated)
	if received(up) < up.Size {
		return nil
	}
	f, err := s.complete(r.Context(), user, id)
	if errors.Is(err, media.ErrIncomplete) {
		return nil
	}
	if err != nil {
		if _, uerr := s.store.Upload(user, id); errors.Is(uerr, media.ErrUnknownUpload) {
			// The store dropped the upload with its failed completion.
			if ferr := s.botLost(b, id); ferr != nil {
				return ferr
			}
		}
		return err
	}
	return s.bots.complete(b, f, s.opts.Now())
}

// botLost handles b's store upload id gone without b's file: it
// completes b from the store's record of the upload's completion
// (media.Store.CompletedUpload) if there is one, and marks b failed
// otherwise; it returns the error that answers the request.
func (s *Server) botLost(b *botUpload, id string) error {
	if ok, err := s.recoverBot(b, id); ok || err != nil {
		return err
	}
	failed, err := s.bots.fail(b, id)
	if err != nil {
		return err
	}
	if !failed {
		return nil // its file arrived meanwhile
	}
	return errUploadFailed
}

// botRecord is a bot upload's durable record, bot-uploads/<id hex>.json
// in the store's directory.
type botRecord struct {
	User    uint64    `json:"user"`
	Type    string    `json:"type"`
	Created time.Time `json:"created"`
	// Upload is the store's resumable upload of the chunked mode, and
	// Size its size.
	Upload string `json:"upload,omitempty"`
	Size   int64  `json:"size,omitempty"`
	// File is the completed file, and Completed when it completed.
	File      *File     `json:"file,omitempty"`
	Completed time.Time `json:"completed"`
	// Failed is set when the store's upload was lost without a file (a
	// crash between its completion and this record's update, a failed
	// completion, or its expiry): Resolve answers ErrUploadFailed.
	Failed bool `json:"failed,omitempty"`
}

// open reports whether the record still waits for its file.
func (r *botRecord) open() bool { return r.File == nil && !r.Failed }

type botUpload struct {
	id string

	mu  sync.Mutex // guards the following; held while its record is written
	rec botRecord
	// lastChunk is when its last chunk was received: the store's upload
	// records it durably (media.Upload.Updated), and it is reloaded from
	// there at open.
	lastChunk time.Time
}

// botUploads are the live bot upload records. A record lives UploadTTL
// from its creation or its last chunk until it completes, then GCGrace
// from its completion (as long as the store keeps an unreferenced file).
type botUploads struct {
	dir        string
	ttl, grace time.Duration
	max        int // open records per user
	log        interface{ Warn(string, ...any) }
	mu         sync.Mutex // guards the following
	m          map[string]*botUpload
	// open holds each user's records that wait for their file (and
	// the ones being added), at most max.
	open map[uint64]map[string]*botUpload
}

func (u *botUploads) path(id string) string { return filepath.Join(u.dir, id+".json") }

// loadBotUploads loads the records under dir/bot-uploads, dropping
// expired and unreadable ones.
func loadBotUploads(dir string, now time.Time, ttl, grace time.Duration, max int, log *slog.Logger) (*botUploads, error) {
	u := &botUploads{
		dir: filepath.Join(dir, "bot-uploads"), ttl: ttl, grace: grace, max: max, log: log,
		m: make(map[string]*botUpload), open: make(map[uint64]map[string]*botUpload),
	}
	if err := mkdirSynced(u.dir); err != nil {
		return nil, fmt.Errorf("mediahttp: open bot uploads: %w", err)
	}
	names, err := listDir(u.dir)
	if err != nil {
		return nil, fmt.Errorf("mediahttp: open bot uploads: %w", err)
	}
	for _, name := range names {
		id, ok := strings.CutSuffix(name, ".json")
		if raw, err := hex.DecodeString(id); !ok || err != nil || len(raw) != botTokenID {
			removeFile(filepath.Join(u.dir, name)) // a temporary file of a crashed write
			continue
		}
		var rec botRecord
		if err := readJSONFile(u.path(id), &rec); err != nil {
			log.Warn("mediahttp: dropping unreadable bot upload", "id", id, "err", err)
			removeFile(u.path(id))
			continue
		}
		b := &botUpload{id: id, rec: rec}
		// A record with a store upload lives from its last chunk, which
		// the store knows: failLostBotUploads expires it.
		if (rec.File != nil || rec.Upload == "") && u.expired(b, now) {
			removeFile(u.path(id))
			continue
		}
		u.m[id] = b
		if rec.open() {
			u.addOpenLocked(b) // may pass max, as the records on disk are
		}
	}
	return u, nil
}

// addOpenLocked counts b among its user's open records. u.mu must be
// held (or u not shared yet).
func (u *botUploads) addOpenLocked(b *botUpload) {
	o := u.open[b.rec.User]
	if o == nil {
		o = make(map[string]*botUpload)
		u.open[b.rec.User] = o
	}
	o[b.id] = b
}

// closeOpen stops counting b (of user) among the open records.
func (u *botUploads) closeOpen(user uint64, id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if o := u.open[user]; o != nil {
		delete(o, id)
		if len(o) == 0 {
			delete(u.open, user)
		}
	}
}

func (u *botUploads) expired(b *botUpload, now time.Time) bool {
	if b.rec.File != nil {
		return now.Sub(b.rec.Completed) >= u.grace
	}
	return now.Sub(b.active()) >= u.ttl
}

// active returns when b last showed activity: its creation or its last
// chunk. b.mu must be held.
func (b *botUpload) active() time.Time {
	if b.lastChunk.After(b.rec.Created) {
		return b.lastChunk
	}
	return b.rec.Created
}

// touch records a chunk received as of at.
func (b *botUpload) touch(at time.Time) {
	b.mu.Lock()
	if at.After(b.lastChunk) {
		b.lastChunk = at
	}
	b.mu.Unlock()
}

// add persists b's record and publishes it, unless its user has max
// open records (expired ones dropped first): ErrTooManyUploads.
func (u *botUploads) add(b *botUpload, now time.Time) error {
	user := b.rec.User
	if !u.reserve(b) {
		// Drop the user's expired records, then try again.
		u.mu.Lock()
		var mine []*botUpload
		for _, x := range u.open[user] {
			mine = append(mine, x)
		}
		u.mu.Unlock()
		for _, x := range mine {
			u.drop(x, now)
		}
		if !u.reserve(b) {
			return fmt.Errorf("%w: user %d has %d", ErrTooManyUploads, user, u.max)
		}
	}
	if err := writeJSONSynced(u.path(b.id), b.rec); err != nil {
		u.closeOpen(user, b.id)
		return fmt.Errorf("mediahttp: new bot upload: %w", err)
	}
	u.mu.Lock()
	u.m[b.id] = b
	u.mu.Unlock()
	return nil
}

// reserve counts b among its user's open records if there is room.
func (u *botUploads) reserve(b *botUpload) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.open[b.rec.User]) >= u.max {
		return false
	}
	u.addOpenLocked(b)
	return true
}

// get returns the live record id, or nil: an expired record not yet
// dropped by GC is gone too.
func (u *botUploads) get(id string, now time.Time) *botUpload {
	u.mu.Lock()
	b := u.m[id]
	u.mu.Unlock()
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if u.expired(b, now) {
		return nil
	}
	return b
}

// uploadFor returns b's store upload for a file of total bytes, creating
// it (create) and recording it durably on the first chunk; done is set
// when b's file is complete already.
func (u *botUploads) uploadFor(b *botUpload, total int64, create func() (string, error), abort func(id string)) (id string, done bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rec.File != nil {
		if b.rec.File.Size != total {
			return "", false, fmt.Errorf("%w: total %d, the file has %d bytes", media.ErrBadRange, total, b.rec.File.Size)
		}
		return "", true, nil
	}
	if b.rec.Upload != "" {
		if b.rec.Size != total {
			return "", false, fmt.Errorf("%w: total %d, the upload has %d bytes", media.ErrBadRange, total, b.rec.Size)
		}
		return b.rec.Upload, false, nil
	}
	id, err = create()
	if err != nil {
		return "", false, err
	}
	rec := b.rec
	rec.Upload, rec.Size = id, total
	if err := writeJSONSynced(u.path(b.id), rec); err != nil {
		abort(id)
		return "", false, fmt.Errorf("mediahttp: bot upload: %w", err)
	}
	b.rec = rec
	return id, false, nil
}

// complete records b's file durably.
func (u *botUploads) complete(b *botUpload, f File, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rec.File != nil && b.rec.File.SHA256 == f.SHA256 {
		return nil // recorded already
	}
	rec := b.rec
	rec.File, rec.Completed = &f, now.UTC()
	if err := writeJSONSynced(u.path(b.id), rec); err != nil {
		return fmt.Errorf("mediahttp: bot upload: %w", err)
	}
	b.rec = rec
	u.closeOpen(rec.User, b.id)
	return nil
}

// fail marks b failed, durably, if its store upload is still id and it
// has no file; failed reports whether it did (or b was failed already).
func (u *botUploads) fail(b *botUpload, id string) (failed bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rec.Failed {
		return true, nil
	}
	if b.rec.File != nil || b.rec.Upload != id {
		return false, nil
	}
	rec := b.rec
	rec.Failed = true
	if err := writeJSONSynced(u.path(b.id), rec); err != nil {
		return false, fmt.Errorf("mediahttp: bot upload: %w", err)
	}
	b.rec = rec
	u.closeOpen(rec.User, b.id)
	return true, nil
}

// drop removes b if it expired as of now and reports whether it did.
func (u *botUploads) drop(b *botUpload, now time.Time) bool {
	b.mu.Lock()
	gone := u.expired(b, now)
	if gone {
		removeFile(u.path(b.id))
	}
	user := b.rec.User
	b.mu.Unlock()
	if gone {
		u.mu.Lock()
		delete(u.m, b.id)
		u.mu.Unlock()
		u.closeOpen(user, b.id)
	}
	return gone
}

// expire drops the records expired as of now and returns how many.
func (u *botUploads) expire(now time.Time) int {
	u.mu.Lock()
	all := make([]*botUpload, 0, len(u.m))
	for _, b := range u.m {
		all = append(all, b)
	}
	u.mu.Unlock()
	n := 0
	for _, b := range all {
		if u.drop(b, now) {
			n++
		}
	}
	return n
}

// failLostBotUploads reloads, at open, when each record's last chunk
// arrived (from its store upload) and drops the records expired as of
// then. A record whose store upload is gone without its file (a crash
// between the store's completion of the upload and the record's update)
// gets the file from the store's record of the completion, or is marked
// failed when there is none, so that the bot uploads again instead of
// waiting for the token to expire.
func (s *Server) failLostBotUploads() {
	now := s.opts.Now()
	s.bots.mu.Lock()
	var lost []*botUpload
	for _, b := range s.bots.m {
		lost = append(lost, b)
	}
	s.bots.mu.Unlock()
	for _, b := range lost {
		b.mu.Lock()
		user, id, open := b.rec.User, b.rec.Upload, b.rec.open()
		b.mu.Unlock()
		if !open || id == "" {
			continue
		}
		up, err := s.store.Upload(user, id)
		if err == nil {
			b.touch(up.Updated)
		}
		if s.bots.drop(b, now) || !errors.Is(err, media.ErrUnknownUpload) {
			continue
		}
		if ok, err := s.recoverBot(b, id); ok || err != nil {
			if err != nil {
				s.opts.Log.Error("mediahttp: recover a bot upload", "id", b.id, "err", err)
			}
			continue
		}
		if _, err := s.bots.fail(b, id); err != nil {
			s.opts.Log.Error("mediahttp: mark a lost bot upload failed", "id", b.id, "err", err)
			continue
		}
		s.opts.Log.Warn("mediahttp: bot upload lost its file; marked failed", "id", b.id, "upload", id)
	}
}

// recoverBot completes b from the store's record of its upload id's
// completion, if the store has one for a file of b's size; ok reports
// whether it did.
func (s *Server) recoverBot(b *botUpload, id string) (ok bool, err error) {
	b.mu.Lock()
	user, size, upload := b.rec.User, b.rec.Size, b.rec.Upload
	b.mu.Unlock()
	if upload != id {
		return false, nil
	}
	info, err := s.store.CompletedUpload(user, id)
	if err != nil || info.Size != size {
		return false, nil
	}
	if err := s.receipt(user, info.SHA256); err != nil {
		return false, err
	}
	f := s.finishDetached(context.Background(), user, info)
	return true, s.bots.complete(b, f, s.opts.Now())
}
