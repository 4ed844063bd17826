package bench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// socket is one of the load generator's UDP sockets: it counts the
// datagrams it sends and receives, so that the bench can say how many
// packets the node handled per message (see docs/bench.md).
//
// Every datagram the generator sends goes to the node, and every one it
// receives comes from it, so these counts are the node's own datagrams,
// out and in, whatever else the machine runs; the kernel's counters
// (/proc/net/snmp) would also count every other process in the network
// namespace, and count a GSO send as one datagram.
//
// It keeps quic-go's fast paths: it is an OOBCapablePacketConn (the
// embedded *net.UDPConn's methods), so quic-go writes with WriteMsgUDP
// and GSO, and its ReadBatch reads with recvmmsg as quic-go's own would.
type socket struct {
	*net.UDPConn
	batch *ipv4.PacketConn

	sent     atomic.Int64 // datagrams, a GSO write counted per segment
	received atomic.Int64
}

// listenSocket opens a counting socket on a free port of 127.0.0.1.
func listenSocket() (*socket, error) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("bench: client socket: %w", err)
	}
	return &socket{UDPConn: udp, batch: ipv4.NewPacketConn(udp)}, nil
}

// transport returns a QUIC transport on the socket.
func (s *socket) transport() *quic.Transport { return &quic.Transport{Conn: s} }

// port is the socket's local port.
func (s *socket) port() int { return s.LocalAddr().(*net.UDPAddr).Port }

// ReadBatch reads as quic-go does (recvmmsg), counting the datagrams.
func (s *socket) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	n, err := s.batch.ReadBatch(ms, flags)
	if n > 0 {
		s.received.Add(int64(n))
	}
	return n, err
}

// WriteMsgUDP writes as quic-go does, counting each datagram of a GSO
// batch.
func (s *socket) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	n, oobn, err := s.UDPConn.WriteMsgUDP(b, oob, addr)
	if err == nil {
		s.sent.Add(segments(len(b), oob))
	}
	return n, oobn, err
}

// ReadMsgUDP and WriteTo are not on quic-go's path for this socket, but
// are counted should they be.
func (s *socket) ReadMsgUDP(b, oob []byte) (int, int, int, *net.UDPAddr, error) {
	n, oobn, flags, addr, err := s.UDPConn.ReadMsgUDP(b, oob)
	if err == nil {
		s.received.Add(1)
	}
	return n, oobn, flags, addr, err
}

func (s *socket) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := s.UDPConn.WriteTo(b, addr)
	if err == nil {
		s.sent.Add(1)
	}
	return n, err
}

// segments returns how many datagrams a write of n bytes with control
// messages oob puts on the wire: several when oob asks for GSO
// (UDP_SEGMENT), else one.
func segments(n int, oob []byte) int64 {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_SEGMENT && len(data) >= 2 {
			if size := int(binary.NativeEndian.Uint16(data)); size > 0 {
				return int64((n + size - 1) / size)
			}
		}
		oob = rest
	}
	return 1
}

// datagrams are a load generator's datagram counts (cumulative, over
// its sockets) and the sessions it holds. They travel from a worker
// process as JSON.
type datagrams struct {
	Sent     int64 `json:"sent"`     // to the node
	Received int64 `json:"received"` // from the node
	// Dropped counts datagrams from the node that the generator's full
	// socket buffers dropped (/proc/net/udp): sent by the node, never
	// read.
	Dropped  int64 `json:"dropped"`
	Sessions int   `json:"sessions"`
}

// add adds o's counts to d's.
func (d *datagrams) add(o datagrams) {
	d.Sent += o.Sent
	d.Received += o.Received
	d.Dropped += o.Dropped
	d.Sessions += o.Sessions
}

// countSockets sums the counts of socks, with their drops.
func countSockets(socks []*socket) datagrams {
	var d datagrams
	ports := make([]int, len(socks))
	for i, s := range socks {
		d.Sent += s.sent.Load()
		d.Received += s.received.Load()
		ports[i] = s.port()
	}
	d.Dropped = udpDrops(ports...)
	return d
}

// udpDrops sums the drops the kernel counted (/proc/net/udp) on the
// IPv4 UDP sockets bound to ports of 127.0.0.1; 0 where it cannot tell.
func udpDrops(ports ...int) int64 {
	if len(ports) == 0 {
		return 0
	}
	want := make(map[string]bool, len(ports))
	for _, p := range ports {
		want[fmt.Sprintf("0100007F:%04X", p)] = true
	}
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		return 0
	}
	defer f.Close()
	var drops int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st ... ref pointer drops
		fields := strings.Fields(sc.Text())
		if len(fields) < 13 || !want[fields[1]] {
			continue
		}
		if n, err := strconv.ParseInt(fields[len(fields)-1], 10, 64); err == nil {
			drops += n
		}
	}
	return drops
}
