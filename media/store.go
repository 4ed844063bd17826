package media

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Store is the node's media store: content-addressed blobs with reference
// counts, and the resumable uploads that become them. It is safe for
// concurrent use. See the package comment for its model.
type Store struct {
	opts   Options
	quota  quota
	closed atomic.Bool
	m      storeMetrics
	// hashReadBytes counts the bytes read back from part files to hash
	// them (chunks hashed out of order, and Complete's rest): tests check
	// that an upload in order reads nothing back.
	hashReadBytes atomic.Int64

	mu    sync.Mutex // guards the following
	blobs map[string]*blob

	umu      sync.Mutex // guards the following
	uploads  map[string]*upload
	userOpen map[uint64]int        // open uploads per user
	done     map[string]doneUpload // completed uploads, for GCGrace
}

type storeMetrics struct {
	putSeconds, chunkSeconds, completeSeconds *metrics.PrometheusHistogram
	receivedBytes, blobsCreated, dedup        *metrics.Counter
	gcBlobs, gcBytes, uploadsExpired          *metrics.Counter
	refused                                   map[error]*metrics.Counter
	blobs, uploads                            *metrics.Gauge
}

// refusals are the sentinels counted in gonets_media_refused_total, by
// reason.
var refusals = map[error]string{
	ErrTooLarge: "too_large", ErrQuota: "quota", ErrOverlap: "overlap", ErrBadRange: "bad_range",
	ErrSizeMismatch: "size_mismatch", ErrTooManyUploads: "too_many_uploads", ErrIncomplete: "incomplete",
}

func newStoreMetrics(set *metrics.Set) storeMetrics {
	m := storeMetrics{
		putSeconds:      set.GetOrCreatePrometheusHistogram("gonets_media_put_seconds"),
		chunkSeconds:    set.GetOrCreatePrometheusHistogram("gonets_media_chunk_seconds"),
		completeSeconds: set.GetOrCreatePrometheusHistogram("gonets_media_complete_seconds"),
		receivedBytes:   set.GetOrCreateCounter("gonets_media_received_bytes_total"),
		blobsCreated:    set.GetOrCreateCounter("gonets_media_blobs_created_total"),
		dedup:           set.GetOrCreateCounter("gonets_media_dedup_total"),
		gcBlobs:         set.GetOrCreateCounter("gonets_media_gc_blobs_removed_total"),
		gcBytes:         set.GetOrCreateCounter("gonets_media_gc_removed_bytes_total"),
		uploadsExpired:  set.GetOrCreateCounter("gonets_media_uploads_expired_total"),
		refused:         make(map[error]*metrics.Counter),
		blobs:           set.GetOrCreateGauge("gonets_media_blobs", nil),
		uploads:         set.GetOrCreateGauge("gonets_media_uploads_open", nil),
	}
	for e, reason := range refusals {
		m.refused[e] = set.GetOrCreateCounter(`gonets_media_refused_total{reason="` + reason + `"}`)
	}
	return m
}

// refuse counts err under its reason, if it is a refusal, and returns it.
func (s *Store) refuse(err error) error {
	for e, c := range s.m.refused {
		if errors.Is(err, e) {
			c.Inc()
			break
		}
	}
	return err
}

// Open opens (creating if needed) the store in o.Dir and recovers it:
// temporary files of interrupted writes are removed, a blob without its
// .meta gets one (no references, grace from now), a .meta without its blob
// is removed, and upload states are reloaded, each trusted only for the
// ranges its state file records.
func Open(o Options) (*Store, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	s := &Store{
		opts:     o,
		quota:    quota{limit: o.MaxPerUserDay, usage: make(map[uint64]dayUsage)},
		m:        newStoreMetrics(o.Metrics),
		blobs:    make(map[string]*blob),
		uploads:  make(map[string]*upload),
		userOpen: make(map[uint64]int),
		done:     make(map[string]doneUpload),
	}
	for _, d := range []string{o.Dir, s.path("blobs"), s.path("uploads"), s.path("tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("media: open %q: %w", o.Dir, err)
		}
	}
	if err := s.clearTmp(); err != nil {
		return nil, err
	}
	if err := s.loadBlobs(); err != nil {
		return nil, err
	}
	if err := s.loadUploads(); err != nil {
		return nil, err
	}
	s.m.blobs.Set(float64(len(s.blobs)))
	s.m.uploads.Set(float64(len(s.uploads)))
	o.Log.Info("media: opened", "dir", o.Dir, "blobs", len(s.blobs), "uploads", len(s.uploads))
	return s, nil
}

// Close marks the store closed: later calls fail with ErrClosed. Calls in
// flight finish. Everything acknowledged is already durable, so Close has
// nothing to flush; the store starts no goroutines.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

func (s *Store) checkOpen() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.opts.Dir}, elem...)...)
}

func (s *Store) blobPath(sha string) string { return s.path("blobs", sha[:2], sha) }

func (s *Store) clearTmp() error {
	ents, err := os.ReadDir(s.path("tmp"))
	if err != nil {
		return fmt.Errorf("media: open: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(s.path("tmp", e.Name())); err != nil {
			return fmt.Errorf("media: open: remove temporary file: %w", err)
		}
	}
	return nil
}

func (s *Store) loadBlobs() error {
	dirs, err := os.ReadDir(s.path("blobs"))
	if err != nil {
		return fmt.Errorf("media: open: %w", err)
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		ents, err := os.ReadDir(s.path("blobs", d.Name()))
		if err != nil {
			return fmt.Errorf("media: open: %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			p := s.path("blobs", d.Name(), name)
			switch {
			case strings.HasSuffix(name, ".tmp"):
				os.Remove(p)
			case strings.HasSuffix(name, ".meta"):
				if _, err := os.Stat(strings.TrimSuffix(p, ".meta")); errors.Is(err, os.ErrNotExist) {
					os.Remove(p)
				}
			case validSHA(name) && name[:2] == d.Name():
				if err := s.loadBlob(name); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *Store) loadBlob(sha string) error {
	p := s.blobPath(sha)
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("media: open: %w", err)
	}
	var bm blobMeta
	if err := readJSON(p+".meta", &bm); err != nil {
		// The blob was renamed into place (so it is complete) but its meta
		// was not written: recover it with no references and a fresh grace.
		s.opts.Log.Warn("media: blob without meta, recovering", "sha256", sha, "err", err)
		now := s.opts.Now()
		bm = blobMeta{Size: st.Size(), MIME: sniffFile(p), Created: st.ModTime().UTC(), ZeroSince: now}
		if err := writeJSONAtomic(p+".meta", bm); err != nil {
			return fmt.Errorf("media: open: recover %s: %w", sha, err)
		}
	}
	if bm.Size != st.Size() {
		s.opts.Log.Error("media: blob size differs from its meta", "sha256", sha, "meta", bm.Size, "file", st.Size())
		bm.Size = st.Size()
	}
	if bm.Thumb != "" && !validSHA(bm.Thumb) {
		bm.Thumb = ""
	}
	s.blobs[sha] = &blob{
		info:      Info{SHA256: sha, Size: bm.Size, Name: bm.Name, MIME: bm.MIME, Created: bm.Created},
		width:     max(bm.Width, 0),
		height:    max(bm.Height, 0),
		thumb:     bm.Thumb,
		refs:      bm.Refs,
		zeroSince: bm.ZeroSince,
	}
	return nil
}

// validSHA reports whether s is a lowercase hex SHA-256.
func validSHA(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// sniffFile detects a file's MIME type from its first 512 bytes.
func sniffFile(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "application/octet-stream"
	}
	defer f.Close()
	var head [512]byte
	n, _ := readFull(f, head[:])
	return http.DetectContentType(head[:n])
}

// Options returns the store's options, defaults filled in: the HTTP
// layer bounds request bodies by MaxFile and MaxChunk and keeps its own
// records under Dir for GCGrace and UploadTTL.
func (s *Store) Options() Options { return s.opts }

// now returns the store's clock.
func (s *Store) now() time.Time { return s.opts.Now() }
