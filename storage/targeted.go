package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// applyTargeted validates an edit, delete or reaction against its target
// and stages the target's new overlay. It stages nothing when it returns an
// error. Targets must be durable (acknowledged) messages.
func (s *Store) applyTargeted(bc *batchCtx, st *chatState, m *Message, enc []byte, codec byte) error {
	if m.Target < st.rec.floor || m.Target > st.durSeq {
		return ErrNoTarget
	}
	var target Record
	if err := s.readHeader(s.logKey(bc.key[:0], m.Chat, m.Target), &target); err != nil {
		return err
	}
	if !target.Kind.IsContent() {
		return ErrNoTarget
	}
	ok := s.chatKey(nil, tOverlay, m.Chat, m.Target)
	var ov overlay
	if v, found, err := s.get(bc, ok); err != nil {
		return err
	} else if found {
		if err := ov.decode(v); err != nil {
			return fmt.Errorf("storage: overlay %x: %w", ok, err)
		}
	}
	if ov.deleted {
		return ErrNoTarget
	}
	switch m.Kind {
	case MsgEdit:
		// A call record or a service note (a recording, a live stream) is
		// the node's account, written on a user's behalf, not that user's
		// words: no one rewrites it.
		if target.Sender != m.Sender || target.Kind == MsgCall || target.Kind == MsgService {
			return ErrNotAllowed
		}
		ov.edited, ov.codec, ov.body = bc.now, codec, enc
	case MsgDelete:
		if target.Sender != m.Sender {
			role, err := s.memberRole(bc, m.Chat, m.Sender)
			if err != nil {
				return err
			}
			if role < RoleAdmin {
				return ErrNotAllowed
			}
		}
		ov = overlay{edited: ov.edited, deleted: true, codec: codecNone}
	case MsgReaction:
		rk := s.chatKey(nil, tReaction, m.Chat, m.Target, uint64(m.Sender))
		old, had, err := s.get(bc, rk)
		if err != nil {
			return err
		}
		if had {
			ov.reactions = addReaction(ov.reactions, string(old), -1)
		}
		if len(enc) > 0 {
			// Reactions are under compressMin, so enc is the raw emoji.
			if !hasReaction(ov.reactions, string(enc)) && len(ov.reactions) >= maxReactionKinds {
				return ErrTooManyReactions
			}
			ov.reactions = addReaction(ov.reactions, string(enc), 1)
			bc.set(rk, enc)
		} else if had {
			bc.del(rk)
		}
	}
	bc.set(ok, ov.appendTo(nil))
	return nil
}

// readHeader decodes the header of the record at key into r.
func (s *Store) readHeader(key []byte, r *Record) error {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNoTarget
	}
	if err != nil {
		return fmt.Errorf("storage: read %x: %w", key, err)
	}
	defer closer.Close()
	if _, _, err := decodeRecordHeader(v, r); err != nil {
		return fmt.Errorf("storage: record %x: %w", key, err)
	}
	return nil
}

// memberRole returns user's role in chat, or ErrNotMember.
func (s *Store) memberRole(bc *batchCtx, chat ChatID, user UserID) (Role, error) {
	v, found, err := s.get(bc, s.chatKey(nil, tMember, chat, uint64(user)))
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, ErrNotMember
	}
	var m memberRecord
	if err := m.decode(v); err != nil {
		return 0, fmt.Errorf("storage: member %d of chat %d: %w", user, chat, err)
	}
	return m.role, nil
}

func hasReaction(rs []Reaction, emoji string) bool {
	for _, r := range rs {
		if r.Emoji == emoji {
			return true
		}
	}
	return false
}

// addReaction adds delta to emoji's count, dropping it at zero.
func addReaction(rs []Reaction, emoji string, delta int) []Reaction {
	for i := range rs {
		if rs[i].Emoji == emoji {
			n := int(rs[i].Count) + delta
			if n <= 0 {
				return append(rs[:i], rs[i+1:]...)
			}
			rs[i].Count = uint32(n)
			return rs
		}
	}
	if delta > 0 {
		rs = append(rs, Reaction{Emoji: emoji, Count: uint32(delta)})
	}
	return rs
}
