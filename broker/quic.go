package broker

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/wire"
)

// ALPN is the TLS application protocol of the Gonets client protocol.
const ALPN = "gonets/1"

// QUIC transport settings.
const (
	// quicIdleTimeout closes a connection that has been silent this long;
	// clients send keep-alives well within it.
	quicIdleTimeout = 60 * time.Second
	// closeLinger is how long a closing connection waits for the client to
	// read a final Error frame and close first.
	closeLinger = 250 * time.Millisecond
)

// Flow-control windows of the node's receive side. A connection gets one
// bidirectional stream, its request stream; until its Hello is verified
// the node reads at most maxHelloBytes from it, so a connection that never
// authenticates can make the node buffer no more than these windows.
// quic-go raises an authenticated session's windows as the node reads
// quickly, up to the maxima; requests are handled one at a time, so a
// larger window would only queue more of them.
const (
	streamWindow    = 32 << 10
	connWindow      = 48 << 10
	maxStreamWindow = 1 << 20
	maxConnWindow   = 3 << 19
)

// QUICConfig returns the QUIC settings of the node's listener.
func QUICConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout: quicIdleTimeout,
		// One request stream per connection: a stream the node would
		// never read is never accepted.
		MaxIncomingStreams:             1,
		MaxIncomingUniStreams:          -1, // pushes flow server to client only
		InitialStreamReceiveWindow:     streamWindow,
		MaxStreamReceiveWindow:         maxStreamWindow,
		InitialConnectionReceiveWindow: connWindow,
		MaxConnectionReceiveWindow:     maxConnWindow,
		HandshakeIdleTimeout:           10 * time.Second,
		// Path-MTU probes cost every connection packets and wake-ups for
		// the life of the connection, idle or not: on with
		// ListenOptions.PathMTUDiscovery only.
		DisablePathMTUDiscovery: true,
		// A resuming client may send its Hello in 0-RTT data; the session
		// handles nothing before the handshake completes (serveQUICConn),
		// so a replayed Hello can do no more than authenticate again.
		Allow0RTT: true,
	}
}

// Listener is the node's QUIC listener and the UDP socket under it.
type Listener struct {
	ln     *quic.EarlyListener
	tr     *quic.Transport
	conn   *net.UDPConn
	gate   atomic.Pointer[handshakeGate] // set by ServeQUIC
	once   sync.Once
	closed chan struct{} // closed when the listener stops accepting
}

// ListenOptions shape the node's QUIC listener.
type ListenOptions struct {
	// ResetSecret, when set, keys the stateless resets the node sends for
	// packets of connections it does not know: a node restarted with the
	// same secret tells the clients of its previous life at once that
	// their connections are gone, so they reconnect in a round trip
	// instead of after their idle timeout. Derive it from a key the node
	// keeps across restarts, never from one that leaves the node.
	ResetSecret []byte
	// PathMTUDiscovery turns on Path-MTU probing (RFC 8899), which lets
	// large pushes use larger packets at the cost of probe packets on
	// every connection. Default: off (1,200-byte-and-up packets as the
	// handshake found).
	PathMTUDiscovery bool
}

// ListenQUIC listens on the UDP address addr with tlsConf (TLS 1.3, ALPN
// gonets/1 set on a copy), accepting 0-RTT from resuming clients.
func ListenQUIC(addr string, tlsConf *tls.Config, opts ListenOptions) (*Listener, error) {
	tc := tlsConf.Clone()
	tc.MinVersion = tls.VersionTLS13
	tc.NextProtos = []string{ALPN}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("broker: listen quic %s: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("broker: listen quic %s: %w", addr, err)
	}
	l := &Listener{conn: conn, closed: make(chan struct{})}
	tc.GetConfigForClient = l.getConfigForClient(tc, tc.GetConfigForClient)
	tr := &quic.Transport{Conn: conn, ConnContext: withHandshakeSlot}
	if len(opts.ResetSecret) > 0 {
		key := quic.StatelessResetKey(sha256.Sum256(append([]byte("gonets stateless reset\x00"), opts.ResetSecret...)))
		tr.StatelessResetKey = &key
	}
	qc := QUICConfig()
	qc.DisablePathMTUDiscovery = !opts.PathMTUDiscovery
	ln, err := tr.ListenEarly(tc, qc)
	if err != nil {
		tr.Close()
		conn.Close()
		return nil, fmt.Errorf("broker: listen quic %s: %w", addr, err)
	}
	l.ln, l.tr = ln, tr
	return l, nil
}

// hsSlotKey keys a QUIC connection's *hsSlot in its context.
type hsSlotKey struct{}

// withHandshakeSlot gives each new QUIC connection's context a slot
// claim, released when the connection ends if nothing released it
// before. quic-go calls it on its packet-handling goroutine: it must not
// block.
func withHandshakeSlot(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	s := new(hsSlot)
	context.AfterFunc(ctx, s.release)
	return context.WithValue(ctx, hsSlotKey{}, s), nil
}

// getConfigForClient returns the TLS callback that takes a handshake slot
// once a ClientHello has been read, before the key exchange, and returns
// base's configuration (or what base's own GetConfigForClient returns)
// with callbacks that give the slot back once the key exchange is done:
// GetCertificate for a full handshake, UnwrapSession for a resumption,
// the first of them that crypto/tls calls after the key exchange.
// quic-go's early accept (the release before these, and still the
// fallback) comes only once the accept loop has run, some milliseconds
// later on a busy node, which held slots past the work they bound and
// capped QUIC's handshakes below the CPU's. quic-go runs it on the
// connection's own goroutine, which it
// blocks while it waits, and that connection's alone (its packets queue;
// the client retransmits its Initial with backoff); a refusal closes the
// connection with CRYPTO_ERROR 0x150. A waiting connection is not told
// when its client gives up (its goroutine reads nothing while it waits):
// it waits out HandshakeWait at most. A connection the node answers with
// a HelloRetryRequest keeps its slot until the client's second
// ClientHello (the node is not told when the retry goes out); if that is
// slow to come, the slot is taken back once another handshake waits
// (HandshakeHold).
func (l *Listener) getConfigForClient(base *tls.Config, next func(*tls.ClientHelloInfo) (*tls.Config, error)) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	return func(info *tls.ClientHelloInfo) (*tls.Config, error) {
		s, _ := info.Context().Value(hsSlotKey{}).(*hsSlot)
		g := l.gate.Load()
		if g == nil || s == nil || s.g != nil {
			if next != nil {
				return next(info)
			}
			return nil, nil
		}
		s.g = g
		if err := s.acquire(info.Context(), l.closed, nil); err != nil {
			return nil, err
		}
		conf := base
		if next != nil {
			c, err := next(info)
			if err != nil {
				s.release()
				return nil, err
			}
			if c != nil {
				conf = c
			}
		}
		return releasingConfig(conf, base, s), nil
	}
}

// releasingConfig returns a copy of conf whose certificate choice and
// ticket decryption release s first: crypto/tls calls one of them right
// after the key exchange of a full handshake or a resumption. Tickets
// are decrypted with the listener's keys (tickets) when conf is the
// listener's configuration, as crypto/tls does. A configuration of the
// listener's own GetConfigForClient may have keys of its own, which
// crypto/tls then encrypts with and which no exported method reaches:
// without an UnwrapSession of its own it decrypts as crypto/tls does,
// and a resumption gives its slot back when quic-go accepts the
// connection.
func releasingConfig(conf, tickets *tls.Config, s *hsSlot) *tls.Config {
	c := conf.Clone()
	c.GetConfigForClient = nil
	// crypto/tls asks c's GetCertificate when conf's would be asked, and
	// chooses among c's Certificates (NameToCertificate first) when it
	// returns neither a certificate nor an error, as for conf.
	getCert := conf.GetCertificate
	c.GetCertificate = func(info *tls.ClientHelloInfo) (*tls.Certificate, error) {
		s.release()
		if getCert != nil {
			return getCert(info)
		}
		return nil, nil
	}
	unwrap := conf.UnwrapSession
	if unwrap == nil && conf != tickets {
		return c
	}
	c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		s.release()
		if unwrap != nil {
			return unwrap(identity, cs)
		}
		return tickets.DecryptTicket(identity, cs)
	}
	return c
}

// Addr returns the address the listener is bound to.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

func (l *Listener) stopAccepting() {
	l.once.Do(func() { close(l.closed) })
	l.ln.Close()
}

// Abort closes the socket at once, telling no connection, as a crash
// would; Close (or Shutdown) still closes the rest. Tests use it to stand
// for a node killed with SIGKILL.
func (l *Listener) Abort() error {
	l.once.Do(func() { close(l.closed) })
	return l.conn.Close()
}

// Close stops accepting, closes the connections and the socket.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	l.ln.Close()
	l.tr.Close()
	return l.conn.Close()
}

// ServeQUIC accepts connections on l and serves each as a session until
// Shutdown, when it returns nil. Shutdown closes l once the sessions have
// ended.
func (b *Broker) ServeQUIC(l *Listener) error {
	ln := l.ln
	if !b.addListener(l) {
		l.Close()
		return ErrShutdown
	}
	defer b.wg.Done()
	l.gate.Store(b.admit.handshakes)
	for {
		c, err := ln.Accept(context.Background())
		if err != nil {
			b.mu.Lock()
			closing := b.closing
			b.mu.Unlock()
			if closing || errors.Is(err, quic.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("broker: accept: %w", err)
		}
		b.wg.Add(1)
		go b.serveQUICConn(c)
	}
}

// serveQUICConn waits for the client's request stream and serves it. This
// goroutine is the session's reader. Until its Hello is verified the
// connection counts against the admission bounds, which may evict it.
func (b *Broker) serveQUICConn(c *quic.Conn) {
	defer b.wg.Done()
	// An early connection is accepted once the node's first flight is
	// computed: the rest of the handshake waits for the client.
	if s, ok := c.Context().Value(hsSlotKey{}).(*hsSlot); ok {
		s.release()
	}
	deadline := time.Now().Add(b.opts.HelloTimeout)
	var addr netip.Addr
	if ua, ok := c.RemoteAddr().(*net.UDPAddr); ok {
		addr, _ = netip.AddrFromSlice(ua.IP)
	}
	g := &evictGuard{close: func() {
		c.CloseWithError(quic.ApplicationErrorCode(wire.ErrorCode_ERROR_CODE_UNAVAILABLE), evictedReason)
	}}
	p := b.admit.admit(addr, g.evict)
	defer b.admit.leave(p)
	ctx, cancel := context.WithDeadline(c.Context(), deadline)
	stop := context.AfterFunc(b.stop, cancel)
	st, err := c.AcceptStream(ctx)
	if err == nil {
		// The stream and its Hello may have come in 0-RTT data, which an
		// attacker can replay: act on nothing before the handshake is done.
		select {
		case <-c.HandshakeComplete():
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	stop()
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			b.m.helloTimeouts.Inc()
		}
		c.CloseWithError(quic.ApplicationErrorCode(wire.ErrorCode_ERROR_CODE_BAD_FRAME), "no request stream")
		return
	}
	qc := &quicConn{c: c, st: st}
	if err := b.serve(c.Context(), qc, deadline, func() { b.admit.leave(p) }, g); err != nil {
		b.log.Debug("broker: session ended", "remote", c.RemoteAddr(), "err", err)
	}
}

// quicConn carries a session over a QUIC connection: the client's
// bidirectional stream for requests and responses, and a unidirectional
// stream for pushes.
type quicConn struct {
	c  *quic.Conn
	st *quic.Stream

	closeOnce sync.Once
}

func (q *quicConn) Read(p []byte) (int, error)         { return q.st.Read(p) }
func (q *quicConn) Write(p []byte) (int, error)        { return q.st.Write(p) }
func (q *quicConn) SetWriteDeadline(t time.Time) error { return q.st.SetWriteDeadline(t) }
func (q *quicConn) OpenPush() (Stream, error)          { return q.c.OpenUniStream() }

// Close ends the request stream, gives the client a moment to read what
// was written and close first, then closes the connection with code.
func (q *quicConn) Close(code wire.ErrorCode, reason string) error {
	q.closeOnce.Do(func() {
		q.st.Close()
		q.st.CancelRead(quic.StreamErrorCode(code))
		if code != 0 {
			t := time.NewTimer(closeLinger)
			select {
			case <-q.c.Context().Done():
			case <-t.C:
			}
			t.Stop()
		}
		q.c.CloseWithError(quic.ApplicationErrorCode(code), reason)
	})
	return nil
}

func (c *quicConn) remoteAddr() netip.Addr {
	if ua, ok := c.c.RemoteAddr().(*net.UDPAddr); ok {
		a, _ := netip.AddrFromSlice(ua.IP)
		return a
	}
	return netip.Addr{}
}
