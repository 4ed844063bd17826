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
	"path/filepath"
	"sync"
	"time"
)

// Meta describes a file as its uploader named it.
type Meta struct {
	// Name is the file name the client gave, at most 255 bytes.
	Name string
	// MIME is the content type; when empty it is sniffed from the first
	// 512 bytes with http.DetectContentType.
	MIME string
}

// Info describes a stored file.
type Info struct {
	// SHA256 is the lowercase hex SHA-256 of the content: the blob's
	// address and its ETag.
	SHA256 string
	// Size is the content length in bytes.
	Size int64
	// Name and MIME are the uploader's (MIME sniffed when not given). A
	// blob shared by several uploads keeps its first uploader's in the
	// store; Put and Complete return the caller's own.
	Name, MIME string
	// Created is when the blob was first stored.
	Created time.Time
	// Width and Height are a picture's dimensions as displayed, and
	// ThumbSHA256 the address of its JPEG thumbnail (a blob of its own),
	// once SetImage recorded them; zero and "" otherwise.
	Width, Height int
	ThumbSHA256   string
}

// blob is one stored blob. info never changes after the blob is
// published in Store.blobs; the image fields, which SetImage adds later,
// live under mu.
type blob struct {
	info Info

	mu        sync.Mutex // guards the following
	width     int
	height    int
	thumb     string
	refs      int64
	zeroSince time.Time // when refs last became 0 (or the blob was last uploaded at 0 refs)
	gone      bool      // removed by GC or by a failed create; no longer in Store.blobs
}

// blobMeta is a blob's .meta file.
type blobMeta struct {
	Size      int64     `json:"size"`
	Name      string    `json:"name,omitempty"`
	MIME      string    `json:"mime"`
	Created   time.Time `json:"created"`
	Refs      int64     `json:"refs"`
	ZeroSince time.Time `json:"zero_since"`
	Width     int       `json:"width,omitempty"`
	Height    int       `json:"height,omitempty"`
	Thumb     string    `json:"thumb_sha256,omitempty"`
}

// writeMetaLocked persists b's meta. b.mu must be held.
func (s *Store) writeMetaLocked(b *blob) error {
	return writeJSONAtomic(s.blobPath(b.info.SHA256)+".meta", blobMeta{
		Size: b.info.Size, Name: b.info.Name, MIME: b.info.MIME, Created: b.info.Created,
		Refs: b.refs, ZeroSince: b.zeroSince, Width: b.width, Height: b.height, Thumb: b.thumb,
	})
}

// infoLocked returns b's Info with its image fields. b.mu must be held.
func (b *blob) infoLocked() Info {
	i := b.info
	i.Width, i.Height, i.ThumbSHA256 = b.width, b.height, b.thumb
	return i
}

func checkMeta(m Meta) error {
	if len(m.Name) > 255 {
		return fmt.Errorf("%w: name of %d bytes, at most 255", ErrTooLarge, len(m.Name))
	}
	return nil
}

// Put stores one file read from r in a single request. size is the
// declared length, or -1 when unknown (then bounded by MaxFile). The body
// is streamed through one copy buffer to a temporary file while hashed,
// fsynced, and renamed to its address; if that address already holds the
// content the temporary file is dropped (dedupe). Put returns only once
// the blob is durable. The new blob has no references: the caller must
// Ref it within GCGrace. The bytes read count against the user's quota.
func (s *Store) Put(ctx context.Context, user uint64, r io.Reader, size int64, m Meta) (Info, error) {
	start := time.Now()
	defer s.m.putSeconds.UpdateDuration(start)
	if err := s.checkOpen(); err != nil {
		return Info{}, err
	}
	if err := checkMeta(m); err != nil {
		return Info{}, s.refuse(err)
	}
	if size < -1 {
		return Info{}, s.refuse(fmt.Errorf("%w: size %d", ErrBadRange, size))
	}
	if size > s.opts.MaxFile {
		return Info{}, s.refuse(fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, size, s.opts.MaxFile))
	}
	now := s.now()
	day := utcDay(now)
	if size >= 0 {
		if err := s.quota.reserve(user, size, now); err != nil {
			return Info{}, s.refuse(err)
		}
	}
	tmp, sha, n, head, err := s.receive(ctx, user, r, size, now)
	if err != nil {
		if size >= 0 {
			s.quota.release(user, size-n, day)
		}
		return Info{}, s.refuse(err)
	}
	if m.MIME == "" {
		m.MIME = head
	}
	info, err := s.publish(tmp, sha, n, m)
	if err != nil {
		os.Remove(tmp)
		return Info{}, err
	}
	return info, nil
}

// receive streams r into a new temporary file, hashing it, and fsyncs
// it. It returns the file's path, its hash, its length and the sniffed
// MIME type. On error the temporary file is gone and n is what was read.
func (s *Store) receive(ctx context.Context, user uint64, r io.Reader, size int64, now time.Time) (tmp, sha string, n int64, mime string, err error) {
	tmp = s.path("tmp", randomID()+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", 0, "", fmt.Errorf("media: put: %w", err)
	}
	fail := func(e error) (string, string, int64, string, error) {
		f.Close()
		os.Remove(tmp)
		return "", "", n, "", e
	}
	bp := putBuf(size)
	defer putCopyBuf(bp)
	buf := *bp
	h := sha256.New()
	mime = http.DetectContentType(nil)
	for {
		if err := checkCtx(ctx); err != nil {
			return fail(err)
		}
		want := int64(len(buf))
		if size >= 0 {
			want = min(want, size-n)
		}
		if want == 0 {
			// Declared size reached: the body must end here.
			var one [1]byte
			if k, _ := io.ReadFull(r, one[:]); k > 0 {
				return fail(fmt.Errorf("%w: body longer than the declared %d bytes", ErrSizeMismatch, size))
			}
			break
		}
		k, rerr := readFull(r, buf[:want])
		if rerr != nil && rerr != io.EOF {
			return fail(fmt.Errorf("media: put: read body: %w", rerr))
		}
		if size < 0 && k > 0 {
			if n+int64(k) > s.opts.MaxFile {
				return fail(fmt.Errorf("%w: body over %d bytes", ErrTooLarge, s.opts.MaxFile))
			}
			if err := s.quota.reserve(user, int64(k), now); err != nil {
				return fail(err)
			}
		}
		if n == 0 && k > 0 {
			mime = http.DetectContentType(buf[:k])
		}
		h.Write(buf[:k])
		if _, err := f.Write(buf[:k]); err != nil {
			return fail(fmt.Errorf("media: put: write: %w", err))
		}
		n += int64(k)
		s.m.receivedBytes.Add(k)
		if rerr == io.EOF {
			if size >= 0 && n != size {
				return fail(fmt.Errorf("%w: body of %d bytes, declared %d", ErrSizeMismatch, n, size))
			}
			break
		}
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("media: put: fsync: %w", err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", "", n, "", fmt.Errorf("media: put: close: %w", err)
	}
	return tmp, hex.EncodeToString(h.Sum(nil)), n, mime, nil
}

// publish moves the fsynced file at src to the address of sha, or drops
// it when the blob is already stored. The returned Info carries m.
func (s *Store) publish(src, sha string, size int64, m Meta) (Info, error) {
	for {
		s.mu.Lock()
		b := s.blobs[sha]
		if b == nil {
			// New blob: lock it before publishing it, so others wait until
			// it is on disk (b is new, so taking b.mu under s.mu cannot wait).
			b = &blob{info: Info{SHA256: sha, Size: size, Name: m.Name, MIME: m.MIME, Created: s.now().UTC()}}
			b.mu.Lock()
			s.blobs[sha] = b
			s.m.blobs.Set(float64(len(s.blobs)))
			s.mu.Unlock()
			err := s.createLocked(b, src)
			if err != nil {
				b.gone = true
				s.mu.Lock()
				delete(s.blobs, sha)
				s.m.blobs.Set(float64(len(s.blobs)))
				s.mu.Unlock()
			}
			b.mu.Unlock()
			if err != nil {
				return Info{}, err
			}
			s.m.blobsCreated.Inc()
			info := b.info
			return info, nil
		}
		s.mu.Unlock()
		b.mu.Lock()
		if b.gone {
			// Collected meanwhile; it is no longer in the map: store anew.
			b.mu.Unlock()
			continue
		}
		os.Remove(src)
		var err error
		if b.refs == 0 {
			// Restart the grace: the uploader has GCGrace to reference it.
			b.zeroSince = s.now()
			err = s.writeMetaLocked(b)
		}
		info := b.infoLocked()
		b.mu.Unlock()
		if err != nil {
			return Info{}, fmt.Errorf("media: dedupe %s: %w", sha, err)
		}
		s.m.dedup.Inc()
		info.Name, info.MIME = m.Name, m.MIME
		return info, nil
	}
}

// createLocked renames src to b's address and writes its meta, all
// fsynced. b.mu must be held.
func (s *Store) createLocked(b *blob, src string) error {
	sha := b.info.SHA256
	dst := s.blobPath(sha)
	dir := filepath.Dir(dst)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("media: store %s: %w", sha, err)
		}
		if err := syncDir(s.path("blobs")); err != nil {
			return fmt.Errorf("media: store %s: %w", sha, err)
		}
	}
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("media: store %s: %w", sha, err)
	}
	b.zeroSince = b.info.Created
	err := syncDir(dir)
	if err == nil {
		err = s.writeMetaLocked(b)
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("media: store %s: %w", sha, err)
	}
	return nil
}

// lookup returns the blob stored under sha, or ErrNotFound.
func (s *Store) lookup(sha string) (*blob, error) {
	if !validSHA(sha) {
		return nil, fmt.Errorf("%w: %q is not a sha256", ErrNotFound, truncate(sha, 80))
	}
	s.mu.Lock()
	b := s.blobs[sha]
	s.mu.Unlock()
	if b == nil {
		return nil, fmt.Errorf("%w: blob %s", ErrNotFound, sha)
	}
	return b, nil
}

// Open opens the blob sha for reading, for http.ServeContent (Range
// requests; the ETag is the quoted hash, Info.Created the modification
// time). The caller closes the file. A blob collected while open stays
// readable through the open file.
func (s *Store) Open(sha string) (*os.File, Info, error) {
	if err := s.checkOpen(); err != nil {
		return nil, Info{}, err
	}
	b, err := s.lookup(sha)
	if err != nil {
		return nil, Info{}, err
	}
	f, err := os.Open(s.blobPath(sha))
	if errors.Is(err, os.ErrNotExist) {
		return nil, Info{}, fmt.Errorf("%w: blob %s", ErrNotFound, sha)
	}
	if err != nil {
		return nil, Info{}, fmt.Errorf("media: open %s: %w", sha, err)
	}
	b.mu.Lock()
	info := b.infoLocked()
	b.mu.Unlock()
	return f, info, nil
}

// Stat returns what the store knows of blob sha, or ErrNotFound.
func (s *Store) Stat(sha string) (Info, error) {
	if err := s.checkOpen(); err != nil {
		return Info{}, err
	}
	b, err := s.lookup(sha)
	if err != nil {
		return Info{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone {
		return Info{}, fmt.Errorf("%w: blob %s was collected", ErrNotFound, sha)
	}
	return b.infoLocked(), nil
}

// SetImage records, durably in its .meta, that blob sha is a picture of
// width×height pixels (as displayed) whose thumbnail is blob thumb (""
// for none). The HTTP layer calls it once it has probed a completed
// upload; Stat and Open then report them. It takes no reference on thumb:
// whoever references the picture references its thumbnail too.
func (s *Store) SetImage(sha string, width, height int, thumb string) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if width < 0 || height < 0 || (thumb != "" && !validSHA(thumb)) {
		return fmt.Errorf("media: set image %s: bad dimensions or thumbnail", sha)
	}
	b, err := s.lookup(sha)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone {
		return fmt.Errorf("%w: blob %s was collected", ErrNotFound, sha)
	}
	ow, oh, ot := b.width, b.height, b.thumb
	b.width, b.height, b.thumb = width, height, thumb
	if err := s.writeMetaLocked(b); err != nil {
		b.width, b.height, b.thumb = ow, oh, ot
		return fmt.Errorf("media: set image %s: %w", sha, err)
	}
	return nil
}

// Touch restarts the grace of blob sha when it has no references, as a
// new upload of its content would: a picture uploaded again keeps its
// thumbnail. It fails with ErrNotFound when the blob is not stored.
func (s *Store) Touch(sha string) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	b, err := s.lookup(sha)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone {
		return fmt.Errorf("%w: blob %s was collected", ErrNotFound, sha)
	}
	if b.refs > 0 {
		return nil
	}
	old := b.zeroSince
	b.zeroSince = s.now()
	if err := s.writeMetaLocked(b); err != nil {
		b.zeroSince = old
		return fmt.Errorf("media: touch %s: %w", sha, err)
	}
	return nil
}

// Ref adds n (≥ 1) references to blob sha, durably: the node calls it when
// a message referencing the blob commits. It fails with ErrNotFound when
// the blob is not stored, GC included: a Ref either lands before GC looks
// at the blob (which then keeps it) or fails.
func (s *Store) Ref(sha string, n int) error {
	return s.addRefs(sha, int64(n))
}

// Unref removes n (≥ 1) references from blob sha, durably. When the count
// reaches 0 the blob's grace starts; GC removes it after GCGrace unless it
// is referenced again. Taking the count below 0 fails with ErrRefCount
// and changes nothing.
func (s *Store) Unref(sha string, n int) error {
	return s.addRefs(sha, -int64(n))
}

func (s *Store) addRefs(sha string, d int64) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if d == 0 {
		return fmt.Errorf("media: ref %s: count must not be 0", sha)
	}
	b, err := s.lookup(sha)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone {
		return fmt.Errorf("%w: blob %s was collected", ErrNotFound, sha)
	}
	if b.refs+d < 0 {
		return fmt.Errorf("%w: blob %s has %d, unref %d", ErrRefCount, sha, b.refs, -d)
	}
	old, oldZero := b.refs, b.zeroSince
	b.refs += d
	if b.refs == 0 {
		b.zeroSince = s.now()
	}
	if err := s.writeMetaLocked(b); err != nil {
		b.refs, b.zeroSince = old, oldZero
		return fmt.Errorf("media: ref %s: %w", sha, err)
	}
	return nil
}

// Refs returns the number of references to blob sha.
func (s *Store) Refs(sha string) (int64, error) {
	b, err := s.lookup(sha)
	if err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone {
		return 0, fmt.Errorf("%w: blob %s was collected", ErrNotFound, sha)
	}
	return b.refs, nil
}

// GCStats reports what one GC pass removed.
type GCStats struct {
	// Blobs and Bytes count the blobs removed and their sizes.
	Blobs int
	Bytes int64
	// Uploads counts the idle uploads dropped.
	Uploads int
}

// GC removes blobs that have had no references for GCGrace as of now,
// and drops uploads idle for UploadTTL. The node calls it periodically
// (say hourly); it takes each blob's lock only briefly, so uploads,
// downloads and Ref go on meanwhile.
func (s *Store) GC(now time.Time) (GCStats, error) {
	if err := s.checkOpen(); err != nil {
		return GCStats{}, err
	}
	var st GCStats
	st.Uploads = s.expireUploads(now)
	s.expireDone(now)
	s.mu.Lock()
	cands := make([]*blob, 0, len(s.blobs))
	for _, b := range s.blobs {
		cands = append(cands, b)
	}
	s.mu.Unlock()
	var firstErr error
	for _, b := range cands {
		removed, err := s.collect(b, now)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if removed {
			st.Blobs++
			st.Bytes += b.info.Size
		}
	}
	s.m.gcBlobs.Add(st.Blobs)
	s.m.gcBytes.Add(int(st.Bytes))
	if st.Blobs > 0 || st.Uploads > 0 {
		s.opts.Log.Info("media: gc", "blobs", st.Blobs, "bytes", st.Bytes, "uploads", st.Uploads)
	}
	return st, firstErr
}

// collect removes b if it is unreferenced past the grace.
func (s *Store) collect(b *blob, now time.Time) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone || b.refs > 0 || now.Sub(b.zeroSince) < s.opts.GCGrace {
		return false, nil
	}
	sha := b.info.SHA256
	p := s.blobPath(sha)
	// The blob first, then its meta: a crash in between leaves a blob-less
	// meta, which Open removes.
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("media: gc %s: %w", sha, err)
	}
	b.gone = true
	s.mu.Lock()
	delete(s.blobs, sha)
	s.m.blobs.Set(float64(len(s.blobs)))
	s.mu.Unlock()
	os.Remove(p + ".meta")
	if err := syncDir(filepath.Dir(p)); err != nil {
		return true, fmt.Errorf("media: gc %s: %w", sha, err)
	}
	return true, nil
}

// ETag returns the blob's strong entity tag, the quoted hash, for the
// ETag header set before http.ServeContent.
func (i Info) ETag() string { return `"` + i.SHA256 + `"` }
