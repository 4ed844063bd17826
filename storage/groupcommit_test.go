package storage

import (
	"context"
	"sync"
	"testing"

	"github.com/gonets/gonets/storage/storagetest"
)

// TestGroupCommit holds one batch's WAL sync while 20 more appends
// arrive: they must all go out in the next batch, with one sync.
func TestGroupCommit(t *testing.T) {
	gate := storagetest.NewSyncGate(t)
	s := openTest(t, t.TempDir(), Options{FS: gate.FS})
	var members []UserID
	for i := range 20 {
		members = append(members, UserID(10+i))
	}
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: members})
	commits := s.m.commits.Get()

	gate.Hold.Store(true)
	var wg sync.WaitGroup
	appendOne := func(m Message) {
		if acks, err := s.Append(context.Background(), []Message{m}); err != nil || acks[0].Err != nil {
			t.Errorf("Append: %v %+v", err, acks)
		}
	}
	wg.Go(func() { appendOne(text(c.ID, 1, 1, "first")) })
	<-gate.Held
	gate.Hold.Store(false)
	for i := range 20 {
		wg.Go(func() { appendOne(text(c.ID, UserID(10+i), 1, "next")) })
	}
	storagetest.WaitFor(t, "20 appends queued behind the held sync", func() bool {
		s.q.mu.Lock()
		defer s.q.mu.Unlock()
		return len(s.q.reqs) == 20
	})
	before := gate.Syncs()
	gate.Open()
	wg.Wait()
	if got := s.m.commits.Get() - commits; got != 2 {
		t.Fatalf("%d commits for 21 appends, want 2 (one held, one group)", got)
	}
	if got := gate.Syncs() - before; got > 2 {
		t.Fatalf("%d WAL syncs after release, want at most 2", got)
	}
	if ch, _ := s.Chat(c.ID); ch.LastSeq != 21 {
		t.Fatalf("last seq %d, want 21", ch.LastSeq)
	}
}
