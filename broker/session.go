package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// Session is one authenticated client connection. Its goroutines: the
// reader (the goroutine that called Serve) reads requests, handles them one
// at a time and writes their responses; a writer runs only while the
// session's outbox holds pushes, and exits when it is drained, so an idle
// session costs one goroutine of ours and holds no buffers.
type Session struct {
	b       *Broker
	conn    Conn
	user    storage.UserID
	device  storage.DeviceID
	out     *Outbox
	limiter *rate.Limiter
	writeFn func() // s.writeLoop, bound once so waking allocates nothing

	writing    atomic.Bool   // a writer goroutine runs
	resyncSent atomic.Bool   // Resync written since the last Resume
	goingAway  atomic.Bool   // GoingAway requested
	since      atomic.Uint64 // the last sync point returned to the client
	expires    atomic.Int64  // the token's expiry, Unix µs; Auth extends it

	goAwaySent atomic.Bool // GoingAway written

	push io.Writer // opened by the writer on first use; writer-owned
}

// maxHelloBytes caps the first frame, read before the client is known.
const maxHelloBytes = 16 << 10

// writeBatch is how many payloads a writer takes per write.
const writeBatch = 64

// bufPool recycles the buffers that responses and push batches are
// encoded into.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledBuf caps the buffers kept in bufPool.
const maxPooledBuf = 256 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// Serve runs one client connection until it ends: the hello, then the
// session's requests. It returns nil when the client closed cleanly.
func (b *Broker) Serve(ctx context.Context, c Conn) error {
	if !b.track(c) {
		c.Close(wire.ErrorCode_ERROR_CODE_UNAVAILABLE, "node shutting down")
		return ErrShutdown
	}
	defer b.untrack(c)
	s, err := b.hello(c, wire.NewReader(c, maxHelloBytes))
	if err != nil {
		return err
	}
	defer b.endSession(s)
	return s.readLoop(ctx, wire.NewReader(c, b.opts.MaxFrameBytes))
}

// hello reads and checks the first frame and registers the session.
func (b *Broker) hello(c Conn, r *wire.Reader) (*Session, error) {
	timer := time.AfterFunc(b.opts.HelloTimeout, func() {
		c.Close(wire.ErrorCode_ERROR_CODE_BAD_FRAME, "no hello in time")
	})
	var f wire.Frame
	err := r.Read(&f)
	timer.Stop()
	r.Release()
	if err != nil {
		if errors.Is(err, io.EOF) {
			c.Close(0, "")
			return nil, err
		}
		b.m.badFrames.Inc()
		return nil, b.reject(c, f.Id, err)
	}
	h := f.GetHello()
	switch {
	case h == nil:
		b.m.badFrames.Inc()
		return nil, b.reject(c, f.Id, fmt.Errorf("%w: the first frame must be Hello", wire.ErrBadFrame))
	case h.Version != ProtocolVersion:
		return nil, b.rejectCode(c, f.Id, wire.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION,
			fmt.Sprintf("protocol version %d not served; this node speaks %d", h.Version, ProtocolVersion))
	}
	claims, err := b.verifier.Verify(h.Token)
	if err != nil {
		b.m.authFailures.Inc()
		return nil, b.reject(c, f.Id, err)
	}
	s := &Session{b: b, conn: c, user: storage.UserID(claims.User), device: storage.DeviceID(claims.Device)}
	s.writeFn = s.writeLoop
	s.expires.Store(claims.Expires.UnixMicro())
	ob := b.opts.Outbox
	ob.Drops, ob.Wake = b.m.drops, s.wake
	s.out = NewOutbox(ob)
	var evicted []*Session
	s.limiter, evicted = b.reg.add(s, b.opts.MaxSessionsPerUser, b.newLimiter)
	for _, old := range evicted {
		b.wg.Add(1) // held by this connection's count, so Shutdown waits
		go func() {
			defer b.wg.Done()
			old.conn.Close(wire.ErrorCode_ERROR_CODE_UNAVAILABLE, "too many sessions for this user; the oldest was closed")
		}()
	}
	b.mu.Lock()
	closing := b.closing
	b.mu.Unlock()
	if closing {
		s.goAway() // Shutdown listed the sessions before this one joined
	}
	b.m.handshakes.Inc()
	b.m.sessionsNow.Add(1)
	welcome := &wire.Welcome{
		Version:       ProtocolVersion,
		User:          claims.User,
		Device:        claims.Device,
		MaxFrameBytes: b.welcome.maxFrame,
		MaxBodyBytes:  b.welcome.maxBody,
		Server:        b.opts.Name,
	}
	if err := s.respond(f.Id, &wire.Frame{Body: &wire.Frame_Welcome{Welcome: welcome}}); err != nil {
		b.endSession(s)
		return nil, err
	}
	return s, nil
}

// reject answers a failed hello and closes the connection.
func (b *Broker) reject(c Conn, id uint64, err error) error {
	return b.rejectCode(c, id, codeOf(err), err.Error())
}

func (b *Broker) rejectCode(c Conn, id uint64, code wire.ErrorCode, msg string) error {
	f := &wire.Frame{Id: id, Body: &wire.Frame_Error{Error: &wire.Error{Code: code, Message: msg}}}
	if buf, err := wire.AppendFrame(nil, f, b.opts.MaxFrameBytes); err == nil {
		c.Write(buf)
	}
	c.Close(code, msg)
	return fmt.Errorf("broker: session rejected: %s: %s", code, msg)
}

// endSession unregisters s and releases what it holds.
func (b *Broker) endSession(s *Session) {
	b.reg.remove(s, b.opts.Now())
	s.out.Close()
	s.conn.Close(0, "")
	b.m.sessionsNow.Add(-1)
}

// readLoop handles requests until the connection ends.
func (s *Session) readLoop(ctx context.Context, r *wire.Reader) error {
	var f wire.Frame
	for {
		err := r.Read(&f)
		r.Release() // an idle session holds no frame buffer
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, wire.ErrBadFrame), errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, wire.ErrTruncated):
			s.b.m.badFrames.Inc()
			return s.b.reject(s.conn, 0, err)
		case err != nil:
			return err // the connection failed or was closed
		case f.Id == 0:
			s.b.m.badFrames.Inc()
			return s.b.reject(s.conn, 0, fmt.Errorf("%w: a request needs an id above 0", wire.ErrBadFrame))
		}
		if s.b.opts.Now().UnixMicro() > s.expires.Load() {
			return s.b.reject(s.conn, f.Id, fmt.Errorf("session: %w; renew it with Auth before it runs out", token.ErrExpired))
		}
		s.b.m.requests.Inc()
		resp, err := s.handle(ctx, &f)
		if err != nil {
			s.b.m.requestErrors.Inc()
			resp = errorFrame(err)
		}
		if resp == nil {
			continue // a signal with no response
		}
		if err := s.respond(f.Id, resp); err != nil {
			return err
		}
	}
}

// errorFrame encodes err for the client.
func errorFrame(err error) *wire.Frame {
	e := &wire.Error{Code: codeOf(err), Message: err.Error()}
	var rl *rateLimitError
	if errors.As(err, &rl) {
		e.RetryAfterMs = uint32(max(1, rl.wait.Milliseconds()))
	}
	return &wire.Frame{Body: &wire.Frame_Error{Error: e}}
}

// respond writes one response frame on the response stream.
func (s *Session) respond(id uint64, f *wire.Frame) error {
	f.Id = id
	bp := getBuf()
	defer putBuf(bp)
	buf, err := wire.AppendFrame((*bp)[:0], f, s.b.opts.MaxFrameBytes)
	if errors.Is(err, wire.ErrFrameTooLarge) {
		// A response over the limit (a history page of large bodies): say
		// so rather than break the stream.
		ef := errorFrame(fmt.Errorf("response: %w; ask for fewer", err))
		ef.Id = id
		buf, err = wire.AppendFrame((*bp)[:0], ef, s.b.opts.MaxFrameBytes)
	}
	if err != nil {
		return err
	}
	*bp = buf
	_, err = s.conn.Write(buf)
	return err
}

// wake starts a writer unless one runs. Outbox calls it when the outbox
// becomes non-empty; it allocates nothing.
func (s *Session) wake() {
	if s.writing.CompareAndSwap(false, true) {
		s.b.writers.Add(1)
		go s.writeFn()
	}
}

// goAway asks the writer to tell the client the node is going away.
func (s *Session) goAway() {
	s.goingAway.Store(true)
	s.wake()
}

// writeLoop drains the outbox onto the push stream, a batch per write,
// then writes the control frames due (Resync, GoingAway), and exits.
func (s *Session) writeLoop() {
	defer s.b.writers.Done()
	var batch [writeBatch]*Payload
	for {
		n, stalled := s.out.Take(batch[:])
		if n > 0 && s.b.opts.Now().UnixMicro() > s.expires.Load() {
			// An expired session gets nothing more; the reader ends when
			// the connection closes.
			for _, p := range batch[:n] {
				p.Release()
			}
			s.out.Close()
			s.writing.Store(false)
			go s.conn.Close(wire.ErrorCode_ERROR_CODE_TOKEN_EXPIRED, "token expired; renew it with Auth before it runs out")
			return
		}
		if n > 0 {
			if !s.writePayloads(batch[:n]) {
				return
			}
			continue
		}
		if stalled && !s.resyncSent.Swap(true) {
			s.b.m.resyncs.Inc()
			if !s.writeControl(&wire.Frame{Body: &wire.Frame_Resync{Resync: &wire.Resync{Since: s.since.Load()}}}) {
				return
			}
		}
		if s.goingAway.Load() && !s.goAwaySent.Swap(true) {
			if !s.writeControl(&wire.Frame{Body: &wire.Frame_GoingAway{GoingAway: &wire.GoingAway{RetryAfterMs: goAwayRetryMs}}}) {
				return
			}
		}
		s.writing.Store(false)
		// Whatever arrived between the checks above and the store found
		// writing set and started no writer: take it over.
		if !s.due() || !s.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

// due reports whether the writer has something to write.
func (s *Session) due() bool {
	frames, _ := s.out.Len()
	return frames > 0 ||
		(s.goingAway.Load() && !s.goAwaySent.Load()) ||
		(s.out.Stalled() && !s.resyncSent.Load())
}

// goAwayRetryMs is when clients are told to come back after a shutdown.
const goAwayRetryMs = 1000

// writePayloads writes a batch of pushes in one write and releases them.
func (s *Session) writePayloads(ps []*Payload) bool {
	bp := getBuf()
	buf := (*bp)[:0]
	for i, p := range ps {
		buf = append(buf, p.B...)
		p.Release()
		ps[i] = nil
	}
	ok := s.writePush(buf)
	*bp = buf
	putBuf(bp)
	return ok
}

// writeControl writes one push frame of the session's own.
func (s *Session) writeControl(f *wire.Frame) bool {
	bp := getBuf()
	buf, err := wire.AppendFrame((*bp)[:0], f, s.b.opts.MaxFrameBytes)
	ok := err == nil && s.writePush(buf)
	*bp = buf
	putBuf(bp)
	return ok
}

// writePush writes to the push stream, opening it first if need be. On
// failure it closes the connection, which ends the reader too.
func (s *Session) writePush(buf []byte) bool {
	if s.push == nil {
		w, err := s.conn.OpenPush()
		if err != nil {
			s.fail()
			return false
		}
		s.push = w
	}
	if _, err := s.push.Write(buf); err != nil {
		s.fail()
		return false
	}
	return true
}

// fail stops pushes to a connection that broke and closes it.
func (s *Session) fail() {
	s.out.Close()
	s.writing.Store(false)
	s.conn.Close(wire.ErrorCode_ERROR_CODE_UNAVAILABLE, "push stream failed")
}

// encodePush encodes f once into a payload for fan-out.
func (s *Session) encodePush(f *wire.Frame) (*Payload, error) {
	p := NewPayload()
	b, err := wire.AppendFrame(p.B, f, s.b.opts.MaxFrameBytes)
	if err != nil {
		p.Release()
		return nil, err
	}
	p.B = b
	return p, nil
}
