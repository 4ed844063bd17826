package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cockroachdb/pebble/v2"
)

// A failed store recovers by itself. Pebble cannot go on after a failed
// WAL write or sync (its WAL writer keeps the error, and the next commit
// that reaches it panics), so the store stops writing at the first
// failure and the committer, which owns the database, reopens it:
//
//  1. Every queued request and every new one fails with ErrFailed; reads
//     go on from the last published view.
//  2. After RecoverMinDelay (doubling on each failed attempt up to
//     RecoverMaxDelay) the committer checks that the disk takes writes
//     (checkSpace). Until it does, nothing else changes.
//  3. Then it closes the database (reads fail with ErrFailed from here),
//     opens it again (Pebble replays the WAL and flushes what it replays,
//     so everything it holds is durable), writes one synced record as a
//     last probe, drops the chat cache (it may hold seqs of a failed
//     batch), publishes a new view and clears the failure.
//
// A batch whose sync failed may have reached the disk anyway; after the
// reopen it is there, never acknowledged, and a retry with the same
// client message id is answered from the dedupe table.

// recoverMetrics count failures and recoveries. They are created before
// Pebble opens (its events count background errors), idempotently, so a
// failed Open can be retried with the same set.
type recoverMetrics struct {
	failures         *metrics.Counter
	recoveries       *metrics.Counter
	backgroundErrors *metrics.Counter
}

func newRecoverMetrics(set *metrics.Set) *recoverMetrics {
	return &recoverMetrics{
		failures:         set.GetOrCreateCounter("gonets_storage_failures_total"),
		recoveries:       set.GetOrCreateCounter("gonets_storage_recoveries_total"),
		backgroundErrors: set.GetOrCreateCounter("gonets_storage_background_errors_total"),
	}
}

// backoff is the committer's state between recoveries: a store that fails
// again within RecoverMaxDelay of recovering goes on from its last delay
// instead of starting over, so a fault that returns at once does not
// make the store flap at the minimum delay.
type backoff struct {
	delay     time.Duration
	recovered time.Time
}

func (b *backoff) first(o *Options, now time.Time) time.Duration {
	if b.recovered.IsZero() || now.Sub(b.recovered) >= o.RecoverMaxDelay {
		b.delay = o.RecoverMinDelay
	} else {
		b.delay = min(2*b.delay, o.RecoverMaxDelay)
	}
	return b.delay
}

func (b *backoff) next(o *Options) time.Duration {
	b.delay = min(2*b.delay, o.RecoverMaxDelay)
	return b.delay
}

// stopping reports whether Close has begun.
func (s *Store) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// recoverLoop runs on the committer once the store has failed: it reopens
// the database with backoff until that succeeds or Close begins, failing
// every request queued meanwhile.
func (s *Store) recoverLoop(b *backoff) {
	since := time.Now()
	delay := b.first(&s.opts, since)
	for {
		if !s.recoverWait(delay) {
			return
		}
		err := s.reopen()
		if err == nil {
			b.recovered = time.Now()
			s.rm.recoveries.Inc()
			s.opts.Logger.Info("storage recovered; taking writes again", "failed_for", time.Since(since).Round(time.Millisecond), "version", s.ver)
			return
		}
		delay = b.next(&s.opts)
		if ok, n := s.ev.lim.allow("storage: reopen failed"); ok {
			s.opts.Logger.Warn("storage: reopen failed; retrying", "err", err, "retry_in", delay, "suppressed", n)
		}
	}
}

// recoverWait waits for d, failing queued requests as they come. It
// returns false when Close begins.
func (s *Store) recoverWait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		s.q.failQueued(s.failure())
		select {
		case <-s.stop:
			return false
		case <-t.C:
			s.q.failQueued(s.failure())
			return true
		case <-s.q.ready:
		}
	}
}

// reopen closes the failed database and opens it again. It returns an
// error, leaving the store failed, while the disk refuses writes.
func (s *Store) reopen() error {
	if err := checkSpace(s.opts.FS, s.dir); err != nil {
		return err // the old database and its view stay until the disk takes writes
	}
	s.walArmed.Store(false)
	if err := s.closeFailed(); err != nil {
		s.opts.Logger.Debug("storage: closed the failed database", "err", err)
	}
	db, err := s.openAgain()
	if err != nil {
		return err
	}
	flushFails := s.ev.flushFails.Load()
	s.db = db
	if err := s.loadMeta(true); err != nil {
		s.closeFailed()
		return err
	}
	// The probe: one synced record through the new WAL.
	if err := syncSet(db, keyVersion, binary.AppendUvarint(nil, s.ver)); err != nil {
		s.closeFailed()
		return fmt.Errorf("storage: probe write: %w", err)
	}
	s.mu.Lock()
	s.chats = make(map[ChatID]*chatState)
	s.mu.Unlock()
	s.setView(db.NewSnapshot(), s.ver)
	s.failErr.Store(nil)
	s.startRunning(flushFails)
	return nil
}

// startRunning marks the open database as running: a WAL that cannot be
// created or finished ends the process, and a failed flush fails the
// store. A flush that failed after the database opened and before this
// (flushFails then counted n) fails the store now.
func (s *Store) startRunning(n uint64) {
	s.walArmed.Store(true)
	if s.ev.flushFails.Load() != n {
		s.fail(errors.New("flush: failed while the database opened"))
	}
}

// closeFailed closes the database after a failure. Pebble's Close returns
// the WAL's error, which is expected; a panic in it leaves Pebble's state
// unknown and ends the process.
func (s *Store) closeFailed() (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.opts.fatal(fmt.Sprintf("close the failed database: %v", r))
		}
	}()
	return s.closeDB()
}

// openAgain opens the database in place after a failure. Unlike Open it
// does not recover a panic: it would leave the directory lock and
// Pebble's goroutines in an unknown state in a process that goes on.
func (s *Store) openAgain() (*pebble.DB, error) {
	defer func() {
		if r := recover(); r != nil {
			s.opts.fatal(fmt.Sprintf("reopen the database: %v", r))
		}
	}()
	db, err := pebble.Open(s.dir, s.popts)
	if err != nil {
		return nil, fmt.Errorf("storage: reopen %q: %w", s.dir, err)
	}
	return db, nil
}
