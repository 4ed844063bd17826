package client

import (
	"context"
	"slices"
	"testing"
	"time"
)

// newHoldingDelivery returns a test delivery that parks gaps for 50 ms on
// a clock the test moves.
func newHoldingDelivery(state SyncState) (*delivery, *[]Message, *time.Time) {
	d, got := newTestDelivery(state, 10)
	now := time.Unix(1000, 0)
	d.hold, d.now = 50*time.Millisecond, func() time.Time { return now }
	return d, got, &now
}

// A message that overtakes the one before it (a push ahead of the Ack of
// the client's own send, or the reverse) waits, and goes out in order
// once the missing one arrives, with no history read.
func TestDeliveryParksOvertakenGap(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(7, 5)
	d, got, _ := newHoldingDelivery(SyncState{Held: map[uint64]uint64{7: 2}})
	for _, seq := range []uint64{5, 4, 5} {
		if err := d.message(ctx, l, l.chats[7][seq-1]); err != nil {
			t.Fatal(err)
		}
	}
	if len(*got) != 0 || d.nextDue().IsZero() {
		t.Fatalf("delivered %v past a gap; due %v", seqs(*got), d.nextDue())
	}
	if err := d.message(ctx, l, l.chats[7][2]); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, *got, "7/3", "7/4", "7/5")
	if len(l.reads) != 0 || d.stats.gaps.Load() != 0 || !d.nextDue().IsZero() {
		t.Fatalf("reads %v, gaps %d, due %v", l.reads, d.stats.gaps.Load(), d.nextDue())
	}
	if n := d.stats.duplicates.Load(); n != 1 {
		t.Fatalf("duplicates %d, want 1 (seq 5 twice)", n)
	}
}

// A gap that does not fill within the hold is fetched from history, and
// what waited behind it follows in order; other chats are not held up.
func TestDeliveryParkedGapExpires(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(7, 6)
	l.add(8, 1)
	d, got, now := newHoldingDelivery(SyncState{Held: map[uint64]uint64{7: 2}})
	for _, m := range []Message{l.chats[7][4], l.chats[7][5], l.chats[8][0]} {
		if err := d.message(ctx, l, m); err != nil {
			t.Fatal(err)
		}
	}
	checkSeqs(t, *got, "8/1")
	due := d.nextDue()
	if want := now.Add(50 * time.Millisecond); !due.Equal(want) {
		t.Fatalf("due %v, want %v", due, want)
	}
	*now = due.Add(-time.Millisecond)
	if err := d.expire(ctx, l); err != nil || len(l.reads) != 0 {
		t.Fatalf("expired early: %v, reads %v", err, l.reads)
	}
	*now = due
	if err := d.expire(ctx, l); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, *got, "8/1", "7/3", "7/4", "7/5", "7/6")
	if want := []string{"history 7 from 3"}; !slices.Equal(l.reads, want) {
		t.Fatalf("reads %v, want %v", l.reads, want)
	}
	if d.stats.gaps.Load() != 1 || !d.nextDue().IsZero() {
		t.Fatalf("gaps %d, due %v", d.stats.gaps.Load(), d.nextDue())
	}
}

// A chat whose gap history cannot fill (the user left it) still delivers
// what waited, in order, rather than holding it for ever; so does one
// whose parked messages overflow.
func TestDeliveryParkedGapUnfillable(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(7, maxParked+10)
	l.gone[7] = true
	d, got, now := newHoldingDelivery(SyncState{Held: map[uint64]uint64{7: 2}})
	for _, seq := range []uint64{6, 5} {
		if err := d.message(ctx, l, l.chats[7][seq-1]); err != nil {
			t.Fatal(err)
		}
	}
	*now = d.nextDue()
	if err := d.expire(ctx, l); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, *got, "7/5", "7/6")
	if !d.nextDue().IsZero() {
		t.Fatal("still parked")
	}
	// Overflow behind an unfillable gap: every parked message goes out.
	*got = nil
	for _, m := range l.chats[7][7 : 8+maxParked] {
		if err := d.message(ctx, l, m); err != nil {
			t.Fatal(err)
		}
	}
	if len(*got) != maxParked+1 || (*got)[0].Seq != 8 || d.pos.get(7) != maxParked+8 {
		t.Fatalf("delivered %d from %d, held %d; want %d from 8, held %d", len(*got), (*got)[0].Seq, d.pos.get(7), maxParked+1, maxParked+8)
	}
	for i := 1; i < len(*got); i++ {
		if (*got)[i].Seq != (*got)[i-1].Seq+1 {
			t.Fatalf("out of order at %d: %d after %d", i, (*got)[i].Seq, (*got)[i-1].Seq)
		}
	}
}

// Past maxParked messages behind one gap, the gap is fetched at once,
// and only the gap: what is parked is not read again.
func TestDeliveryParkedOverflow(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(7, maxParked+3)
	d, got, _ := newHoldingDelivery(SyncState{Held: map[uint64]uint64{7: 1}})
	for _, m := range l.chats[7][2 : maxParked+3] {
		if err := d.message(ctx, l, m); err != nil {
			t.Fatal(err)
		}
	}
	if len(*got) != maxParked+2 || d.pos.get(7) != maxParked+3 {
		t.Fatalf("delivered %d, held %d", len(*got), d.pos.get(7))
	}
	checkSeqs(t, (*got)[:3], "7/2", "7/3", "7/4")
	if want := []string{"history 7 from 2"}; !slices.Equal(l.reads, want) {
		t.Fatalf("reads %v, want %v", l.reads, want)
	}
	if d.stats.gaps.Load() != 1 || d.stats.duplicates.Load() != 0 || !d.nextDue().IsZero() {
		t.Fatalf("gaps %d, duplicates %d, due %v", d.stats.gaps.Load(), d.stats.duplicates.Load(), d.nextDue())
	}
}

// Several gaps in one chat are fetched one by one, each for just what is
// missing, and a run delivered behind one gap restarts the wait of what
// still waits behind the next.
func TestDeliveryParkedSeveralGaps(t *testing.T) {
	ctx := context.Background()
	l := newFakeLog()
	l.add(7, 9)
	d, got, now := newHoldingDelivery(SyncState{Held: map[uint64]uint64{7: 2}})
	start := *now
	for _, seq := range []uint64{5, 8, 9} {
		if err := d.message(ctx, l, l.chats[7][seq-1]); err != nil {
			t.Fatal(err)
		}
	}
	// 3 and 4 arrive at 40 ms: 5 follows; 8 and 9 wait 50 ms more.
	*now = start.Add(40 * time.Millisecond)
	for _, seq := range []uint64{4, 3} {
		if err := d.message(ctx, l, l.chats[7][seq-1]); err != nil {
			t.Fatal(err)
		}
	}
	checkSeqs(t, *got, "7/3", "7/4", "7/5")
	if due, want := d.nextDue(), now.Add(50*time.Millisecond); !due.Equal(want) {
		t.Fatalf("due %v, want %v", due, want)
	}
	*now = d.nextDue()
	if err := d.expire(ctx, l); err != nil {
		t.Fatal(err)
	}
	checkSeqs(t, *got, "7/3", "7/4", "7/5", "7/6", "7/7", "7/8", "7/9")
	if want := []string{"history 7 from 6"}; !slices.Equal(l.reads, want) {
		t.Fatalf("reads %v, want %v", l.reads, want)
	}
	if len(l.chats[7]) != 9 || d.stats.duplicates.Load() != 0 {
		t.Fatalf("duplicates %d", d.stats.duplicates.Load())
	}
}
