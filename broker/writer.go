package broker

import (
	"errors"
	"net"
	"os"
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// errNoProgress reports a write that moved nothing for WriteTimeout.
var errNoProgress = errors.New("broker: write made no progress")

// writeTimed writes buf to w, giving each write WriteTimeout to make
// progress: a write that times out having written something is resumed
// with a fresh deadline, so a client that reads slowly but steadily is
// served, and one that stops reading is given up on after WriteTimeout.
func (b *Broker) writeTimed(w Stream, buf []byte) error {
	for {
		w.SetWriteDeadline(time.Now().Add(b.opts.WriteTimeout))
		n, err := w.Write(buf)
		if err == nil {
			return nil
		}
		if !isTimeout(err) {
			return err
		}
		if n == 0 {
			return errNoProgress
		}
		buf = buf[n:]
	}
}

// isTimeout reports whether err is a write deadline passing.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeResponse writes buf to the response stream, in turn with the
// control writer. A response that cannot be written in time closes the
// session.
func (s *Session) writeResponse(buf []byte) error {
	s.respMu.Lock()
	err := s.b.writeTimed(s.conn, buf)
	s.respMu.Unlock()
	if err != nil {
		s.closeFor(err, closeResponseTimeout)
	}
	return err
}

// closeFor closes the session after a failed write: one that made no
// progress is counted under reason, any other means the connection broke.
// It is called by the reader or a writer, whose counts keep Shutdown
// waiting for the close it starts.
func (s *Session) closeFor(err error, reason closeReason) {
	s.out.Close()
	code, msg := wire.ErrorCode(0), ""
	if errors.Is(err, errNoProgress) {
		s.reason.CompareAndSwap(int32(closeClient), int32(reason))
		code, msg = wire.ErrorCode_ERROR_CODE_UNAVAILABLE, "the client did not read for too long; reconnect and sync"
	}
	s.b.writers.Add(1)
	go func() {
		defer s.b.writers.Done()
		s.conn.Close(code, msg)
	}()
}

// wake starts a writer unless one runs. Outbox calls it when the outbox
// becomes non-empty; it allocates nothing.
func (s *Session) wake() {
	if s.writing.CompareAndSwap(false, true) {
		s.b.writers.Add(1)
		go s.writeFn()
	}
}

// writeLoop drains the outbox onto the push stream, a batch per write,
// and exits once it is empty.
func (s *Session) writeLoop() {
	defer s.b.writers.Done()
	var batch [writeBatch]*Payload
	for {
		n, _ := s.out.Take(batch[:])
		if n > 0 && n < writeBatch {
			if wait := s.coalesceWait(); wait > 0 {
				// A busy session: let what comes within the window join
				// this write.
				s.b.m.coalesceWaits.Inc()
				time.Sleep(wait)
				k, _ := s.out.Take(batch[n:])
				n += k
			}
		}
		if n > 0 && s.b.opts.Now().UnixMicro() > s.expires.Load() {
			// An expired session gets nothing more; the reader ends when
			// the connection closes.
			for _, p := range batch[:n] {
				p.Release()
			}
			s.out.Close()
			s.writing.Store(false)
			s.reason.CompareAndSwap(int32(closeClient), int32(closeTokenExpired))
			s.b.writers.Add(1)
			go func() {
				defer s.b.writers.Done()
				s.conn.Close(wire.ErrorCode_ERROR_CODE_TOKEN_EXPIRED, "token expired; renew it with Auth before it runs out")
			}()
			return
		}
		if n > 0 {
			if !s.writePayloads(batch[:n]) {
				return
			}
			continue
		}
		s.writing.Store(false)
		// Whatever arrived between the Take above and the store found
		// writing set and started no writer: take it over.
		if frames, _ := s.out.Len(); frames == 0 || !s.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

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
	s.b.m.pushWrites.Inc()
	if s.b.opts.CoalesceWindow > 0 {
		s.lastWrite.Store(int64(time.Since(monoEpoch)))
	}
	return ok
}

// maxCoalesceWindow bounds Options.CoalesceWindow.
const maxCoalesceWindow = 50 * time.Millisecond

// monoEpoch anchors the monotonic times sessions keep as integers.
var monoEpoch = time.Now()

// coalesceWait returns how long the writer waits before writing pushes
// it took: the rest of the coalescing window since the session's last
// push write, so that a session written to more often than once a window
// gets one write per window, holding everything that came in it, and a
// session idle for a window or more (every session at human rates) is
// written to at once. It never waits longer than the window.
func (s *Session) coalesceWait() time.Duration {
	w := s.b.opts.CoalesceWindow
	last := s.lastWrite.Load()
	if w <= 0 || last == 0 {
		return 0
	}
	since := time.Since(monoEpoch) - time.Duration(last)
	if since >= w || since < 0 {
		return 0
	}
	return w - since
}

// writePush writes to the push stream, opening it first if need be. On
// failure it closes the connection, which ends the reader too.
func (s *Session) writePush(buf []byte) bool {
	if s.push == nil {
		w, err := s.conn.OpenPush()
		if err != nil {
			s.writing.Store(false)
			s.closeFor(err, closePushTimeout)
			return false
		}
		s.push = w
	}
	if err := s.b.writeTimed(s.push, buf); err != nil {
		s.writing.Store(false)
		s.closeFor(err, closePushTimeout)
		return false
	}
	return true
}

// goAway asks the control writer to tell the client the node is going
// away.
func (s *Session) goAway() {
	s.goingAway.Store(true)
	s.wakeControl()
}

// wakeControl starts the control writer unless it runs. It is called when
// the outbox stalls and when the node asks the session to go away.
func (s *Session) wakeControl() {
	if s.controls.CompareAndSwap(false, true) {
		s.b.writers.Add(1)
		go s.ctlFn()
	}
}

// goAwayRetryMs is when clients are told to come back after a shutdown.
const goAwayRetryMs = 1000

// controlLoop writes the control frames due, Resync and GoingAway, on the
// response stream, and exits. They go there rather than behind the
// pushes, so that a client whose push stream is stuck still sees them.
func (s *Session) controlLoop() {
	defer s.b.writers.Done()
	for {
		if s.out.Stalled() && !s.resyncSent.Swap(true) {
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
		s.controls.Store(false)
		// A control frame that became due after the checks above found
		// the flag set and started no writer: take it over.
		if !s.controlDue() || !s.controls.CompareAndSwap(false, true) {
			return
		}
	}
}

// controlDue reports whether a control frame waits to be written.
func (s *Session) controlDue() bool {
	return (s.goingAway.Load() && !s.goAwaySent.Load()) || (s.out.Stalled() && !s.resyncSent.Load())
}

// writeControl writes one control frame (id 0) on the response stream.
// On failure the session is closed and the writer stops.
func (s *Session) writeControl(f *wire.Frame) bool {
	bp := getBuf()
	buf, err := wire.AppendFrame((*bp)[:0], f, s.b.opts.MaxFrameBytes)
	if err == nil {
		err = s.writeResponse(buf)
	}
	*bp = buf
	putBuf(bp)
	if err != nil {
		s.controls.Store(false)
		return false
	}
	return true
}
