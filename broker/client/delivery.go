package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"
)

// fetcher reads a node's log for the delivery: a session, or a fake in
// tests.
type fetcher interface {
	history(ctx context.Context, chat, from uint64, limit int) (HistoryPage, error)
	sync(ctx context.Context, since uint64, cursor []byte) (SyncPage, error)
}

// delivery turns pushes, own acks and syncs into each chat's messages in
// seq order, each once. Only the client's delivery goroutine calls it; pos
// is its record of what the app holds.
type delivery struct {
	pos   *position
	page  int
	log   *slog.Logger
	emit  func(ctx context.Context, ev Event) error
	stats *counters

	// hold is how long a message past a gap waits for the messages
	// before it to arrive before they are fetched from history; 0
	// fetches at once. now is the clock (time.Now when nil).
	hold time.Duration
	now  func() time.Time
	// parked holds, per chat, the messages past a gap, in seq order.
	parked map[uint64]*parkedChat
}

// parkedChat is one chat's messages waiting behind a gap.
type parkedChat struct {
	msgs []Message // seq order, no two alike, all past the held seq + 1
	due  time.Time // when the gap is fetched from history
}

// maxParked caps one chat's parked messages; past it the gap is fetched
// at once.
const maxParked = 1024

// counters are the client's statistics (see Stats).
type counters struct {
	reconnects, resyncs, delivered, duplicates, gaps, expired atomic.Uint64
	droppedPushes                                             atomic.Uint64
}

// message delivers m unless the app holds it already. A message past a
// gap is parked for up to hold: pushes and the acks of the client's own
// sends travel on different streams and overtake each other, so the gap
// usually fills by itself within a millisecond. When it does not, expire
// fetches it from history; with no hold that happens at once.
func (d *delivery) message(ctx context.Context, f fetcher, m Message) error {
	if m.Chat == 0 || m.Seq == 0 {
		return nil
	}
	held := d.pos.get(m.Chat)
	switch {
	case m.Seq <= held:
		d.stats.duplicates.Add(1)
		return nil
	case m.Seq > held+1 && d.hold > 0:
		if d.park(m) {
			return nil
		}
		// Too many parked behind this gap: fill it now, then take m
		// again (nothing is parked any more, so this recurses once).
		if err := d.fill(ctx, f, m.Chat); err != nil {
			return err
		}
		return d.message(ctx, f, m)
	case m.Seq > held+1:
		d.stats.gaps.Add(1)
		if err := d.catchUp(ctx, f, m.Chat, m.Seq-1); err != nil {
			return err
		}
		if m.Seq <= d.pos.get(m.Chat) {
			return nil // history brought it too
		}
	}
	if err := d.deliver(ctx, m); err != nil {
		return err
	}
	return d.flush(ctx, m.Chat)
}

// park adds m to its chat's parked messages, or reports that the chat has
// too many.
func (d *delivery) park(m Message) bool {
	if d.parked == nil {
		d.parked = make(map[uint64]*parkedChat)
	}
	p := d.parked[m.Chat]
	if p == nil {
		p = &parkedChat{due: d.clock().Add(d.hold)}
		d.parked[m.Chat] = p
	}
	i, found := slices.BinarySearchFunc(p.msgs, m.Seq, func(a Message, seq uint64) int { return cmp.Compare(a.Seq, seq) })
	if found {
		d.stats.duplicates.Add(1)
		return true
	}
	if len(p.msgs) >= maxParked {
		return false
	}
	p.msgs = slices.Insert(p.msgs, i, m)
	return true
}

func (d *delivery) clock() time.Time {
	if d.now != nil {
		return d.now()
	}
	return time.Now()
}

// flush delivers chat's parked messages that no longer wait behind a
// gap, dropping those the app holds already. When some go out and others
// still wait, behind a later gap, their wait starts again.
func (d *delivery) flush(ctx context.Context, chat uint64) error {
	p := d.parked[chat]
	if p == nil {
		return nil
	}
	moved := false
	for len(p.msgs) > 0 {
		m, held := p.msgs[0], d.pos.get(chat)
		if m.Seq > held+1 {
			if moved {
				p.due = d.clock().Add(d.hold)
			}
			return nil
		}
		p.msgs = p.msgs[1:]
		if m.Seq <= held {
			d.stats.duplicates.Add(1)
			continue
		}
		if err := d.deliver(ctx, m); err != nil {
			return err
		}
		moved = true
	}
	delete(d.parked, chat)
	return nil
}

// fill fetches the gaps before chat's parked messages from history, one
// gap at a time (never what is parked), and delivers each run of parked
// messages as the gap before it closes. What waits behind a gap history
// cannot fill (a chat the user left, say) goes out in order rather than
// waiting for ever, as an unparked message would.
func (d *delivery) fill(ctx context.Context, f fetcher, chat uint64) error {
	for {
		p := d.parked[chat]
		if p == nil || len(p.msgs) == 0 {
			delete(d.parked, chat)
			return nil
		}
		held := d.pos.get(chat)
		d.stats.gaps.Add(1)
		if err := d.catchUp(ctx, f, chat, p.msgs[0].Seq-1); err != nil {
			return err
		}
		if d.pos.get(chat) > held {
			continue // catchUp flushed what the gap held back
		}
		delete(d.parked, chat)
		for _, m := range p.msgs {
			if m.Seq > d.pos.get(chat) {
				if err := d.deliver(ctx, m); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// nextDue returns when the first parked gap is due for a history fetch,
// or the zero time when nothing is parked.
func (d *delivery) nextDue() time.Time {
	var first time.Time
	for _, p := range d.parked {
		if first.IsZero() || p.due.Before(first) {
			first = p.due
		}
	}
	return first
}

// expire fills every parked gap that is due.
func (d *delivery) expire(ctx context.Context, f fetcher) error {
	now := d.clock()
	for chat, p := range d.parked {
		if p.due.After(now) {
			continue
		}
		if err := d.fill(ctx, f, chat); err != nil {
			return err
		}
	}
	return nil
}

// deliver hands m to the app and records it as held.
func (d *delivery) deliver(ctx context.Context, m Message) error {
	if err := d.emit(ctx, Event{Kind: EventMessage, Message: m}); err != nil {
		return err
	}
	d.pos.hold(m.Chat, m.Seq)
	d.stats.delivered.Add(1)
	return nil
}

// catchUp delivers chat's messages from the one after what the app holds
// up to seq upTo, from history. History is the authority: messages below
// the chat's retention floor are skipped (and counted), and it never waits
// for more than the log's last seq. A chat the user is no longer in, or
// that is gone, is skipped. A page too large for one frame is asked for
// again in halves.
func (d *delivery) catchUp(ctx context.Context, f fetcher, chat, upTo uint64) error {
	page := d.page
	for {
		held := d.pos.get(chat)
		if held >= upTo {
			return d.flush(ctx, chat)
		}
		p, err := f.history(ctx, chat, held+1, int(min(upTo-held, uint64(page))))
		switch {
		case errors.Is(err, ErrTooLarge) && page > 1:
			page /= 2 // large messages: the page did not fit in a frame
			continue
		case errors.Is(err, ErrNotMember) || errors.Is(err, ErrUnknownChat):
			d.log.Debug("client: not catching up a chat", "chat", chat, "err", err)
			return nil
		case err != nil:
			return err
		}
		if p.Floor > held+1 {
			d.stats.expired.Add(p.Floor - held - 1)
			d.pos.hold(chat, p.Floor-1)
		}
		for _, m := range p.Messages {
			if m.Seq <= d.pos.get(chat) {
				continue
			}
			if err := d.deliver(ctx, m); err != nil {
				return err
			}
		}
		upTo = min(upTo, p.LastSeq)
		if d.pos.get(chat) == held {
			if held < upTo {
				d.log.Warn("client: history made no progress", "chat", chat, "held", held, "last", upTo)
			}
			return d.flush(ctx, chat)
		}
	}
}

// resync catches up every chat that changed since the sync point, then
// moves the sync point: the algorithm of docs/protocol.md.
func (d *delivery) resync(ctx context.Context, f fetcher) error {
	return d.listChanged(ctx, f, func(dl Dialog) error {
		if dl.LastSeq > d.pos.get(dl.Chat) {
			return d.catchUp(ctx, f, dl.Chat, dl.LastSeq)
		}
		return nil
	})
}

// markAll records every changed chat as held up to its last seq without
// delivering anything (Options.FromNow).
func (d *delivery) markAll(ctx context.Context, f fetcher) error {
	return d.listChanged(ctx, f, func(dl Dialog) error {
		d.pos.hold(dl.Chat, dl.LastSeq)
		return nil
	})
}

// listChanged calls fn for every dialog changed since the sync point,
// page by page, and then stores the listing's version as the sync point.
func (d *delivery) listChanged(ctx context.Context, f fetcher, fn func(Dialog) error) error {
	since := d.pos.sinceValue()
	var cursor []byte
	for {
		p, err := f.sync(ctx, since, cursor)
		if err != nil {
			return err
		}
		for _, dl := range p.Dialogs {
			if err := fn(dl); err != nil {
				return err
			}
		}
		if !p.More {
			d.pos.setSince(p.Version)
			return nil
		}
		if len(p.Next) == 0 {
			return fmt.Errorf("%w: a sync page with more but no cursor", ErrProtocol)
		}
		cursor = p.Next
	}
}
