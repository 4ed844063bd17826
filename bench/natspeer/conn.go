package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxAckPending caps the asynchronous JetStream publishes awaiting their
// ack on one connection; a sender past it stalls (up to stallWait) until
// acks come back, so a slow store shows as latency, not as loss.
const (
	maxAckPending = 1 << 16
	stallWait     = 5 * time.Second
)

// dialer opens client connections to the node.
type dialer struct {
	url   string
	tls   *tls.Config // nil: plain TCP
	ports portDialer
	// disconnects counts connections the server or the network dropped.
	disconnects atomic.Int64
}

// connect opens one connection. It never reconnects: a dropped connection
// loses what it was owed, and that shows in the delivered ratio.
func (d *dialer) connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.NoReconnect(),
		nats.Timeout(30 * time.Second),
		nats.SetCustomDialer(&d.ports),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				d.disconnects.Add(1)
			}
		}),
	}
	if d.tls != nil {
		opts = append(opts, nats.Secure(d.tls))
	}
	nc, err := nats.Connect(d.url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", d.url, err)
	}
	return nc, nil
}

// Source ports the generator binds its connections to.
const (
	firstSourcePort = 20000
	lastSourcePort  = 60999
)

// portDialer dials 127.0.0.1 from source ports it picks itself, in turn.
// Left to choose, Linux gives connect() the even ports of its ephemeral
// range first; once those are taken (about 14,000 connections to one
// address here) it scans the range on every connect, and a generator
// holding 19,500 sessions spends most of its time in connect(). A bound
// port costs no search. SO_REUSEADDR lets a port whose last connection is
// in TIME_WAIT serve again; a port in use is skipped.
type portDialer struct {
	next atomic.Uint32

	mu    sync.Mutex     // guards the following
	conns []*net.TCPConn // every connection dialled, until it is seen closed
}

// Dial implements nats.CustomDialer.
func (d *portDialer) Dial(network, address string) (net.Conn, error) {
	var err error
	for range 256 {
		port := firstSourcePort + int(d.next.Add(1)%(lastSourcePort-firstSourcePort+1))
		nd := net.Dialer{
			Timeout:   30 * time.Second,
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port},
			Control:   reuseAddr,
		}
		var c net.Conn
		if c, err = nd.Dial(network, address); err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				d.mu.Lock()
				d.conns = append(d.conns, tc)
				d.mu.Unlock()
			}
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, err
		}
	}
	return nil, err
}

// segments are TCP segments the generator's connections sent (to the
// node) and received (from it).
type segments struct{ sent, received int64 }

// segments sums the kernel's per-connection counts (TCP_INFO's
// tcpi_segs_out and tcpi_segs_in) over the connections still open, and
// forgets those that closed. On loopback a connection's received
// segments are the node's sent ones, and the other way round.
func (d *portDialer) segments() segments {
	d.mu.Lock()
	defer d.mu.Unlock()
	var s segments
	open := d.conns[:0]
	for _, c := range d.conns {
		rc, err := c.SyscallConn()
		if err != nil {
			continue
		}
		var info *unix.TCPInfo
		if err := rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
			continue // closed
		}
		open = append(open, c)
		if err == nil {
			s.sent += int64(info.Segs_out)
			s.received += int64(info.Segs_in)
		}
	}
	clear(d.conns[len(open):])
	d.conns = open
	return s
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

// stream creates a file-backed stream capturing subjects. Durability comes
// from the server's sync_interval: always (SyncAlways), which fsyncs every
// write before the ack.
func createStream(ctx context.Context, js jetstream.JetStream, name string, subjects ...string) error {
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      name,
		Subjects:  subjects,
		Storage:   jetstream.FileStorage,
		Replicas:  1,
		Retention: jetstream.LimitsPolicy,
		Discard:   jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", name, err)
	}
	return nil
}
