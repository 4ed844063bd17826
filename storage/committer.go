package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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
type request struct {
	op   op
	size int   // body bytes, for batch and queue caps
	err  error // the batch's failure, if any
	done chan struct{}
}

// submit queues op and waits until the batch holding it is durable (or
// failed). If ctx ends first the op may still commit later; a retry with
// the same client message id is answered from the dedupe table.
func (s *Store) submit(ctx context.Context, o op, size int) error {
	if err := s.usable(); err != nil {
		return err
	}
	r := &request{op: o, size: size, done: make(chan struct{})}
	if err := s.q.put(ctx, r); err != nil {
		return err
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
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
		st.prevVer = st.rec.ver
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
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v = append([]byte(nil), v...)
	closer.Close()
	return v, true, nil
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

// commitLoop is the committer goroutine: it takes whatever is queued (up
// to MaxBatchBytes), applies it into one Pebble batch, commits with one
// WAL sync, publishes, and answers every request. Requests arriving during
// a sync form the next batch; an idle store commits at once.
func (s *Store) commitLoop() {
	defer s.wg.Done()
	bc := &batchCtx{dedupe: make(map[dedupeID]Ack), staged: make(map[string][]byte)}
	var reqs []*request
	for {
		var ok bool
		reqs, ok = s.q.take(reqs[:0], s.opts.MaxBatchBytes)
		if !ok {
			return
		}
		err := s.commitBatch(bc, reqs)
		for i, r := range reqs {
			r.err = err
			close(r.done)
			reqs[i] = nil
		}
	}
}

// commitBatch applies reqs and commits them durably, or returns why not.
func (s *Store) commitBatch(bc *batchCtx, reqs []*request) (err error) {
	if err := s.failure(); err != nil {
		return err
	}
	start := time.Now()
	bc.b = s.db.NewBatch()
	defer func() {
		bc.b.Close()
		bc.b = nil
		for _, st := range bc.dirty {
			st.inBatch, st.bumped, st.removed = false, false, st.removed[:0]
		}
		bc.dirty = bc.dirty[:0]
		bc.nmsg = 0
		clear(bc.dedupe)
		clear(bc.staged)
	}()
	bc.ver = s.ver + 1
	bc.now = s.opts.Now().UnixMicro()
	size := 0
	for _, r := range reqs {
		size += r.size
		if err := r.op.apply(s, bc); err != nil {
			s.fail(err)
			return s.failure()
		}
	}
	if bc.b.Empty() && len(bc.dirty) == 0 {
		return nil // nothing to write: rejections and duplicates only
	}
	if err := s.finishChats(bc); err != nil {
		s.fail(err)
		return s.failure()
	}
	bc.b.Set(keyVersion, binary.AppendUvarint(bc.key[:0], bc.ver), nil)
	if err := commitSync(bc.b); err != nil {
		s.m.commitErrors.Inc()
		s.fail(fmt.Errorf("commit: %w", err))
		return s.failure()
	}
	stats := bc.b.CommitStats()
	s.ver = bc.ver
	s.setView()
	for _, st := range bc.dirty {
		st.publish()
	}
	s.durVer.Store(bc.ver)
	s.m.commits.Inc()
	s.m.batchMessages.Update(float64(bc.nmsg))
	s.m.batchBytes.Update(float64(size))
	s.m.syncSeconds.Update(stats.CommitWaitDuration.Seconds())
	s.m.commitSeconds.Update(time.Since(start).Seconds())
	{
		s.mu.Lock()
		s.evictLocked(s.opts.CacheChats)
		s.mu.Unlock()
	}
	return nil
}

// finishChats writes the record of every chat the batch changed and moves
// the dialog entries of bumped chats' push members to the new version.
func (s *Store) finishChats(bc *batchCtx) error {
	for _, st := range bc.dirty {
		if st.bumped {
			if err := s.loadPush(st); err != nil {
				return err
			}
			st.rec.ver = bc.ver
			if st.prevVer != 0 {
				for _, u := range st.removed {
					bc.b.Delete(s.userKey(bc.key[:0], tDialog, u, st.prevVer, uint64(st.id)), nil)
				}
				for _, u := range st.push {
					bc.b.Delete(s.userKey(bc.key[:0], tDialog, u, st.prevVer, uint64(st.id)), nil)
				}
			}
			for _, u := range st.push {
				bc.b.Set(s.userKey(bc.key[:0], tDialog, u, bc.ver, uint64(st.id)), nil, nil)
			}
		}
		bc.val = st.rec.appendTo(bc.val[:0])
		bc.b.Set(s.chatKey(bc.key[:0], tChat, st.id), bc.val, nil)
	}
	return nil
}

// commitSync commits b with a WAL sync. Pebble reports a failed WAL write
// or sync through Logger.Fatalf, which pebbleLogger turns into a panic after
// the commit has returned; it is recovered here into the error that fails
// the store.
func commitSync(b *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pebble: %v", r)
		}
	}()
	return b.Commit(pebble.Sync)
}
