package broker

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// TCP keep-alive of the node's accepted connections: a peer silent this
// long is probed, and dropped when probes go unanswered, as QUIC's idle
// timeout drops a silent connection. The kernel sends the probes.
const (
	tcpKeepAliveIdle     = quicIdleTimeout
	tcpKeepAliveInterval = 15 * time.Second
	tcpKeepAliveCount    = 4
)

// pushChunk is the most push bytes written under the connection's write
// lock at a time: a response waits behind at most this much of a backlog
// of pushes (or one larger push frame).
const pushChunk = 16 << 10

// TCPListener is the node's TLS-over-TCP listener: the fallback transport
// for networks that block or throttle UDP, with the same frames and the
// same session semantics as QUIC.
type TCPListener struct {
	ln     net.Listener
	tls    *tls.Config
	once   sync.Once
	closed chan struct{} // closed by Close

	beats *heartbeats // nil: none (Options.TCPHeartbeat negative)

	mu      sync.Mutex // guards the following
	conns   map[net.Conn]struct{}
	aborted bool
}

// ListenTCP listens on the TCP address addr for TLS 1.3 clients with
// tlsConf (ALPN gonets/1 set on a copy).
func ListenTCP(addr string, tlsConf *tls.Config) (*TCPListener, error) {
	tc := tlsConf.Clone()
	tc.MinVersion = tls.VersionTLS13
	tc.NextProtos = []string{ALPN}
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: tcpKeepAliveIdle, Interval: tcpKeepAliveInterval, Count: tcpKeepAliveCount,
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("broker: listen tcp %s: %w", addr, err)
	}
	tc.GetConfigForClient = handshakeSlotTCP(tc.GetConfigForClient)
	return &TCPListener{ln: ln, tls: tc, closed: make(chan struct{}), conns: make(map[net.Conn]struct{})}, nil
}

// handshakeSlotTCP returns the TLS callback that takes a handshake slot
// once a ClientHello has been read, before the key exchange, then calls
// next. The slot is taken after the ClientHello rather than at accept, so
// that a client that connects and says nothing holds none. While it waits
// it watches the socket, so that a client that gives up frees its place.
func handshakeSlotTCP(next func(*tls.ClientHelloInfo) (*tls.Config, error)) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	return func(info *tls.ClientHelloInfo) (*tls.Config, error) {
		if h, ok := info.Conn.(*handshakeConn); ok {
			if err := h.slot.acquire(info.Context(), h.quit, h.watch); err != nil {
				return nil, err
			}
		}
		if next != nil {
			return next(info)
		}
		return nil, nil
	}
}

// handshakeConn is an accepted connection under its TLS connection. It
// holds the connection's handshake slot until its first write, the
// node's first flight: what follows waits for the client.
type handshakeConn struct {
	net.Conn
	slot hsSlot
	quit <-chan struct{} // the listener's closed
}

func (h *handshakeConn) Write(p []byte) (int, error) {
	h.slot.release()
	return h.Conn.Write(p)
}

// watch watches the socket while the handshake waits for a slot: gone is
// closed when the client closes or resets the connection, or the node
// closes it. The client sends nothing more before the node's first
// flight, so the watch only peeks. stop ends the watch.
func (h *handshakeConn) watch() (gone <-chan struct{}, stop func()) {
	sc, ok := h.Conn.(syscall.Conn)
	if !ok {
		return nil, func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, func() {}
	}
	ch := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [1]byte
		gone := false
		err := rc.Read(func(fd uintptr) bool {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EAGAIN || err == syscall.EINTR {
				return false
			}
			gone = n == 0 || err != nil // end of stream, or reset
			return true
		})
		// The node closed the socket (the admission bounds evicted it):
		// nothing is left to hand a slot to.
		if gone || errors.Is(err, net.ErrClosed) {
			close(ch)
		}
	}()
	return ch, func() {
		h.Conn.SetReadDeadline(time.Unix(1, 0)) // ends rc.Read
		<-done
		h.Conn.SetReadDeadline(time.Time{})
	}
}

// Addr returns the address the listener is bound to.
func (l *TCPListener) Addr() net.Addr { return l.ln.Addr() }

func (l *TCPListener) stopAccepting() { l.Close() }

// Abort closes the listening socket and every connection accepted on it
// at once, telling no client anything (no Error frame, no TLS close), as
// the kernel ends a process killed with SIGKILL; Shutdown still ends the
// sessions. Tests use it to stand for a crash.
func (l *TCPListener) Abort() error {
	err := l.Close()
	l.mu.Lock()
	l.aborted = true
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	return err
}

// track records an accepted connection until untrack, unless the listener
// was aborted.
func (l *TCPListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.aborted {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *TCPListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// Close stops accepting. Accepted connections are closed by their
// sessions.
func (l *TCPListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		err = l.ln.Close()
	})
	return err
}

// Pauses of the accept loop after a failed accept (out of file
// descriptors, say), doubling from the first to the last.
const (
	acceptPauseMin = 5 * time.Millisecond
	acceptPauseMax = time.Second
)

// ServeTCP accepts connections on l and serves each as a session until
// Shutdown, when it returns nil. An accept that fails for want of
// resources (file descriptors, buffers) pauses the loop, up to a second,
// and it goes on: the node keeps its sessions and its other transport,
// and accepts again once it can.
func (b *Broker) ServeTCP(l *TCPListener) error {
	if !b.addListener(l) {
		l.Close()
		return ErrShutdown
	}
	defer b.wg.Done()
	if b.opts.TCPHeartbeat > 0 {
		l.beats = newHeartbeats(b.opts.TCPHeartbeat)
		b.wg.Add(1)
		go b.beat(l)
	}
	var pause time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			b.mu.Lock()
			closing := b.closing
			b.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !acceptRetryable(err) {
				return fmt.Errorf("broker: accept tcp: %w", err)
			}
			pause = min(max(2*pause, acceptPauseMin), acceptPauseMax)
			b.log.Warn("broker: accept tcp failed; pausing", "err", err, "pause", pause)
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-l.closed:
				t.Stop()
			}
			continue
		}
		pause = 0
		if !l.track(c) {
			c.Close()
			continue
		}
		b.wg.Add(1)
		go func() {
			defer l.untrack(c)
			b.serveTCPConn(c, l)
		}()
	}
}

// acceptRetryable reports whether a failed accept may succeed later: a
// timeout, or an error of the system call (EMFILE, ENFILE, ENOBUFS,
// ENOMEM, a connection aborted or refused by the firewall) on a listener
// that is still open.
func acceptRetryable(err error) bool {
	var ne net.Error
	var errno syscall.Errno
	return (errors.As(err, &ne) && ne.Timeout()) || errors.As(err, &errno)
}

// serveTCPConn runs the TLS handshake and serves the session. This
// goroutine is the session's reader. Until its Hello is verified the
// connection counts against the admission bounds, which may evict it.
func (b *Broker) serveTCPConn(c net.Conn, l *TCPListener) {
	defer b.wg.Done()
	deadline := time.Now().Add(b.opts.HelloTimeout)
	var addr netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		addr, _ = netip.AddrFromSlice(ta.IP)
	}
	g := &evictGuard{close: func() { c.Close() }}
	p := b.admit.admit(addr, g.evict)
	defer b.admit.leave(p)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	stop := context.AfterFunc(b.stop, cancel)
	hc := &handshakeConn{Conn: c, slot: hsSlot{g: b.admit.handshakes}, quit: l.closed}
	tc := tls.Server(hc, l.tls)
	err := tc.HandshakeContext(ctx)
	hc.slot.release()
	stop()
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			b.m.helloTimeouts.Inc()
		}
		c.Close()
		return
	}
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	conn := &tcpConn{c: tc, raw: c, cancel: scancel, timeout: b.opts.WriteTimeout}
	if l.beats != nil {
		setUserTimeout(c, tcpUserTimeout)
		conn.beats = l.beats // listed at its first write
		defer l.beats.remove(conn)
	}
	if err := b.serve(sctx, conn, deadline, func() { b.admit.leave(p) }, g); err != nil {
		b.log.Debug("broker: session ended", "remote", c.RemoteAddr(), "err", err)
	}
}

// tcpConn carries a session over one TLS connection. Client frames come
// in; responses, control frames and pushes go out interleaved at frame
// boundaries, which the client tells apart by their id and body. Writes
// are serialised by wmu, pushes a chunk at a time, so that a response
// waits behind at most pushChunk bytes of pushes.
type tcpConn struct {
	c       *tls.Conn
	raw     net.Conn           // under c: closing it ends every write at once
	cancel  context.CancelFunc // ends the session's context on Close
	timeout time.Duration      // each push chunk's deadline

	wmu       sync.Mutex   // serialises writes to c
	deadline  atomic.Int64 // of the responses' writes, Unix ns; 0: none
	errorSent atomic.Bool  // a final Error frame was written (wroteError)
	closeOnce sync.Once

	// beats, when set, sends heartbeats: wrote is its sweep count at the
	// last write; every (the sweeps of silence before one) and slot (the
	// connection's place in beats) are guarded by beats.mu; listed says
	// whether it is there.
	beats  *heartbeats
	wrote  atomic.Int64
	wanted atomic.Bool // the client asked for them (Hello)
	listed atomic.Int32
	every  int64
	slot   int
}

func (t *tcpConn) Read(p []byte) (int, error) { return t.c.Read(p) }

// Write writes responses (whole frames) under the write lock, by the
// deadline SetWriteDeadline last set.
func (t *tcpConn) Write(p []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.noteWrite()
	var d time.Time
	if ns := t.deadline.Load(); ns != 0 {
		d = time.Unix(0, ns)
	}
	t.c.SetWriteDeadline(d)
	return t.c.Write(p)
}

// noteWrite notes a write for the heartbeats, listing the connection
// at the first after its client asked for them (Welcome).
func (t *tcpConn) noteWrite() {
	if t.beats != nil {
		t.wrote.Store(t.beats.sweeps.Load())
		if t.wanted.Load() && t.listed.Load() == unlisted {
			t.beats.add(t)
		}
	}
}

// wantHeartbeats lists the connection for heartbeats at its next write,
// when the node sends any.
func (t *tcpConn) wantHeartbeats() bool {
	if t.beats == nil {
		return false
	}
	t.wanted.Store(true)
	return true
}

// SetWriteDeadline sets the deadline of the responses' writes. Each
// writer (responses, pushes, heartbeats) sets its own under the write
// lock, so that none runs by another's.
func (t *tcpConn) SetWriteDeadline(d time.Time) error {
	var ns int64
	if !d.IsZero() {
		ns = d.UnixNano()
	}
	t.deadline.Store(ns)
	return nil
}

// OpenPush returns the push side of the connection.
func (t *tcpConn) OpenPush() (Stream, error) { return (*tcpPush)(t), nil }

// wroteError notes that the session's final Error frame was written, so
// that Close does not write another.
func (t *tcpConn) wroteError() { t.errorSent.Store(true) }

// Close ends the connection. TCP has no close code, so with a code the
// code and reason go out as a final Error frame (unless one was written
// already), after the write in progress if there is one, then the write
// side closes, and the client is given closeLinger to read them and
// close. The whole takes closeLinger at most: the socket under TLS is
// closed then, whatever is under way (a write that makes no progress, or
// TLS's close_notify, which would wait 5 s for room in a full socket
// buffer). It is the socket that is closed, not the TLS connection, whose
// close waits for a write in progress (up to its deadline).
func (t *tcpConn) Close(code wire.ErrorCode, reason string) error {
	t.closeOnce.Do(func() {
		t.cancel()
		if t.beats != nil {
			// No heartbeat into the linger below: one would find the
			// write side closed and cut the linger short.
			t.beats.remove(t)
		}
		if code != 0 {
			deadline := time.Now().Add(closeLinger)
			force := time.AfterFunc(closeLinger, func() { t.raw.Close() })
			defer force.Stop()
			// A write in progress ends by the deadline at the latest,
			// when force closes the socket under it.
			t.wmu.Lock()
			t.c.SetWriteDeadline(deadline)
			if !t.errorSent.Load() {
				f := &wire.Frame{Body: &wire.Frame_Error{Error: &wire.Error{Code: code, Message: reason}}}
				if buf, err := wire.AppendFrame(nil, f, 0); err == nil {
					t.c.Write(buf)
				}
			}
			t.c.CloseWrite()
			t.wmu.Unlock()
			t.c.SetReadDeadline(deadline)
			var discard [512]byte
			for {
				if _, err := t.c.Read(discard[:]); err != nil {
					break
				}
			}
		}
		t.raw.Close()
	})
	return nil
}

// tcpPush is the push side of a tcpConn.
type tcpPush tcpConn

// Write writes a batch of whole push frames a chunk at a time, taking the
// write lock for each, each chunk with a fresh deadline. TLS cannot
// resume a write that timed out: the count returned is what went out
// whole, and the connection is then unusable, which closes the session.
func (p *tcpPush) Write(buf []byte) (int, error) {
	written := 0
	for len(buf) > 0 {
		n := chunkEnd(buf, pushChunk)
		p.wmu.Lock()
		p.c.SetWriteDeadline(time.Now().Add(p.timeout))
		(*tcpConn)(p).noteWrite()
		w, err := p.c.Write(buf[:n])
		p.wmu.Unlock()
		written += w
		if err != nil {
			return written, err
		}
		buf = buf[n:]
	}
	return written, nil
}

// SetWriteDeadline does nothing: Write gives each chunk its own
// deadline, under the write lock.
func (p *tcpPush) SetWriteDeadline(time.Time) error { return nil }

// chunkEnd returns how many bytes of buf, a run of length-prefixed
// frames, make up whole frames within max bytes (at least one frame).
func chunkEnd(buf []byte, max int) int {
	end := 0
	for end+4 <= len(buf) {
		next := end + 4 + int(binary.BigEndian.Uint32(buf[end:]))
		if next > len(buf) || (end > 0 && next > max) {
			break
		}
		end = next
	}
	if end == 0 {
		return len(buf) // not frames: write it whole
	}
	return end
}

func (c *tcpConn) remoteAddr() netip.Addr {
	if ta, ok := c.raw.RemoteAddr().(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(ta.IP)
		return a
	}
	return netip.Addr{}
}
