package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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
	db    *pebble.DB
	codec *bodyCodec
	m     *storeMetrics
	q     queue

	// ver is the last committed store version. Only the committer writes
	// it; durVer is its published, durable copy for readers.
	ver    uint64
	durVer atomic.Uint64

	view      atomic.Pointer[view]  // the latest durable snapshot
	openViews atomic.Int64          // views whose snapshot is not yet closed
	failErr   atomic.Pointer[error] // set once when a commit fails
	closed    atomic.Bool
	stop      chan struct{} // closed by Close to stop the sweeper
	wg        sync.WaitGroup

	mu    sync.Mutex            // guards the following
	chats map[ChatID]*chatState // the committer's chat cache
}

// Open opens the store in dir, creating it if dir is absent or empty. A
// directory that holds anything other than a Gonets store is refused with
// ErrNotStore.
func Open(dir string, opts Options) (_ *Store, err error) {
	shardsSet := opts.Shards != 0
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkDir(opts, dir); err != nil {
		return nil, err
	}
	s := &Store{opts: opts, stop: make(chan struct{}), chats: make(map[ChatID]*chatState)}
	s.q.init(opts.MaxQueuedBytes)
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	popts := &pebble.Options{
		FS:                          opts.FS,
		Cache:                       cache,
		MemTableSize:                opts.MemTableBytes,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       32,
		Logger:                      pebbleLogger{opts.Logger},
		FormatMajorVersion:          pebble.FormatMinSupported,
		EventListener: &pebble.EventListener{DataCorruption: func(info pebble.DataCorruptionInfo) {
			opts.Logger.Error("pebble: data corruption", "path", info.Path, "err", info.Details)
		}},
	}
	popts.EnsureDefaults()
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloomPolicy
	}
	db, err := openPebble(dir, popts)
	if err != nil {
		return nil, err
	}
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
func checkDir(opts Options, dir string) error {
	names, err := opts.FS.List(dir)
	if err != nil || len(names) == 0 {
		return nil // absent or empty: Pebble creates it
	}
	for _, n := range names {
		if strings.HasPrefix(n, "MANIFEST-") || strings.HasPrefix(n, "marker.manifest") {
			return nil
		}
	}
	return fmt.Errorf("storage: open %q: directory is not empty and holds no store: %w", dir, ErrNotStore)
}

// openPebble opens Pebble, turning a panic on damaged files into an error.
func openPebble(dir string, popts *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("storage: open %q: damaged store: %v", dir, r)
		}
	}()
	db, err = pebble.Open(dir, popts)
	if err != nil {
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
		if err := s.db.Set(keyFormat, b, pebble.Sync); err != nil {
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
	s.opts.Shards = int(shards)

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

// Close stops the sweeper, commits what is already queued, stops the
// committer, waits for readers to finish, and closes the database. Calls
// after Close return ErrClosed. Everything acknowledged is durable.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	close(s.stop)
	s.q.close()
	s.wg.Wait()
	// Stop new reads, then wait for readers still holding a view, so that
	// Pebble closes with no snapshot or iterator open.
	s.view.Swap(nil).release()
	for s.openViews.Load() > 0 {
		time.Sleep(time.Millisecond)
	}
	s.codec.close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
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

func (s *Store) fail(err error) {
	err = fmt.Errorf("%w: %w", ErrFailed, err)
	if s.failErr.CompareAndSwap(nil, &err) {
		s.opts.Logger.Error("storage failed; refusing writes until reopened", "err", err)
	}
}

// usable returns the error that stops a new request, or nil.
func (s *Store) usable() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.failure()
}
