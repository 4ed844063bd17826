package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// tcpCloseWait bounds closing a TCP connection: the TLS close_notify
// alert waits for room in the socket's buffer, which a node that stopped
// reading never makes.
const tcpCloseWait = 250 * time.Millisecond

// tcpConn is a session's TLS connection over TCP: requests go out, and
// responses, control frames and pushes come in on the one stream,
// interleaved at frame boundaries (docs/protocol.md).
//
// TCP has no end-to-end keep-alive or idle timeout as QUIC has (the
// kernel's keep-alives stop at the first middlebox that terminates TCP).
// The node writes a heartbeat to a session it has written nothing to for
// 25 s (broker.tcp_heartbeat), which keeps the path open and says it is
// there; watch pings the node only once it has been silent for well past
// that (halfway from the keep-alive period to the idle timeout: ~40 s),
// as against a node with heartbeats off, and ends the session once it
// has been silent for the idle timeout.
type tcpConn struct {
	tc        *tls.Conn
	keepAlive time.Duration
	idle      time.Duration
	beats     bool         // the node agreed to send heartbeats (Welcome)
	heard     atomic.Int64 // when a read last returned bytes, Unix ns
	closeOnce sync.Once
}

// dialTCP opens a TLS connection over TCP to addr, with the kernel's
// keep-alives on, and checks that the node speaks gonets/1.
func dialTCP(ctx context.Context, addr string, d *dialer) (*tcpConn, error) {
	var nc net.Conn
	var err error
	if d.dialTCP != nil {
		if nc, err = d.dialTCP(ctx, addr); err == nil && nc == nil {
			err = errors.New("Options.DialTCP returned neither a connection nor an error")
		}
	} else {
		nd := net.Dialer{KeepAliveConfig: d.tcpKeepAlive()}
		nc, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	tc := d.tls.Clone()
	if tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		tc.ServerName = host
	}
	t := &tcpConn{tc: tls.Client(nc, tc), keepAlive: d.keepAlive, idle: d.idle}
	if err := t.tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	if p := t.tc.ConnectionState().NegotiatedProtocol; p != ALPN {
		t.close(true, "")
		return nil, fmt.Errorf("%w: the node agreed on application protocol %q, not %s", ErrProtocol, p, ALPN)
	}
	t.heard.Store(time.Now().UnixNano())
	return t, nil
}

func (t *tcpConn) transport() Transport { return TransportTCP }

// Read reads the connection: responses, control frames and pushes.
func (t *tcpConn) Read(p []byte) (int, error) {
	n, err := t.tc.Read(p)
	if n > 0 {
		t.heard.Store(time.Now().UnixNano())
	}
	return n, err
}

// Write writes requests; the session serialises calls. A write that
// makes no progress for the idle timeout fails, and with it the session
// (TLS cannot resume a write that timed out).
func (t *tcpConn) Write(p []byte) (int, error) {
	t.tc.SetWriteDeadline(time.Now().Add(t.idle))
	return t.tc.Write(p)
}

// start runs the session's three goroutines: the reader, which sorts
// what it reads into responses, control frames and queued pushes; the
// queue's, which hands pushes to the delivery goroutine; and watch.
func (t *tcpConn) start(s *session) {
	t.beats = slices.Contains(s.welcome.GetCapabilities(), wire.CapHeartbeat)
	s.wg.Add(3)
	go s.readResponses(wire.NewReader(t, s.maxRecv))
	go s.queue.run(s)
	go t.watch(s)
}

// watch checks, four times between the ping and the idle timeout, how
// long the node has been silent: after pingAfter it pings (the Pong's id
// matches no request and is dropped), after the idle timeout it ends the
// session.
func (t *tcpConn) watch(s *session) {
	defer s.wg.Done()
	tick := time.NewTicker(max(time.Millisecond, (t.idle-t.pingAfter())/4))
	defer tick.Stop()
	for {
		select {
		case <-s.dead:
			return
		case <-tick.C:
		}
		quiet := time.Since(time.Unix(0, t.heard.Load()))
		switch {
		case quiet >= t.idle:
			s.fail(fmt.Errorf("client: tcp connection: nothing heard from the node for %v", quiet.Round(time.Millisecond)))
			return
		case quiet >= t.pingAfter():
			// A write that fails ends the session; one stuck behind a
			// full send buffer fails by its deadline.
			s.write(&wire.Frame{Id: s.ids.Add(1), Body: &wire.Frame_Ping{Ping: &wire.Ping{}}})
		}
	}
}

// pingAfter is how long the node may be silent before the client pings
// it: with the node's heartbeats, halfway from the keep-alive period to
// the idle timeout, well past a heartbeat and leaving the Pong time to
// come back; without, the keep-alive period, which keeps NATs open.
func (t *tcpConn) pingAfter() time.Duration {
	if !t.beats {
		return t.keepAlive
	}
	return t.keepAlive + (t.idle-t.keepAlive)/2
}

// close sends TLS close_notify, for up to tcpCloseWait, and closes the
// socket. There is no error code to send: a protocol violation the node
// learns from its own log.
func (t *tcpConn) close(protocol bool, reason string) {
	t.closeOnce.Do(func() {
		// Closing the socket unblocks a close_notify stuck behind a
		// full send buffer (tls.Conn.Close skips the alert when a write
		// is in flight).
		stop := time.AfterFunc(tcpCloseWait, func() { t.tc.NetConn().Close() })
		t.tc.Close()
		stop.Stop()
	})
}
