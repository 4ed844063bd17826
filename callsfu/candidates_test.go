package callsfu

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestClientCandidatesBounded: a client's trickled passive ICE-TCP
// candidate does not make the node dial the address it names (pion's
// active ICE-TCP, on by default, did), and a client adds at most
// maxRemoteCandidates to a PeerConnection once it has its description
// (nothing bounded them).
func TestClientCandidatesBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	s := newTestSFU(t, Options{})
	if err := s.Start(10); err != nil {
		t.Fatal(err)
	}
	alice := joinPeer(t, s, 10, Peer{1, 1}, 'a', peerOptions{})
	if err := alice.publish(); err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	c := Candidate{Candidate: fmt.Sprintf("candidate:1 1 tcp 2128609279 127.0.0.1 %d typ host tcptype passive", port), SDPMid: "0"}
	if err := alice.part.AddCandidate(TargetPublisher, c); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for accepted.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if accepted.Load() > 0 {
		t.Errorf("the SFU dialled 127.0.0.1:%d, an address a client named in a candidate", port)
	}
	n := 0
	for i := range 1000 {
		c := Candidate{Candidate: fmt.Sprintf("candidate:%d 1 udp 2122260223 10.%d.%d.1 9 typ host", i+2, i/256, i%256), SDPMid: "0"}
		if alice.part.AddCandidate(TargetPublisher, c) == nil {
			n++
		}
	}
	if n > maxRemoteCandidates {
		t.Errorf("%d remote candidates accepted after the description: nothing bounds them", n)
	}
}
