package media

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
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
	pending  []Range   // chunks being written
	hash     hashState // the SHA-256 of a prefix of received, as recorded in the state file
	updated  time.Time
	state    int
}

// hashState is the SHA-256 of an upload's first pos bytes, hashed as they
// arrive so that Complete has (usually) nothing left to hash. state is
// crypto/sha256's marshaled digest (nil: nothing hashed yet). It only
// ever covers bytes whose ranges are recorded in the same state file.
type hashState struct {
	pos   int64
	state []byte
}

// hasher returns a SHA-256 digest resumed from hs.
func (hs hashState) hasher() (hash.Hash, error) {
	h := sha256.New()
	if hs.state == nil {
		return h, nil
	}
	u, ok := h.(encoding.BinaryUnmarshaler)
	if !ok {
		return nil, errors.New("media: sha256 state cannot be restored")
	}
	if err := u.UnmarshalBinary(hs.state); err != nil {
		return nil, fmt.Errorf("media: restore sha256 state: %w", err)
	}
	return h, nil
}

// sealHash returns the state of h, which has hashed the first pos bytes.
func sealHash(h hash.Hash, pos int64) (hashState, error) {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return hashState{}, errors.New("media: sha256 state cannot be saved")
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return hashState{}, fmt.Errorf("media: save sha256 state: %w", err)
	}
	return hashState{pos: pos, state: b}, nil
}

// maxCatchUp bounds the bytes one chunk's commit reads back from the part
// file to advance the hash over chunks that arrived out of order, so that
// a chunk's acknowledgement is never held for long; Complete hashes what
// is left.
const maxCatchUp = 64 << 20

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
	// HashPos and Hash are the SHA-256 state (crypto/sha256's
	// MarshalBinary) of the first HashPos bytes, all within Received.
	HashPos int64  `json:"hash_pos,omitempty"`
	Hash    []byte `json:"hash,omitempty"`
}

func (s *Store) partPath(id string) string  { return s.path("uploads", id+".part") }
func (s *Store) statePath(id string) string { return s.path("uploads", id+".state") }

func (u *upload) snapshotLocked() Upload {
	return Upload{ID: u.id, Size: u.size, Received: slices.Clone(u.received), Meta: u.meta, Updated: u.updated}
}

// writeStateLocked replaces u's state file with received and hs, which
// must cover only bytes in received: the hash and the ranges it covers
// become durable together.
func (s *Store) writeStateLocked(u *upload, received []Range, hs hashState, updated time.Time) error {
	return writeJSONAtomic(s.statePath(u.id), uploadState{
		User: u.user, Size: u.size, Name: u.meta.Name, MIME: u.meta.MIME, Created: u.created,
		Updated: updated, Day: u.day, Received: received, HashPos: hs.pos, Hash: hs.state,
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
		err = s.writeStateLocked(u, nil, hashState{}, u.updated)
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
//
// The upload's SHA-256 advances with its received prefix: a chunk that
// starts where the hash ends is hashed as it is read, and the chunks that
// arrived before it and now continue the prefix are read back from the
// part file (at most maxCatchUp bytes per chunk). The hash state is
// recorded in the same state file replacement as the chunk's range.
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
	// Only this chunk can start at the hash's end while it is pending, and
	// the hash cannot move past a byte not received: the hash state is
	// still at c.Start when the chunk is committed.
	var h hash.Hash
	if c.Start == u.hash.pos {
		h, _ = u.hash.hasher() // on error the chunk is hashed later, read back
	}
	u.mu.Unlock()

	werr := s.writePart(ctx, u.id, c, r, h)

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
	hs := u.hash
	if h != nil && hs.pos == c.Start {
		if sealed, err := sealHash(h, c.End); err == nil {
			hs = sealed
		}
	}
	hs = s.catchUp(u.id, hs, received)
	now := s.now().UTC()
	if err := s.writeStateLocked(u, received, hs, now); err != nil {
		return Upload{}, fmt.Errorf("media: chunk of %s: %w", id, err)
	}
	u.received, u.hash, u.updated = received, hs, now
	return u.snapshotLocked(), nil
}

// catchUp advances hs over the received bytes that continue its prefix,
// reading them back from upload id's part file, at most maxCatchUp bytes.
// On a read error it returns hs as it was: Complete hashes the rest.
func (s *Store) catchUp(id string, hs hashState, received []Range) hashState {
	end := hs.pos
	for _, r := range received {
		if r.Start <= hs.pos && hs.pos < r.End {
			end = min(r.End, hs.pos+maxCatchUp)
			break
		}
	}
	if end == hs.pos {
		return hs
	}
	h, err := hs.hasher()
	if err == nil {
		err = s.hashPart(context.Background(), id, h, hs.pos, end)
	}
	var next hashState
	if err == nil {
		next, err = sealHash(h, end)
	}
	if err != nil {
		s.opts.Log.Warn("media: hash received chunks", "id", id, "err", err)
		return hs
	}
	return next
}

// hashPart feeds bytes [from, to) of upload id's part file to h through
// one copy buffer.
func (s *Store) hashPart(ctx context.Context, id string, h hash.Hash, from, to int64) error {
	f, err := os.Open(s.partPath(id))
	if err != nil {
		return fmt.Errorf("media: hash: %w", err)
	}
	defer f.Close()
	bp := getCopyBuf(to-from, maxCopyBuf)
	defer putCopyBuf(bp)
	buf := *bp
	for off := from; off < to; {
		if err := checkCtx(ctx); err != nil {
			return err
		}
		k, err := f.ReadAt(buf[:min(int64(len(buf)), to-off)], off)
		if k == 0 && err != nil {
			return fmt.Errorf("media: hash: %w", err)
		}
		h.Write(buf[:k])
		off += int64(k)
		s.hashReadBytes.Add(int64(k))
	}
	return nil
}

// writePart copies c.Len() bytes from r into the part file at c.Start
// and fsyncs it, feeding them to h too unless h is nil. r must hold
// exactly that many bytes.
func (s *Store) writePart(ctx context.Context, id string, c Range, r io.Reader, h hash.Hash) error {
	f, err := os.OpenFile(s.partPath(id), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("media: chunk of %s: %w", id, err)
	}
	defer f.Close()
	bp := getCopyBuf(c.Len(), maxCopyBuf)
	defer putCopyBuf(bp)
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
		if h != nil {
			h.Write(buf[:k])
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

// Complete finishes upload id once every byte is received: it hashes what
// WriteChunk left unhashed of the part file (usually nothing), moves it to its address (or drops it when the
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
	hs := u.hash
	u.mu.Unlock()

	sha, err := s.finishHash(ctx, id, hs, u.size)
	if err != nil {
		u.mu.Lock()
		u.state = upOpen
		u.mu.Unlock()
		return Info{}, err
	}
	m := u.meta
	if m.MIME == "" {
		m.MIME = sniffFile(s.partPath(id))
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

// finishHash returns the SHA-256 of upload id's size bytes, hashing
// from hs the part file's bytes it does not cover.
func (s *Store) finishHash(ctx context.Context, id string, hs hashState, size int64) (string, error) {
	h, err := hs.hasher()
	if err == nil && hs.pos < size {
		err = s.hashPart(ctx, id, h, hs.pos, size)
	}
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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
		hs := hashState{pos: st.HashPos, state: st.Hash}
		// The marshaled state ends with the count of bytes it hashed
		// (big-endian): it must be the position recorded beside it.
		if _, herr := hs.hasher(); herr != nil || hs.pos < 0 || (hs.pos > 0 && (hs.state == nil || !contains(st.Received, Range{0, hs.pos}) ||
			len(hs.state) < 8 || int64(binary.BigEndian.Uint64(hs.state[len(hs.state)-8:])) != hs.pos)) {
			s.opts.Log.Warn("media: upload's hash state unusable, hashing again", "id", id, "err", herr)
			hs = hashState{}
		}
		s.uploads[id] = &upload{
			id: id, user: st.User, size: st.Size, meta: Meta{Name: st.Name, MIME: st.MIME},
			created: st.Created, day: st.Day, received: st.Received, hash: hs, updated: st.Updated,
		}
		s.userOpen[st.User]++
	}
	return syncDir(s.path("uploads"))
}
