package storage

import (
	"context"
	"testing"
)

func dialogChats(t *testing.T, s *Store, user UserID, since uint64) (map[ChatID]Dialog, uint64) {
	t.Helper()
	out := map[ChatID]Dialog{}
	for {
		p, err := s.Dialogs(user, since, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Dialogs {
			out[d.Chat] = d
		}
		since = p.Version
		if !p.More {
			return out, since
		}
	}
}

func TestDialogs(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{PushMembers: 3})
	ctx := context.Background()
	var chats []Chat
	for i := 0; i < 6; i++ {
		chats = append(chats, mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}}))
	}
	big := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{3, 4, 2}}) // 2 joins as 4th: pull
	ch := mustChat(t, s, ChatSpec{Kind: ChatChannel, Creator: 9, Members: []UserID{2}})

	all, v0 := dialogChats(t, s, 2, 0)
	if len(all) != 8 {
		t.Fatalf("initial dialogs: %d, want 8", len(all))
	}
	if again, _ := dialogChats(t, s, 2, v0); len(again) != 0 {
		t.Fatalf("nothing changed but got %d dialogs", len(again))
	}
	mustAppend(t, s, text(chats[1].ID, 1, 1, "a"), text(chats[4].ID, 1, 1, "b"), text(chats[4].ID, 1, 2, "c"))
	mustAppend(t, s, text(big.ID, 1, 1, "d"), text(ch.ID, 9, 1, "e"))
	changed, v1 := dialogChats(t, s, 2, v0)
	if len(changed) != 4 {
		t.Fatalf("changed = %v, want chats 1, 4, big and channel", changed)
	}
	for _, id := range []ChatID{chats[1].ID, chats[4].ID, big.ID, ch.ID} {
		if _, ok := changed[id]; !ok {
			t.Fatalf("chat %d missing from %v", id, changed)
		}
	}
	if d := changed[chats[4].ID]; d.LastSeq != 2 {
		t.Fatalf("dialog = %+v, want last seq 2", d)
	}
	// Read marker: bumps the dialog for the user's other devices.
	m, err := s.SetMarkers(ctx, chats[4].ID, 2, 5, 1)
	if err != nil || m.Read != 1 || m.Delivered != 2 {
		t.Fatalf("SetMarkers = %+v, %v (markers are capped at the last seq)", m, err)
	}
	if m, _ := s.SetMarkers(ctx, chats[4].ID, 2, 0, 0); m.Read != 1 || m.Delivered != 2 {
		t.Fatalf("markers moved back: %+v", m)
	}
	changed, v2 := dialogChats(t, s, 2, v1)
	if d, ok := changed[chats[4].ID]; len(changed) != 1 || !ok || d.Read != 1 {
		t.Fatalf("after read marker: %v", changed)
	}
	// Leaving drops the chat from the user's dialogs.
	if err := s.RemoveMember(ctx, chats[1].ID, 2); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, text(chats[1].ID, 1, 2, "after leave"))
	if changed, _ := dialogChats(t, s, 2, v2); len(changed) != 0 {
		t.Fatalf("left chat still reported: %v", changed)
	}
	if _, err := s.SetMarkers(ctx, chats[1].ID, 2, 1, 1); err != ErrNotMember {
		t.Fatalf("markers of a non-member: %v", err)
	}
}
