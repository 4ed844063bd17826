package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"sync"
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

// QUICConfig returns the QUIC settings of the node's listener.
func QUICConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:        quicIdleTimeout,
		MaxIncomingStreams:    4,
		MaxIncomingUniStreams: -1, // pushes flow server to client only
		HandshakeIdleTimeout:  10 * time.Second,
		// A resuming client may send its Hello in 0-RTT data; the session
		// handles nothing before the handshake completes (serveQUICConn),
		// so a replayed Hello can do no more than authenticate again.
		Allow0RTT: true,
	}
}

// ListenQUIC listens on the UDP address addr with tlsConf (TLS 1.3, ALPN
// gonets/1 set on a copy), accepting 0-RTT from resuming clients.
func ListenQUIC(addr string, tlsConf *tls.Config) (*quic.EarlyListener, error) {
	tc := tlsConf.Clone()
	tc.MinVersion = tls.VersionTLS13
	tc.NextProtos = []string{ALPN}
	ln, err := quic.ListenAddrEarly(addr, tc, QUICConfig())
	if err != nil {
		return nil, fmt.Errorf("broker: listen quic %s: %w", addr, err)
	}
	return ln, nil
}

// ServeQUIC accepts connections on ln and serves each as a session until
// Shutdown, when it returns nil. It closes ln.
func (b *Broker) ServeQUIC(ln *quic.EarlyListener) error {
	if !b.addListener(ln) {
		ln.Close()
		return ErrShutdown
	}
	defer b.wg.Done()
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
// goroutine is the session's reader.
func (b *Broker) serveQUICConn(c *quic.Conn) {
	defer b.wg.Done()
	ctx, cancel := context.WithTimeout(c.Context(), b.opts.HelloTimeout)
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
		c.CloseWithError(quic.ApplicationErrorCode(wire.ErrorCode_ERROR_CODE_BAD_FRAME), "no request stream")
		return
	}
	qc := &quicConn{c: c, st: st}
	if err := b.Serve(c.Context(), qc); err != nil {
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

func (q *quicConn) Read(p []byte) (int, error)  { return q.st.Read(p) }
func (q *quicConn) Write(p []byte) (int, error) { return q.st.Write(p) }

func (q *quicConn) OpenPush() (io.Writer, error) { return q.c.OpenUniStream() }

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
