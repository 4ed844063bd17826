package bench

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// TestSocketCounts checks that a counting socket counts each datagram of
// a GSO write, and what a batch read takes, as quic-go uses them.
func TestSocketCounts(t *testing.T) {
	a, err := listenSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := listenSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	to := b.LocalAddr().(*net.UDPAddr)
	if _, _, err := a.WriteMsgUDP(make([]byte, 100), nil, to); err != nil {
		t.Fatal(err)
	}
	// Three segments of 1,000 bytes and one of 500, in one write.
	oob := make([]byte, unix.CmsgSpace(2))
	binary.NativeEndian.PutUint64(oob, uint64(unix.CmsgLen(2)))
	binary.NativeEndian.PutUint32(oob[8:], unix.IPPROTO_UDP)
	binary.NativeEndian.PutUint32(oob[12:], unix.UDP_SEGMENT)
	binary.NativeEndian.PutUint16(oob[16:], 1000)
	if _, _, err := a.WriteMsgUDP(make([]byte, 3500), oob, to); err != nil {
		t.Skipf("no GSO here: %v", err)
	}
	if got := a.sent.Load(); got != 5 {
		t.Fatalf("sent %d datagrams, want 5", got)
	}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	ms := make([]ipv4.Message, 8)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 2000)}
	}
	for b.received.Load() < 5 {
		if _, err := b.ReadBatch(ms, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.received.Load(); got != 5 {
		t.Fatalf("received %d datagrams, want 5", got)
	}
	if d := countSockets([]*socket{a, b}); d.Sent != 5 || d.Received != 5 || d.Dropped != 0 {
		t.Fatalf("counts %+v", d)
	}
}

func TestSegments(t *testing.T) {
	if n := segments(1200, nil); n != 1 {
		t.Fatalf("a plain write is %d datagrams", n)
	}
}
