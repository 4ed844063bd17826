package storage

import (
	"context"
	"errors"
	"fmt"
)

// SetMarkers advances user's read markers in chat: the last seq delivered
// to and the last seq read by any of the user's devices. Markers never move
// back and never pass the chat's last seq; Delivered is at least Read. An
// advanced Read marker changes the chat's dialog version, so the user's
// other devices and the other members see it on their next sync.
func (s *Store) SetMarkers(ctx context.Context, chat ChatID, user UserID, delivered, read uint64) (Member, error) {
	if chat == 0 || user == 0 {
		return Member{}, ErrBadID
	}
	op := &markersOp{chat: chat, user: user, delivered: delivered, read: read}
	if err := s.submit(ctx, op, 0); err != nil {
		return Member{}, err
	}
	return op.out, op.err
}

type markersOp struct {
	chat            ChatID
	user            UserID
	delivered, read uint64
	out             Member
	err             error
}

func (op *markersOp) apply(s *Store, bc *batchCtx) error {
	st, rejected, err := s.opState(op.chat)
	if rejected != nil || err != nil {
		op.err = rejected
		return err
	}
	mk := s.chatKey(nil, tMember, op.chat, uint64(op.user))
	v, found, err := s.get(bc, mk)
	if err != nil {
		return err
	}
	if !found {
		op.err = ErrNotMember
		return nil
	}
	var m memberRecord
	if err := m.decode(v); err != nil {
		return fmt.Errorf("storage: member %x: %w", mk, err)
	}
	last := st.durSeq
	read := max(m.read, min(op.read, last))
	delivered := max(m.delivered, min(op.delivered, last), read)
	op.out = Member{User: op.user, Role: m.role, Joined: m.joined, Delivered: delivered, Read: read}
	if read == m.read && delivered == m.delivered {
		return nil
	}
	bumped := read != m.read
	m.read, m.delivered = read, delivered
	bc.set(mk, m.appendTo(nil))
	bc.touch(st, bumped)
	return nil
}

// SetRetention sets chat's retention; nil restores the default of its kind.
func (s *Store) SetRetention(ctx context.Context, chat ChatID, r *Retention) error {
	if chat == 0 {
		return ErrBadID
	}
	if r != nil && r.MaxAge < 0 {
		return fmt.Errorf("storage: negative retention age: %w", ErrBadRange)
	}
	op := &retentionOp{chat: chat, r: r}
	if err := s.submit(ctx, op, 0); err != nil {
		return err
	}
	return op.err
}

type retentionOp struct {
	chat ChatID
	r    *Retention
	err  error
}

func (op *retentionOp) apply(s *Store, bc *batchCtx) error {
	st, rejected, err := s.opState(op.chat)
	if rejected != nil || err != nil {
		op.err = rejected
		return err
	}
	st.rec.hasRetention = op.r != nil
	st.rec.retention = Retention{}
	if op.r != nil {
		st.rec.retention = *op.r
	}
	bc.touch(st, false)
	return nil
}

// retention returns the chat's effective retention.
func (s *Store) retention(rec *chatRecord) Retention {
	if rec.hasRetention {
		return rec.retention
	}
	return s.opts.Retention[rec.kind]
}

// opState is state for an op: an unknown chat is the op's rejection
// (rejected), any other error fails the batch (err).
func (s *Store) opState(chat ChatID) (st *chatState, rejected, err error) {
	st, err = s.state(chat)
	if errors.Is(err, ErrUnknownChat) {
		return nil, err, nil
	}
	return st, nil, err
}

// SetTitle sets the title of a group or channel (at most 256 bytes).
// Direct chats have none: ErrNotAllowed.
func (s *Store) SetTitle(ctx context.Context, chat ChatID, title string) error {
	if chat == 0 {
		return ErrBadID
	}
	if len(title) > maxTitleBytes {
		return fmt.Errorf("storage: title of %d bytes: %w", len(title), ErrTooLarge)
	}
	op := &titleOp{chat: chat, title: title}
	if err := s.submit(ctx, op, 0); err != nil {
		return err
	}
	return op.err
}

type titleOp struct {
	chat  ChatID
	title string
	err   error
}

func (op *titleOp) apply(s *Store, bc *batchCtx) error {
	st, rejected, err := s.opState(op.chat)
	if rejected != nil || err != nil {
		op.err = rejected
		return err
	}
	if st.rec.kind == ChatDirect {
		op.err = fmt.Errorf("storage: a direct chat has no title: %w", ErrNotAllowed)
		return nil
	}
	st.rec.title = op.title
	bc.touch(st, false)
	return nil
}
