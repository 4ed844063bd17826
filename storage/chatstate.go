package storage

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// chatState is a cached chat. The committer owns rec, push and the batch
// fields; readers use only the immutable fields and the published atomics,
// which never run ahead of what is durable.
type chatState struct {
	id    ChatID
	kind  ChatKind
	title string

	// Owned by the committer goroutine.
	rec        chatRecord // includes changes staged in the current batch
	push       []UserID   // members in push mode
	pushLoaded bool
	// marks holds, per sender device, a client id at least as high as any
	// of its dedupe entries in this chat: a higher id cannot be a resend.
	marks   map[senderDev]uint64
	inBatch bool     // on the current batch's dirty list
	bumped  bool     // the dialog version moves in this batch
	added   []UserID // push members added in this batch
	removed []UserID // push members removed in this batch

	// Published after each durable commit.
	durSeq     atomic.Uint64
	durFloor   atomic.Uint64
	durTime    atomic.Int64
	durVer     atomic.Uint64 // 0 until the creating batch is durable
	durMembers atomic.Uint64
}

// head is the part of a chat's record that readers follow.
type head struct {
	lastSeq, floor, ver, members uint64
	lastTime                     int64
}

func (c *chatRecord) head() head {
	return head{lastSeq: c.lastSeq, floor: c.floor, ver: c.ver, members: c.members, lastTime: c.lastTime}
}

// publish makes a durable head visible to readers.
func (st *chatState) publish(h head) {
	st.durFloor.Store(h.floor)
	st.durTime.Store(h.lastTime)
	st.durMembers.Store(h.members)
	st.durSeq.Store(h.lastSeq)
	st.durVer.Store(h.ver)
}

// state returns the cached state of chat, loading it from the database on
// a miss, or ErrUnknownChat. The load happens under s.mu: a chat missing
// from the cache has no batch in flight, so what Pebble holds for it is
// durable, and the committer cannot start one until the state is cached.
func (s *Store) state(chat ChatID) (*chatState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.chats[chat]; ok {
		return st, nil
	}
	v, closer, err := s.db.Get(s.chatKey(nil, tChat, chat))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrUnknownChat
	}
	if err != nil {
		return nil, fmt.Errorf("storage: load chat %d: %w", chat, err)
	}
	defer closer.Close()
	st := &chatState{id: chat}
	if err := st.rec.decode(v); err != nil {
		return nil, fmt.Errorf("storage: load chat %d: %w", chat, err)
	}
	st.kind, st.title = st.rec.kind, st.rec.title
	st.publish(st.rec.head())
	s.chats[chat] = st
	return st, nil
}

// durableState is state for readers: it hides a chat whose creation is not
// yet durable.
func (s *Store) durableState(chat ChatID) (*chatState, error) {
	if chat == 0 {
		return nil, ErrBadID
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	st, err := s.state(chat)
	if err != nil {
		return nil, err
	}
	if st.durVer.Load() == 0 {
		return nil, ErrUnknownChat
	}
	return st, nil
}

// loadPush fills st.push from the member table. Channels have no push
// members, so their (possibly huge) member lists are never scanned.
func (s *Store) loadPush(st *chatState) error {
	if st.pushLoaded {
		return nil
	}
	st.pushLoaded = true
	if st.kind == ChatChannel {
		return nil
	}
	prefix := s.chatKey(nil, tMember, st.id)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: keyUpper(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	var m memberRecord
	for it.First(); it.Valid(); it.Next() {
		if err := m.decode(it.Value()); err != nil {
			return fmt.Errorf("storage: chat %d member %x: %w", st.id, it.Key(), err)
		}
		if m.mode == modePush {
			st.push = append(st.push, UserID(lastU64(it.Key())))
		}
	}
	return it.Error()
}

// senderDev is a sending device.
type senderDev struct {
	user UserID
	dev  DeviceID
}

// maxMarks caps a chat's cached dedupe marks; past it the cache restarts.
const maxMarks = 4096

// mark returns the dedupe mark of a sender device in st, loading it with
// one seek on the device's first message to the chat since it was cached.
func (s *Store) mark(st *chatState, user UserID, dev DeviceID) (uint64, error) {
	k := senderDev{user, dev}
	if v, ok := st.marks[k]; ok {
		return v, nil
	}
	if st.marks == nil || len(st.marks) >= maxMarks {
		st.marks = make(map[senderDev]uint64)
	}
	var lo, hi [64]byte
	prefix := s.chatKey(lo[:0], tDedupe, st.id, uint64(user), uint64(dev))
	upper := s.chatKey(hi[:0], tDedupe, st.id, uint64(user), uint64(dev)+1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	v := uint64(0)
	if it.Last() {
		v = lastU64(it.Key())
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("storage: dedupe mark: %w", err)
	}
	st.marks[k] = v
	return v, nil
}

// evictLocked drops states while the cache holds more than limit. The
// committer calls it between batches, when Pebble holds nothing for any
// chat that readers may not see.
func (s *Store) evictLocked(limit int) {
	for id := range s.chats {
		if len(s.chats) <= limit {
			return
		}
		delete(s.chats, id)
	}
}
