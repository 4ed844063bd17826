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
//
// Each step waits until the other participants drained their events, and
// none of them is ever sent more than the queue holds at once: on a
// starved machine a burst would overflow their queues too, and the call
// would end empty under the test.
func TestSlowEventsRemovedHeard(t *testing.T) {
	s := newTestSFU(t, Options{EventQueue: 2})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	var others atomic.Int64
	var want int64
	drained := func(add int64) {
		want += add
		waitFor(t, "the others' events", func() bool { return others.Load() >= want })
	}
	parts := map[uint64]*Participant{}
	for i := range 3 { // peers 2, 3, 4: the one joining hears of the i before it, and they of it
		p, err := s.Join(1, Peer{uint64(2 + i), 1}, func(Event) { others.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		parts[uint64(2+i)] = p
		drained(int64(2 * i))
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
	drained(3) // a hears of the three; they of a
	// Two leave: a is sent five events in all, its function holding the
	// first and its queue two.
	parts[2].Leave()
	drained(2)
	parts[3].Leave()
	drained(1)
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
