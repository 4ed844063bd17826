package callsfu

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvBatchMax is the most datagrams one recvmmsg takes off the socket.
const recvBatchMax = 16

// recvSlotSize is a received datagram's room: the ICE mux's own buffer (pion
// ice's receiveMTU), so that nothing it would take is cut.
const recvSlotSize = 8192

// recvBatch holds the datagrams of one recvmmsg that the ICE mux has not
// read yet. Only the mux's one reader goroutine uses it (under
// mediaConn.readMu).
type recvBatch struct {
	hdrs  [recvBatchMax]mmsghdr
	iovs  [recvBatchMax]unix.Iovec
	names [recvBatchMax]unix.RawSockaddrInet6
	bufs  [recvBatchMax][recvSlotSize]byte
	n     int // datagrams received
	next  int // the next one to hand out
	raw   syscall.RawConn
	read  func(fd uintptr) bool // recvmmsg, made once
	errno syscall.Errno
}

// mmsghdr is Linux's struct mmsghdr: a msghdr and the length received.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
}

// newRecvBatch prepares the batch of c's socket; nil if the socket gives no
// raw access (then reads are one at a time).
func newRecvBatch(c *mediaConn) *recvBatch {
	raw, err := c.UDPConn.SyscallConn()
	if err != nil {
		return nil
	}
	r := &recvBatch{raw: raw}
	r.read = func(fd uintptr) bool {
		for i := range r.hdrs {
			h := &r.hdrs[i]
			r.iovs[i].Base = &r.bufs[i][0]
			r.iovs[i].SetLen(recvSlotSize)
			h.hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
			h.hdr.Namelen = uint32(unsafe.Sizeof(r.names[i]))
			h.hdr.Iov = &r.iovs[i]
			h.hdr.SetIovlen(1)
			h.hdr.Flags = 0
			h.len = 0
		}
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])),
			recvBatchMax, unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EAGAIN || errno == unix.EINTR {
			return false // wait until readable (a deadline ends the wait)
		}
		r.n, r.next, r.errno = int(n), 0, errno
		if errno != 0 {
			r.n = 0
		}
		return true
	}
	return r
}

// readDatagram copies the next received datagram into b, reading a new
// batch when the last is used up. A datagram the kernel cut (larger than a
// slot) is skipped.
func (c *mediaConn) readDatagram(b []byte) (int, netip.AddrPort, error) {
	r := c.recv
	if r == nil {
		return c.UDPConn.ReadFromUDPAddrPort(b)
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		for r.next < r.n {
			i := r.next
			r.next++
			h := &r.hdrs[i]
			if h.hdr.Flags&unix.MSG_TRUNC != 0 {
				continue
			}
			addr, ok := sockaddrAddrPort(&r.names[i])
			if !ok {
				continue
			}
			return copy(b, r.bufs[i][:h.len]), addr, nil
		}
		if err := r.raw.Read(r.read); err != nil {
			return 0, netip.AddrPort{}, err
		}
		if r.errno != 0 {
			return 0, netip.AddrPort{}, r.errno
		}
	}
}

// sockaddrAddrPort returns the address of a received datagram's sockaddr
// (sockaddr_in or sockaddr_in6).
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) (netip.AddrPort, bool) {
	b := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	port := binary.BigEndian.Uint16(b[2:4])
	switch sa.Family {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), true
	case unix.AF_INET6:
		ip := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(ip, port), true
	}
	return netip.AddrPort{}, false
}
