package media

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Upload is what the node has of a resumable upload: a client resuming
// after a crash or a dropped connection sends the bytes not in Received.
type Upload struct {
	// ID names the upload: 22 URL-safe characters, 128 random bits.
	ID string
	// Size is the file's declared length.
	Size int64
	// Received lists the durable byte ranges, sorted, disjoint and merged.
	Received []Range
	// Meta is the name and MIME type given at creation.
	Meta Meta
	// Updated is when a chunk was last received (or the upload created);
	// the upload expires UploadTTL after it.
	Updated time.Time
}

// Upload states.
const (
	upOpen = iota
	upCompleting
	upGone
)

type upload struct {
	id      string
	user    uint64
	size    int64
	meta    Meta
	created time.Time
	day     int64 // UTC day its quota was reserved

	mu       sync.Mutex // guards the following
	received []Range
	pending  []Range // chunks being written
	updated  time.Time
	state    int
}

// uploadState is an upload's .state file.
type uploadState struct {
	User     uint64    `json:"user"`
	Size     int64     `json:"size"`
	Name     string    `json:"name,omitempty"`
	MIME     string    `json:"mime,omitempty"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	Day      int64     `json:"day"`
	Received []Range   `json:"received"`
}

func (s *Store) partPath(id string) string  { return s.path("uploads", id+".part") }
func (s *Store) statePath(id string) string { return s.path("uploads", id+".state") }

func (u *upload) snapshotLocked() Upload {
	return Upload{ID: u.id, Size: u.size, Received: slices.Clone(u.received), Meta: u.meta, Updated: u.updated}
}

func (s *Store) writeStateLocked(u *upload, received []Range, updated time.Time) error {
	return writeJSONAtomic(s.statePath(u.id), uploadState{
		User: u.user, Size: u.size, Name: u.meta.Name, MIME: u.meta.MIME, Created: u.created,
		Updated: updated, Day: u.day, Received: received,
	})
}

// CreateUpload starts a resumable upload of size bytes: it checks the
// limits, reserves size against the user's daily quota (given back, less
// what was received, on Abort or expiry) and creates the part file.
func (s *Store) CreateUpload(user uint64, size int64, m Meta) (Upload, error) {
	if err := s.checkOpen(); err != nil {
		return Upload{}, err
	}
	if err := checkMeta(m); err != nil {
		return Upload{}, s.refuse(err)
	}
	if size < 0 {
		return Upload{}, s.refuse(fmt.Errorf("%w: size %d", ErrBadRange, size))
	}
	if size > s.opts.MaxFile {
		return Upload{}, s.refuse(fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, size, s.opts.MaxFile))
	}
	s.umu.Lock()
	if s.userOpen[user] >= s.opts.MaxUploadsPerUser {
		s.umu.Unlock()
		return Upload{}, s.refuse(fmt.Errorf("%w: user %d has %d", ErrTooManyUploads, user, s.opts.MaxUploadsPerUser))
	}
	s.userOpen[user]++ // held while creating; undone on failure
	s.umu.Unlock()
	now := s.now()
	u := &upload{id: randomID(), user: user, size: size, meta: m, created: now.UTC(), day: utcDay(now), updated: now.UTC()}
	err := s.quota.reserve(user, size, now)
	if err == nil {
		if err = s.createPart(u); err != nil {
			s.quota.release(user, size, u.day)
		}
	}
	snap := u.snapshotLocked() // u is not shared yet
	s.umu.Lock()
	if err != nil {
		s.userOpen[user]--
		if s.userOpen[user] == 0 {
			delete(s.userOpen, user)
		}
	} else {
		s.uploads[u.id] = u
		s.m.uploads.Set(float64(len(s.uploads)))
	}
	s.umu.Unlock()
	if err != nil {
		return Upload{}, s.refuse(err)
	}
	return snap, nil
}

// createPart creates u's part file (sparse, at its full size) and state.
func (s *Store) createPart(u *upload) error {
	f, err := os.OpenFile(s.partPath(u.id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("media: create upload: %w", err)
	}
	err = f.Truncate(u.size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.writeStateLocked(u, nil, u.updated)
	}
	if err != nil {
		os.Remove(s.partPath(u.id))
		os.Remove(s.statePath(u.id))
		return fmt.Errorf("media: create upload: %w", err)
	}
	return nil
}

// get returns the user's open upload id, or ErrUnknownUpload.
func (s *Store) get(user uint64, id string) (*upload, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownUpload, truncate(id, 40))
	}
	s.umu.Lock()
	u := s.uploads[id]
	s.umu.Unlock()
	if u == nil || u.user != user {
		return nil, fmt.Errorf("%w: %s", ErrUnknownUpload, id)
	}
	return u, nil
}

// Upload returns what the node has of the user's upload id, for a client
// resuming it.
func (s *Store) Upload(user uint64, id string) (Upload, error) {
	if err := s.checkOpen(); err != nil {
		return Upload{}, err
	}
	u, err := s.get(user, id)
	if err != nil {
		return Upload{}, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state == upGone {
		return Upload{}, fmt.Errorf("%w: %s", ErrUnknownUpload, id)
	}
	return u.snapshotLocked(), nil
}

// WriteChunk writes the n bytes read from r at offset start of upload id.
// Chunks may come in any order and in parallel (each is written with
// pwrite through one copy buffer). A chunk whose bytes were all received
// already is a retry: it is accepted and r is not read. A chunk
// overlapping received bytes only in part, or a chunk still being
// written, is refused with ErrOverlap. WriteChunk returns once the chunk
// is fsynced and the upload's state, recording it, is replaced
// atomically: a crash loses at most the chunks not yet acknowledged.
func (s *Store) WriteChunk(ctx context.Context, user uint64, id string, start int64, r io.Reader, n int64) (Upload, error) {
	t0 := time.Now()
	defer s.m.chunkSeconds.UpdateDuration(t0)
	if err := s.checkOpen(); err != nil {
		return Upload{}, err
	}
	u, err := s.get(user, id)
	if err != nil {
		return Upload{}, err
	}
	if n > s.opts.MaxChunk {
		return Upload{}, s.refuse(fmt.Errorf("%w: chunk of %d bytes, at most %d", ErrTooLarge, n, s.opts.MaxChunk))
	}
	if n <= 0 || start < 0 || start > u.size-n {
		return Upload{}, s.refuse(fmt.Errorf("%w: chunk %d+%d outside a file of %d bytes", ErrBadRange, start, n, u.size))
	}
	c := Range{start, start + n}
	u.mu.Lock()
	if u.state != upOpen {
		u.mu.Unlock()
		return Upload{}, fmt.Errorf("%w: %s is completed or aborted", ErrUnknownUpload, id)
	}
	if contains(u.received, c) {
		up := u.snapshotLocked()
		u.mu.Unlock()
		return up, nil
	}
	if overlaps(u.received, c) || overlaps(u.pending, c) {
		u.mu.Unlock()
		return Upload{}, s.refuse(fmt.Errorf("%w: chunk [%d, %d) of %s", ErrOverlap, c.Start, c.End, id))
	}
	if len(insertRange(u.received, c)) > s.opts.MaxRanges {
		u.mu.Unlock()
		return Upload{}, s.refuse(fmt.Errorf("%w: upload %s would have over %d ranges", ErrBadRange, id, s.opts.MaxRanges))
	}
	u.pending = append(u.pending, c)
	u.mu.Unlock()

	werr := s.writePart(ctx, u.id, c, r)

	u.mu.Lock()
	defer u.mu.Unlock()
	u.pending = slices.DeleteFunc(u.pending, func(p Range) bool { return p == c })
	if werr != nil {
		return Upload{}, s.refuse(werr)
	}
	if u.state != upOpen {
		return Upload{}, fmt.Errorf("%w: %s was aborted", ErrUnknownUpload, id)
	}
	received := insertRange(u.received, c)
	now := s.now().UTC()
	if err := s.writeStateLocked(u, received, now); err != nil {
		return Upload{}, fmt.Errorf("media: chunk of %s: %w", id, err)
	}
	u.received, u.updated = received, now
	return u.snapshotLocked(), nil
}

// writePart copies c.Len() bytes from r into the part file at c.Start
// and fsyncs it. r must hold exactly that many bytes.
func (s *Store) writePart(ctx context.Context, id string, c Range, r io.Reader) error {
	f, err := os.OpenFile(s.partPath(id), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("media: chunk of %s: %w", id, err)
	}
	defer f.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for off := c.Start; off < c.End; {
		if err := checkCtx(ctx); err != nil {
			return err
		}
		k, rerr := readFull(r, buf[:min(int64(len(buf)), c.End-off)])
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("media: chunk of %s: read: %w", id, rerr)
		}
		if _, err := f.WriteAt(buf[:k], off); err != nil {
			return fmt.Errorf("media: chunk of %s: write: %w", id, err)
		}
		off += int64(k)
		s.m.receivedBytes.Add(k)
		if rerr == io.EOF && off < c.End {
			return fmt.Errorf("%w: chunk ended after %d of %d bytes", ErrSizeMismatch, off-c.Start, c.Len())
		}
	}
	var one [1]byte
	if k, _ := io.ReadFull(r, one[:]); k > 0 {
		return fmt.Errorf("%w: chunk longer than its %d bytes", ErrSizeMismatch, c.Len())
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("media: chunk of %s: fsync: %w", id, err)
	}
	return nil
}

// Complete finishes upload id once every byte is received: it hashes the
// part file (streaming), moves it to its address (or drops it when the
// blob is already stored), records the completion (uploads/<id>.done,
// kept GCGrace: CompletedUpload) and drops the upload. The blob has no
// references yet: the caller must Ref it within GCGrace. A crash after
// the move but before the upload is dropped leaves the blob stored and
// the upload gone on reopen (ErrUnknownUpload); the client's fresh upload
// of the same content then dedupes. If storing the blob fails (an I/O
// error), the upload is dropped too: its part file may be gone.
func (s *Store) Complete(ctx context.Context, user uint64, id string) (Info, error) {
	t0 := time.Now()
	defer s.m.completeSeconds.UpdateDuration(t0)
	if err := s.checkOpen(); err != nil {
		return Info{}, err
	}
	u, err := s.get(user, id)
	if err != nil {
		return Info{}, err
	}
	u.mu.Lock()
	if u.state != upOpen {
		u.mu.Unlock()
		return Info{}, fmt.Errorf("%w: %s is completed or aborted", ErrUnknownUpload, id)
	}
	if got := total(u.received); len(u.pending) > 0 || got != u.size {
		u.mu.Unlock()
		return Info{}, s.refuse(fmt.Errorf("%w: %s has %d of %d bytes, %d chunks in flight",
			ErrIncomplete, id, got, u.size, len(u.pending)))
	}
	u.state = upCompleting
	u.mu.Unlock()

	sha, mime, err := s.hashFile(ctx, s.partPath(id))
	if err != nil {
		u.mu.Lock()
		u.state = upOpen
		u.mu.Unlock()
		return Info{}, err
	}
	m := u.meta
	if m.MIME == "" {
		m.MIME = mime
	}
	info, perr := s.publish(s.partPath(id), sha, u.size, m)
	if perr == nil {
		s.recordDone(u, sha, s.now())
	}
	u.mu.Lock()
	err = s.dropLocked(u)
	u.mu.Unlock()
	if perr != nil {
		return Info{}, perr
	}
	if err != nil {
		s.opts.Log.Error("media: drop completed upload", "id", id, "err", err)
	}
	return info, nil
}

// hashFile returns the SHA-256 of the file at path and its sniffed MIME
// type, reading it through one copy buffer.
func (s *Store) hashFile(ctx context.Context, path string) (sha, mime string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("media: hash: %w", err)
	}
	defer f.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	h := sha256.New()
	mime = http.DetectContentType(nil)
	for first := true; ; first = false {
		if err := checkCtx(ctx); err != nil {
			return "", "", err
		}
		k, rerr := readFull(f, buf)
		if rerr != nil && rerr != io.EOF {
			return "", "", fmt.Errorf("media: hash: %w", rerr)
		}
		if first && k > 0 {
			mime = http.DetectContentType(buf[:k])
		}
		h.Write(buf[:k])
		if rerr == io.EOF {
			break
		}
	}
	return hex.EncodeToString(h.Sum(nil)), mime, nil
}

// Abort drops the user's upload id and gives back the quota reserved for
// the bytes not received.
func (s *Store) Abort(user uint64, id string) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	u, err := s.get(user, id)
	if err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != upOpen {
		return fmt.Errorf("%w: %s is completed or aborted", ErrUnknownUpload, id)
	}
	s.quota.release(user, u.size-total(u.received), u.day)
	return s.dropLocked(u)
}

// dropLocked removes u's files and forgets it. u.mu must be held.
func (s *Store) dropLocked(u *upload) error {
	u.state = upGone
	err := os.Remove(s.statePath(u.id))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	os.Remove(s.partPath(u.id))
	if serr := syncDir(s.path("uploads")); err == nil {
		err = serr
	}
	s.umu.Lock()
	delete(s.uploads, u.id)
	if s.userOpen[u.user]--; s.userOpen[u.user] <= 0 {
		delete(s.userOpen, u.user)
	}
	s.m.uploads.Set(float64(len(s.uploads)))
	s.umu.Unlock()
	if err != nil {
		return fmt.Errorf("media: drop upload %s: %w", u.id, err)
	}
	return nil
}

// expireUploads drops the uploads idle for UploadTTL as of now.
func (s *Store) expireUploads(now time.Time) int {
	s.umu.Lock()
	all := make([]*upload, 0, len(s.uploads))
	for _, u := range s.uploads {
		all = append(all, u)
	}
	s.umu.Unlock()
	n := 0
	for _, u := range all {
		u.mu.Lock()
		if u.state == upOpen && len(u.pending) == 0 && now.Sub(u.updated) >= s.opts.UploadTTL {
			s.quota.release(u.user, u.size-total(u.received), u.day)
			if err := s.dropLocked(u); err != nil {
				s.opts.Log.Error("media: expire upload", "id", u.id, "err", err)
			}
			n++
		}
		u.mu.Unlock()
	}
	s.m.uploadsExpired.Add(n)
	return n
}

// loadUploads reloads the upload states after a restart. A part file may
// hold bytes beyond the recorded ranges (a chunk written but not
// acknowledged); they are not trusted and will be written again.
func (s *Store) loadUploads() error {
	ents, err := os.ReadDir(s.path("uploads"))
	if err != nil {
		return fmt.Errorf("media: open: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		p := s.path("uploads", name)
		if id, isDone := strings.CutSuffix(name, ".done"); isDone {
			s.loadDone(id, p, s.now())
			continue
		}
		id, isState := strings.CutSuffix(name, ".state")
		if !isState {
			partID, isPart := strings.CutSuffix(name, ".part")
			if _, err := os.Stat(s.statePath(partID)); !isPart || errors.Is(err, os.ErrNotExist) {
				os.Remove(p) // a .state.tmp, or a part without its state
			}
			continue
		}
		var st uploadState
		err := readJSON(p, &st)
		var part os.FileInfo
		if err == nil {
			part, err = os.Stat(s.partPath(id))
		}
		if err == nil && (!validID(id) || !validRanges(st.Received, st.Size)) {
			err = errors.New("bad state")
		}
		if err == nil && part.Size() != st.Size {
			err = os.Truncate(s.partPath(id), st.Size)
		}
		if err != nil {
			s.opts.Log.Warn("media: dropping unreadable upload", "id", id, "err", err)
			os.Remove(p)
			os.Remove(s.partPath(id))
			continue
		}
		s.uploads[id] = &upload{
			id: id, user: st.User, size: st.Size, meta: Meta{Name: st.Name, MIME: st.MIME},
			created: st.Created, day: st.Day, received: st.Received, updated: st.Updated,
		}
		s.userOpen[st.User]++
	}
	return syncDir(s.path("uploads"))
}
