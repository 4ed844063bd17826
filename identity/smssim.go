package identity

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// SimGatewayOptions configures a SimGateway.
type SimGatewayOptions struct {
	// HeaderName and HeaderValue, when HeaderName is set, are the credentials
	// every request must carry; a request without them gets 401.
	HeaderName  string
	HeaderValue string
	// MaxMessages caps the messages kept; past it the oldest is dropped and
	// counted. Default: 10,000.
	MaxMessages int
	// MaxBody caps a request body in bytes; a longer one gets 413.
	// Default: 64 KiB.
	MaxBody int64
}

// SimGateway simulates a generic SMS gateway for tests and the demo. It is an
// http.Handler (serve it with httptest.NewServer or an http.Server) that
// accepts the HTTPSender's default body, {"to":…,"text":…}, answers 200 with
// {"id":…} and records the message. It can be told to fail the next requests
// with 503 or 429 (with Retry-After), to refuse numbers with 400, and to hold
// each request for a while (a slow gateway: the handler returns when the
// delay ends or the client goes away). Safe for concurrent use.
type SimGateway struct {
	opts SimGatewayOptions

	mu         sync.Mutex // guards the following
	msgs       []SimMessage
	dropped    int
	requests   int
	failN      int
	failStatus int
	retryAfter time.Duration
	rejected   map[string]bool
	delay      time.Duration
	nextID     int
}

// SimMessage is a message a SimGateway accepted.
type SimMessage struct {
	ID   string
	To   string
	Text string
	At   time.Time
}

// simMaxRejected bounds the numbers a SimGateway can be told to refuse.
const simMaxRejected = 4096

// NewSimGateway returns a gateway that accepts every well-formed request.
func NewSimGateway(opts SimGatewayOptions) *SimGateway {
	if opts.MaxMessages <= 0 {
		opts.MaxMessages = 10000
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = 64 << 10
	}
	return &SimGateway{opts: opts, rejected: make(map[string]bool)}
}

// FailNext makes the next n requests fail with status (503 or 429, or any
// other status a test needs); for 429 a positive retryAfter is sent as
// Retry-After in whole seconds (rounded up).
func (g *SimGateway) FailNext(n, status int, retryAfter time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failN, g.failStatus, g.retryAfter = n, status, retryAfter
}

// Reject makes the gateway answer 400 for number (E.164). It reports false,
// changing nothing, when simMaxRejected numbers are already refused.
func (g *SimGateway) Reject(number string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.rejected[number] && len(g.rejected) >= simMaxRejected {
		return false
	}
	g.rejected[number] = true
	return true
}

// SetDelay holds every following request for d before answering (0: none).
func (g *SimGateway) SetDelay(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.delay = d
}

// Messages returns a copy of the accepted messages, oldest first.
func (g *SimGateway) Messages() []SimMessage {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]SimMessage(nil), g.msgs...)
}

// Requests returns how many requests reached the gateway, failed ones
// included.
func (g *SimGateway) Requests() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.requests
}

// Dropped returns how many accepted messages were dropped past MaxMessages.
func (g *SimGateway) Dropped() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dropped
}

// ServeHTTP implements http.Handler.
func (g *SimGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.requests++
	delay := g.delay
	g.mu.Unlock()
	if g.opts.HeaderName != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(g.opts.HeaderName)), []byte(g.opts.HeaderValue)) != 1 {
		simError(w, http.StatusUnauthorized, "bad credentials")
		return
	}
	if r.Method != http.MethodPost {
		simError(w, http.StatusMethodNotAllowed, "POST only")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, g.opts.MaxBody+1))
	if err != nil {
		simError(w, http.StatusBadRequest, "read body")
		return
	}
	if int64(len(body)) > g.opts.MaxBody {
		simError(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	if delay > 0 {
		// After the body is read: only then does net/http watch the
		// connection and cancel r.Context() when the client goes away.
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	var m struct {
		To   string `json:"to"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(body, &m); err != nil || !isE164(m.To) || m.Text == "" {
		simError(w, http.StatusBadRequest, "want {\"to\":E.164,\"text\":non-empty}")
		return
	}

	g.mu.Lock()
	if g.failN > 0 {
		g.failN--
		status, ra := g.failStatus, g.retryAfter
		g.mu.Unlock()
		if status == http.StatusTooManyRequests && ra > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((ra+time.Second-1)/time.Second), 10))
		}
		simError(w, status, "simulated failure")
		return
	}
	if g.rejected[m.To] {
		g.mu.Unlock()
		simError(w, http.StatusBadRequest, "number refused")
		return
	}
	g.nextID++
	id := "sim-" + strconv.Itoa(g.nextID)
	if len(g.msgs) >= g.opts.MaxMessages {
		n := copy(g.msgs, g.msgs[1:])
		g.msgs = g.msgs[:n]
		g.dropped++
	}
	g.msgs = append(g.msgs, SimMessage{ID: id, To: m.To, Text: m.Text, At: time.Now()})
	g.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"id\":%q}\n", id)
}

func simError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Write(append(b, '\n'))
}
