package mediahttp

import (
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// progressReader is a request body whose every read that returns bytes
// moves the connection's read deadline idle from then: a client may send
// slowly, but not stop.
type progressReader struct {
	r    io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	set  time.Time // when the deadline was last moved
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		// Moving the deadline costs a timer update: at most every
		// idle/16, which keeps it within 7% of idle.
		if now := time.Now(); now.Sub(p.set) >= p.idle/16 {
			p.rc.SetReadDeadline(now.Add(p.idle))
			p.set = now
		}
	}
	return n, err
}

func (p *progressReader) Close() error { return p.r.Close() }

// watchBody sets r's read deadline to IdleTimeout from now and replaces
// r.Body with a progressReader that moves it on. The deadline stays after
// the handler returns, bounding what the server discards of an unread
// body; the server clears it before reading the connection's next
// request.
func (s *Server) watchBody(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	now := time.Now()
	if err := rc.SetReadDeadline(now.Add(s.opts.IdleTimeout)); err != nil {
		s.opts.Log.Debug("mediahttp: no read deadline", "err", err)
		return
	}
	r.Body = &progressReader{r: r.Body, rc: rc, idle: s.opts.IdleTimeout, set: now}
}

// progressWriter is a ResponseWriter whose every write first moves the
// connection's write deadline idle from then: a reader may take slowly,
// but not stop.
type progressWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
	ok   bool // the deadline can be set
}

func (p *progressWriter) Write(b []byte) (int, error) {
	if p.ok {
		p.ok = p.rc.SetWriteDeadline(time.Now().Add(p.idle)) == nil
	}
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// watchWrites returns w as a progressWriter and a func, to defer, that
// flushes what is buffered under the deadline and then clears it, so
// that the connection's next request (or a hijacked connection) does not
// inherit it.
func (s *Server) watchWrites(w http.ResponseWriter) (http.ResponseWriter, func()) {
	rc := http.NewResponseController(w)
	p := &progressWriter{ResponseWriter: w, rc: rc, idle: s.opts.IdleTimeout, ok: true}
	return p, func() {
		if !p.ok {
			return
		}
		rc.SetWriteDeadline(time.Now().Add(p.idle))
		rc.Flush()
		rc.SetWriteDeadline(time.Time{})
	}
}

// inflight counts the upload requests being received, per user and in
// all.
type inflight struct {
	perUser, max int

	mu    sync.Mutex // guards the following
	n     int
	users map[uint64]int
}

// acquire takes a slot for user, or reports that none is free.
func (l *inflight) acquire(user uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n >= l.max || l.users[user] >= l.perUser {
		return false
	}
	l.n++
	l.users[user]++
	return true
}

// release gives back user's slot.
func (l *inflight) release(user uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n--
	if l.users[user]--; l.users[user] <= 0 {
		delete(l.users, user)
	}
}

// retryAfter is the Retry-After of a 429 for too many uploads in flight,
// in seconds.
const retryAfter = 1

// uploadSlot takes an upload slot for user and watches r's body; it
// answers 429 and returns false when none is free. The caller releases
// the slot (s.uploading.release) when it is done with the body.
func (s *Server) uploadSlot(w http.ResponseWriter, r *http.Request, user uint64) bool {
	if !s.uploading.acquire(user) {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		fail(w, http.StatusTooManyRequests, CodeTooManyUploads, "too many uploads in flight; retry later")
		return false
	}
	s.watchBody(w, r)
	return true
}
