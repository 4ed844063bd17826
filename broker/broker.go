package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/time/rate"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// ProtocolVersion is the client protocol version the broker speaks.
const ProtocolVersion = 1

// deliverOverhead bounds what a Deliver frame adds to a message body: the
// length prefix and every other field at its largest.
const deliverOverhead = 1024

// Conn is one client connection, whatever carries it (a QUIC connection,
// later WebTransport or TCP): a stream of client frames in, a stream of
// responses out, and a stream for server pushes opened on first use.
type Conn interface {
	// Read reads the client's request stream.
	io.Reader
	// Write writes to the response stream, and SetWriteDeadline bounds
	// those writes. Responses and the session's control frames (Resync,
	// GoingAway) are written there, one writer at a time.
	Stream
	// OpenPush opens the push stream. The session's writer calls it once,
	// before its first push, and is then its only writer.
	OpenPush() (Stream, error)
	// Close ends the connection, telling the client code and reason, and
	// unblocks Read and writes. It may be called more than once.
	Close(code wire.ErrorCode, reason string) error
}

// listener is a transport's listener as Shutdown sees it: it stops
// accepting first and closes its sockets once the sessions have ended.
type listener interface {
	stopAccepting()
	Close() error
}

// Stream is an outgoing stream whose writes can be given a deadline, as
// net.Conn's and quic-go's streams can: a write past the deadline returns
// what it wrote and an error whose Timeout method reports true.
type Stream interface {
	io.Writer
	SetWriteDeadline(t time.Time) error
}

// Broker serves client sessions over a Store: it authenticates them,
// checks and applies their requests, and fans acknowledged messages out to
// every online device of every member.
type Broker struct {
	// revisions serialize the edits and deletes of one MEDIA message
	// (commitRevision), striped by chat and target.
	revisions [64]sync.Mutex

	st       *storage.Store
	verifier *token.Verifier
	opts     Options
	log      *slog.Logger
	m        brokerMetrics
	reg      *registry
	chats    *chatIndex
	welcome  welcomeLimits
	admit    *admission
	calls    *callTable

	stop    context.Context    // cancelled when Shutdown gives up waiting
	cancel  context.CancelFunc // cancels stop
	wg      sync.WaitGroup     // connections and accept loops
	writers sync.WaitGroup     // sessions' writer goroutines

	mu        sync.Mutex // guards the following
	closing   bool
	conns     map[Conn]struct{}
	listeners []listener
}

type welcomeLimits struct{ maxFrame, maxBody uint32 }

// New returns a broker over st that admits sessions whose tokens v
// verifies.
func New(st *storage.Store, v *token.Verifier, opts Options) (*Broker, error) {
	opts, err := opts.ensureDefaults()
	if err != nil {
		return nil, err
	}
	// Every record the store accepts must fit a Deliver frame, or its
	// fan-out and history would fail.
	if need := st.MaxBodyBytes() + deliverOverhead; opts.MaxFrameBytes < need {
		return nil, fmt.Errorf("broker: MaxFrameBytes %d below the store's MaxBodyBytes %d plus %d bytes of framing",
			opts.MaxFrameBytes, st.MaxBodyBytes(), deliverOverhead)
	}
	b := &Broker{
		st:       st,
		verifier: v,
		opts:     opts,
		log:      opts.Logger,
		reg:      newRegistry(),
		chats:    newChatIndex(st),
		conns:    make(map[Conn]struct{}),
		welcome:  welcomeLimits{maxFrame: uint32(opts.MaxFrameBytes), maxBody: uint32(st.MaxBodyBytes())},
	}
	b.m = newBrokerMetrics(opts.Metrics)
	b.admit = newAdmission(opts)
	b.calls = newCallTable(opts)
	opts.Metrics.NewGauge("gonets_broker_index_chats", func() float64 { return float64(b.chats.len()) })
	opts.Metrics.NewGauge("gonets_broker_index_members", func() float64 { return float64(b.chats.pairs.Load()) })
	b.stop, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

// Metrics returns the set holding the broker's gonets_broker_* metrics.
func (b *Broker) Metrics() *metrics.Set { return b.opts.Metrics }

// Ready reports whether the broker accepts sessions and its store serves.
func (b *Broker) Ready() bool {
	b.mu.Lock()
	closing := b.closing
	b.mu.Unlock()
	return !closing && b.st.Healthy()
}

// Sessions returns the number of authenticated sessions.
func (b *Broker) Sessions() int { return int(b.m.sessionsNow.Load()) }

// track registers a new connection, unless the broker is shutting down.
func (b *Broker) track(c Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return false
	}
	b.conns[c] = struct{}{}
	b.wg.Add(1)
	return true
}

func (b *Broker) untrack(c Conn) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
	b.wg.Done()
}

// addListener registers l to be closed by Shutdown, unless it began.
func (b *Broker) addListener(l listener) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return false
	}
	b.listeners = append(b.listeners, l)
	b.wg.Add(1)
	return true
}

// Shutdown stops accepting connections, tells every session to go away
// (reconnect elsewhere or later, then sync), and waits for the sessions
// to end. When ctx is done first it closes the rest. Requests already
// handed to the store complete either way, so nothing acknowledged is
// lost; the caller closes the store after Shutdown returns.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		return ErrShutdown
	}
	b.closing = true
	listeners := b.listeners
	b.mu.Unlock()
	for _, l := range listeners {
		l.stopAccepting() // the sessions' connections go on
	}
	// The sockets close once the sessions have ended (or were closed).
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, s := range b.reg.all() {
		s.goAway()
	}
	// Calls live in this node's memory: they end now, recorded in their
	// chats while the sessions can still hear of it.
	b.endCalls(ctx)
	idle := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		b.cancel()
		b.writers.Wait()
		return nil
	case <-ctx.Done():
	}
	b.cancel() // connections that have not started a session yet
	b.mu.Lock()
	conns := make([]Conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.Close(wire.ErrorCode_ERROR_CODE_UNAVAILABLE, "node shutting down") })
	}
	wg.Wait()
	<-idle
	b.writers.Wait()
	return ctx.Err()
}

func (b *Broker) newLimiter() *rate.Limiter {
	return rate.NewLimiter(rate.Limit(b.opts.SendRate), b.opts.SendBurst)
}

// brokerMetrics are the broker's gonets_broker_* metrics.
type brokerMetrics struct {
	sessionsNow   *atomic.Int64
	handshakes    *metrics.Counter
	authFailures  *metrics.Counter
	requests      *metrics.Counter
	requestErrors *metrics.Counter
	rateLimited   *metrics.Counter
	messages      *metrics.Counter
	deliveries    *metrics.Counter
	pushWrites    *metrics.Counter
	coalesceWaits *metrics.Counter
	heartbeats    *metrics.Counter
	drops         *DropCounters
	closes        *closeCounters
	helloTimeouts *metrics.Counter
	resyncs       *metrics.Counter
	badFrames     *metrics.Counter
	preAuth       *metrics.Counter
	// serviceNoteFailures counts service messages (new logins) not posted.
	serviceNoteFailures *metrics.Counter
}

func newBrokerMetrics(set *metrics.Set) brokerMetrics {
	g := &atomic.Int64{}
	set.NewGauge("gonets_broker_sessions", func() float64 { return float64(g.Load()) })
	return brokerMetrics{
		sessionsNow:   g,
		handshakes:    set.NewCounter("gonets_broker_handshakes_total"),
		authFailures:  set.NewCounter("gonets_broker_auth_failures_total"),
		requests:      set.NewCounter("gonets_broker_requests_total"),
		requestErrors: set.NewCounter("gonets_broker_request_errors_total"),
		rateLimited:   set.NewCounter("gonets_broker_rate_limited_total"),
		messages:      set.NewCounter("gonets_broker_messages_total"),
		deliveries:    set.NewCounter("gonets_broker_deliveries_total"),
		pushWrites:    set.NewCounter("gonets_broker_push_writes_total"),
		coalesceWaits: set.NewCounter("gonets_broker_push_coalesce_waits_total"),
		heartbeats:    set.NewCounter("gonets_broker_tcp_heartbeats_total"),
		drops:         newDropCounters(set),
		closes:        newCloseCounters(set),
		helloTimeouts: set.NewCounter("gonets_broker_hello_timeouts_total"),
		resyncs:       set.NewCounter("gonets_broker_resyncs_total"),
		badFrames:     set.NewCounter("gonets_broker_bad_frames_total"),
		preAuth:       set.NewCounter("gonets_broker_preauth_requests_total"),

		serviceNoteFailures: set.NewCounter("gonets_broker_service_note_failures_total"),
	}
}
