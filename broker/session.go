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
// session's outbox holds pushes, and exits when it is drained; a control
// writer runs only while a Resync or GoingAway is due. An idle session
// costs one goroutine of ours and holds no buffers.
type Session struct {
	b       *Broker
	conn    Conn
	user    storage.UserID
	device  storage.DeviceID
	out     *Outbox
	limiter *rate.Limiter
	writeFn func() // s.writeLoop, bound once so waking allocates nothing
	ctlFn   func() // s.controlLoop, likewise

	writing    atomic.Bool   // a writer goroutine runs
	controls   atomic.Bool   // a control writer runs
	resyncSent atomic.Bool   // Resync written since the last Resume
	goingAway  atomic.Bool   // GoingAway requested
	goAwaySent atomic.Bool   // GoingAway written
	since      atomic.Uint64 // the last sync point returned to the client
	expires    atomic.Int64  // the token's expiry, Unix µs; Auth extends it
	reason     atomic.Int32  // why the node closed the session (closeReason)
	// endingSelf is set while the session ends its own device, which
	// DevicesEnded then marks deviceEnded instead of closing it: the
	// answer goes out first, then readLoop closes the session.
	endingSelf  atomic.Bool
	deviceEnded atomic.Bool

	respMu sync.Mutex // serialises writes to the response stream

	// callMu serialises the session's needed call pushes with its resume
	// and its rings (callpush.go); it guards the following.
	callMu   sync.Mutex
	callLost []*wire.Frame // needed call pushes the stalled outbox refused

	push Stream // opened by the writer on first use; writer-owned
	// lastWrite is when the writer last wrote pushes (since monoEpoch),
	// for the coalescing window; 0 before the first.
	lastWrite atomic.Int64
}

// errHelloLate is hello's error for a connection whose deadline passed
// while its pre-authentication request came in.
var errHelloLate = errors.New("broker: no hello in time")

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
	return b.serve(ctx, c, time.Now().Add(b.opts.HelloTimeout), nil, nil)
}

// serve is Serve with the time by which the Hello must be verified, a
// function called once it is, and the guard of the connection's eviction
// (nil: none).
func (b *Broker) serve(ctx context.Context, c Conn, helloBy time.Time, authed func(), g *evictGuard) error {
	if !b.track(c) {
		c.Close(wire.ErrorCode_ERROR_CODE_UNAVAILABLE, "node shutting down")
		return ErrShutdown
	}
	defer b.untrack(c)
	s, err := b.hello(ctx, c, wire.NewReader(c, maxHelloBytes), helloBy, authed, g)
	if err != nil {
		return err
	}
	defer b.endSession(s)
	return s.readLoop(ctx, wire.NewReader(c, b.opts.MaxFrameBytes))
}

// hello reads and checks the first frame and registers the session.
func (b *Broker) hello(ctx context.Context, c Conn, r *wire.Reader, by time.Time, authed func(), g *evictGuard) (*Session, error) {
	timer := time.AfterFunc(time.Until(by), func() {
		b.m.helloTimeouts.Inc()
		c.Close(wire.ErrorCode_ERROR_CODE_BAD_FRAME, "no hello in time")
	})
	var f wire.Frame
	var err error
	// Before Hello, a client may log in or refresh its tokens: a few
	// pre-authentication requests, each answered in turn. The hello
	// deadline bounds the client's time, not the node's: it stops while a
	// request is served (each bounded by preAuthTimeout) and moves on by
	// what that took, so that a slow SMS gateway or a commit near the
	// deadline does not close the connection on an answer (a refresh token
	// rotated, a code sent) the client then never gets.
	for n := 0; ; n++ {
		f.Reset()
		err = r.Read(&f)
		if err != nil || n >= maxPreAuth || !isPreAuth(&f) {
			break
		}
		r.Release()
		if !timer.Stop() {
			// The deadline passed as the request came in: the timer is
			// closing the connection, so the request is not acted on.
			return nil, errHelloLate
		}
		if !g.begin() {
			return nil, errEvicted // evict is closing the connection
		}
		began := time.Now()
		resp := b.preAuth(ctx, &f, remoteAddr(c))
		buf, werr := wire.AppendFrame(nil, resp, b.opts.MaxFrameBytes)
		if werr == nil {
			werr = b.writeTimed(c, buf)
		}
		evicted := g.end()
		if werr != nil {
			c.Close(0, "")
			return nil, werr
		}
		if evicted {
			// Evicted while the node worked on the request: closed now
			// that its answer is out, the client given time to read it.
			c.Close(wire.ErrorCode_ERROR_CODE_UNAVAILABLE, evictedReason)
			return nil, errEvicted
		}
		by = by.Add(time.Since(began))
		timer.Reset(time.Until(by))
	}
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
	if err == nil && storage.DeviceID(claims.Device) == storage.DeviceNode {
		err = fmt.Errorf("%w: device %d is the node's own", token.ErrForged, claims.Device)
	}
	if err == nil && storage.IsServiceUser(storage.UserID(claims.User)) {
		err = fmt.Errorf("%w: user %d is one of the node's service users", token.ErrForged, claims.User)
	}
	if err == nil {
		err = b.checkDevice(storage.UserID(claims.User), storage.DeviceID(claims.Device))
	}
	if err != nil {
		b.m.authFailures.Inc()
		return nil, b.reject(c, f.Id, err)
	}
	if authed != nil {
		authed()
	}
	s := &Session{b: b, conn: c, user: storage.UserID(claims.User), device: storage.DeviceID(claims.Device)}
	s.writeFn, s.ctlFn = s.writeLoop, s.controlLoop
	s.expires.Store(claims.Expires.UnixMicro())
	ob := b.opts.Outbox
	ob.Drops, ob.Wake, ob.Stall = b.m.drops, s.wake, s.wakeControl
	s.out = NewOutbox(ob)
	// Welcome is the first frame on the response stream: a control frame
	// due before it is written waits for it. Pushes wait for it too, held
	// back by a writer marked running: over TLS on TCP they share the one
	// stream, and a client reads Welcome first.
	s.writing.Store(true)
	s.respMu.Lock()
	evicted, err := b.register(s)
	if err != nil {
		s.respMu.Unlock()
		s.out.Close()
		return nil, b.reject(c, f.Id, err)
	}
	for _, old := range evicted {
		old.reason.CompareAndSwap(int32(closeClient), int32(closeReplaced))
		b.wg.Add(1) // held by this connection's count, so Shutdown waits
		go func() {
			defer b.wg.Done()
			old.conn.Close(wire.ErrorCode_ERROR_CODE_UNAVAILABLE, "too many sessions for this user; the oldest was closed")
		}()
	}
	// A device ended between the check above and register was not among
	// the sessions DevicesEnded closed: check again now that it is listed.
	if err := b.checkDevice(s.user, s.device); err != nil {
		s.reason.Store(int32(closeDeviceEnded))
		b.unregister(s)
		s.respMu.Unlock()
		s.out.Close()
		return nil, b.reject(c, f.Id, err)
	}
	b.m.handshakes.Inc()
	b.m.sessionsNow.Add(1)
	welcome := &wire.Frame{Id: f.Id, Body: &wire.Frame_Welcome{Welcome: &wire.Welcome{
		Version:       ProtocolVersion,
		Capabilities:  agree(c, h.Capabilities),
		User:          claims.User,
		Device:        claims.Device,
		MaxFrameBytes: b.welcome.maxFrame,
		MaxBodyBytes:  b.welcome.maxBody,
		Server:        b.opts.Name,
		PublicUrl:     b.opts.PublicURL,
	}}}
	buf, err := wire.AppendFrame(nil, welcome, b.opts.MaxFrameBytes)
	if err == nil {
		err = b.writeTimed(c, buf)
	}
	s.respMu.Unlock()
	if err != nil {
		b.endSession(s)
		return nil, err
	}
	// Start the writer for the pushes queued while Welcome was written.
	s.writing.Store(false)
	if frames, _ := s.out.Len(); frames > 0 {
		s.wake()
	}
	b.mu.Lock()
	closing := b.closing
	b.mu.Unlock()
	if closing {
		s.goAway() // Shutdown listed the sessions before this one joined
	}
	b.ringLate(s)
	return s, nil
}

// errorCloser is a Conn without a close code of its own (TLS over TCP):
// its Close writes the code and reason as a final Error frame, unless
// told that the session wrote one.
type errorCloser interface{ wroteError() }

// reject answers a failed hello or a broken session with an Error frame
// (id 0 for the session) and closes the connection.
func (b *Broker) reject(c Conn, id uint64, err error) error {
	e := b.clientError(err)
	return b.rejectCode(c, id, e.Code, e.Message)
}

func (b *Broker) rejectCode(c Conn, id uint64, code wire.ErrorCode, msg string) error {
	f := &wire.Frame{Id: id, Body: &wire.Frame_Error{Error: &wire.Error{Code: code, Message: msg}}}
	if buf, err := wire.AppendFrame(nil, f, b.opts.MaxFrameBytes); err == nil {
		c.SetWriteDeadline(time.Now().Add(closeLinger))
		if _, err := c.Write(buf); err == nil {
			if ec, ok := c.(errorCloser); ok {
				ec.wroteError()
			}
		}
	}
	c.Close(code, msg)
	return fmt.Errorf("broker: session rejected: %s: %s", code, msg)
}

// endSession unregisters s, releases what it holds and counts why it
// ended.
func (b *Broker) endSession(s *Session) {
	b.sessionEnded(s)
	b.unregister(s)
	s.out.Close()
	s.conn.Close(0, "")
	b.m.sessionsNow.Add(-1)
	b.m.closes[s.reason.Load()].Inc()
}

// readLoop handles requests until the connection ends.
func (s *Session) readLoop(ctx context.Context, r *wire.Reader) error {
	var f wire.Frame
	for {
		p, err := r.Next()
		var send wire.SendView
		isSend := false
		if err == nil {
			// A plain Send, the hot path, is read in place; the rest decoded.
			if f.Id, send, isSend = wire.ParseSend(p); !isSend {
				err = wire.Decode(p, &f)
			}
		}
		if !isSend {
			r.Release() // an idle session holds no frame buffer
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, wire.ErrBadFrame), errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, wire.ErrTruncated):
			s.b.m.badFrames.Inc()
			s.reason.CompareAndSwap(int32(closeClient), int32(closeBadFrame))
			return s.reject(0, err)
		case err != nil:
			return err // the connection failed or was closed
		case f.Id == 0:
			r.Release()
			s.b.m.badFrames.Inc()
			s.reason.CompareAndSwap(int32(closeClient), int32(closeBadFrame))
			return s.reject(0, fmt.Errorf("%w: a request needs an id above 0", wire.ErrBadFrame))
		}
		if s.b.opts.Now().UnixMicro() > s.expires.Load() {
			r.Release()
			s.reason.CompareAndSwap(int32(closeClient), int32(closeTokenExpired))
			return s.reject(f.Id, fmt.Errorf("session: %w; renew it with Auth before it runs out", token.ErrExpired))
		}
		if isSend {
			err := s.send(f.Id, &send) // send.Body is in r's buffer until here
			r.Release()
			if err != nil {
				return err
			}
			continue
		}
		s.b.m.requests.Inc()
		resp, err := s.handle(&f)
		if err != nil {
			s.b.m.requestErrors.Inc()
			resp = &wire.Frame{Body: &wire.Frame_Error{Error: s.b.clientError(err)}}
		}
		if resp == nil {
			continue // a signal with no response
		}
		if err := s.respond(f.Id, resp); err != nil {
			return err
		}
		if s.deviceEnded.Load() {
			s.reason.CompareAndSwap(int32(closeClient), int32(closeDeviceEnded))
			return s.reject(0, ErrDeviceEnded)
		}
	}
}

// reject ends the session with an Error frame, written in turn with the
// control writer.
func (s *Session) reject(id uint64, err error) error {
	s.respMu.Lock()
	defer s.respMu.Unlock()
	return s.b.reject(s.conn, id, err)
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
		ef := &wire.Frame{Id: id, Body: &wire.Frame_Error{Error: s.b.clientError(fmt.Errorf("response: %w; ask for fewer", err))}}
		buf, err = wire.AppendFrame((*bp)[:0], ef, s.b.opts.MaxFrameBytes)
	}
	if err != nil {
		return err
	}
	*bp = buf
	return s.writeResponse(buf)
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
