package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gonets/gonets/broker/wire"
)

// session is one authenticated connection, over QUIC or TLS on TCP (see
// conn): requests written under wmu, a reader matching responses to
// waiting requests by id and handing control frames on, and pushes handed
// to the client's delivery goroutine. It owns the goroutines its conn
// starts (two over QUIC, three over TCP), which end when the connection
// does; close waits for them.
type session struct {
	conn      conn
	transport Transport
	welcome   *wire.Welcome
	maxSend   int // the node's frame limit
	maxRecv   int
	ids       *atomic.Uint64 // the client's frame ids
	// pushes hands each push to the delivery goroutine, unbuffered: over
	// QUIC the push stream is not read while that goroutine is busy.
	pushes chan *wire.Frame
	// queue holds, over TCP, the pushes read but not yet handed on: TCP
	// carries pushes between responses, so reading must not wait for the
	// delivery goroutine. It is nil over QUIC.
	queue *pushQueue
	// control hands the node's control frames (Resync, GoingAway), which
	// come on the request stream, to the delivery goroutine. It is
	// buffered, so that reading responses never waits for delivery.
	control chan *wire.Frame
	// resyncQueued is set while a Resync waits in control.
	resyncQueued atomic.Bool
	dead         chan struct{} // closed by fail
	wg           sync.WaitGroup

	wmu  sync.Mutex // guards the following: one writer at a time
	wbuf []byte

	mu      sync.Mutex // guards the following
	pending map[uint64]chan *wire.Frame
	drained chan struct{} // closed when pending empties, if set
	err     error         // why the session ended, once dead is closed
}

// openSession says Hello on the connection c and waits for Welcome, then
// starts c's readers. A rejection is returned as an *Error. ctx bounds the
// exchange; on failure c is closed.
func openSession(ctx context.Context, c conn, d *dialer, token string) (*session, error) {
	// Until Welcome, ctx also bounds reads: ending it closes the
	// connection, which ends any read.
	stop := context.AfterFunc(ctx, func() { c.close(false, "dial canceled") })
	s, err := handshake(c, d, token)
	if !stop() && err == nil {
		err = ctx.Err() // ended as Welcome came: the connection is closing
	}
	if err != nil {
		c.close(false, "handshake failed")
		if ctx.Err() != nil && !isServerError(err) {
			err = fmt.Errorf("client: hello to %s over %v: %w", d.addrOf(c.transport()), c.transport(), ctx.Err())
		}
		return nil, err
	}
	c.start(s)
	return s, nil
}

// isServerError reports whether err is the node's answer.
func isServerError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// handshake exchanges Hello and Welcome on c.
func handshake(c conn, d *dialer, token string) (*session, error) {
	s := &session{
		conn:      c,
		transport: c.transport(),
		maxSend:   wire.DefaultMaxFrameBytes,
		maxRecv:   d.maxRecv,
		ids:       d.ids,
		pushes:    make(chan *wire.Frame),
		control:   make(chan *wire.Frame, 2),
		dead:      make(chan struct{}),
		pending:   make(map[uint64]chan *wire.Frame),
	}
	if s.transport == TransportTCP {
		s.queue = newPushQueue(d.pushBuffer, d.dropped)
	}
	f := &wire.Frame{Id: d.ids.Add(1), Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: ProtocolVersion, Client: d.name, Token: token, Capabilities: []string{wire.CapHeartbeat}}}}
	if err := s.write(f); err != nil {
		return nil, err
	}
	var resp wire.Frame
	if err := wire.NewReader(c, d.maxRecv).Read(&resp); err != nil {
		return nil, nodeClosed(fmt.Errorf("client: read welcome: %w", err))
	}
	switch b := resp.GetBody().(type) {
	case *wire.Frame_Welcome:
		s.welcome = b.Welcome
		s.maxSend = maxSendBytes(b.Welcome)
		return s, nil
	case *wire.Frame_Error:
		return nil, errorFromWire(b.Error)
	}
	return nil, unexpected("Welcome", &resp)
}

// readResponses hands each response to the request waiting for its id,
// and control frames to the delivery goroutine. It is the only reader of
// the request stream after Welcome. Over TCP, where pushes come on the
// same stream, it queues them too; it never waits for the delivery.
func (s *session) readResponses(r *wire.Reader) {
	defer s.wg.Done()
	for {
		p, err := r.Next()
		f := new(wire.Frame)
		if err == nil {
			err = wire.Decode(p, f)
		}
		if err != nil {
			s.fail(nodeClosed(fmt.Errorf("client: %v: %w", s.streamName(), err)))
			return
		}
		if f.GetId() == 0 {
			switch f.GetBody().(type) {
			case *wire.Frame_Error:
				// A session-level error before the node closes.
				s.fail(errorFromWire(f.GetError()))
				return
			case *wire.Frame_Resync, *wire.Frame_GoingAway:
				s.queueControl(f)
				continue
			case *wire.Frame_Ping:
				// The node's heartbeat over TCP: what it says, that the
				// node is there, the read has noted.
				continue
			}
			if s.queue != nil {
				s.queuePush(f, len(p))
				continue
			}
			s.fail(fmt.Errorf("%w: %T with id 0 on the request stream", ErrProtocol, f.GetBody()))
			return
		}
		s.mu.Lock()
		ch := s.pending[f.GetId()]
		s.deleteLocked(f.GetId())
		s.mu.Unlock()
		if ch != nil {
			ch <- f // buffered: never blocks
		}
	}
}

// streamName names what readResponses reads, for errors.
func (s *session) streamName() string {
	if s.transport == TransportTCP {
		return "tcp connection"
	}
	return "request stream"
}

// queuePush queues a push read over TCP. When the queue is full it drops
// the push and, at the first drop, queues a Resync: the delivery
// goroutine then catches up from history, as after the node's own Resync
// (see pushQueue).
func (s *session) queuePush(f *wire.Frame, size int) {
	if ok, first := s.queue.add(f, size); !ok && first {
		s.queueControl(&wire.Frame{Body: &wire.Frame_Resync{Resync: &wire.Resync{}}})
	}
}

// queueControl hands a control frame to the delivery goroutine without
// waiting. At most one Resync waits (one is as good as several: the node
// sends another after each sync that resumed its pushes, the app's own
// Client.Sync included), and the node sends one GoingAway, so control
// always has room for it.
func (s *session) queueControl(f *wire.Frame) {
	if f.GetResync() != nil && !s.resyncQueued.CompareAndSwap(false, true) {
		return
	}
	select {
	case s.control <- f:
	default: // not reached: one Resync and one GoingAway at most
	}
}

// tookControl notes that the delivery goroutine took f from control: a
// Resync after it waits again.
func (s *session) tookControl(f *wire.Frame) {
	if f.GetResync() != nil {
		s.resyncQueued.Store(false)
		if s.queue != nil {
			// The catch-up starts after this: it covers every push
			// dropped so far.
			s.queue.resume()
		}
	}
}

// fail ends the session with err (the first error wins) and closes the
// connection. Waiting requests see dead closed.
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	s.pending = nil
	s.mu.Unlock()
	close(s.dead)
	if errors.Is(err, ErrProtocol) || errors.Is(err, wire.ErrBadFrame) || errors.Is(err, wire.ErrFrameTooLarge) {
		s.conn.close(true, "protocol error")
	} else {
		s.conn.close(false, "bye")
	}
}

// cause returns why the session ended, or nil while it lives.
func (s *session) cause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// close ends the session and waits for its goroutines.
func (s *session) close(err error) {
	s.fail(err)
	s.wg.Wait()
}

// alive reports whether the session has not ended.
func (s *session) alive() bool {
	select {
	case <-s.dead:
		return false
	default:
		return true
	}
}

// write encodes and writes f. A frame over the node's limit fails without
// touching the stream; a write error ends the session.
func (s *session) write(f *wire.Frame) error {
	s.wmu.Lock()
	b, err := wire.AppendFrame(s.wbuf[:0], f, s.maxSend)
	if err != nil {
		s.wmu.Unlock()
		return fmt.Errorf("client: %w", err)
	}
	_, err = s.conn.Write(b)
	s.wbuf = b
	if cap(b) > 64<<10 {
		s.wbuf = nil // do not pin a large frame's buffer
	}
	s.wmu.Unlock()
	if err != nil {
		err = nodeClosed(fmt.Errorf("client: write: %w", err))
		s.fail(err) // not under wmu: locks are never nested
		return lost(err)
	}
	return nil
}

// call sends f with a fresh id and waits for the response with that id.
// An Error response is returned as *Error. It fails with ErrConnLost
// (wrapped) when the session ends first.
func (s *session) call(ctx context.Context, f *wire.Frame) (*wire.Frame, error) {
	f.Id = s.ids.Add(1)
	ch := make(chan *wire.Frame, 1)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return nil, lost(err)
	}
	s.pending[f.GetId()] = ch
	s.mu.Unlock()
	if err := s.write(f); err != nil {
		s.forget(f.GetId())
		return nil, err
	}
	select {
	case resp := <-ch:
		if e := resp.GetError(); e != nil {
			return nil, errorFromWire(e)
		}
		return resp, nil
	case <-s.dead:
		select {
		case resp := <-ch: // answered just before the end
			if e := resp.GetError(); e != nil {
				return nil, errorFromWire(e)
			}
			return resp, nil
		default:
		}
		return nil, lost(s.cause())
	case <-ctx.Done():
		s.forget(f.GetId())
		return nil, ctx.Err()
	}
}

// forget drops a request that stopped waiting.
func (s *session) forget(id uint64) {
	s.mu.Lock()
	s.deleteLocked(id)
	s.mu.Unlock()
}

// deleteLocked drops a pending request and signals drained when it was
// the last.
func (s *session) deleteLocked(id uint64) {
	delete(s.pending, id)
	if len(s.pending) == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
}

// drain returns a channel closed once no request waits for a response
// (or at once when none does). The caller stops new requests first.
func (s *session) drain() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	switch {
	case len(s.pending) == 0:
		close(ch)
	case s.drained != nil:
		ch = s.drained
	default:
		s.drained = ch
	}
	return ch
}

// lost wraps a session's end as ErrConnLost.
func lost(cause error) error {
	if errors.Is(cause, ErrConnLost) {
		return cause
	}
	return fmt.Errorf("%w: %v", ErrConnLost, cause)
}

// signal sends f with a fresh id, expecting no response (Typing).
func (s *session) signal(f *wire.Frame) error {
	f.Id = s.ids.Add(1)
	if !s.alive() {
		return lost(s.cause())
	}
	return s.write(f)
}

// nodeClosed turns a connection closed by the node with a protocol error
// code (Error frames may not arrive before the close) into that *Error.
func nodeClosed(err error) error { return closedWith(err) }

// history reads up to limit messages of chat from seq from on.
func (s *session) history(ctx context.Context, chat, from uint64, limit int) (HistoryPage, error) {
	resp, err := s.call(ctx, &wire.Frame{Body: &wire.Frame_History{History: &wire.HistoryRequest{Chat: chat, FromSeq: from, Limit: uint32(limit)}}})
	if err != nil {
		return HistoryPage{}, err
	}
	r := resp.GetHistoryResult()
	if r == nil {
		return HistoryPage{}, unexpected("HistoryResult", resp)
	}
	return historyFromWire(r), nil
}

// sync lists the dialogs changed since a sync point.
func (s *session) sync(ctx context.Context, since uint64, cursor []byte) (SyncPage, error) {
	resp, err := s.call(ctx, &wire.Frame{Body: &wire.Frame_Sync{Sync: &wire.SyncRequest{Since: since, Cursor: cursor}}})
	if err != nil {
		return SyncPage{}, err
	}
	r := resp.GetSyncResult()
	if r == nil {
		return SyncPage{}, unexpected("SyncResult", resp)
	}
	return syncFromWire(r), nil
}
