package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/wire"
)

// QUIC application error codes the client closes a connection with.
const (
	closeNormal   quic.ApplicationErrorCode = 0
	closeProtocol quic.ApplicationErrorCode = 1
)

// quicConn is a session's QUIC connection: the request stream the client
// opens, and the push stream the node opens when it first pushes.
type quicConn struct {
	conn   *quic.Conn
	stream *quic.Stream
}

// dialQUIC opens a QUIC connection to addr, on the shared transport if
// there is one, and its request stream.
func dialQUIC(ctx context.Context, addr string, d *dialer) (*quicConn, error) {
	var qc *quic.Conn
	var err error
	if d.udp == nil {
		qc, err = quic.DialAddr(ctx, addr, d.tls, d.quic)
	} else {
		qc, err = dialShared(ctx, addr, d)
	}
	if err != nil {
		return nil, err
	}
	stream, err := qc.OpenStreamSync(ctx)
	if err != nil {
		qc.CloseWithError(closeNormal, "dial canceled")
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return &quicConn{conn: qc, stream: stream}, nil
}

// dialShared dials addr on the client's shared UDP transport.
func dialShared(ctx context.Context, addr string, d *dialer) (*quic.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	tc := d.tls.Clone()
	if tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		tc.ServerName = host
	}
	return d.udp.Dial(ctx, ua, tc, d.quic)
}

func (q *quicConn) transport() Transport { return TransportQUIC }

// Read reads the request stream: responses and control frames.
func (q *quicConn) Read(p []byte) (int, error) { return q.stream.Read(p) }

// Write writes requests on the request stream.
func (q *quicConn) Write(p []byte) (int, error) { return q.stream.Write(p) }

// start runs the session's two readers: the request stream's, and the
// push stream's.
func (q *quicConn) start(s *session) {
	s.wg.Add(2)
	go s.readResponses(wire.NewReader(q.stream, s.maxRecv))
	go q.readPushes(s)
}

// readPushes accepts the node's push stream, which it may open only when
// it first pushes, and hands each push to the delivery goroutine, waiting
// for it: while it is busy the stream is not read, and QUIC flow control
// holds the node back. It ends with the connection.
func (q *quicConn) readPushes(s *session) {
	defer s.wg.Done()
	us, err := q.conn.AcceptUniStream(q.conn.Context())
	if err != nil {
		s.fail(nodeClosed(fmt.Errorf("client: accept push stream: %w", err)))
		return
	}
	r := wire.NewReader(us, s.maxRecv)
	for {
		f := new(wire.Frame)
		if err := r.Read(f); err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("node ended the push stream")
			}
			s.fail(nodeClosed(fmt.Errorf("client: push stream: %w", err)))
			return
		}
		select {
		case s.pushes <- f:
		case <-s.dead:
			return
		}
	}
}

// close closes the connection with the application error code of a
// protocol violation or of a normal close.
func (q *quicConn) close(protocol bool, reason string) {
	code := closeNormal
	if protocol {
		code = closeProtocol
	}
	q.conn.CloseWithError(code, reason)
}
