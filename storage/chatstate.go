package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// chatState is a cached chat. Only the committer uses it (readers read
// the durable view); the cache exists so that the committer assigns seqs
// and moves dialog entries without reading Pebble.
type chatState struct {
	id   ChatID
	kind ChatKind

	// Owned by the committer goroutine.
	rec        chatRecord // includes changes staged in the current batch
	push       []UserID   // members in push mode
	pushLoaded bool
	// marks holds, per sender device, a client id at least as high as any
	// of its dedupe entries in this chat: a higher id cannot be a resend.
	marks map[senderDev]uint64
	// roles caches the roles of recent senders (0: not a member), so that
	// the membership check of a post reads no key.
	roles   map[UserID]Role
	inBatch bool     // on the current batch's dirty list
	bumped  bool     // the dialog version moves in this batch
	added   []UserID // push members added in this batch
	removed []UserID // push members removed in this batch

	// durSeq is the last seq known durable: edits and markers may point
	// only up to it.
	durSeq uint64
}

// state returns the cached state of chat, loading it from the database on
// a miss, or ErrUnknownChat. Only the committer calls it, between batches
// or while building one, so a chat missing from the cache has nothing in
// Pebble that is not durable (eviction stops after a failed sync).
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
	st.kind = st.rec.kind
	st.durSeq = st.rec.lastSeq
	s.chats[chat] = st
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

// maxRoles caps a chat's cached sender roles; past it the cache restarts.
const maxRoles = 4096

// roleOf returns user's role in st's chat, or 0 when user is not a member,
// through the values staged in this batch.
func (s *Store) roleOf(bc *batchCtx, st *chatState, user UserID) (Role, error) {
	if st.kind == ChatDirect {
		switch user {
		case st.rec.creator:
			return RoleOwner, nil
		case st.rec.peer:
			return RoleMember, nil
		}
		return 0, nil
	}
	if r, ok := st.roles[user]; ok {
		return r, nil
	}
	r, err := s.memberRole(bc, st.id, user)
	if errors.Is(err, ErrNotMember) {
		r, err = 0, nil
	}
	if err != nil {
		return 0, err
	}
	if st.roles == nil || len(st.roles) >= maxRoles {
		st.roles = make(map[UserID]Role)
	}
	st.roles[user] = r
	return r, nil
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
