package callsfu

import "testing"

// TestFanOutLeavesInBatches: in a call of three, the copies of a publisher's
// packets leave the node through mediaConn's batches (the readers hold the
// socket while they fan out), and every participant still receives the
// others' media.
func TestFanOutLeavesInBatches(t *testing.T) {
	s := newTestSFU(t, Options{})
	peers := startCall(t, s, 9, 3)
	for _, sub := range peers {
		for _, pub := range peers {
			if sub != pub {
				waitReceiving(t, sub, pub)
			}
		}
	}
	if n := s.conn.batched.Load(); n == 0 {
		t.Error("no datagram left through a batch")
	}
	if n := s.conn.sendErrors.Load(); n != 0 {
		t.Errorf("%d datagrams of a batch refused", n)
	}
}
