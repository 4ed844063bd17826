package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cockroachdb/pebble/v2"
)

// formatVersion is the on-disk layout version written at creation.
const formatVersion = 1

// Store is the durable message store: chats, members, sharded logs, dialog
// indexes and read markers in one Pebble database. It is safe for
// concurrent use. See doc.go for the model.
type Store struct {
	opts  Options
	dir   string
	lock  *pebble.Lock // the directory's lock, held from Open to Close
	cache *pebble.Cache
	popts *pebble.Options
	ev    *events
	codec *bodyCodec
	m     *storeMetrics
	rm    *recoverMetrics
	q     queue

	// db is the open database. Only the committer uses it once Open has
	// returned, and only the committer replaces it (recover.go).
	db *pebble.DB

	// ver is the last committed store version. Only the committer writes
	// it; durVer is its published, durable copy for readers.
	ver    uint64
	durVer atomic.Uint64

	view      atomic.Pointer[view]  // the latest durable snapshot
	openViews atomic.Int64          // views whose snapshot is not yet closed
	failErr   atomic.Pointer[error] // set while the store is failed
	walArmed  atomic.Bool           // WAL failures are fatal (walFS)
	closed    atomic.Bool
	stop      chan struct{} // closed by Close to stop the sweeper
	wg        sync.WaitGroup

	mu    sync.Mutex            // guards the following
	chats map[ChatID]*chatState // the committer's chat cache
}

// Open opens the store in dir, creating it if dir is absent or empty. A
// directory that holds anything other than a Gonets store is refused with
// ErrNotStore, one another process holds with ErrLocked, and a disk with
// no room to open the store with ErrNoSpace.
func Open(dir string, opts Options) (_ *Store, err error) {
	shardsSet := opts.Shards != 0
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkDir(opts, dir); err != nil {
		return nil, err
	}
	if err := opts.FS.MkdirAll(dir, 0o755); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return nil, fmt.Errorf("%w in %s", ErrNoSpace, dir)
		}
		return nil, fmt.Errorf("storage: open %q: %w", dir, err)
	}
	s := &Store{opts: opts, dir: dir, stop: make(chan struct{}), chats: make(map[ChatID]*chatState)}
	if s.lock, err = lockDir(opts.FS, dir); err != nil {
		return nil, err
	}
	s.cache = pebble.NewCache(opts.CacheBytes)
	defer func() {
		if err != nil {
			s.cache.Unref()
			s.lock.Close()
		}
	}()
	s.q.init(opts.MaxQueuedBytes)
	s.rm = newRecoverMetrics(opts.Metrics)
	s.ev = &events{opts: &s.opts, lim: newLogLimiter(time.Now), fail: s.fail, walArmed: &s.walArmed, count: s.rm.backgroundErrors}
	s.popts = &pebble.Options{
		FS:                          walFS{FS: opts.FS, armed: &s.walArmed, fatal: s.opts.fatal},
		Lock:                        s.lock,
		Cache:                       s.cache,
		MemTableSize:                opts.MemTableBytes,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       32,
		Logger:                      newPebbleLogger(opts.Logger, s.opts.fatal),
		FormatMajorVersion:          pebble.FormatMinSupported,
		EventListener:               s.ev.listener(),
	}
	s.popts.EnsureDefaults()
	for i := range s.popts.Levels {
		s.popts.Levels[i].FilterPolicy = bloomPolicy
	}
	if err := checkSpace(opts.FS, dir); err != nil {
		return nil, err
	}
	db, err := openPebble(dir, s.popts)
	if err != nil {
		return nil, err
	}
	flushFails := s.ev.flushFails.Load()
	s.db = db
	if err := s.loadMeta(shardsSet); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.RatchetFormatMajorVersion(pebble.FormatNewest); err != nil {
		db.Close()
		return nil, err
	}
	if s.codec, err = newBodyCodec(); err != nil {
		db.Close()
		return nil, err
	}
	s.m = newStoreMetrics(opts.Metrics, s)
	s.setView(s.db.NewSnapshot(), s.ver)
	s.startRunning(flushFails)
	s.wg.Add(1)
	go s.commitLoop()
	if opts.SweepInterval > 0 {
		s.wg.Add(1)
		go s.sweepLoop()
	}
	opts.Logger.Info("storage opened", "dir", dir, "shards", opts.Shards, "version", s.ver)
	return s, nil
}

// checkDir refuses a directory that has entries but no Pebble manifest.
// A lock file or probe file alone, left by an Open that failed before
// creating the store, does not count.
func checkDir(opts Options, dir string) error {
	names, err := opts.FS.List(dir)
	if err != nil {
		return nil // absent: Pebble creates it
	}
	foreign := false
	for _, n := range names {
		if strings.HasPrefix(n, "MANIFEST-") || strings.HasPrefix(n, "marker.manifest") {
			return nil
		}
		foreign = foreign || (n != "LOCK" && n != probeFile)
	}
	if !foreign {
		return nil
	}
	return fmt.Errorf("storage: open %q: directory is not empty and holds no store: %w", dir, ErrNotStore)
}

// openPebble opens Pebble, turning a panic on damaged files into an
// error. Only Open uses the recover, before the store has served
// anything; Pebble's Open releases the directory lock's reference on its
// way out of a panic. A reopen after a failure treats such a panic as
// fatal (recover.go).
func openPebble(dir string, popts *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("storage: open %q: damaged store: %v", dir, r)
		}
	}()
	db, err = pebble.Open(dir, popts)
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return nil, fmt.Errorf("%w in %s (%v)", ErrNoSpace, dir, err)
		}
		return nil, fmt.Errorf("storage: open %q: %w", dir, err)
	}
	return db, nil
}

// loadMeta checks the format record, writing it into a new store, and
// loads the last committed version.
func (s *Store) loadMeta(shardsSet bool) error {
	v, closer, err := s.db.Get(keyFormat)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if !s.isEmpty() {
			return fmt.Errorf("storage: database has keys but no format record: %w", ErrNotStore)
		}
		b := binary.AppendUvarint([]byte{formatVersion}, uint64(s.opts.Shards))
		if err := syncSet(s.db, keyFormat, b); err != nil {
			return fmt.Errorf("storage: write format: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("storage: read format: %w", err)
	}
	defer closer.Close()
	if len(v) < 2 || v[0] != formatVersion {
		return fmt.Errorf("storage: format record %x: %w", v, ErrNotStore)
	}
	shards, n := binary.Uvarint(v[1:])
	if n <= 0 || shards == 0 || shards >= metaShard {
		return fmt.Errorf("storage: format record %x: %w", v, ErrNotStore)
	}
	if shardsSet && int(shards) != s.opts.Shards {
		return fmt.Errorf("storage: store has %d shards, options ask for %d", shards, s.opts.Shards)
	}
	if !shardsSet {
		// Only Open, before readers: a reopen (shardsSet) must not write
		// what ShardOf and Sweep read without a view.
		s.opts.Shards = int(shards)
	}

	vv, vcloser, err := s.db.Get(keyVersion)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("storage: read version: %w", err)
	default:
		ver, n := binary.Uvarint(vv)
		vcloser.Close()
		if n <= 0 {
			return fmt.Errorf("storage: version record %x: %w", vv, errCorrupt)
		}
		s.ver = ver
	}
	s.durVer.Store(s.ver)
	return nil
}

func (s *Store) isEmpty() bool {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return false
	}
	defer it.Close()
	return !it.First()
}

// Close stops the sweeper, commits what is already queued (or fails it,
// while the store is failed), stops the committer, waits for readers to
// finish, and closes the database. Calls after Close return ErrClosed.
// Everything acknowledged is durable. Close waits for a commit in flight,
// and so for its WAL sync: on a disk whose syncs hang it hangs too (the
// node bounds its own shutdown; see tools/serve.go).
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	close(s.stop)
	s.q.close()
	s.wg.Wait()
	s.walArmed.Store(false)
	err := s.closeDB()
	s.codec.close()
	s.cache.Unref()
	s.lock.Close()
	if err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// closeDB stops new reads, waits for readers still holding a view, so
// that Pebble closes with no snapshot or iterator open, and closes the
// database. Only Close and the committer call it.
func (s *Store) closeDB() error {
	if v := s.view.Swap(nil); v != nil {
		v.release()
	}
	for s.openViews.Load() > 0 {
		time.Sleep(time.Millisecond)
	}
	if s.db == nil {
		return nil // a reopen after a failure did not succeed
	}
	db := s.db
	s.db = nil
	return db.Close()
}

// Metrics returns the set holding the store's gonets_storage_* metrics.
func (s *Store) Metrics() *metrics.Set { return s.opts.Metrics }

// MaxBodyBytes returns the largest message body the store accepts.
func (s *Store) MaxBodyBytes() int { return s.opts.MaxBodyBytes }

// Healthy reports whether the store is open and has not failed.
func (s *Store) Healthy() bool { return !s.closed.Load() && s.failure() == nil }

// Shards returns the number of virtual shards.
func (s *Store) Shards() int { return s.opts.Shards }

// ShardOf returns the shard of a chat.
func (s *Store) ShardOf(chat ChatID) int { return int(shardOf(uint64(chat), s.opts.Shards)) }

// Version returns the last durable store version: a sync point for Dialogs.
func (s *Store) Version() uint64 { return s.durVer.Load() }

// failure returns the error that failed the store, or nil.
func (s *Store) failure() error {
	if p := s.failErr.Load(); p != nil {
		return *p
	}
	return nil
}

// fail fails the store with err: writes are refused with ErrFailed until
// the committer has reopened the database (recover.go). It is called by
// the committer and by Pebble's event handlers; the first call wins.
func (s *Store) fail(err error) {
	err = fmt.Errorf("%w: %w", ErrFailed, err)
	if s.failErr.CompareAndSwap(nil, &err) {
		s.rm.failures.Inc()
		s.opts.Logger.Error("storage failed; refusing writes and reopening the database", "err", err)
		s.q.wake()
	}
}

// usable returns the error that stops a new request, or nil.
func (s *Store) usable() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.failure()
}
