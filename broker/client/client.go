package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gonets/gonets/broker/wire"
)

// maxOwn caps the own sends queued for delivery; past it they are left to
// the gap fill from history.
const maxOwn = 256

// Client is a session with a Gonets node that survives connection loss.
// Its methods are safe for concurrent use; each blocks until its response
// (or ctx ends).
//
// Requests made while the client is reconnecting wait for the connection.
// A request in flight when the connection breaks is repeated on the next
// connection if repeating it is safe: sends, edits, deletes and reactions
// (the node deduplicates them by client message id and returns the
// original Ack, Duplicate set), reads (History, Latest, Sync, Ping) and
// receipts (markers only move forward). CreateChat, AddMembers,
// RemoveMember, Leave, Typing and the call requests are not repeated: they
// fail with ErrConnLost and may or may not have taken effect (a lost
// connection takes the device out of its call anyway).
//
// With Options.Refresh the Client keeps its access token alive: a
// goroutine of its own (refresher) trades the refresh token for a new
// pair at about three quarters of the access token's life, hands the
// pair to Options.OnTokens, sends the new access token with Auth and
// opens later connections with it; a connection refused TOKEN_EXPIRED
// is renewed and retried the same way. A request that reaches the node
// after its token expired is refused TOKEN_EXPIRED (the node did not act
// on it) and the session closes; the Client renews and reconnects. A
// refresh token is sent once: when a refresh's answer is lost the Client
// stops with ErrRefreshLost rather than risk a second use, which the
// node takes for theft and answers by ending the device.
type Client struct {
	opts     Options
	addr     string
	dialer   *dialer
	log      *slog.Logger
	msgIDs   idGen
	frameIDs atomic.Uint64
	backoff  backoff
	pos      *position
	dl       *delivery
	stats    counters
	events   chan Event    // nil with OnEvent or SendOnly
	kick     chan struct{} // own sends queued; capacity 1
	cancel   context.CancelFunc
	stopped  chan struct{} // closed when the client stops for good
	wg       sync.WaitGroup
	user     uint64
	device   uint64
	ref      *refresher // nil without Options.Refresh
	media    mediaHTTP  // the media API's HTTP client, shared by uploads and downloads

	mu        sync.Mutex // guards the following
	token     string
	authed    string        // the token the current (or next) session opened with or last sent in Auth
	failed    error         // set by fail: the client stops with it instead of reconnecting
	sess      *session      // the current session; nil while reconnecting
	transport Transport     // the latest session's
	changed   chan struct{} // closed and replaced whenever sess changes
	welcome   *wire.Welcome // the latest
	err       error         // why the client stopped, once stopped is closed
	own       []Message     // acked own sends awaiting delivery

	// disconnected is an EventDisconnected the app was not reading when
	// it happened; it goes out before the next event. Only the run
	// goroutine touches it.
	disconnected *Event
}

// Dial connects to the node at addr ("host:port": QUIC over UDP, and by
// default TLS over TCP on the same port) with a session token and returns
// a Client once the node accepted it. Unless Options.Via says otherwise
// it races the two transports (see Options.Via), and every reconnection
// races them again, the transport that worked last first. A node that
// rejects the token or the protocol version returns an *Error
// (UNAUTHENTICATED, TOKEN_EXPIRED, DEVICE_ENDED, UNSUPPORTED_VERSION);
// Dial does not retry, except that with Options.Refresh it renews a
// token refused as expired (or an empty one) first. Delivery starts in the background: read Events (or set
// Options.OnEvent).
func Dial(ctx context.Context, addr, token string, opts Options) (*Client, error) {
	o, err := opts.ensureDefaults()
	if err != nil {
		return nil, err
	}
	tlsConf, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := &Client{
		opts:    o,
		addr:    addr,
		log:     o.Logger,
		msgIDs:  idGen{now: time.Now},
		backoff: backoff{min: o.ReconnectMin, max: o.ReconnectMax, rand: rand.Int64N},
		pos:     newPosition(o.State),
		kick:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
		token:   token,
		changed: make(chan struct{}),
	}
	if o.FromNow {
		c.pos = newPosition(SyncState{Transport: o.State.Transport}.clone())
	}
	c.dialer = newDialer(o, addr, tlsConf, &c.frameIDs, &c.stats.droppedPushes)
	c.dl = &delivery{pos: c.pos, page: o.HistoryPage, log: c.log, emit: c.emit, stats: &c.stats, hold: o.GapHold}
	if o.OnEvent == nil && !o.SendOnly {
		c.events = make(chan Event, o.EventBuffer)
	}
	s, err := c.connectFirst(ctx, token)
	if err != nil {
		return nil, err
	}
	c.user, c.device = s.welcome.GetUser(), s.welcome.GetDevice()
	if o.FromNow && !o.SendOnly {
		if err := c.dl.markAll(ctx, s); err != nil {
			s.close(ErrClosed)
			return nil, err
		}
	}
	c.setSession(s)
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Add(1)
	go c.run(runCtx, s)
	if c.ref != nil {
		c.wg.Add(1)
		go c.ref.run(runCtx)
	}
	return c, nil
}

// newDialer returns the dialer of o (its defaults filled) for the node
// at addr.
func newDialer(o Options, addr string, tlsConf *tls.Config, ids, dropped *atomic.Uint64) *dialer {
	keepAlive := o.keepAlivePeriod()
	return &dialer{
		via:        o.Via,
		addr:       addr,
		tcpAddr:    cmp.Or(o.TCPAddr, addr),
		tls:        tlsConf,
		quic:       o.quicConfig(keepAlive),
		udp:        o.Transport,
		dialTCP:    o.DialTCP,
		keepAlive:  keepAlive,
		idle:       o.IdleTimeout,
		delay:      o.fallbackDelay,
		ids:        ids,
		name:       o.Name,
		maxRecv:    o.MaxReceiveBytes,
		pushBuffer: o.PushBuffer,
		dropped:    dropped,
	}
}

// connectFirst opens Dial's session. With Options.Refresh it renews the
// access token first when there is none, and once when the node refuses
// it as expired.
func (c *Client) connectFirst(ctx context.Context, token string) (*session, error) {
	if c.opts.Refresh == "" {
		return c.connect(ctx)
	}
	c.ref = newRefresher(c, c.opts.Refresh, token)
	renewed := token == ""
	if renewed {
		if err := c.ref.renew(ctx); err != nil {
			return nil, err
		}
	}
	s, err := c.connect(ctx)
	if err == nil || renewed || !errors.Is(err, ErrTokenExpired) {
		return s, err
	}
	if err := c.ref.renew(ctx); err != nil {
		return nil, err
	}
	return c.connect(ctx)
}

// Close ends the session and waits for the client's goroutines. Requests
// still waiting fail with ErrClosed, and Events closes. A token refresh
// already sent is let finish (its answer awaited up to 35 s), so that
// Options.OnTokens gets the pair the node issued. It must not be called
// from Options.OnEvent.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	c.media.close()
	return nil
}

// Events returns the channel of events, in order; it closes when the
// client stops (Close, or a lost connection that is not retried). It is
// nil when Options.OnEvent or Options.SendOnly is set.
//
// Messages are every record of every chat the user is in, this client's
// own sends included (Message.Device is Device()), each chat's in seq
// order and each once: a message that skips seqs waits for the missing
// ones, up to Options.GapHold, and then while the client fetches them from
// history; one the app holds is dropped. After a
// reconnection or a Resync push the client catches up from history first.
func (c *Client) Events() <-chan Event { return c.events }

// Err returns why the client stopped (ErrClosed after Close), or nil while
// it runs.
func (c *Client) Err() error {
	select {
	case <-c.stopped:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// User returns the user the token names.
func (c *Client) User() uint64 { return c.user }

// Device returns the device the token names.
func (c *Client) Device() uint64 { return c.device }

// Limits are what the node accepts, from its Welcome.
type Limits struct {
	// MaxFrameBytes caps one encoded request.
	MaxFrameBytes int
	// MaxBodyBytes caps a message body.
	MaxBodyBytes int
}

// Limits returns the node's limits as of the latest connection.
func (c *Client) Limits() Limits {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Limits{MaxFrameBytes: maxSendBytes(c.welcome), MaxBodyBytes: int(c.welcome.GetMaxBodyBytes())}
}

// Transport returns the transport of the current connection, or of the
// last one while the client reconnects: TransportQUIC or TransportTCP.
func (c *Client) Transport() Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.transport
}

// SyncState returns the client's position for an app to persist and pass
// back in Options.State after a restart. Messages count as held once they
// are on the Events channel; an app that must not lose any buffered there
// on a crash persists what it processed itself, or uses an unbuffered
// channel or OnEvent.
func (c *Client) SyncState() SyncState { return c.pos.snapshot() }

// Stats are counts since Dial.
type Stats struct {
	// Reconnects counts connections after the first.
	Reconnects uint64
	// Resyncs counts Resync pushes handled.
	Resyncs uint64
	// Delivered counts messages delivered.
	Delivered uint64
	// Duplicates counts messages dropped as already delivered: pushes,
	// own sends and history pages that overlapped what the app holds.
	Duplicates uint64
	// Gaps counts gaps fetched from history: those still open after
	// Options.GapHold (or at once when it is negative).
	Gaps uint64
	// Expired counts messages skipped because they fell below their chat's
	// retention floor before the client caught up.
	Expired uint64
	// DroppedPushes counts pushes a TCP connection dropped because the
	// app was reading too slowly (Options.PushBuffer was full); the
	// messages among them were caught up from history.
	DroppedPushes uint64
}

// Stats returns the client's counts.
func (c *Client) Stats() Stats {
	return Stats{
		Reconnects: c.stats.reconnects.Load(),
		Resyncs:    c.stats.resyncs.Load(),
		Delivered:  c.stats.delivered.Load(),
		Duplicates: c.stats.duplicates.Load(),
		Gaps:       c.stats.gaps.Load(),
		Expired:    c.stats.expired.Load(),

		DroppedPushes: c.stats.droppedPushes.Load(),
	}
}

// connect makes one connection attempt, bounded by DialTimeout, over the
// transports Options.Via allows, the one that worked last first, and
// remembers which worked.
func (c *Client) connect(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	s, err := c.dialer.open(ctx, c.dialer.via.order(c.pos.lastTransport()), tok)
	if err != nil {
		return nil, closedWith(err)
	}
	c.pos.setTransport(s.transport)
	c.mu.Lock()
	c.authed = tok // there is no session meanwhile: this is the next one's
	c.mu.Unlock()
	return s, nil
}

// setSession makes s (nil: none) the session requests use. A client that
// must stop (fail) ends s at once.
func (c *Client) setSession(s *session) {
	c.mu.Lock()
	c.sess = s
	if s != nil {
		c.welcome = s.welcome
		c.transport = s.transport
	}
	close(c.changed)
	c.changed = make(chan struct{})
	failed := c.failed
	c.mu.Unlock()
	if s != nil && failed != nil {
		s.fail(failed)
	}
}

// fail makes the client stop with err (the first wins) instead of
// reconnecting: the current session ends with it, and so does any the
// run goroutine opens meanwhile (setSession).
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.failed == nil {
		c.failed = err
	}
	s := c.sess
	c.mu.Unlock()
	if s != nil {
		s.fail(err)
	}
}

// failure returns what fail recorded, or nil.
func (c *Client) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}

// currentToken returns the access token connections open with.
func (c *Client) currentToken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// renews reports whether the client renews its token after err ends a
// session instead of stopping: the token expired, and Options.Refresh is
// set.
func (c *Client) renews(err error) bool {
	return c.ref != nil && errors.Is(err, ErrTokenExpired)
}

// session returns a live session, waiting for one while the client
// reconnects.
func (c *Client) session(ctx context.Context) (*session, error) {
	for {
		select {
		case <-c.stopped:
			return nil, c.Err()
		default:
		}
		c.mu.Lock()
		s, changed := c.sess, c.changed
		c.mu.Unlock()
		if s != nil && s.alive() {
			return s, nil
		}
		select {
		case <-changed:
		case <-c.stopped:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// run is the client's delivery goroutine: for each connection it catches
// up, then handles pushes until the connection ends, and reconnects. It
// owns the sessions (the first comes from Dial) and closes each.
func (c *Client) run(ctx context.Context, s *session) {
	defer c.wg.Done()
	var err error
	failures := 0 // connections in a row that ended before catching up
	for {
		var caughtUp bool
		caughtUp, err = c.serve(ctx, s)
		if caughtUp {
			failures = 0
		} else {
			failures++
		}
		var ga *goingAway
		if errors.As(err, &ga) {
			ga.after -= c.finishRequests(ctx, s, ga.after)
		}
		s.close(err)
		c.setSession(nil)
		if ctx.Err() != nil {
			err = ErrClosed
			break
		}
		if f := c.failure(); f != nil {
			err = f
			break
		}
		err = closedWith(err)
		c.log.Info("client: connection lost", "addr", c.addr, "err", err)
		if c.opts.NoReconnect || fatal(err) && !c.renews(err) {
			break
		}
		c.noteDisconnected(err)
		wait := c.backoff.delay(failures)
		if ga != nil {
			wait = max(0, ga.after)
		}
		if s, err = c.reconnect(ctx, wait); err != nil {
			break
		}
		c.stats.reconnects.Add(1)
		c.setSession(s)
	}
	c.stop(ctx, err)
}

// stop records why the client stopped, fails waiting requests, tells the
// app and closes Events.
func (c *Client) stop(ctx context.Context, err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	close(c.stopped)
	if !errors.Is(err, ErrClosed) {
		c.log.Warn("client: stopped", "addr", c.addr, "err", err)
		c.emit(ctx, Event{Kind: EventDisconnected, Err: err})
	}
	if c.events != nil {
		close(c.events)
	}
}

// finishRequests lets the requests in flight on a session the node is
// leaving get their responses, for up to limit, while new requests wait
// for the next session. It returns how long it waited.
func (c *Client) finishRequests(ctx context.Context, s *session, limit time.Duration) time.Duration {
	start := time.Now()
	c.setSession(nil)
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-s.drain():
	case <-s.dead:
	case <-t.C:
	case <-ctx.Done():
	}
	return time.Since(start)
}

// goingAway is a session ended by the node's GoingAway push.
type goingAway struct{ after time.Duration }

func (g *goingAway) Error() string { return "client: node going away" }

// reconnect connects again, first after wait and then with backoff, until
// it succeeds, the node rejects the token, or the client closes. With
// Options.Refresh a token refused as expired is renewed and tried at
// once; a token renewed that way and refused again (a node whose clock
// is far off) stops the client.
func (c *Client) reconnect(ctx context.Context, wait time.Duration) (*session, error) {
	renewed := false // the previous attempt renewed the token
	for n := 1; ; n++ {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ErrClosed
		case <-t.C:
		}
		if err := c.failure(); err != nil {
			return nil, err
		}
		tok := c.currentToken()
		s, err := c.connect(ctx)
		again := renewed
		renewed = false
		switch {
		case err == nil:
			c.log.Info("client: reconnected", "addr", c.addr, "transport", s.transport, "attempt", n)
			return s, nil
		case ctx.Err() != nil:
			return nil, ErrClosed
		case c.renews(err) && !again:
			if err = c.ref.ask(ctx, tok); err == nil {
				renewed, wait = true, 0
				continue
			}
			if ctx.Err() != nil {
				return nil, ErrClosed
			}
			if !retryableRefresh(err) {
				return nil, err
			}
		case fatal(err):
			return nil, err
		}
		c.log.Info("client: reconnect failed", "addr", c.addr, "attempt", n, "err", err)
		wait = c.backoff.delay(n)
		var e *Error
		if errors.As(err, &e) {
			wait = max(wait, e.RetryAfter)
		}
	}
}

// serve runs one session: it catches up, then handles pushes and own
// sends until the session ends, and returns why it ended and whether it
// caught up first.
func (c *Client) serve(ctx context.Context, s *session) (caughtUp bool, err error) {
	if !c.opts.SendOnly {
		if err := c.dl.resync(ctx, s); err != nil {
			return false, err
		}
		if err := c.emit(ctx, Event{Kind: EventConnected, Transport: s.transport}); err != nil {
			return false, err
		}
	}
	// gapTimer fires when the first gap parked by the delivery is due
	// for a history fetch.
	gapTimer := time.NewTimer(time.Hour)
	gapTimer.Stop()
	defer gapTimer.Stop()
	for {
		var gapDue <-chan time.Time
		if due := c.dl.nextDue(); !due.IsZero() {
			gapTimer.Reset(time.Until(due))
			gapDue = gapTimer.C
		}
		select {
		case <-ctx.Done():
			return true, ErrClosed
		case <-s.dead:
			return true, s.cause()
		case <-c.kick:
			if err := c.deliverOwn(ctx, s); err != nil {
				return true, err
			}
		case f := <-s.pushes:
			if err := c.push(ctx, s, f); err != nil {
				return true, err
			}
		case f := <-s.control:
			s.tookControl(f)
			if err := c.push(ctx, s, f); err != nil {
				return true, err
			}
		case <-gapDue:
			if err := c.dl.expire(ctx, s); err != nil {
				return true, err
			}
		}
	}
}

// push handles one push.
func (c *Client) push(ctx context.Context, s *session, f *wire.Frame) error {
	switch b := f.GetBody().(type) {
	case *wire.Frame_GoingAway:
		return &goingAway{after: time.Duration(b.GoingAway.GetRetryAfterMs()) * time.Millisecond}
	case *wire.Frame_Error:
		return errorFromWire(b.Error)
	}
	if c.opts.SendOnly {
		return nil
	}
	switch b := f.GetBody().(type) {
	case *wire.Frame_Deliver:
		// Own sends acked before this push came first: delivering them
		// now spares a history fetch for a gap that is only them.
		if err := c.deliverOwn(ctx, s); err != nil {
			return err
		}
		return c.dl.message(ctx, s, messageFromWire(b.Deliver.GetMessage()))
	case *wire.Frame_Receipt:
		r := b.Receipt
		return c.emit(ctx, Event{Kind: EventReceipt, Receipt: Receipt{Chat: r.GetChat(), User: r.GetUser(), Delivered: r.GetDelivered(), Read: r.GetRead()}})
	case *wire.Frame_Typing:
		return c.emit(ctx, Event{Kind: EventTyping, Typing: Typing{Chat: b.Typing.GetChat(), User: b.Typing.GetUser()}})
	case *wire.Frame_CallbackAnswer:
		a := b.CallbackAnswer
		return c.emit(ctx, Event{Kind: EventCallbackAnswer, CallbackAnswer: CallbackAnswer{Chat: a.GetChat(), Seq: a.GetSeq(), ID: a.GetCallbackId(), Notification: a.GetNotification()}})
	case *wire.Frame_Resync:
		c.stats.resyncs.Add(1)
		if err := c.dl.resync(ctx, s); err != nil {
			return err
		}
		return c.emit(ctx, Event{Kind: EventResynced})
	}
	if ev, ok := callEvent(f); ok {
		return c.emit(ctx, ev)
	}
	c.log.Debug("client: ignoring push", "type", f.GetBody())
	return nil
}

// noteOwn queues an acked own send for delivery: the node pushes a message
// to every session but the sender's.
func (c *Client) noteOwn(m Message) {
	if c.opts.SendOnly {
		return
	}
	c.mu.Lock()
	if len(c.own) < maxOwn {
		c.own = append(c.own, m)
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// deliverOwn delivers the queued own sends.
func (c *Client) deliverOwn(ctx context.Context, s *session) error {
	c.mu.Lock()
	own := c.own
	c.own = nil
	c.mu.Unlock()
	for _, m := range own {
		if err := c.dl.message(ctx, s, m); err != nil {
			return err
		}
	}
	return nil
}

// emit hands ev to the app, after a disconnection it could not be told of
// when it happened. It fails only when the client closes.
func (c *Client) emit(ctx context.Context, ev Event) error {
	if d := c.disconnected; d != nil {
		c.disconnected = nil
		if err := c.emit(ctx, *d); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ErrClosed
	}
	if c.opts.OnEvent != nil {
		c.opts.OnEvent(ev)
		return nil
	}
	if c.events == nil {
		return nil
	}
	select {
	case c.events <- ev:
		return nil
	case <-ctx.Done():
		return ErrClosed
	}
}

// noteDisconnected tells the app the connection was lost without waiting
// for it to read: reconnecting must not depend on the app. If Events is
// full, the event waits for the next one.
func (c *Client) noteDisconnected(err error) {
	ev := Event{Kind: EventDisconnected, Err: err}
	switch {
	case c.opts.SendOnly:
	case c.opts.OnEvent != nil:
		c.opts.OnEvent(ev)
	case c.disconnected != nil:
		c.disconnected = &ev // the app has not seen the last one yet
	default:
		select {
		case c.events <- ev:
		default:
			c.disconnected = &ev
		}
	}
}
