package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestEditDeleteReact(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2, 3}})
	if err := s.AddMember(context.Background(), c.ID, 4, RoleAdmin); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, text(c.ID, 2, 1, "original"), text(c.ID, 2, 2, "second"), text(c.ID, 3, 1, "third"))
	cm := uint64(100)
	do := func(user UserID, kind MsgKind, target uint64, body string) Ack {
		t.Helper()
		cm++
		acks, err := s.Append(context.Background(), []Message{{Chat: c.ID, Sender: user, Device: 1, ClientMsgID: cm, Kind: kind, Target: target, Body: []byte(body)}})
		if err != nil {
			t.Fatalf("Append(%v on %d): %v", kind, target, err)
		}
		return acks[0]
	}
	want := func(a Ack, err error) {
		t.Helper()
		if !errors.Is(a.Err, err) {
			t.Fatalf("ack %+v, want err %v", a, err)
		}
	}
	want(do(2, MsgEdit, 1, "edited"), nil)
	want(do(3, MsgEdit, 1, "not yours"), ErrNotAllowed)
	want(do(2, MsgEdit, 99, "nothing there"), ErrNoTarget)
	want(do(1, MsgReaction, 1, "👍"), nil)
	want(do(3, MsgReaction, 1, "👍"), nil)
	want(do(2, MsgReaction, 1, "🔥"), nil)
	want(do(3, MsgReaction, 1, "😂"), nil)         // 3 changes its reaction
	want(do(1, MsgReaction, 4, "👍"), ErrNoTarget) // 4 is the edit record
	want(do(3, MsgDelete, 2, ""), ErrNotAllowed)  // a member may not delete others'
	want(do(4, MsgDelete, 2, ""), nil)            // an admin may
	want(do(2, MsgEdit, 2, "too late"), ErrNoTarget)
	want(do(3, MsgDelete, 3, ""), nil) // one's own

	recs := readAll(t, s, c.ID, 1, 100)
	byseq := map[uint64]Record{}
	for _, r := range recs {
		byseq[r.Seq] = r
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("seqs not dense: %d at %d", r.Seq, i)
		}
	}
	m1 := byseq[1]
	if string(m1.Body) != "edited" || m1.Edited == 0 || m1.Deleted {
		t.Fatalf("message 1 = %q edited %d deleted %v", m1.Body, m1.Edited, m1.Deleted)
	}
	got := map[string]uint32{}
	for _, r := range m1.Reactions {
		got[r.Emoji] = r.Count
	}
	if len(got) != 3 || got["👍"] != 1 || got["🔥"] != 1 || got["😂"] != 1 {
		t.Fatalf("reactions = %+v", m1.Reactions)
	}
	if m2 := byseq[2]; !m2.Deleted || len(m2.Body) != 0 {
		t.Fatalf("message 2 = %+v, want deleted", m2)
	}
	if e := byseq[4]; e.Kind != MsgEdit || e.Target != 1 || string(e.Body) != "edited" {
		t.Fatalf("edit record = %+v", e)
	}
	// Removing a reaction.
	want(do(2, MsgReaction, 1, ""), nil)
	r, err := s.Get(c.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Reactions) != 2 {
		t.Fatalf("after removal reactions = %+v", r.Reactions)
	}
}

func TestTooManyReactions(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	var members []UserID
	for i := 0; i <= maxReactionKinds; i++ {
		members = append(members, UserID(10+i))
	}
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: members})
	mustAppend(t, s, text(c.ID, 1, 1, "m"))
	var msgs []Message
	for i := 0; i <= maxReactionKinds; i++ {
		msgs = append(msgs, Message{Chat: c.ID, Sender: UserID(10 + i), Device: 1, ClientMsgID: 1, Kind: MsgReaction, Target: 1, Body: []byte{'a' + byte(i%26), 'a' + byte(i/26)}})
	}
	acks, err := s.Append(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range acks[:maxReactionKinds] {
		if a.Err != nil {
			t.Fatalf("reaction %d: %v", i, a.Err)
		}
	}
	if !errors.Is(acks[maxReactionKinds].Err, ErrTooManyReactions) {
		t.Fatalf("reaction over the cap: %+v", acks[maxReactionKinds])
	}
	if ch, _ := s.Chat(c.ID); ch.LastSeq != 1+maxReactionKinds {
		t.Fatalf("last seq %d, want %d", ch.LastSeq, 1+maxReactionKinds)
	}
}

// TestCallRecordNotEdited checks that a call record or a service note,
// written from the node's device on a user's behalf, is content (reactions
// and deletes reach it) that no one edits, its sender included.
func TestCallRecordNotEdited(t *testing.T) {
	for _, kind := range []MsgKind{MsgCall, MsgService} {
		t.Run(fmt.Sprint(kind), func(t *testing.T) { testNodeNoteNotEdited(t, kind) })
	}
}

func testNodeNoteNotEdited(t *testing.T, kind MsgKind) {
	s := openTest(t, t.TempDir(), Options{})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}})
	rec := Message{Chat: c.ID, Sender: 1, Device: DeviceNode, ClientMsgID: 7, Kind: kind, Body: []byte("record")}
	mustAppend(t, s, rec)
	do := func(user UserID, kind MsgKind, body string) error {
		t.Helper()
		a, err := s.AppendOne(context.Background(), Message{Chat: c.ID, Sender: user, Device: 1, ClientMsgID: 100 + uint64(kind), Kind: kind, Target: 1, Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		return a.Err
	}
	if err := do(1, MsgEdit, "a forged duration"); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("caller's edit of its call record: %v, want ErrNotAllowed", err)
	}
	if err := do(2, MsgReaction, "👍"); err != nil {
		t.Fatalf("reaction to a call record: %v", err)
	}
	r, err := s.Get(c.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != kind || r.Device != DeviceNode || string(r.Body) != "record" || r.Edited != 0 || len(r.Reactions) != 1 {
		t.Fatalf("call record = %+v", r)
	}
}
