package bench

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Source ports the generator binds its TCP connections to, on each of
// sourceHosts loopback addresses (127.0.0.1, .2, ...): 164,000 source
// addresses for the node's one listening address.
const (
	firstSourcePort = 20000
	lastSourcePort  = 60999
	sourceHosts     = 4
)

// tcpCounter dials the load generator's TCP connections (the SDK's
// Options.DialTCP) and counts the segments they exchange with the node,
// from the kernel's own per-connection counts (TCP_INFO's tcpi_segs_out
// and tcpi_segs_in). On loopback a connection's received segments are
// the node's sent ones, and the other way round, so these are the node's
// packets, as the UDP sockets' counts are over QUIC (socket.go).
//
// It picks source addresses itself, in turn: left to choose, Linux gives
// connect() the even ports of its ephemeral range first and, once those
// are taken (about 14,000 connections to one address), scans the range
// on every connect, which would make the generator, not the node, the
// cost of a large run. SO_REUSEADDR lets a port whose last connection is
// in TIME_WAIT serve again; a port in use is skipped.
type tcpCounter struct {
	next atomic.Uint32

	mu    sync.Mutex // guards the following
	conns map[*countedConn]struct{}
	// closedSent and closedReceived are the final counts of the
	// connections closed, so that the totals never go back.
	closedSent, closedReceived int64
}

func newTCPCounter() *tcpCounter { return &tcpCounter{conns: make(map[*countedConn]struct{})} }

// dial opens a TCP connection to addr from the next free source address
// and counts it until it closes.
func (tc *tcpCounter) dial(ctx context.Context, addr string) (net.Conn, error) {
	const ports = lastSourcePort - firstSourcePort + 1
	var err error
	for range 256 {
		k := int(tc.next.Add(1) - 1)
		port, host := firstSourcePort+k%ports, byte(1+k/ports%sourceHosts)
		nd := net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, host), Port: port},
			Control:   reuseAddr,
			// The SDK's own dialer's, at its defaults (25 s keep-alive,
			// 60 s idle timeout).
			KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 25 * time.Second, Interval: 35 * time.Second / 3, Count: 3},
		}
		var c net.Conn
		if c, err = nd.DialContext(ctx, "tcp", addr); err == nil {
			cc := &countedConn{TCPConn: c.(*net.TCPConn), owner: tc}
			tc.mu.Lock()
			tc.conns[cc] = struct{}{}
			tc.mu.Unlock()
			return cc, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, err
		}
	}
	return nil, err
}

// counts returns the segments sent to the node and received from it so
// far, by every connection dialled.
func (tc *tcpCounter) counts() (sent, received int64) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	sent, received = tc.closedSent, tc.closedReceived
	for c := range tc.conns {
		if s, r, ok := c.segments(); ok {
			sent += s
			received += r
		}
	}
	return sent, received
}

// countedConn is a counted connection: its close keeps its final counts.
type countedConn struct {
	*net.TCPConn
	owner *tcpCounter
	once  sync.Once
}

// segments reads the connection's counts from the kernel.
func (c *countedConn) segments() (sent, received int64, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
		return 0, 0, false
	}
	return int64(info.Segs_out), int64(info.Segs_in), true
}

// Close closes the connection, its final counts added to the closed
// ones.
func (c *countedConn) Close() error {
	c.once.Do(func() {
		s, r, ok := c.segments()
		c.owner.mu.Lock()
		if ok {
			c.owner.closedSent += s
			c.owner.closedReceived += r
		}
		delete(c.owner.conns, c)
		c.owner.mu.Unlock()
	})
	return c.TCPConn.Close()
}

// reuseAddr sets SO_REUSEADDR on a socket before it binds.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	}); cerr != nil {
		return cerr
	}
	return err
}
