package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// SweepStats counts what one Sweep removed.
type SweepStats struct {
	Chats    int    // chats that had something removed
	Messages uint64 // log records removed by retention
	Dedupe   uint64 // expired dedupe entries removed
}

// sweepLoop runs Sweep every SweepInterval until Close.
func (s *Store) sweepLoop() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		st, err := s.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.m.sweepErrors.Inc()
			s.opts.Logger.Error("retention sweep", "err", err)
		} else if st.Chats > 0 {
			s.opts.Logger.Info("retention sweep", "chats", st.Chats, "messages", st.Messages, "dedupe", st.Dedupe)
		}
	}
}

// Sweep applies retention to every chat and drops expired dedupe entries.
// Each chat's log loses only a prefix: the floor moves up and the records
// below it go in one range deletion, so reads never see a hole. Dedupe
// entries of a message are dropped with it or when the window passes,
// whichever is first. The sweeper calls it every SweepInterval.
func (s *Store) Sweep(ctx context.Context) (SweepStats, error) {
	var stats SweepStats
	if err := s.usable(); err != nil {
		return stats, err
	}
	for shard := 0; shard < s.opts.Shards; shard++ {
		chats, err := s.shardChats(uint16(shard))
		if err != nil {
			return stats, err
		}
		for _, chat := range chats {
			if err := ctx.Err(); err != nil {
				return stats, err
			}
			swept := false
			for {
				if err := ctx.Err(); err != nil {
					return stats, err
				}
				op, err := s.planSweep(chat)
				if err != nil {
					return stats, err
				}
				if op == nil {
					break
				}
				// Not abandoned to ctx: a sweep the committer took is
				// answered (Close commits what is queued), and its
				// media records must be heard.
				if err := s.submit(context.WithoutCancel(ctx), op, 0); err != nil {
					return stats, err
				}
				if !op.applied {
					break
				}
				swept = true
				s.tellRemoved(op)
				stats.Messages += op.newFloor - op.floor
				stats.Dedupe += uint64(op.expired)
				if !op.full {
					break
				}
			}
			if swept {
				stats.Chats++
			}
		}
	}
	return stats, nil
}

// shardChats lists the chats of a shard from the durable view.
func (s *Store) shardChats(shard uint16) ([]ChatID, error) {
	v, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer v.release()
	lo := appendPrefix(nil, shard, tChat)
	it, err := v.newIter(lo, appendPrefix(nil, shard, tChat+1))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []ChatID
	for valid := it.First(); valid; valid = it.Next() {
		out = append(out, ChatID(lastU64(it.Key())))
	}
	return out, it.Error()
}

// sweepOp moves a chat's floor and dedupe floor, deleting what falls below.
type sweepOp struct {
	chat              ChatID
	floor, newFloor   uint64
	dfloor, newDFloor uint64
	dedupe            [][]byte // dedupe keys of seqs [dfloor, newDFloor)
	dedupeSeqs        []uint64 // the seq each of those keys should point at
	dedupeIDs         []dedupeID
	ret               Retention // the retention the plan applied
	full              bool      // the plan hit SweepBatch; more may follow
	expired           int       // dedupe entries actually removed
	applied           bool

	// Of kind MsgMedia among the records leaving, for Options.Removed:
	// their seqs and original bodies (encoded), read when planning; apply
	// reads their overlays and keeps in removed what it found current,
	// which Sweep decodes off the committer.
	media     []encBody
	mediaSize int
	removed   []encBody
}

// encBody is a record's body as stored: codec and encoded bytes.
type encBody struct {
	seq    uint64
	edited int64
	codec  byte
	enc    []byte
}

// maxSweepMediaBytes bounds the media bodies one sweep op holds for
// Options.Removed; a plan that reaches it stops there and the sweep goes
// on with the next op.
const maxSweepMediaBytes = 8 << 20

// tellRemoved calls Options.Removed with the media records op removed,
// decoded. A body that does not decode is logged and left out: its
// files stay referenced.
func (s *Store) tellRemoved(op *sweepOp) {
	if len(op.removed) == 0 || s.opts.Removed == nil {
		return
	}
	recs := make([]Record, 0, len(op.removed))
	for _, b := range op.removed {
		body, err := s.codec.appendDecoded(nil, b.enc, b.codec)
		if err != nil {
			s.opts.Logger.Error("retention: a removed record's body does not decode; its files stay referenced", "chat", op.chat, "seq", b.seq, "err", err)
			continue
		}
		recs = append(recs, Record{Chat: op.chat, Seq: b.seq, Kind: MsgMedia, Body: body, Edited: b.edited})
	}
	if len(recs) > 0 {
		s.opts.Removed(op.chat, recs)
	}
}

// planSweep reads the chat's durable state and records and returns what
// to delete, or nil when nothing is due.
func (s *Store) planSweep(chat ChatID) (*sweepOp, error) {
	// Plan from the durable view, without loading the chat into the cache:
	// the sweeper visits every chat.
	v, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer v.release()
	cv, found, err := v.get(s.chatKey(nil, tChat, chat))
	if err != nil || !found {
		return nil, err
	}
	var rec chatRecord
	if err := rec.decode(cv); err != nil {
		return nil, fmt.Errorf("storage: chat %d: %w", chat, err)
	}
	now := s.opts.Now().UnixMicro()
	ret := s.retention(&rec)
	target := rec.floor // retention's wish for the new floor
	if ret.MaxCount > 0 && rec.lastSeq >= ret.MaxCount {
		target = max(target, rec.lastSeq-ret.MaxCount+1)
	}
	ageCut := int64(-1 << 63)
	if ret.MaxAge > 0 {
		ageCut = now - ret.MaxAge.Microseconds()
	}
	dedupeCut := now - s.opts.DedupeWindow.Microseconds()

	op := &sweepOp{chat: chat, floor: rec.floor, dfloor: rec.dedupeFloor, ret: ret}
	leaves := func(seq uint64, r *Record) bool { return seq < target || r.Time < ageCut }
	// Dedupe entries go when their window passes or their record leaves.
	newDF, full, err := s.walkLog(v, chat, rec.dedupeFloor, rec.lastSeq, func(seq uint64, r *Record, _ byte, _ []byte) bool {
		if !leaves(seq, r) && r.Time >= dedupeCut {
			return false
		}
		op.dedupe = append(op.dedupe, s.dedupeKey(nil, chat, r.Sender, r.Device, r.ClientMsgID))
		op.dedupeSeqs = append(op.dedupeSeqs, seq)
		op.dedupeIDs = append(op.dedupeIDs, dedupeID{chat: chat, user: r.Sender, dev: r.Device, cmid: r.ClientMsgID})
		return true
	})
	if err != nil {
		return nil, err
	}
	// Records leave the log only with or after their dedupe entries.
	budget := false // the media bodies held reached maxSweepMediaBytes
	newFloor, full2, err := s.walkLog(v, chat, rec.floor, min(rec.lastSeq, newDF-1), func(seq uint64, r *Record, codec byte, enc []byte) bool {
		if !leaves(seq, r) {
			return false
		}
		if r.Kind == MsgMedia && s.opts.Removed != nil {
			if op.mediaSize+len(enc) > maxSweepMediaBytes && len(op.media) > 0 {
				budget = true
				return false
			}
			op.media = append(op.media, encBody{seq: seq, codec: codec, enc: bytes.Clone(enc)})
			op.mediaSize += len(enc)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	op.full = full || full2 || budget
	op.newFloor, op.newDFloor = newFloor, newDF
	if op.newFloor == op.floor && op.newDFloor == op.dfloor {
		return nil, nil
	}
	return op, nil
}

func (op *sweepOp) apply(s *Store, bc *batchCtx) error {
	st, err := s.state(op.chat)
	if errors.Is(err, ErrUnknownChat) {
		return nil
	} else if err != nil {
		return err
	}
	if st.rec.floor != op.floor || st.rec.dedupeFloor != op.dfloor || op.newFloor > st.rec.lastSeq+1 ||
		s.retention(&st.rec) != op.ret {
		return nil // raced with another change; the next sweep replans
	}
	expired := 0
	for i, k := range op.dedupe {
		// A client id reused after its window points at a newer record
		// now (perhaps one appended in this very batch); that entry stays.
		if _, ok := bc.dedupe[op.dedupeIDs[i]]; ok {
			continue
		}
		v, found, err := s.get(bc, k)
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		if seq, _, err := decodeDedupe(v); err != nil || seq != op.dedupeSeqs[i] {
			continue
		}
		bc.del(k)
		expired++
	}
	if op.newFloor > op.floor {
		del := func(table byte) {
			lo := s.chatKey(nil, table, op.chat, op.floor)
			hi := s.chatKey(nil, table, op.chat, op.newFloor)
			bc.b.DeleteRange(lo, hi, nil)
		}
		// What the media records carry as they leave: their latest
		// revision, read now (an edit may have committed since the plan,
		// or be staged in this batch).
		for _, b := range op.media {
			v, found, err := s.get(bc, s.chatKey(nil, tOverlay, op.chat, b.seq))
			if err != nil {
				return err
			}
			if found {
				var ov overlay
				if err := ov.decode(v); err != nil {
					s.opts.Logger.Error("retention: a removed record's overlay does not decode; its files stay referenced", "chat", op.chat, "seq", b.seq, "err", err)
					continue
				}
				if ov.deleted {
					continue // its delete gave its files back
				}
				if ov.edited != 0 {
					b.edited, b.codec, b.enc = ov.edited, ov.codec, bytes.Clone(ov.body)
				}
			}
			op.removed = append(op.removed, b)
		}
		del(tLog)
		del(tOverlay)
		del(tReaction)
		s.m.retentionDeleted.Add(int(op.newFloor - op.floor))
	}
	s.m.dedupeExpired.Add(expired)
	op.expired = expired
	st.rec.floor, st.rec.dedupeFloor = op.newFloor, op.newDFloor
	bc.touch(st, false)
	op.applied = true
	return nil
}

// walkLog visits chat's records from seq from to last in order while keep
// returns true, at most SweepBatch of them, and returns the first seq not
// kept and whether the batch cap stopped the walk.
func (s *Store) walkLog(v *view, chat ChatID, from, last uint64, keep func(seq uint64, r *Record, codec byte, enc []byte) bool) (uint64, bool, error) {
	if from > last {
		return from, false, nil
	}
	it, err := v.newIter(s.logKey(nil, chat, from), s.logKey(nil, chat, last+1))
	if err != nil {
		return from, false, err
	}
	defer it.Close()
	next, n := from, 0
	var r Record
	for valid := it.First(); valid; valid = it.Next() {
		if n == s.opts.SweepBatch {
			return next, true, nil
		}
		seq := lastU64(it.Key())
		if seq != next {
			break // a hole cannot happen above the floor; stop rather than skip
		}
		codec, enc, err := decodeRecordHeader(it.Value(), &r)
		if err != nil {
			return from, false, fmt.Errorf("storage: chat %d seq %d: %w", chat, seq, err)
		}
		if !keep(seq, &r, codec, enc) {
			break
		}
		next, n = seq+1, n+1
	}
	return next, false, it.Error()
}
