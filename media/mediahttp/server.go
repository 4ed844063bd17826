package mediahttp

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gonets/gonets/media"
)

// File is a stored file as the HTTP API describes it.
type File struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Name   string `json:"name"`
	MIME   string `json:"mime"`
	// Width, Height and ThumbSHA256 are a picture's (JPEG, PNG, GIF,
	// WebP): its dimensions as displayed and its JPEG thumbnail's address.
	Width       int    `json:"width,omitempty"`
	Height      int    `json:"height,omitempty"`
	ThumbSHA256 string `json:"thumb_sha256,omitempty"`
}

func fileOf(i media.Info) File {
	return File{SHA256: i.SHA256, Size: i.Size, Name: i.Name, MIME: i.MIME, Width: i.Width, Height: i.Height, ThumbSHA256: i.ThumbSHA256}
}

// Server serves the media HTTP API under /media/ (see docs/media.md) and
// implements broker.Attachments over the same store. It is an
// http.Handler, safe for concurrent use; it starts no goroutines (RunGC
// runs on the caller's).
type Server struct {
	opts   Options
	store  *media.Store
	limits media.Options // the store's, defaults filled
	mux    *http.ServeMux
	thumbs chan struct{} // semaphore of MaxThumbnails picture decodes
	done   completions
	bots   *botUploads
	// rcpt are the users' upload receipts, which Attach checks.
	rcpt *receipts
	// uploading counts the upload bodies being received.
	uploading inflight
}

// New returns a Server over o.Store. It loads the bot upload records and
// the upload receipts kept in the store's directory (bot-uploads/,
// receipts/).
func New(o Options) (*Server, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	s := &Server{
		opts:      o,
		store:     o.Store,
		limits:    o.Store.Options(),
		mux:       http.NewServeMux(),
		thumbs:    make(chan struct{}, o.MaxThumbnails),
		done:      completions{m: make(map[string]*completion)},
		uploading: inflight{perUser: o.MaxUploadsInFlightPerUser, max: o.MaxUploadsInFlight, users: make(map[uint64]int)},
	}
	bots, err := loadBotUploads(s.limits.Dir, o.Now(), s.limits.UploadTTL, s.limits.GCGrace, o.MaxBotUploadsPerUser, o.Log)
	if err != nil {
		return nil, err
	}
	s.bots = bots
	rcpt, err := loadReceipts(s.limits.Dir, o.Now(), s.limits.GCGrace, o.MaxReceiptsPerUser)
	if err != nil {
		return nil, err
	}
	s.rcpt = rcpt
	s.failLostBotUploads() // may give receipts
	s.mux.HandleFunc("POST /media/upload", s.authed(s.handlePut))
	s.mux.HandleFunc("POST /media/uploads", s.authed(s.handleCreate))
	s.mux.HandleFunc("GET /media/uploads/{id}", s.authed(s.handleStatus))
	s.mux.HandleFunc("PUT /media/uploads/{id}", s.authed(s.handleChunk))
	s.mux.HandleFunc("DELETE /media/uploads/{id}", s.authed(s.handleAbort))
	s.mux.HandleFunc("GET /media/files/{sha}", s.authed(s.handleFile))
	s.mux.HandleFunc("GET /media/f/{sha}", s.handleSigned)
	s.mux.HandleFunc("POST /media/bot/{token}", s.handleBot)
	s.mux.HandleFunc("/media/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return s, nil
}

// ServeHTTP serves the paths under /media/; anything else is 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

// receipt gives user a durable receipt for the file sha it just
// uploaded, so that Attach takes it.
func (s *Server) receipt(user uint64, sha string) error {
	return s.rcpt.add(user, sha, s.opts.Now())
}

// authed wraps h with the session token check.
func (s *Server) authed(h func(w http.ResponseWriter, r *http.Request, user uint64)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			fail(w, http.StatusUnauthorized, CodeUnauthorized, "want Authorization: Bearer <session token>")
			return
		}
		user, err := s.opts.Authenticate(strings.TrimSpace(tok))
		if err != nil {
			fail(w, http.StatusUnauthorized, CodeUnauthorized, "session token refused: "+err.Error())
			return
		}
		h(w, r, user)
	}
}

// RunGC runs the store's GC every period (default: an hour) until ctx
// ends, and drops expired bot upload records, upload receipts and
// remembered completions.
// The node runs it on a goroutine it owns.
func (s *Server) RunGC(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.gcOnce()
	}
}

// gcOnce is one pass of RunGC.
func (s *Server) gcOnce() {
	now := s.opts.Now()
	if _, err := s.store.GC(now); err != nil {
		s.opts.Log.Error("mediahttp: gc", "err", err)
	}
	s.done.expire(now)
	s.rcpt.expire(now)
	if n := s.bots.expire(now); n > 0 {
		s.opts.Log.Info("mediahttp: expired bot upload tokens", "count", n)
	}
}

// completionKeep is how long the result of a completed resumable upload
// is remembered, for a client whose last answer was lost.
const completionKeep = time.Hour

// maxCompletions bounds the completions remembered.
const maxCompletions = 4096

// completion is one resumable upload's completion: the first request to
// see every byte received runs it, the others wait for its result.
type completion struct {
	user  uint64
	ready chan struct{} // closed once file and err are set
	file  File
	err   error
	at    time.Time // when it finished
}

// completions are the completions running or finished lately.
type completions struct {
	mu sync.Mutex // guards the following
	m  map[string]*completion
}

// lookup returns the completion of upload id of user, or nil.
func (c *completions) lookup(user uint64, id string) *completion {
	c.mu.Lock()
	defer c.mu.Unlock()
	if x := c.m[id]; x != nil && x.user == user {
		return x
	}
	return nil
}

// start returns upload id's completion and whether the caller runs it.
func (c *completions) start(user uint64, id string) (*completion, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if x := c.m[id]; x != nil {
		return x, false
	}
	if len(c.m) >= maxCompletions {
		c.evictLocked()
	}
	x := &completion{user: user, ready: make(chan struct{})}
	c.m[id] = x
	return x, true
}

// finish records x's result.
func (c *completions) finish(x *completion, f File, err error, now time.Time) {
	c.mu.Lock()
	x.file, x.err, x.at = f, err, now
	c.mu.Unlock()
	close(x.ready)
}

// evictLocked drops the oldest finished completion, if any: running
// ones are kept (their waiters need them), and their number is bounded
// by the uploads in flight (Options.MaxUploadsInFlight).
func (c *completions) evictLocked() {
	var old *completion
	var oldID string
	for id, x := range c.m {
		select {
		case <-x.ready:
		default:
			continue
		}
		if old == nil || x.at.Before(old.at) {
			old, oldID = x, id
		}
	}
	if old != nil {
		delete(c.m, oldID)
	}
}

// expire forgets completions finished completionKeep before now.
func (c *completions) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, x := range c.m {
		select {
		case <-x.ready:
			if now.Sub(x.at) >= completionKeep {
				delete(c.m, id)
			}
		default:
		}
	}
}

// wait returns x's result once ready, or ctx's error.
func (x *completion) wait(ctx context.Context) (File, error) {
	select {
	case <-x.ready:
		return x.file, x.err
	case <-ctx.Done():
		return File{}, fmt.Errorf("mediahttp: waiting for completion: %w", ctx.Err())
	}
}
