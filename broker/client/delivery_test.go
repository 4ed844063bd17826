package client

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"testing"
)

// fakeLog is a node's log in memory, read the way a session reads it.
type fakeLog struct {
	chats    map[uint64][]Message // chat -> messages, seqs 1..n
	floor    map[uint64]uint64
	changed  map[uint64]uint64 // chat -> version of its last change
	version  uint64
	gone     map[uint64]bool // chats the user is not in
	syncPage int
	reads    []string // the requests, in order
}

func newFakeLog() *fakeLog {
	return &fakeLog{chats: map[uint64][]Message{}, floor: map[uint64]uint64{}, changed: map[uint64]uint64{}, gone: map[uint64]bool{}, syncPage: 2}
}

// add appends n messages to chat and returns the last.
func (l *fakeLog) add(chat uint64, n int) Message {
	for range n {
		seq := uint64(len(l.chats[chat]) + 1)
		l.chats[chat] = append(l.chats[chat], Message{Chat: chat, Seq: seq, Body: fmt.Appendf(nil, "%d/%d", chat, seq)})
	}
	l.version++
	l.changed[chat] = l.version
	return l.chats[chat][len(l.chats[chat])-1]
}

func (l *fakeLog) history(_ context.Context, chat, from uint64, limit int) (HistoryPage, error) {
	l.reads = append(l.reads, fmt.Sprintf("history %d from %d", chat, from))
	if l.gone[chat] {
		return HistoryPage{}, &Error{Code: ErrNotMember.Code}
	}
	msgs := l.chats[chat]
	p := HistoryPage{Chat: chat, LastSeq: uint64(len(msgs)), Floor: max(1, l.floor[chat])}
	for _, m := range msgs {
		if m.Seq >= max(from, p.Floor) && len(p.Messages) < limit {
			p.Messages = append(p.Messages, m)
		}
	}
	return p, nil
}

func (l *fakeLog) sync(_ context.Context, since uint64, cursor []byte) (SyncPage, error) {
	l.reads = append(l.reads, fmt.Sprintf("sync since %d", since))
	var ids []uint64
	for chat, v := range l.changed {
		if v > since {
			ids = append(ids, chat)
		}
	}
	slices.Sort(ids)
	start := 0
	if len(cursor) > 0 {
		start = int(binary.BigEndian.Uint32(cursor))
	}
	var p SyncPage
	for i := start; i < len(ids) && len(p.Dialogs) < l.syncPage; i++ {
		p.Dialogs = append(p.Dialogs, Dialog{Chat: ids[i], LastSeq: uint64(len(l.chats[ids[i]]))})
	}
	if next := start + len(p.Dialogs); next < len(ids) {
		p.More, p.Next = true, binary.BigEndian.AppendUint32(nil, uint32(next))
	} else {
		p.Version = l.version
	}
	return p, nil
}

// newTestDelivery returns a delivery that records what it emits.
func newTestDelivery(state SyncState, page int) (*delivery, *[]Message) {
	var got []Message
	d := &delivery{
		pos:   newPosition(state.clone()),
		page:  page,
		log:   slog.New(slog.DiscardHandler),
		stats: &counters{},
		emit: func(_ context.Context, ev Event) error {
			got = append(got, ev.Message)
			return nil
		},
	}
	return d, &got
}

// seqs returns "chat/seq" for each message.
func seqs(ms []Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = fmt.Sprintf("%d/%d", m.Chat, m.Seq)
	}
	return out
}

func checkSeqs(t *testing.T, got []Message, want ...string) {
	t.Helper()
	if g := seqs(got); !slices.Equal(g, want) {
		t.Fatalf("delivered %v, want %v", g, want)
	}
}

func TestDeliveryInOrderAndOnce(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(7, 3)
	d, got := newTestDelivery(SyncState{}, 10)
	for _, seq := range []uint64{1, 2, 2, 1, 3} {
		if err := d.message(ctx, l, l.chats[7][seq-1]); err != nil {
			t.Fatal(err)
		}
	}
	checkSeqs(t, *got, "7/1", "7/2", "7/3")
	if len(l.reads) != 0 {
		t.Fatalf("in-order pushes read the log: %v", l.reads)
	}
	if n := d.stats.duplicates.Load(); n != 2 {
		t.Fatalf("duplicates = %d, want 2", n)
	}
}

func TestDeliveryFillsGapFromHistory(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(7, 9)
	d, got := newTestDelivery(SyncState{Held: map[uint64]uint64{7: 2}}, 3)
	// Seq 9 arrives while the app holds 2: 3..8 come from history first,
	// three at a time.
	if err := d.message(ctx, l, l.chats[7][8]); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, *got, "7/3", "7/4", "7/5", "7/6", "7/7", "7/8", "7/9")
	if want := []string{"history 7 from 3", "history 7 from 6"}; !slices.Equal(l.reads, want) {
		t.Fatalf("reads %v, want %v", l.reads, want)
	}
	if d.pos.get(7) != 9 || d.stats.gaps.Load() != 1 {
		t.Fatalf("held %d, gaps %d", d.pos.get(7), d.stats.gaps.Load())
	}
}

func TestDeliveryGapBelowFloor(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(7, 6)
	l.floor[7] = 5 // 1..4 were swept before the client caught up
	d, got := newTestDelivery(SyncState{}, 10)
	if err := d.message(ctx, l, l.chats[7][5]); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, *got, "7/5", "7/6")
	if n := d.stats.expired.Load(); n != 4 {
		t.Fatalf("expired = %d, want 4", n)
	}
}

func TestDeliveryResync(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(1, 2)
	l.add(2, 3)
	l.add(3, 1)
	l.add(4, 2)
	l.gone[4] = true // listed, but the user left
	d, got := newTestDelivery(SyncState{Held: map[uint64]uint64{2: 3}}, 10)
	if err := d.resync(ctx, l); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, *got, "1/1", "1/2", "3/1")
	if st := d.pos.snapshot(); st.Since != 4 || st.Held[1] != 2 || st.Held[3] != 1 {
		t.Fatalf("state after resync: %+v", st)
	}
	// Only what changed since the sync point is looked at next time.
	*got, l.reads = nil, nil
	l.add(2, 1)
	if err := d.resync(ctx, l); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, *got, "2/4")
	if want := []string{"sync since 4", "history 2 from 4"}; !slices.Equal(l.reads, want) {
		t.Fatalf("reads %v, want %v", l.reads, want)
	}
}

func TestDeliveryMarkAll(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(1, 5)
	l.add(2, 2)
	l.add(3, 1)
	d, got := newTestDelivery(SyncState{}, 10)
	if err := d.markAll(ctx, l); err != nil {
		t.Fatal(err)
	}
	l.add(1, 1)
	if err := d.message(ctx, l, l.chats[1][5]); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, *got, "1/6")
}

func TestDeliveryEmitFails(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(7, 3)
	d, _ := newTestDelivery(SyncState{}, 10)
	d.emit = func(context.Context, Event) error { return ErrClosed }
	if err := d.message(ctx, l, l.chats[7][2]); err != ErrClosed {
		t.Fatalf("message: %v, want ErrClosed", err)
	}
	if h := d.pos.get(7); h != 0 {
		t.Fatalf("held %d after a failed emit, want 0", h)
	}
}

func TestDeliveryHalvesPagesTooLarge(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(7, 5)
	big := &tooLarge{fakeLog: l, max: 2}
	d, got := newTestDelivery(SyncState{}, 8)
	if err := d.catchUp(ctx, big, 7, 5); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, *got, "7/1", "7/2", "7/3", "7/4", "7/5")
}

// tooLarge refuses history pages over max messages, as a node does when
// a page does not fit in a frame.
type tooLarge struct {
	*fakeLog
	max int
}

func (l *tooLarge) history(ctx context.Context, chat, from uint64, limit int) (HistoryPage, error) {
	if limit > l.max {
		return HistoryPage{}, &Error{Code: ErrTooLarge.Code, Message: "ask for fewer"}
	}
	return l.fakeLog.history(ctx, chat, from, limit)
}
