package botapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Server serves the Bot API over a Backend. Register adds its paths to a
// mux; Server is itself an http.Handler with its paths at the root and
// MAX's 404 for every other path.
type Server struct {
	o    Options
	lim  *limiters
	mux  *http.ServeMux
	stop context.Context // canceled by Close
	quit context.CancelFunc

	closed atomic.Bool
}

// New returns a Server with o's defaults filled in. It panics when
// o.Backend is nil.
func New(o Options) *Server {
	o, err := o.withDefaults()
	if err != nil {
		panic(err)
	}
	s := &Server{o: o, lim: newLimiters(o.RateLimit, o.Burst, o.MaxLimiters)}
	s.stop, s.quit = context.WithCancel(context.Background())
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/", NotFound)
	s.Register(s.mux)
	return s
}

// ServeHTTP serves the Bot API's paths at the root.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// NotFound answers MAX's 404, {"code":"not.found"}: the Server's answer
// to unknown paths, for a mux that Register added the API to to use as
// its catch-all.
func NotFound(w http.ResponseWriter, _ *http.Request) { writeError(w, ErrNotFound) }

// Close makes the Server answer 503 service.unavailable from now on and
// ends the long polls in flight with it (the SDK retries those with its
// marker), so that an http.Server's Shutdown need not wait for them.
func (s *Server) Close() {
	s.closed.Store(true)
	s.quit()
}

// An endpoint serves one route for an authenticated bot and returns the
// value to answer with status 200 as JSON.
type endpoint func(ctx context.Context, c *call) (any, error)

// call is one request to an endpoint.
type call struct {
	r    *http.Request
	rc   *http.ResponseController
	bot  int64
	body []byte // the request body, for POST, PUT and PATCH
}

// Deadlines of a request other than a long poll: reading its body,
// Backend's work and writing the answer. A long poll gets its timeout
// and pollGrace more.
const (
	bodyTimeout = 30 * time.Second
	callTimeout = 30 * time.Second
)

// route is one path of the API with the endpoint of each method. A
// long route sets its own deadlines (GET /updates).
type route struct {
	path    string
	methods []string
	eps     []endpoint
	long    bool
}

// routes returns the API's paths.
func (s *Server) routes() []route {
	return []route{
		{"/me", []string{"GET"}, []endpoint{s.me}, false},
		{"/me/commands", []string{"PATCH"}, []endpoint{s.setCommands}, false},
		{"/chats", []string{"GET"}, []endpoint{s.chats}, false},
		{"/chats/{chat_id}", []string{"GET", "PATCH"}, []endpoint{s.chat, s.editChat}, false},
		{"/chats/{chat_id}/actions", []string{"POST"}, []endpoint{s.action}, false},
		{"/chats/{chat_id}/members", []string{"GET", "POST", "DELETE"}, []endpoint{s.members, s.addMembers, s.removeMember}, false},
		{"/chats/{chat_id}/members/me", []string{"GET", "DELETE"}, []endpoint{s.membership, s.leave}, false},
		{"/chats/{chat_id}/members/admins", []string{"GET"}, []endpoint{s.admins}, false},
		{"/messages", []string{"GET", "POST", "PUT", "DELETE"}, []endpoint{s.messages, s.send, s.edit, s.delete}, false},
		{"/messages/{message_id}", []string{"GET"}, []endpoint{s.message}, false},
		{"/answers", []string{"POST"}, []endpoint{s.answer}, false},
		{"/uploads", []string{"POST"}, []endpoint{s.upload}, false},
		{"/updates", []string{"GET"}, []endpoint{s.updates}, true},
		{"/subscriptions", []string{"GET", "POST", "DELETE"}, []endpoint{s.subscriptions, s.subscribe, s.unsubscribe}, false},
	}
}

// Register adds the API's patterns to mux: "METHOD /path" for each
// endpoint and "/path" answering 405 (with Allow) for other methods. It
// registers no catch-all: mux's own "/" answers unknown paths (NotFound
// answers them as MAX does). It panics, as mux does, when a pattern
// conflicts with one mux has.
func (s *Server) Register(mux *http.ServeMux) {
	for _, rt := range s.routes() {
		for i, m := range rt.methods {
			mux.Handle(m+" "+rt.path, s.handler(rt.eps[i], rt.long))
		}
		allow := strings.Join(rt.methods, ", ")
		if strings.Contains(allow, "GET") {
			allow += ", HEAD"
		}
		mux.HandleFunc(rt.path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, ErrMethodNotAllowed)
		})
	}
}

// handler wraps an endpoint: it authenticates the bot, applies its rate
// limit, reads the body, runs the endpoint and writes its answer, under
// the deadlines above unless the endpoint is long.
func (s *Server) handler(ep endpoint, long bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.closed.Load() {
			writeError(w, ErrUnavailable)
			return
		}
		bot, err := s.authenticate(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if ok, wait := s.lim.allow(bot, s.o.Now()); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter(wait)))
			writeError(w, ErrTooManyRequests)
			return
		}
		c := &call{r: r, rc: http.NewResponseController(w), bot: bot}
		ctx := r.Context()
		if !long {
			// Not every ResponseWriter has deadlines (test recorders);
			// the node's http.Server's do.
			c.rc.SetWriteDeadline(time.Now().Add(bodyTimeout + callTimeout))
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, callTimeout)
			defer cancel()
		}
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			c.rc.SetReadDeadline(time.Now().Add(bodyTimeout))
			if c.body, err = readBody(w, r, s.o.MaxBody); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		v, err := ep(ctx, c)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

// authenticate returns the bot of the request's Authorization header:
// the raw token, or "Bearer <token>". The access_token query parameter
// is not accepted.
func (s *Server) authenticate(r *http.Request) (int64, error) {
	tok := strings.TrimSpace(r.Header.Get("Authorization"))
	if len(tok) > 7 && strings.EqualFold(tok[:7], "Bearer ") {
		tok = strings.TrimSpace(tok[7:])
	}
	if tok == "" || len(tok) > maxToken || !printableASCII(tok, "") {
		return 0, ErrUnknownToken
	}
	bot, err := s.o.Backend.Authenticate(tok)
	if err != nil {
		return 0, err
	}
	if bot <= 0 {
		return 0, ErrUnknownToken
	}
	return bot, nil
}

// readBody reads the request body, at most max bytes.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, Errorf(ErrTooLarge, "the body is over %d bytes", max)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, Errorf(ErrTooLarge, "the body is over %d bytes", max)
	case err != nil:
		return nil, Errorf(ErrBadRequest, "reading the body: %v", err)
	}
	return b, nil
}

// fail answers err: an APIError with its status and body; a canceled
// request with nothing (the client is gone); anything else with 500 and
// an id that the log has the error under.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if e := AsAPIError(err); e != nil {
		writeError(w, e)
		return
	}
	if r.Context().Err() != nil {
		return
	}
	id := errorID()
	s.o.Log.Error("botapi: request failed", "id", id, "method", r.Method, "path", r.URL.Path, "err", err)
	w.Header().Set("X-Error-Id", id)
	writeError(w, &APIError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"})
}

// errorID returns a random id for an error in the log.
func errorID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writeError writes e as MAX's error body with its status.
func writeError(w http.ResponseWriter, e *APIError) {
	writeJSON(w, e.Status, Error{Code: e.Code, Message: e.Message})
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // the models have nothing json cannot encode
		status = http.StatusInternalServerError
		b = []byte(`{"code":"internal","message":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
}
