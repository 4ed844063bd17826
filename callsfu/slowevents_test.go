package callsfu

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestSlowEventsRemovedHeard: a participant removed because its events
// function fell behind (ReasonSlowEvents) still hears its EventRemoved, as
// its last event, once the function catches up: what the events function
// feeds (the broker's call, a WHIP session, a live stream's note) learns
// that it is gone, as it does of every other removal.
func TestSlowEventsRemovedHeard(t *testing.T) {
	s := newTestSFU(t, Options{EventQueue: 2})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // a failed test leaves no events goroutine behind
	var mu sync.Mutex
	var heard []Event
	a, err := s.Join(1, Peer{1, 1}, func(e Event) {
		<-release
		mu.Lock()
		heard = append(heard, e)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	// The others drain their events, and each join waits until they
	// have: with a queue of 2 they would be removed as slow themselves on
	// a starved machine, the last one leaving ending the call.
	var others atomic.Int64
	var want int64
	for i := range 5 {
		if _, err := s.Join(1, Peer{uint64(2 + i), 1}, func(Event) { others.Add(1) }); err != nil {
			t.Fatal(err)
		}
		// The new one hears of a and of the i before it; those i hear of it.
		want += int64(2*i + 1)
		waitFor(t, "the others' events", func() bool { return others.Load() >= want })
	}
	waitFor(t, "the slow participant removed", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.left
	})
	unblock()
	waitFor(t, "its EventRemoved", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(heard) > 0 && heard[len(heard)-1].Kind == EventRemoved
	})
	mu.Lock()
	defer mu.Unlock()
	if last := heard[len(heard)-1]; last.Reason != ReasonSlowEvents {
		t.Errorf("removed with %v, want %v", last.Reason, ReasonSlowEvents)
	}
}
