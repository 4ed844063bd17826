package storage

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestGroupCommit holds one batch's WAL sync while 20 more appends
// arrive: they must all go out in the next batch, with one sync.
func TestGroupCommit(t *testing.T) {
	var hold atomic.Bool
	var syncs atomic.Int64
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".log") &&
			(op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) {
			syncs.Add(1)
			if hold.Load() {
				select {
				case held <- struct{}{}:
				default:
				}
				<-release
			}
		}
		return nil
	}))
	s := openTest(t, t.TempDir(), Options{FS: fs})
	var once sync.Once
	open := func() { once.Do(func() { hold.Store(false); close(release) }) }
	t.Cleanup(open)
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	commits := s.m.commits.Get()

	hold.Store(true)
	var wg sync.WaitGroup
	appendOne := func(m Message) {
		if acks, err := s.Append(context.Background(), []Message{m}); err != nil || acks[0].Err != nil {
			t.Errorf("Append: %v %+v", err, acks)
		}
	}
	wg.Go(func() { appendOne(text(c.ID, 1, 1, "first")) })
	<-held
	hold.Store(false)
	for i := range 20 {
		wg.Go(func() { appendOne(text(c.ID, UserID(10+i), 1, "next")) })
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.q.mu.Lock()
		n := len(s.q.reqs)
		s.q.mu.Unlock()
		if n == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d appends queued behind the held sync", n)
		}
		time.Sleep(time.Millisecond)
	}
	before := syncs.Load()
	open()
	wg.Wait()
	if got := s.m.commits.Get() - commits; got != 2 {
		t.Fatalf("%d commits for 21 appends, want 2 (one held, one group)", got)
	}
	if got := syncs.Load() - before; got > 2 {
		t.Fatalf("%d WAL syncs after release, want at most 2", got)
	}
	if ch, _ := s.Chat(c.ID); ch.LastSeq != 21 {
		t.Fatalf("last seq %d, want 21", ch.LastSeq)
	}
}
