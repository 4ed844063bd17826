package storage

import (
	"context"
	"errors"
	"testing"

	"github.com/gonets/gonets/storage/storagetest"
)

// TestNoReadBeforeSync holds WAL syncs while writes are in flight and
// checks that readers see none of them: not the new message, not an edit
// of an old one, not a new member, not a dialog change. Pebble makes the
// batch visible before its sync; the store must not.
func TestNoReadBeforeSync(t *testing.T) {
	gate := storagetest.NewSyncGate(t)
	s := openTest(t, t.TempDir(), Options{FS: gate.FS})
	ctx := context.Background()
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}})
	mustAppend(t, s, text(c.ID, 1, 1, "original"))
	before, err := s.Dialogs(2, 0, DialogCursor{}, 10)
	if err != nil {
		t.Fatal(err)
	}

	gate.Hold.Store(true)
	done := make(chan error, 2)
	go func() {
		_, err := s.Append(ctx, []Message{
			text(c.ID, 1, 2, "new"),
			{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: 3, Kind: MsgEdit, Target: 1, Body: []byte("edited")},
		})
		done <- err
	}()
	<-gate.Held // the batch is applied and its sync is blocked
	go func() { done <- s.AddMember(ctx, c.ID, 3, RoleMember) }()

	ch, err := s.Chat(c.ID)
	if err != nil || ch.LastSeq != 1 {
		t.Fatalf("Chat before sync = %+v, %v", ch, err)
	}
	recs := readAll(t, s, c.ID, 1, 10)
	if len(recs) != 1 || string(recs[0].Body) != "original" || recs[0].Edited != 0 {
		t.Fatalf("read before sync: %+v", recs)
	}
	if _, err := s.Member(c.ID, 3); !errors.Is(err, ErrNotMember) {
		t.Fatalf("member before sync: %v", err)
	}
	after, err := s.Dialogs(2, 0, DialogCursor{}, 10)
	if err != nil || after.Version != before.Version || after.Dialogs[0].LastSeq != 1 {
		t.Fatalf("dialogs before sync: %+v, %v (before: %+v)", after, err, before)
	}

	gate.Open()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	recs = readAll(t, s, c.ID, 1, 10)
	if len(recs) != 3 || string(recs[0].Body) != "edited" || string(recs[1].Body) != "new" {
		t.Fatalf("read after sync: %+v", recs)
	}
	if _, err := s.Member(c.ID, 3); err != nil {
		t.Fatalf("member after sync: %v", err)
	}
}
