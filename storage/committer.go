package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// op is one request's work inside a group commit. apply validates against
// the committer's state and stages writes; it records a rejection of its
// own input in the op and returns an error only when the store cannot go
// on (an I/O error), which fails the whole batch.
type op interface {
	apply(s *Store, bc *batchCtx) error
}

// request carries an op from a caller to the committer and back.
// Requests are pooled: done is buffered and answered with a send, so that
// one request serves many ops.
type request struct {
	op   op
	size int           // body bytes, for batch and queue caps
	err  error         // the batch's failure, if any
	done chan struct{} // answered once per op, buffered
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

// answer hands the op's outcome back; the committer does not touch r
// afterwards.
func (r *request) answer(err error) {
	r.err = err
	r.done <- struct{}{}
}

// submit queues op and waits until the batch holding it is durable (or
// failed). If ctx ends first the op may still commit later; a retry with
// the same client message id is answered from the dedupe table.
func (s *Store) submit(ctx context.Context, o op, size int) error {
	_, err := s.submitOwned(ctx, o, size)
	return err
}

// submitOwned is submit that also reports whether the committer may still
// use o: true when ctx ended after o was queued. Ops own their data (they
// copy the caller's), so an abandoned op is safe to apply; it just must
// not be reused.
func (s *Store) submitOwned(ctx context.Context, o op, size int) (abandoned bool, err error) {
	if err := s.usable(); err != nil {
		return false, err
	}
	r := requestPool.Get().(*request)
	r.op, r.size = o, size
	if err := s.q.put(ctx, r); err != nil {
		r.op = nil
		requestPool.Put(r)
		return false, err
	}
	select {
	case <-r.done:
		err := r.err
		r.op, r.err = nil, nil
		requestPool.Put(r)
		return false, err
	case <-ctx.Done():
		return true, ctx.Err() // the committer still answers r; it is not reused
	}
}

// batchCtx is the committer's per-batch scratch, reused across batches.
type batchCtx struct {
	b      *pebble.Batch
	ver    uint64 // the version this batch commits
	now    int64  // the batch's server time, Unix µs
	nmsg   int
	dirty  []*chatState
	dedupe map[dedupeID]Ack
	staged map[string][]byte // staged metadata values; nil value = deleted
	key    []byte
	val    []byte
}

// dedupeID identifies a sender's message for deduplication.
type dedupeID struct {
	chat ChatID
	user UserID
	dev  DeviceID
	cmid uint64
}

// touch puts st on the batch's dirty list; bump also moves its dialog
// version, so that members see the chat as changed.
func (bc *batchCtx) touch(st *chatState, bump bool) {
	if !st.inBatch {
		st.inBatch = true
		bc.dirty = append(bc.dirty, st)
	}
	if bump {
		st.bumped = true
	}
}

// get reads a metadata key through the values staged in this batch.
func (s *Store) get(bc *batchCtx, key []byte) ([]byte, bool, error) {
	if v, ok := bc.staged[string(key)]; ok {
		return v, v != nil, nil
	}
	return getCopy(s.db, key)
}

// getCopy returns a copy of key's value in r, or found false.
func getCopy(r pebble.Reader, key []byte) (val []byte, found bool, err error) {
	b, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	val = append([]byte(nil), b...)
	closer.Close()
	return val, true, nil
}

// set stages a metadata write that later ops in the batch must see.
func (bc *batchCtx) set(key, val []byte) {
	val = append([]byte(nil), val...)
	bc.staged[string(key)] = val
	bc.b.Set(key, val, nil)
}

// del stages a metadata delete that later ops in the batch must see.
func (bc *batchCtx) del(key []byte) {
	bc.staged[string(key)] = nil
	bc.b.Delete(key, nil)
}

// flight is one group commit: a batch applied to Pebble, its sync
// pending, and the requests it answers.
type flight struct {
	b     *pebble.Batch    // nil when there was nothing to write
	snap  *pebble.Snapshot // the store just after b, published once durable
	reqs  []*request
	heads []flightHead // what to publish once durable
	ver   uint64
	nmsg  int
	size  int
	start time.Time
	err   error // set when the batch failed before its sync
}

// flightHead is a chat's last seq as of a flight.
type flightHead struct {
	st  *chatState
	seq uint64
}

// commitLoop is the committer goroutine: it takes whatever is queued (up
// to MaxBatchBytes), applies it into one Pebble batch, waits for the one
// WAL sync that covers it, publishes it to readers and answers every
// request. Requests arriving during a sync form the next batch; an idle
// store commits at once.
//
// Once the store has failed, the committer reopens the database
// (recoverLoop) before it takes the next batch; after Close has begun it
// only answers what is queued.
func (s *Store) commitLoop() {
	defer s.wg.Done()
	// key and val are scratch for the batch's keys and small values:
	// sized so that building one never allocates (the longest key, a
	// dedupe entry's, is 35 bytes).
	bc := &batchCtx{dedupe: make(map[dedupeID]Ack), staged: make(map[string][]byte),
		key: make([]byte, 0, 64), val: make([]byte, 0, 256)}
	var reqs []*request
	var bo backoff
	var f flight // one commit at a time: reused
	pace := syncPacer{max: max(s.opts.SyncDelayMax, 0), rate: s.opts.pacerRate}
	hold := newStoppedTimer()
	arrived, left := 0, 0 // requests that came in while busy; those left queued
	for {
		if s.failure() != nil && !s.stopping() {
			s.recoverLoop(&bo)
		}
		queued, _ := s.q.queued()
		pace.idle(time.Now(), arrived+queued-left)
		var ok bool
		reqs, ok = s.q.take(reqs[:0], s.opts.MaxBatchBytes)
		if !ok {
			return
		}
		if len(reqs) == 0 {
			continue // woken by a failure
		}
		start := time.Now()
		arrived = 0
		if wait, goal := pace.hold(start); wait > 0 {
			n := len(reqs)
			reqs = s.gather(hold, reqs, wait, goal)
			arrived = len(reqs) - n
			s.m.syncDelaySeconds.Update(time.Since(start).Seconds())
		}
		left, _ = s.q.queued()
		f = flight{reqs: reqs, start: start, heads: f.heads[:0]}
		s.build(bc, &f)
		if f.b != nil {
			s.m.syncs.Inc()
			pace.synced(time.Now(), len(reqs))
		}
		s.finish(&f)
		clear(reqs)
		clear(f.heads)
		// After a failure Pebble may hold a failed batch: a chat reloaded
		// from it would show what was never durable, so keep every state.
		if s.failure() == nil {
			s.mu.Lock()
			s.evictLocked(s.opts.CacheChats)
			s.mu.Unlock()
		}
	}
}

// gather holds a group of reqs for up to wait while more requests queue,
// then adds them to it within the batch's bytes. It stops early once the
// group would hold goal requests or fill a batch. hold is the
// committer's timer, stopped.
func (s *Store) gather(hold *time.Timer, reqs []*request, wait time.Duration, goal int) []*request {
	budget := s.opts.MaxBatchBytes
	for _, r := range reqs {
		budget -= r.size
	}
	hold.Reset(wait)
	defer hold.Stop()
	for {
		n, bytes := s.q.queued()
		if len(reqs)+n >= goal || bytes >= budget || s.stopping() {
			break
		}
		select {
		case <-hold.C:
			return s.q.tryTake(reqs, budget)
		case <-s.q.ready:
		}
	}
	return s.q.tryTake(reqs, budget)
}

// newStoppedTimer returns a timer that has not started.
func newStoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// build applies f's requests into one batch and applies it to Pebble
// without waiting for the sync. It records a failure in f.err.
func (s *Store) build(bc *batchCtx, f *flight) {
	defer func() {
		for _, st := range bc.dirty {
			st.inBatch, st.bumped = false, false
			st.added, st.removed = st.added[:0], st.removed[:0]
		}
		bc.dirty = bc.dirty[:0]
		bc.nmsg = 0
		clear(bc.dedupe)
		clear(bc.staged)
	}()
	if f.err = s.failure(); f.err != nil {
		return
	}
	b := s.db.NewBatch()
	bc.b = b
	bc.now = s.opts.Now().UnixMicro()
	bc.ver = max(s.ver+1, uint64(max(bc.now, 0)))
	for _, r := range f.reqs {
		f.size += r.size
		if err := r.op.apply(s, bc); err != nil {
			s.fail(err)
			f.err = s.failure()
			b.Close()
			return
		}
	}
	if b.Empty() && len(bc.dirty) == 0 {
		b.Close() // nothing to write: rejections and duplicates only
		return
	}
	if err := s.finishChats(bc); err != nil {
		s.fail(err)
		f.err = s.failure()
		b.Close()
		return
	}
	b.Set(keyVersion, binary.AppendUvarint(bc.key[:0], bc.ver), nil)
	if err := s.applyNoSyncWait(b); err != nil {
		s.m.commitErrors.Inc()
		s.fail(fmt.Errorf("commit: %w", err))
		f.err = s.failure()
		return // a batch that failed to apply is left to the GC: Pebble may hold it
	}
	s.ver = bc.ver
	// b is visible now, before its sync: this snapshot is the state
	// readers may see once b is durable.
	f.b, f.snap, f.ver, f.nmsg = b, s.db.NewSnapshot(), bc.ver, bc.nmsg
	for _, st := range bc.dirty {
		f.heads = append(f.heads, flightHead{st: st, seq: st.rec.lastSeq})
	}
}

// finish waits for f's WAL sync, publishes f to readers and answers its
// requests. After a failed sync the store is failed: nothing is
// acknowledged after a failed sync.
func (s *Store) finish(f *flight) {
	err := f.err
	if err == nil && f.b != nil {
		if serr := f.b.SyncWait(); serr != nil {
			s.m.commitErrors.Inc()
			s.fail(fmt.Errorf("sync: %w", serr))
		}
		if err = s.failure(); err == nil {
			stats := f.b.CommitStats()
			s.setView(f.snap, f.ver)
			f.snap = nil
			for _, fh := range f.heads {
				fh.st.durSeq = fh.seq
			}
			s.durVer.Store(f.ver)
			s.m.commits.Inc()
			s.m.batchMessages.Update(float64(f.nmsg))
			s.m.batchBytes.Update(float64(f.size))
			s.m.syncSeconds.Update(stats.CommitWaitDuration.Seconds())
			s.m.commitSeconds.Update(time.Since(f.start).Seconds())
			f.b.Close()
		}
	}
	if f.snap != nil {
		f.snap.Close()
	}
	for _, r := range f.reqs {
		r.answer(err)
	}
}

// finishChats writes the record of every chat the batch changed and, for
// bumped chats, keeps their push members' dialog entries at the epoch of
// the chat's version: when the chat enters a new epoch every entry moves;
// otherwise only members who joined or left in this batch are written.
func (s *Store) finishChats(bc *batchCtx) error {
	ep := epochOf(bc.ver)
	for _, st := range bc.dirty {
		if st.bumped {
			if err := s.loadPush(st); err != nil {
				return err
			}
			old := st.rec.idxEpoch
			st.rec.ver = bc.ver
			if old != ep {
				st.rec.idxEpoch = ep
				if old != 0 {
					for _, u := range st.removed {
						bc.b.Delete(s.dialogKey(bc.key[:0], u, old, st.id), nil)
					}
					for _, u := range st.push {
						bc.b.Delete(s.dialogKey(bc.key[:0], u, old, st.id), nil)
					}
				}
				for _, u := range st.push {
					bc.b.Set(s.dialogKey(bc.key[:0], u, ep, st.id), nil, nil)
				}
			} else {
				for _, u := range st.removed {
					if !slices.Contains(st.push, u) {
						bc.b.Delete(s.dialogKey(bc.key[:0], u, old, st.id), nil)
					}
				}
				for _, u := range st.added {
					if slices.Contains(st.push, u) {
						bc.b.Set(s.dialogKey(bc.key[:0], u, ep, st.id), nil, nil)
					}
				}
			}
		}
		bc.val = st.rec.appendTo(bc.val[:0])
		bc.b.Set(s.chatKey(bc.key[:0], tChat, st.id), bc.val, nil)
	}
	return nil
}

// applyNoSyncWait applies b to the memtable and the WAL; Batch.SyncWait
// then waits for its sync. It never meets a WAL error of an earlier batch:
// the committer applies nothing after a failed sync until it has reopened
// the database. Pebble panics here only in states it cannot leave (its
// commit pipeline's mutex stays locked), so a panic ends the process with
// the fatal line instead of being turned into an error.
func (s *Store) applyNoSyncWait(b *pebble.Batch) error {
	defer func() {
		if r := recover(); r != nil {
			s.opts.fatal(fmt.Sprintf("pebble panicked in a commit: %v", r))
		}
	}()
	return s.db.ApplyNoSyncWait(b, pebble.Sync)
}
