package storage

import (
	"context"
	"runtime"
	"sync"
	"testing"
)

// maxAppendAllocs is what an append may cost in allocations under load,
// when a group commit holds many messages: the commit's own (Pebble's
// snapshot and its compaction check, the published view: about 15) are
// shared by its messages, and a message's own path allocates nothing.
const maxAppendAllocs = 4

// TestAppendAllocationsUnderLoad counts allocations per durable append
// with 32 appenders, the whole process's, as the node would see them.
func TestAppendAllocationsUnderLoad(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	s := openTest(t, t.TempDir(), Options{})
	const appenders, each = 32, 100
	chats := make([]ChatID, appenders)
	msgs := make([][]Message, appenders)
	for i := range chats {
		chats[i] = mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1}).ID
		for n := range each + 10 {
			msgs[i] = append(msgs[i], text(chats[i], 1, uint64(n+1), "a message of some length"))
		}
	}
	run := func(from, to int) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range appenders {
			wg.Go(func() {
				<-start
				for n := from; n < to; n++ {
					if _, err := s.AppendOne(context.Background(), msgs[i][n]); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		runtime.Gosched()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		close(start)
		wg.Wait()
		runtime.ReadMemStats(&after)
		if to-from == each {
			per := float64(after.Mallocs-before.Mallocs) / float64(appenders*each)
			commits := s.m.commits.Get()
			t.Logf("%.2f allocations per append (%d commits in all)", per, commits)
			if per > maxAppendAllocs {
				t.Fatalf("%.2f allocations per append under load, want at most %d", per, maxAppendAllocs)
			}
		}
	}
	run(0, 10) // warm the pools
	run(10, 10+each)
}
