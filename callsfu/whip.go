package callsfu

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Authorizer decides who may publish and who may play a call's live stream
// over WHIP and WHEP. The node implements it over its session tokens and its
// chats' membership: a channel's admins publish, its subscribers play.
type Authorizer interface {
	// Authorize resolves a POST to /whip/{call} (req.Publish) or
	// /whep/{call}: it returns the SFU call the URL's {call} names and the
	// peer to join it as, the call running (for a publisher it starts the
	// call when it is not running; for a player a call not running is
	// ErrUnknownCall). A refusal wraps ErrUnauthorized (no token, or one
	// that is not a session's), ErrForbidden (not allowed to publish, or to
	// play, there) or ErrUnknownCall (no such stream); any other error is
	// the node's fault. It may block on ctx, which carries the request's
	// deadline.
	Authorize(ctx context.Context, req AuthRequest) (Grant, error)
}

// AuthRequest is what a WHIP or WHEP client asks for.
type AuthRequest struct {
	// Token is the bearer token of the Authorization header, "" without one.
	Token string
	// Call is the {call} segment of the URL, as the node named the stream
	// (1 to 128 of A-Z, a-z, 0-9, '.', '_', '~' and '-').
	Call string
	// Publish is true for a WHIP encoder, false for a WHEP player.
	Publish bool
}

// Grant is an Authorizer's permission.
type Grant struct {
	// Call is the SFU call to join.
	Call uint64
	// Peer is whom to join it as. A second publishing session of the same
	// peer (an encoder that reconnects without its DELETE) replaces the
	// first, and a second playing one the first player; one peer may
	// publish and play at once.
	Peer Peer
	// ICEServers are STUN and TURN servers for the client (time-limited
	// TURN credentials, say), sent with the answer as Link headers
	// (RFC 9725 section 4.6). Default: none.
	ICEServers []webrtc.ICEServer
	// Events, when set, hears what JoinPublisher's or Play's events hear
	// of the session's participant (a publisher's own tracks published,
	// its removal: EventRemoved), and, when the session ends with its
	// DELETE (which removes it without an EventRemoved), an EventRemoved
	// with ReasonLeft: the node learns so when a stream goes live and
	// when it stops. It runs on the participant's events goroutine or on
	// the DELETE's (events still queued may come after the DELETE's), and
	// should not block for long.
	Events func(Event)
}

// WHIPOptions configures a WHIP handler. The zero value of every field but
// Authorizer means its default.
type WHIPOptions struct {
	// Authorizer authorizes every POST. Required.
	Authorizer Authorizer
	// RequestTimeout bounds each request: reading its body and the
	// Authorizer (answered 503 timeout past it); writing the response has a
	// second more. The SFU's own part, the answer's candidates gathered,
	// takes at most 3 s, after which the answer has 2 s to be written; a
	// session whose answer is not is ended. Default: 10 s.
	RequestTimeout time.Duration
	// AllowOrigin is the Access-Control-Allow-Origin of every response, for
	// players and encoders in web pages of other origins. Default: "*" (a
	// request is authorized by its bearer token, never by a cookie).
	AllowOrigin string
	// Logger receives lifecycle and error logs. Default: slog.Default().
	Logger *slog.Logger
}

// WHIP is an http.Handler that lets WHIP encoders (RFC 9725) publish live
// streams into calls and WHEP players (draft-ietf-wish-whep) play them:
//
//	POST   /whip/{call}       an SDP offer that sends: publish (JoinPublisher)
//	POST   /whep/{call}       an SDP offer that receives: play (Play)
//	PATCH  /whip/{call}/{id}  trickled ICE candidates (application/trickle-ice-sdpfrag)
//	DELETE /whip/{call}/{id}  stop publishing; likewise /whep/{call}/{id}, stop playing
//	OPTIONS on each           CORS preflight, Accept-Post and Accept-Patch
//
// A POST carries the client's session token as a bearer token; the
// Authorizer maps it and {call} to a peer and an SFU call. It is answered
// 201 Created with the SFU's answer (application/sdp, every candidate of the
// SFU in it, so that the SFU trickles nothing), the session's URL in
// Location and its ETag. The session's {id} is 128 random bits: knowing its
// URL is what allows PATCH and DELETE, as with the session URLs of RFC 9725.
// The session ends on DELETE, when its participant is removed (silence, ICE
// failure, the call's end, a player's stream ending), when its 201 could not
// be written (the client never has the answer) and when the SFU closes; its
// URL answers 404 after. Trickle ICE is supported, ICE restarts
// are not (422: the client starts a new session instead).
//
// A refusal is a status with a JSON body {"code", "message", "id"} whose
// code is stable (the whip* constants) and changes nothing: 400
// bad_sdp, bad_candidate, too_many_tracks, bad_request; 401 unauthorized;
// 403 forbidden; 404 unknown_call, unknown_session, not_found; 405
// method_not_allowed; 409 too_many_publishers, not_live; 412
// precondition_failed; 413 too_large; 415 unsupported_media_type; 422
// ice_restart_unsupported; 503 closed, timeout; 500 internal, whose
// detail is logged under the id.
//
// It owns no goroutine: a session's end reaches it on its participant's
// events goroutine, which the SFU owns.
type WHIP struct {
	sfu  *SFU
	opts WHIPOptions
	log  *slog.Logger

	mu       sync.Mutex // guards the following
	sessions map[string]*whipSession
}

// maxSDPBody caps the body of a POST or PATCH.
const maxSDPBody = 64 << 10

// The stable codes of the handler's refusals.
const (
	whipBadSDP               = "bad_sdp"
	whipBadCandidate         = "bad_candidate"
	whipTooManyTracks        = "too_many_tracks"
	whipBadRequest           = "bad_request"
	whipUnauthorized         = "unauthorized"
	whipForbidden            = "forbidden"
	whipUnknownCall          = "unknown_call"
	whipUnknownSession       = "unknown_session"
	whipNotFound             = "not_found"
	whipMethodNotAllowed     = "method_not_allowed"
	whipTooManyPublishers    = "too_many_publishers"
	whipNotLive              = "not_live"
	whipPreconditionFailed   = "precondition_failed"
	whipTooLarge             = "too_large"
	whipUnsupportedMediaType = "unsupported_media_type"
	whipICERestart           = "ice_restart_unsupported"
	whipClosed               = "closed"
	whipTimeout              = "timeout"
	whipInternal             = "internal"
)

// whipSession is one WHIP or WHEP session: its participant and what PATCH
// checks against.
type whipSession struct {
	id      string
	etag    string      // quoted
	publish bool        // WHIP, else WHEP
	call    string      // the URL's {call}
	ufrag   string      // the client's ICE username fragment, from its offer
	events  func(Event) // Grant.Events, nil if none

	mu   sync.Mutex   // guards the following
	part *Participant // nil until the SFU has answered
}

// participant returns the session's participant, nil before the answer.
func (s *whipSession) participant() *Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.part
}

// NewWHIP returns the WHIP and WHEP handler of s. The node serves it on its
// public HTTPS listener for the paths /whip/ and /whep/.
func NewWHIP(s *SFU, opts WHIPOptions) (*WHIP, error) {
	if opts.Authorizer == nil {
		return nil, errors.New("callsfu: WHIP handler without an Authorizer")
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.AllowOrigin == "" {
		opts.AllowOrigin = "*"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &WHIP{
		sfu:      s,
		opts:     opts,
		log:      opts.Logger.With("component", "callsfu.whip"),
		sessions: make(map[string]*whipSession),
	}, nil
}

// ServeHTTP routes a request by its path and method.
func (h *WHIP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Origin", h.opts.AllowOrigin)
	hdr.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch, Accept-Post")
	publish, call, id, ok := splitWHIPPath(r.URL.Path)
	if !ok {
		h.refuse(w, http.StatusNotFound, whipNotFound, "no such path")
		return
	}
	h.setDeadlines(w)
	if id == "" {
		switch r.Method {
		case http.MethodOptions:
			hdr.Set("Accept-Post", "application/sdp")
			h.preflight(w, "OPTIONS, POST")
		case http.MethodPost:
			h.create(w, r, publish, call)
		default:
			hdr.Set("Allow", "OPTIONS, POST")
			h.refuse(w, http.StatusMethodNotAllowed, whipMethodNotAllowed, r.Method+" is not allowed here")
		}
		return
	}
	switch r.Method {
	case http.MethodOptions:
		hdr.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
		h.preflight(w, "OPTIONS, PATCH, DELETE")
	case http.MethodPatch:
		h.patch(w, r, h.session(publish, call, id))
	case http.MethodDelete:
		h.delete(w, h.session(publish, call, id))
	default:
		hdr.Set("Allow", "OPTIONS, PATCH, DELETE")
		h.refuse(w, http.StatusMethodNotAllowed, whipMethodNotAllowed, r.Method+" is not allowed here")
	}
}

// splitWHIPPath splits /whip/{call}[/{id}] or /whep/{call}[/{id}].
func splitWHIPPath(path string) (publish bool, call, id string, ok bool) {
	switch {
	case strings.HasPrefix(path, "/whip/"):
		publish = true
	case strings.HasPrefix(path, "/whep/"):
	default:
		return false, "", "", false
	}
	rest := strings.Split(path[len("/whip/"):], "/")
	if len(rest) > 2 || !validSegment(rest[0], 128) {
		return false, "", "", false
	}
	if len(rest) == 2 {
		if !validSegment(rest[1], 64) {
			return false, "", "", false
		}
		id = rest[1]
	}
	return publish, rest[0], id, true
}

// validSegment reports whether a path segment is 1 to max unreserved
// characters (RFC 3986), so that it goes into a Location as it is.
func validSegment(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-') {
			return false
		}
	}
	return true
}

// writeGrace is how long past Options.RequestTimeout the response may take
// to write, so that the refusal of a request that ran out of time still
// reaches its client.
const writeGrace = time.Second

// setDeadlines bounds the reading of the request by
// Options.RequestTimeout, and the writing of the response by writeGrace
// more.
func (h *WHIP) setDeadlines(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	now := time.Now()
	// A ResponseWriter without deadlines (a test's recorder) is served
	// without them.
	_ = rc.SetReadDeadline(now.Add(h.opts.RequestTimeout))
	_ = rc.SetWriteDeadline(now.Add(h.opts.RequestTimeout + writeGrace))
}

// preflight answers an OPTIONS request, a browser's CORS preflight among
// them.
func (h *WHIP) preflight(w http.ResponseWriter, methods string) {
	hdr := w.Header()
	hdr.Set("Allow", methods)
	hdr.Set("Access-Control-Allow-Methods", methods)
	hdr.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	hdr.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusOK)
}

// create serves a POST: it authorizes the client, joins it to the call as a
// publisher or a player and answers its offer.
func (h *WHIP) create(w http.ResponseWriter, r *http.Request, publish bool, call string) {
	offer, ok := h.readBody(w, r, "application/sdp")
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.RequestTimeout)
	defer cancel()
	grant, err := h.opts.Authorizer.Authorize(ctx, AuthRequest{Token: bearerToken(r), Call: call, Publish: publish})
	if err != nil {
		h.refuseErr(w, fmt.Errorf("callsfu: authorize %s: %w", call, err))
		return
	}
	sess := &whipSession{id: randomID(16), etag: `"` + randomID(9) + `"`, publish: publish, call: call,
		ufrag: offerUfrag(offer), events: grant.Events}
	h.mu.Lock()
	h.sessions[sess.id] = sess
	h.mu.Unlock()
	events := func(e Event) {
		if sess.events != nil {
			sess.events(e)
		}
		if e.Kind == EventRemoved {
			h.forget(sess)
		}
	}
	var p *Participant
	var answer string
	if publish {
		p, answer, err = h.sfu.JoinPublisher(grant.Call, grant.Peer, offer, events)
	} else {
		p, answer, err = h.sfu.Play(grant.Call, grant.Peer, offer, events)
	}
	if err != nil {
		h.forget(sess)
		h.refuseErr(w, err)
		return
	}
	sess.mu.Lock()
	sess.part = p
	sess.mu.Unlock()
	h.log.Info("callsfu: stream session", "publish", publish, "call", grant.Call, "peer", grant.Peer.String(),
		"session", sess.id)
	hdr := w.Header()
	hdr.Set("Content-Type", "application/sdp")
	hdr.Set("Location", sessionPath(publish, call, sess.id))
	hdr.Set("ETag", sess.etag)
	hdr.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	for _, link := range iceServerLinks(grant.ICEServers) {
		hdr.Add("Link", link)
	}
	// The answer's write gets its own deadline: the SFU's part may have
	// taken the request's time (its candidates, 3 s at most), and a session
	// whose client never has the answer is a participant that never
	// connects.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(answerWriteTimeout))
	w.WriteHeader(http.StatusCreated)
	_, err = io.WriteString(w, answer)
	if err == nil {
		err = rc.Flush()
	}
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		h.log.Info("callsfu: stream answer not delivered: session ended", "session", sess.id, "err", err)
		h.end(sess, p)
	}
}

// answerWriteTimeout bounds the write of a POST's answer, from when the SFU
// has it.
const answerWriteTimeout = 2 * time.Second

// sessionPath returns the URL path of a session.
func sessionPath(publish bool, call, id string) string {
	if publish {
		return "/whip/" + call + "/" + id
	}
	return "/whep/" + call + "/" + id
}

// readBody reads a request's body of the media type want, at most
// maxSDPBody bytes, or refuses the request.
func (h *WHIP) readBody(w http.ResponseWriter, r *http.Request, want string) (string, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != want {
		h.refuse(w, http.StatusUnsupportedMediaType, whipUnsupportedMediaType, "the body must be "+want)
		return "", false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSDPBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		h.refuse(w, http.StatusRequestEntityTooLarge, whipTooLarge, fmt.Sprintf("the body is over %d bytes", maxSDPBody))
		return "", false
	case err != nil:
		h.refuse(w, http.StatusBadRequest, whipBadRequest, "the body could not be read")
		return "", false
	}
	return string(body), true
}

// bearerToken returns the bearer token of a request, "" if it has none.
func bearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// randomID returns n random bytes in unpadded base64url.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// offerUfrag returns the ICE username fragment of an offer (session level,
// else its first media section's), "" if it has none.
func offerUfrag(offer string) string {
	var d sdp.SessionDescription
	if d.UnmarshalString(offer) != nil {
		return ""
	}
	if u, ok := d.Attribute("ice-ufrag"); ok {
		return u
	}
	for _, m := range d.MediaDescriptions {
		if u, ok := m.Attribute("ice-ufrag"); ok {
			return u
		}
	}
	return ""
}

// iceServerLinks returns the Link header values of RFC 9725 section 4.6 for
// servers: one per URL, with the TURN credentials.
func iceServerLinks(servers []webrtc.ICEServer) []string {
	var links []string
	for _, s := range servers {
		for _, u := range s.URLs {
			link := "<" + u + `>; rel="ice-server"`
			if cred, ok := s.Credential.(string); ok && s.Username != "" {
				link += `; username=` + quote(s.Username) + `; credential=` + quote(cred) +
					`; credential-type="password"`
			}
			links = append(links, link)
		}
	}
	return links
}

// quote returns s as an HTTP quoted-string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// session returns the session of a PATCH or DELETE, nil if there is none of
// that id for that path.
func (h *WHIP) session(publish bool, call, id string) *whipSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[id]
	if s == nil || s.publish != publish || s.call != call {
		return nil
	}
	return s
}

// forget drops a session that ended.
func (h *WHIP) forget(s *whipSession) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sessions[s.id] == s {
		delete(h.sessions, s.id)
	}
}

// patch serves a PATCH: the client's trickled candidates. An ICE restart (a
// new username fragment) is refused.
func (h *WHIP) patch(w http.ResponseWriter, r *http.Request, s *whipSession) {
	p := s.participantOrNil()
	if p == nil {
		h.refuse(w, http.StatusNotFound, whipUnknownSession, "no such session")
		return
	}
	body, ok := h.readBody(w, r, "application/trickle-ice-sdpfrag")
	if !ok {
		return
	}
	if !ifMatch(r.Header.Get("If-Match"), s.etag) {
		h.refuse(w, http.StatusPreconditionFailed, whipPreconditionFailed, "If-Match is not the session's ETag")
		return
	}
	frag, err := parseSDPFrag(body)
	if err != nil {
		h.refuse(w, http.StatusBadRequest, whipBadCandidate, err.Error())
		return
	}
	if frag.ufrag != "" && frag.ufrag != s.ufrag {
		h.refuse(w, http.StatusUnprocessableEntity, whipICERestart,
			"ICE restarts are not supported: DELETE the session and start a new one")
		return
	}
	target := TargetSubscriber
	if s.publish {
		target = TargetPublisher
	}
	for _, c := range frag.candidates {
		if err := p.AddCandidate(target, c); err != nil {
			h.refuseErr(w, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// participantOrNil returns s's participant, nil for no session or one not
// answered yet.
func (s *whipSession) participantOrNil() *Participant {
	if s == nil {
		return nil
	}
	return s.participant()
}

// ifMatch reports whether an If-Match header (RFC 9110 section 13.1.1)
// admits etag: absent, "*", or a list that holds it.
func ifMatch(header, etag string) bool {
	if header == "" {
		return true
	}
	for _, tag := range strings.Split(header, ",") {
		if tag = strings.TrimSpace(tag); tag == "*" || tag == etag {
			return true
		}
	}
	return false
}

// delete serves a DELETE: the session ends, its participant leaves.
func (h *WHIP) delete(w http.ResponseWriter, s *whipSession) {
	p := s.participantOrNil()
	if p == nil {
		h.refuse(w, http.StatusNotFound, whipUnknownSession, "no such session")
		return
	}
	h.end(s, p)
	w.WriteHeader(http.StatusOK)
}

// end ends a session, its participant p removed: a DELETE, or a POST whose
// answer could not be written. Grant.Events hears the removal from here
// only when this removed p: one removed already (replaced by a newer
// session of its peer, silent, a second DELETE's) was heard of with its
// own reason.
func (h *WHIP) end(s *whipSession, p *Participant) {
	h.forget(s)
	if p.remove(ReasonLeft) && s.events != nil {
		s.events(Event{Kind: EventRemoved, Reason: ReasonLeft})
	}
}

// whipStatus maps the SFU's refusal codes to a status and a stable code.
var whipStatus = map[Code]struct {
	status int
	code   string
}{
	CodeBadSDP:            {http.StatusBadRequest, whipBadSDP},
	CodeBadCandidate:      {http.StatusBadRequest, whipBadCandidate},
	CodeTooManyTracks:     {http.StatusBadRequest, whipTooManyTracks},
	CodeBadRequest:        {http.StatusBadRequest, whipBadRequest},
	CodeUnauthorized:      {http.StatusUnauthorized, whipUnauthorized},
	CodeForbidden:         {http.StatusForbidden, whipForbidden},
	CodeUnknownCall:       {http.StatusNotFound, whipUnknownCall},
	CodeLeft:              {http.StatusNotFound, whipUnknownSession},
	CodeTooManyPublishers: {http.StatusConflict, whipTooManyPublishers},
	CodeNotLive:           {http.StatusConflict, whipNotLive},
	CodeClosed:            {http.StatusServiceUnavailable, whipClosed},
}

// refuseErr answers err: a refusal of the SFU's or the Authorizer's with its
// status and code, a deadline with 503, anything else with 500 and its
// detail in the log only.
func (h *WHIP) refuseErr(w http.ResponseWriter, err error) {
	if s, ok := whipStatus[CodeOf(err)]; ok {
		if s.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gonets"`)
		}
		h.refuse(w, s.status, s.code, err.Error())
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		h.refuse(w, http.StatusServiceUnavailable, whipTimeout, "the request took too long")
		return
	}
	id := h.refuse(w, http.StatusInternalServerError, whipInternal, "internal error")
	h.log.Warn("callsfu: stream request failed", "id", id, "err", err)
}

// whipError is the JSON body of a refusal.
type whipError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	ID      string `json:"id"`
}

// refuse writes a refusal and returns its id.
func (h *WHIP) refuse(w http.ResponseWriter, status int, code, msg string) string {
	id := randomID(6)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(whipError{Code: code, Message: msg, ID: id})
	return id
}

// EndPeer ends every WHIP and WHEP session of peer, as a DELETE of each
// would (a publisher's stream stops), and returns how many it ended: the
// node calls it when peer's device is ended, whose token may still be
// valid for the sessions it opened.
func (h *WHIP) EndPeer(peer Peer) int {
	type ending struct {
		s *whipSession
		p *Participant
	}
	h.mu.Lock()
	all := make([]*whipSession, 0, len(h.sessions))
	for _, s := range h.sessions {
		all = append(all, s)
	}
	h.mu.Unlock()
	var ends []ending
	for _, s := range all { // s.mu outside h.mu
		if p := s.participantOrNil(); p != nil && p.Peer() == peer {
			ends = append(ends, ending{s, p})
		}
	}
	for _, e := range ends {
		h.end(e.s, e.p)
	}
	return len(ends)
}
