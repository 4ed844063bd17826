package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// conn is the connection under a session: QUIC (quicConn) or TLS over TCP
// (tcpConn). A session writes requests and reads responses through it,
// and it starts the readers that hand the rest to the session.
type conn interface {
	// Read reads responses and control frames (over TCP, pushes too).
	Read(p []byte) (int, error)
	// Write writes request frames; the session serialises calls.
	Write(p []byte) (int, error)
	// start starts the session's readers after Welcome, counted in
	// s.wg; they end when the connection does.
	start(s *session)
	// close closes the connection, if it is not closed already;
	// protocol says the node broke the protocol.
	close(protocol bool, reason string)
	// transport names the transport.
	transport() Transport
}

// fallbackDelay is how long the first transport of a race has to itself
// before the other starts (happy eyeballs, RFC 8305's connection attempt
// delay): long enough for a QUIC handshake on most networks, short
// enough that a network that drops UDP costs little.
const fallbackDelay = 250 * time.Millisecond

// dialer opens a Client's connections. It is fixed at Dial.
type dialer struct {
	via     Transport // the choice: auto, quic or tcp
	addr    string    // QUIC
	tcpAddr string
	tls     *tls.Config
	quic    *quic.Config
	udp     *quic.Transport                                          // nil: a socket per QUIC connection
	dialTCP func(ctx context.Context, addr string) (net.Conn, error) // nil: a net.Dialer
	// keepAlive and idle are the keep-alive period (this client's, drawn
	// once) and the idle timeout.
	keepAlive time.Duration
	idle      time.Duration
	delay     time.Duration // fallbackDelay, shorter in tests

	ids        *atomic.Uint64 // the client's frame ids
	name       string
	maxRecv    int
	pushBuffer int
	dropped    *atomic.Uint64 // pushes dropped by TCP sessions
}

// addrOf returns the address t dials.
func (d *dialer) addrOf(t Transport) string {
	if t == TransportTCP {
		return d.tcpAddr
	}
	return d.addr
}

// tcpKeepAlive returns the kernel keep-alives of TCP connections: probes
// after a keep-alive period of silence, and a peer that answers none
// dropped by the idle timeout.
func (d *dialer) tcpKeepAlive() net.KeepAliveConfig {
	const probes = 3
	return net.KeepAliveConfig{
		Enable:   true,
		Idle:     d.keepAlive,
		Interval: max(time.Second, (d.idle-d.keepAlive)/probes),
		Count:    probes,
	}
}

// dial opens a connection over t.
func (d *dialer) dial(ctx context.Context, t Transport) (conn, error) {
	var c conn
	var err error
	if t == TransportTCP {
		c, err = dialTCP(ctx, d.tcpAddr, d)
	} else {
		c, err = dialQUIC(ctx, d.addr, d)
	}
	if err != nil {
		return nil, fmt.Errorf("client: dial %v %s: %w", t, d.addrOf(t), err)
	}
	return c, nil
}

// dialed is the outcome of one connection attempt of a race.
type dialed struct {
	t   Transport
	c   conn
	err error
}

// open connects over the transports of order, first to last, and says
// Hello with token on the first connection to be established. With two
// transports it races them (happy eyeballs): the first has the fallback
// delay to itself, and the second starts when that delay is up or the
// first fails, whichever comes first; the other attempt is abandoned once
// a session is open. Hello goes out on one connection at a time, so that
// the node never holds two sessions of this client (a second could
// displace another of the user's devices): when Hello fails on one
// connection for any reason but the node's refusal, it goes out on the
// other, and a Hello that hears nothing gets half the time left while
// the other transport remains. ctx bounds it all.
func (d *dialer) open(ctx context.Context, order []Transport, token string) (*session, error) {
	dctx, cancel := context.WithCancel(ctx)
	results := make(chan dialed, len(order))
	started, pending := 0, 0
	start := func() {
		t := order[started]
		started++
		pending++
		go func() {
			c, err := d.dial(dctx, t)
			results <- dialed{t: t, c: c, err: err}
		}()
	}
	defer func() {
		// Abandon the attempt still under way, and wait for it.
		cancel()
		for ; pending > 0; pending-- {
			if r := <-results; r.c != nil {
				r.c.close(false, "another transport won")
			}
		}
	}()
	start()
	var fallback <-chan time.Time
	if len(order) > 1 {
		t := time.NewTimer(d.delay)
		defer t.Stop()
		fallback = t.C
	}
	var err error
	for pending > 0 || started < len(order) {
		var r dialed
		select {
		case <-fallback:
			fallback = nil
			if started < len(order) {
				start()
			}
			continue
		case r = <-results:
			pending--
		}
		if r.err == nil {
			var s *session
			hctx, hcancel := ctx, context.CancelFunc(func() {})
			if started < len(order) || pending > 0 {
				hctx, hcancel = helloContext(ctx)
			}
			s, r.err = openSession(hctx, r.c, d, token)
			hcancel()
			if r.err == nil {
				return s, nil
			}
			if isServerError(r.err) {
				return nil, r.err // the node answered: the other would hear the same
			}
		}
		err = joinDialErrors(err, r.err)
		if started < len(order) {
			fallback = nil
			start()
		}
	}
	return nil, err
}

// helloContext bounds a Hello said while another transport is still to
// be tried (or is being dialed) to half the time left, leaving the other
// half to that one: a connection that is established and then carries
// nothing (a middlebox that lets QUIC's handshake through and drops the
// flow after it) would otherwise take the whole attempt.
func helloContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
}

// joinDialErrors adds the error of one transport's attempt to those of
// the others.
func joinDialErrors(errs, err error) error {
	if errs == nil {
		return err
	}
	return fmt.Errorf("%w; %w", errs, err)
}
