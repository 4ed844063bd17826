package storage

import (
	"bytes"
	"fmt"
)

// MaxReadLimit caps the records one read returns.
const MaxReadLimit = 100_000

// ReadRange calls fn for the records of chat with seqs from from on, in
// seq order, at most limit of them, and returns the chat's durable state
// at the time of the read. Reads start at the retained floor (a from below
// it starts there) and stop at the last durable seq, so they never see a
// message before its ack, nor a hole. The Record and its Body are valid
// only during fn; an error from fn stops the read and is returned.
func (s *Store) ReadRange(chat ChatID, from uint64, limit int, fn func(*Record) error) (Chat, error) {
	if limit <= 0 || limit > MaxReadLimit {
		return Chat{}, fmt.Errorf("storage: read limit %d: %w", limit, ErrBadRange)
	}
	v, c, err := s.viewChat(chat)
	if err != nil {
		return Chat{}, err
	}
	defer v.release()
	from = max(from, c.Floor, 1)
	if from > c.LastSeq {
		return c, nil
	}
	end := c.LastSeq
	if uint64(limit) <= end-from {
		end = from + uint64(limit) - 1
	}
	return c, s.scan(v, chat, from, end, fn)
}

// viewChat acquires the current view and reads chat's record from it, so
// that the chat's floor and last seq agree with the log the view holds.
// The caller releases the view.
func (s *Store) viewChat(chat ChatID) (*view, Chat, error) {
	if chat == 0 {
		return nil, Chat{}, ErrBadID
	}
	v, err := s.acquire()
	if err != nil {
		return nil, Chat{}, err
	}
	cv, found, err := v.get(s.chatKey(nil, tChat, chat))
	if err == nil && !found {
		err = ErrUnknownChat
	}
	var rec chatRecord
	if err == nil {
		if err = rec.decode(cv); err != nil {
			err = fmt.Errorf("storage: chat %d: %w", chat, err)
		}
	}
	if err != nil {
		v.release()
		return nil, Chat{}, err
	}
	return v, Chat{
		ID: chat, Kind: rec.kind, Title: rec.title, Creator: rec.creator, Created: rec.created,
		LastSeq: rec.lastSeq, Floor: rec.floor, LastTime: rec.lastTime, Version: rec.ver, Members: rec.members,
	}, nil
}

// ReadLatest calls fn for the newest n records of chat, oldest first.
func (s *Store) ReadLatest(chat ChatID, n int, fn func(*Record) error) (Chat, error) {
	if n <= 0 || n > MaxReadLimit {
		return Chat{}, fmt.Errorf("storage: read limit %d: %w", n, ErrBadRange)
	}
	v, c, err := s.viewChat(chat)
	if err != nil {
		return Chat{}, err
	}
	v.release()
	last := c.LastSeq
	from := uint64(1)
	if last > uint64(n) {
		from = last - uint64(n) + 1
	}
	return s.ReadRange(chat, from, n, fn)
}

// Get returns a copy of the record at seq, or ErrNoTarget.
func (s *Store) Get(chat ChatID, seq uint64) (Record, error) {
	var out Record
	found := false
	_, err := s.ReadRange(chat, seq, 1, func(r *Record) error {
		if r.Seq == seq {
			out, found = *r, true
			out.Body = bytes.Clone(r.Body)
		}
		return nil
	})
	if err != nil {
		return Record{}, err
	}
	if !found {
		return Record{}, ErrNoTarget
	}
	return out, nil
}

// readPool reuses the iterators' decode scratch.
type readScratch struct {
	rec  Record
	body []byte
	ov   overlay
}

// scan iterates log records [from, end] merged with their overlays.
func (s *Store) scan(v *view, chat ChatID, from, end uint64, fn func(*Record) error) error {
	var kb [4][32]byte
	it, err := v.newIter(s.logKey(kb[0][:0], chat, from), s.logKey(kb[1][:0], chat, end+1))
	if err != nil {
		return err
	}
	defer it.Close()
	oit, err := v.newIter(s.chatKey(kb[2][:0], tOverlay, chat, from), s.chatKey(kb[3][:0], tOverlay, chat, end+1))
	if err != nil {
		return err
	}
	defer oit.Close()
	ovalid := oit.First()

	var sc readScratch
	r := &sc.rec
	for valid := it.First(); valid; valid = it.Next() {
		*r = Record{Chat: chat, Seq: lastU64(it.Key()), Reactions: r.Reactions[:0]}
		codec, enc, err := decodeRecordHeader(it.Value(), r)
		if err != nil {
			return fmt.Errorf("storage: chat %d seq %d: %w", chat, r.Seq, err)
		}
		for ovalid && lastU64(oit.Key()) < r.Seq {
			ovalid = oit.Next()
		}
		if ovalid && lastU64(oit.Key()) == r.Seq {
			if err := sc.ov.decode(oit.Value()); err != nil {
				return fmt.Errorf("storage: chat %d overlay %d: %w", chat, r.Seq, err)
			}
			r.Edited, r.Deleted, r.Reactions = sc.ov.edited, sc.ov.deleted, sc.ov.reactions
			switch {
			case r.Deleted:
				enc, codec = nil, codecNone
			case r.Edited != 0:
				enc, codec = sc.ov.body, sc.ov.codec
			}
		}
		if codec == codecNone {
			r.Body = enc
		} else {
			sc.body, err = s.codec.appendDecoded(sc.body[:0], enc, codec)
			if err != nil {
				return fmt.Errorf("storage: chat %d seq %d body: %w", chat, r.Seq, err)
			}
			r.Body = sc.body
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	return oit.Error()
}
