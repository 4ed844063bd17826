package client

import (
	"testing"

	"github.com/gonets/gonets/broker/wire"
)

// The node sends a Resync after each sync that resumed its pushes, and the
// app's own Client.Sync resumes them too: two Resyncs may wait while the
// delivery goroutine is busy. The node's one GoingAway must still get
// through, or the client never learns that the node is going away.
func TestGoingAwayPassesQueuedResyncs(t *testing.T) {
	s := &session{control: make(chan *wire.Frame, 2)}
	resync := &wire.Frame{Body: &wire.Frame_Resync{Resync: &wire.Resync{}}}
	s.queueControl(resync)
	s.queueControl(resync)
	s.queueControl(&wire.Frame{Body: &wire.Frame_GoingAway{GoingAway: &wire.GoingAway{}}})
	var resyncs, goAways int
	for len(s.control) > 0 {
		f := <-s.control
		s.tookControl(f)
		switch f.GetBody().(type) {
		case *wire.Frame_Resync:
			resyncs++
		case *wire.Frame_GoingAway:
			goAways++
		}
	}
	if goAways != 1 || resyncs == 0 {
		t.Fatalf("%d GoingAway and %d Resync taken, want 1 and at least 1", goAways, resyncs)
	}
	// A Resync that comes once the last was taken waits again.
	s.queueControl(resync)
	if len(s.control) != 1 {
		t.Fatalf("a Resync after the last was taken: %d waiting", len(s.control))
	}
}
