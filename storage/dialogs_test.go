package storage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func dialogChats(t *testing.T, s *Store, user UserID, since uint64) (map[ChatID]Dialog, uint64) {
	t.Helper()
	out := map[ChatID]Dialog{}
	var cur DialogCursor
	for {
		p, err := s.Dialogs(user, since, cur, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Dialogs {
			if _, dup := out[d.Chat]; dup {
				t.Fatalf("chat %d listed twice", d.Chat)
			}
			out[d.Chat] = d
		}
		if !p.More {
			return out, p.Version
		}
		cur = p.Next
	}
}

// TestDialogs runs under three clocks: the real one, one that jumps a
// second per batch (every change lands in a new index epoch), and a frozen
// one (every change lands in one epoch). Sync points end an epoch, so a
// listing repeats the changes of its own epoch: with the frozen clock the
// test checks only that no change is lost; with the others it first lets
// an epoch pass, and then checks the exact set.
func TestDialogs(t *testing.T) {
	t.Run("real", func(t *testing.T) {
		testDialogs(t, time.Now, func() { time.Sleep(2 << epochBits * time.Microsecond) }, true)
	})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	jumping := base
	t.Run("jumping", func(t *testing.T) {
		testDialogs(t, func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			jumping = jumping.Add(time.Second)
			return jumping
		}, func() {}, true)
	})
	t.Run("frozen", func(t *testing.T) { testDialogs(t, func() time.Time { return base }, func() {}, false) })
}

func testDialogs(t *testing.T, now func() time.Time, wait func(), exact bool) {
	s := openTest(t, t.TempDir(), Options{PushMembers: 3, Now: now})
	ctx := context.Background()
	other := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 99})
	// settle lets the current epoch end: a later listing's sync point then
	// covers every change made so far.
	settle := func() {
		wait()
		if err := s.SetRetention(ctx, other.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	// check compares a listing with the chats that changed.
	check := func(got map[ChatID]Dialog, want ...ChatID) {
		t.Helper()
		for _, id := range want {
			if _, ok := got[id]; !ok {
				t.Fatalf("changed chat %d missing from %v", id, got)
			}
		}
		if exact && len(got) != len(want) {
			t.Fatalf("listed %d chats %v, want exactly %v", len(got), got, want)
		}
	}
	var chats []Chat
	for i := 0; i < 6; i++ {
		chats = append(chats, mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}}))
	}
	big := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{3, 4, 2}}) // 2 joins as 4th: pull
	ch := mustChat(t, s, ChatSpec{Kind: ChatChannel, Creator: 9, Members: []UserID{2}})

	settle()
	all, v0 := dialogChats(t, s, 2, 0)
	check(all, chats[0].ID, chats[1].ID, chats[2].ID, chats[3].ID, chats[4].ID, chats[5].ID, big.ID, ch.ID)
	again, _ := dialogChats(t, s, 2, v0)
	check(again)

	mustAppend(t, s, text(chats[1].ID, 1, 1, "a"), text(chats[4].ID, 1, 1, "b"), text(chats[4].ID, 1, 2, "c"))
	mustAppend(t, s, text(big.ID, 1, 1, "d"), text(ch.ID, 9, 1, "e"))
	settle()
	changed, v1 := dialogChats(t, s, 2, v0)
	check(changed, chats[1].ID, chats[4].ID, big.ID, ch.ID)
	if d := changed[chats[4].ID]; d.LastSeq != 2 {
		t.Fatalf("dialog = %+v, want last seq 2", d)
	}

	// A read marker changes the dialog, for the user's other devices.
	m, err := s.SetMarkers(ctx, chats[4].ID, 2, 5, 1)
	if err != nil || m.Read != 1 || m.Delivered != 2 {
		t.Fatalf("SetMarkers = %+v, %v (markers are capped at the last seq)", m, err)
	}
	if m, _ := s.SetMarkers(ctx, chats[4].ID, 2, 0, 0); m.Read != 1 || m.Delivered != 2 {
		t.Fatalf("markers moved back: %+v", m)
	}
	settle()
	changed, v2 := dialogChats(t, s, 2, v1)
	check(changed, chats[4].ID)
	if d := changed[chats[4].ID]; d.Read != 1 {
		t.Fatalf("after read marker: %+v", d)
	}

	// A new member sees the chat.
	if err := s.AddMember(ctx, chats[5].ID, 3, RoleMember); err != nil {
		t.Fatal(err)
	}
	settle()
	joined, _ := dialogChats(t, s, 3, v2)
	check(joined, chats[5].ID)
	changed, v3 := dialogChats(t, s, 2, v2)
	check(changed, chats[5].ID) // a member joined chat 5

	// Leaving drops the chat from the user's dialogs.
	if err := s.RemoveMember(ctx, chats[1].ID, 2); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, text(chats[1].ID, 1, 2, "after leave"))
	settle()
	changed, _ = dialogChats(t, s, 2, v3)
	if _, ok := changed[chats[1].ID]; ok {
		t.Fatalf("left chat still listed: %v", changed)
	}
	check(changed)
	if _, err := s.SetMarkers(ctx, chats[1].ID, 2, 1, 1); err != ErrNotMember {
		t.Fatalf("markers of a non-member: %v", err)
	}
}

func TestDialogCursorEncoding(t *testing.T) {
	for _, c := range []DialogCursor{{}, {epoch: 7, chat: 42, version: 9}, {epoch: 1 << 40, chat: ^ChatID(0), version: 1}} {
		b, err := c.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseDialogCursor(b)
		if err != nil || got != c {
			t.Fatalf("round trip of %+v: got %+v, %v", c, got, err)
		}
	}
	for _, bad := range [][]byte{{0x80}, {1, 2}, {1, 2, 0}, {1, 2, 3, 4}} {
		if _, err := ParseDialogCursor(bad); !errors.Is(err, ErrBadRange) {
			t.Errorf("ParseDialogCursor(%x) = %v, want ErrBadRange", bad, err)
		}
	}
}
