package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
)

// Message is one message to append. Edits, deletes and reactions are
// messages too, of kinds MsgEdit, MsgDelete and MsgReaction, pointing at an
// earlier seq through Target.
type Message struct {
	Chat   ChatID
	Sender UserID
	Device DeviceID
	// ClientMsgID is chosen by the sending device, unique per device and
	// chat; a repeat within the dedupe window returns the original Ack.
	ClientMsgID uint64
	Kind        MsgKind
	Target      uint64
	Body        []byte
}

// Ack is the result of appending one message.
type Ack struct {
	Seq uint64
	// Time is the server time in Unix microseconds.
	Time int64
	// Duplicate reports that the message was appended before; Seq and Time
	// are the original ones and nothing was written.
	Duplicate bool
	// Err is why this message was rejected: ErrUnknownChat, ErrNotMember
	// (the sender is not in the chat), ErrNotAllowed (a subscriber posting
	// in a channel, or an edit or delete of another's message),
	// ErrNoTarget or ErrTooManyReactions. Nothing of it was written.
	Err error
}

// Append appends msgs, each to its chat's log, and returns one Ack per
// message once the WAL sync that covers them has completed: an Ack without
// Err is durable. Input that is malformed in itself (bad ids, kinds, sizes)
// rejects the whole call and writes nothing; rejections that depend on the
// store's state are per message. Concurrent calls share group commits.
func (s *Store) Append(ctx context.Context, msgs []Message) ([]Ack, error) {
	op, err := s.appendOp(ctx, msgs)
	if op == nil {
		return nil, err
	}
	acks := slices.Clone(op.acks)
	op.release()
	return acks, nil
}

// AppendOne is Append of one message, returning its Ack.
func (s *Store) AppendOne(ctx context.Context, m Message) (Ack, error) {
	one := [1]Message{m}
	op, err := s.appendOp(ctx, one[:])
	if op == nil {
		return Ack{}, err
	}
	ack := op.acks[0]
	op.release()
	return ack, nil
}

// appendOp validates msgs, encodes their bodies and waits for the group
// commit that holds them. It returns the done op, for the caller to read
// its acks and release, or nil and why not.
func (s *Store) appendOp(ctx context.Context, msgs []Message) (*appendOp, error) {
	size := 0
	for i := range msgs {
		if err := s.validate(&msgs[i]); err != nil {
			return nil, fmt.Errorf("storage: message %d: %w", i, err)
		}
		size += len(msgs[i].Body)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	if size > s.opts.MaxBatchBytes {
		return nil, fmt.Errorf("storage: append of %d bytes over %d: %w", size, s.opts.MaxBatchBytes, ErrTooLarge)
	}
	op := appendOpPool.Get().(*appendOp)
	op.msgs = append(op.msgs[:0], msgs...) // the committer never touches the caller's slice
	op.acks = append(op.acks[:0], make([]Ack, len(msgs))...)
	for i := range msgs {
		var codec byte
		op.buf, codec = s.codec.appendEncoded(op.buf, msgs[i].Body)
		op.codecs = append(op.codecs, codec)
		op.ends = append(op.ends, len(op.buf))
	}
	abandoned, err := s.submitOwned(ctx, op, size)
	if err != nil {
		if !abandoned {
			op.release()
		}
		return nil, err
	}
	return op, nil
}

// validate checks what can be checked without the store's state.
func (s *Store) validate(m *Message) error {
	switch {
	case m.Chat == 0, m.Sender == 0, m.Device == 0, m.ClientMsgID == 0:
		return ErrBadID
	case !m.Kind.valid():
		return ErrBadKind
	case len(m.Body) > s.opts.MaxBodyBytes:
		return ErrTooLarge
	}
	switch m.Kind {
	case MsgEdit:
		if m.Target == 0 {
			return ErrBadID
		}
		if len(m.Body) == 0 {
			return ErrEmptyBody
		}
	case MsgDelete:
		if m.Target == 0 {
			return ErrBadID
		}
		if len(m.Body) != 0 {
			return fmt.Errorf("delete with a body: %w", ErrBadKind)
		}
	case MsgReaction:
		if m.Target == 0 {
			return ErrBadID
		}
		if len(m.Body) > maxEmojiBytes || !utf8.Valid(m.Body) {
			return fmt.Errorf("reaction of %d bytes: %w", len(m.Body), ErrTooLarge)
		}
	default:
		if m.Target != 0 {
			return ErrBadID
		}
		if len(m.Body) == 0 {
			return ErrEmptyBody
		}
	}
	return nil
}

// appendOp is an Append in flight. Bodies are encoded by the caller, so
// compression runs on the callers' cores, not the committer's.
type appendOp struct {
	msgs   []Message
	acks   []Ack
	buf    []byte // encoded bodies, back to back
	ends   []int  // end of each body in buf
	codecs []byte
}

var appendOpPool = sync.Pool{New: func() any { return new(appendOp) }}

func (op *appendOp) release() {
	clear(op.msgs) // drop the references to the caller's bodies
	clear(op.acks)
	op.msgs, op.acks = op.msgs[:0], op.acks[:0]
	op.buf, op.ends, op.codecs = op.buf[:0], op.ends[:0], op.codecs[:0]
	if cap(op.buf) > 1<<20 {
		op.buf = nil
	}
	appendOpPool.Put(op)
}

func (op *appendOp) body(i int) []byte {
	start := 0
	if i > 0 {
		start = op.ends[i-1]
	}
	return op.buf[start:op.ends[i]]
}

func (op *appendOp) apply(s *Store, bc *batchCtx) error {
	for i := range op.msgs {
		m := &op.msgs[i]
		st, err := s.state(m.Chat)
		if err != nil {
			if errors.Is(err, ErrUnknownChat) {
				op.acks[i].Err = err
				continue
			}
			return err
		}
		id := dedupeID{chat: m.Chat, user: m.Sender, dev: m.Device, cmid: m.ClientMsgID}
		if a, ok := bc.dedupe[id]; ok {
			op.acks[i] = Ack{Seq: a.Seq, Time: a.Time, Duplicate: true}
			s.m.dedupeHits.Inc()
			continue
		}
		mark, err := s.mark(st, m.Sender, m.Device)
		if err != nil {
			return err
		}
		if m.ClientMsgID <= mark {
			// Possibly a resend: only now look the entry up. Devices that
			// number their messages upwards never take this path for new
			// messages.
			dk := s.dedupeKey(bc.key[:0], m.Chat, m.Sender, m.Device, m.ClientMsgID)
			if seq, t, found, err := s.lookupDedupe(dk, bc.now); err != nil {
				return err
			} else if found {
				op.acks[i] = Ack{Seq: seq, Time: t, Duplicate: true}
				s.m.dedupeHits.Inc()
				continue
			}
		}
		// The broker checked membership; the store holds to it too, so
		// that no race between a removal and a post can let a non-member
		// in: only members post, and in channels only admins and the
		// owner post content (subscribers may react).
		role, err := s.roleOf(bc, st, m.Sender)
		if err != nil {
			return err
		}
		if role == 0 {
			op.acks[i].Err = ErrNotMember
			continue
		}
		if st.kind == ChatChannel && m.Kind.IsContent() && role < RoleAdmin {
			op.acks[i].Err = fmt.Errorf("storage: only admins post in a channel: %w", ErrNotAllowed)
			continue
		}
		if !m.Kind.IsContent() {
			if err := s.applyTargeted(bc, st, m, op.body(i), op.codecs[i]); err != nil {
				if isInputErr(err) {
					op.acks[i].Err = err
					continue
				}
				return err
			}
		}
		seq, t := st.rec.lastSeq+1, max(bc.now, st.rec.lastTime)
		st.rec.lastSeq, st.rec.lastTime = seq, t

		body := op.body(i)
		hdr := appendRecordHeader(bc.val[:0], m, op.codecs[i], t)
		lk := s.logKey(bc.key[:0], m.Chat, seq)
		d := bc.b.SetDeferred(len(lk), len(hdr)+len(body))
		copy(d.Key, lk)
		copy(d.Value[copy(d.Value, hdr):], body)
		d.Finish()

		dk := s.dedupeKey(bc.key[:0], m.Chat, m.Sender, m.Device, m.ClientMsgID)
		bc.b.Set(dk, appendDedupe(bc.val[:0], seq, t), nil)
		if m.ClientMsgID > mark {
			st.marks[senderDev{m.Sender, m.Device}] = m.ClientMsgID
		}
		bc.dedupe[id] = Ack{Seq: seq, Time: t}
		bc.touch(st, true)
		bc.nmsg++
		op.acks[i] = Ack{Seq: seq, Time: t}
		s.m.appends.Inc()
		s.m.appendBytes.Add(len(body))
	}
	return nil
}

// lookupDedupe finds a live dedupe entry: one younger than the window.
func (s *Store) lookupDedupe(key []byte, now int64) (seq uint64, t int64, found bool, err error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("storage: dedupe lookup: %w", err)
	}
	seq, t, err = decodeDedupe(v)
	closer.Close()
	if err != nil {
		return 0, 0, false, fmt.Errorf("storage: dedupe entry %x: %w", key, err)
	}
	if now-t >= s.opts.DedupeWindow.Microseconds() {
		return 0, 0, false, nil
	}
	return seq, t, true, nil
}

// isInputErr reports whether err rejects one message rather than failing
// the store.
func isInputErr(err error) bool {
	return errors.Is(err, ErrNoTarget) || errors.Is(err, ErrNotAllowed) ||
		errors.Is(err, ErrTooManyReactions) || errors.Is(err, ErrNotMember) ||
		errors.Is(err, ErrTooManyChats)
}
