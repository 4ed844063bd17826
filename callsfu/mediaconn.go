package callsfu

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// sendBatchMax is the most datagrams one sendmmsg sends; a batch that fills
// is sent at once and a new one started.
const sendBatchMax = 64

// mediaConn is the media UDP socket as pion's ICE mux sees it. A forwarded
// packet goes to each subscriber through pion's interceptors, SRTP and the
// mux, all on the publisher's reader goroutine, and ends in one sendto per
// subscriber. While a reader fans a packet out it holds the socket (hold),
// and every datagram written meanwhile is queued, copied, then sent with the
// others in one sendmmsg when the reader releases it: one system call per
// received packet instead of one per forwarded one. With no reader holding
// it, a write goes straight to the socket as before; nothing waits on a timer.
//
// A datagram queued by a goroutine other than the holder's (pion's RTCP,
// STUN or DTLS) goes out at the next release, or at once by its writer when
// every holder released before it was queued: each side checks the other
// after its own step, so none is left behind. mu is held across the
// sendmmsg, so a writer that finds a batch being sent waits for it, as it
// would wait for the socket.
type mediaConn struct {
	*net.UDPConn
	batch *ipv4.PacketConn // sendmmsg on the same socket
	holds atomic.Int32     // readers fanning a packet out now

	// sendErrors counts the datagrams of a batch the kernel refused: a
	// queued write already reported success, as UDP does for a datagram
	// lost on the way.
	sendErrors atomic.Uint64
	// batched counts the datagrams sent by sendmmsg.
	batched atomic.Uint64

	mu    sync.Mutex // guards the following
	msgs  []ipv4.Message
	slots [sendBatchMax]sendSlot

	readMu sync.Mutex // serialises reads (the mux has one reader)
	recv   *recvBatch // recvmmsg's datagrams not read yet; nil: one at a time
}

// sendSlot holds one queued datagram.
type sendSlot struct {
	buf  [sendSlotSize]byte
	iov  [1][]byte // the message's Buffers
	ip   [16]byte
	addr net.UDPAddr
}

// sendSlotSize is the largest datagram queued: a forwarded RTP packet
// (rtpMaxPacket) with its SRTP tag, with room. A larger one is written at
// once.
const sendSlotSize = 1600

// newMediaConn wraps the media socket.
func newMediaConn(udp *net.UDPConn) *mediaConn {
	c := &mediaConn{UDPConn: udp, batch: ipv4.NewPacketConn(udp)}
	c.msgs = make([]ipv4.Message, 0, sendBatchMax)
	c.recv = newRecvBatch(c)
	return c
}

// hold starts a fan-out: writes queue until release.
func (c *mediaConn) hold() { c.holds.Add(1) }

// release ends a fan-out and sends what is queued.
func (c *mediaConn) release() {
	c.holds.Add(-1)
	c.flush()
}

// ReadFromAddrPort reads one datagram (ice.AddrPortReaderWriter, so the mux
// reads without allocating an address). On Linux it hands out the datagrams
// of one recvmmsg, up to recvBatchMax, before it reads again: under load one
// system call takes many.
func (c *mediaConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.readDatagram(b)
}

// ReadFrom is net.PacketConn's read, through the same batch.
func (c *mediaConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.readDatagram(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(addr), nil
}

// WriteToAddrPort sends b to addr now or, while a fan-out holds the socket,
// queues a copy for its release.
func (c *mediaConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if c.holds.Load() == 0 || len(b) > sendSlotSize || addr.Addr().Zone() != "" {
		// What an earlier fan-out queued goes first: a goroutine's
		// datagrams leave in the order it wrote them.
		c.flush()
		return c.UDPConn.WriteToUDPAddrPort(b, addr)
	}
	c.mu.Lock()
	if len(c.msgs) == sendBatchMax {
		c.sendLocked()
	}
	s := &c.slots[len(c.msgs)]
	n := copy(s.buf[:], b)
	ip := addr.Addr()
	if ip.Is4In6() {
		ip = ip.Unmap()
	}
	s.ip = ip.As16()
	s.addr.IP = s.ip[:]
	if ip.Is4() {
		s.addr.IP = s.ip[12:]
	}
	s.addr.Port = int(addr.Port())
	s.iov[0] = s.buf[:n]
	c.msgs = append(c.msgs, ipv4.Message{Buffers: s.iov[:], Addr: &s.addr})
	c.mu.Unlock()
	if c.holds.Load() == 0 {
		c.flush() // every holder released before this was queued
	}
	return len(b), nil
}

// WriteTo is net.PacketConn's write, for a caller without a netip.AddrPort.
func (c *mediaConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if u, ok := addr.(*net.UDPAddr); ok {
		return c.WriteToAddrPort(b, u.AddrPort())
	}
	return c.UDPConn.WriteTo(b, addr)
}

// flush sends what is queued.
func (c *mediaConn) flush() {
	c.mu.Lock()
	if len(c.msgs) > 0 {
		c.sendLocked()
	}
	c.mu.Unlock()
}

// sendLocked sends the queued datagrams, skipping one the kernel refuses,
// and empties the queue.
func (c *mediaConn) sendLocked() {
	msgs := c.msgs
	for len(msgs) > 0 {
		// sendmmsg fails only when its first datagram does (its error
		// is that datagram's): it is skipped, and a closed socket fails
		// them all, one at a time.
		n, _ := c.batch.WriteBatch(msgs, 0)
		if n <= 0 {
			c.sendErrors.Add(1)
			n = 1
		}
		c.batched.Add(uint64(n))
		msgs = msgs[n:]
	}
	c.msgs = c.msgs[:0]
}
