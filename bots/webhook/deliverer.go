package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gonets/gonets/bots/botapi"
)

// Source is where a Deliverer reads a bot's updates: the node's
// botapi.Backend is one. Asking with marker M acknowledges every update
// before M; marker 0 reads from the last acknowledged one. The answer's
// Marker is never 0. A timeout of 0 must not wait.
type Source interface {
	Updates(ctx context.Context, bot int64, marker int64, limit int, types []string, timeout time.Duration) (botapi.UpdateList, error)
}

// Options configures a Deliverer.
type Options struct {
	// Store holds the subscriptions. Required.
	Store *Store
	// Source gives the updates. Required.
	Source Source
	// Client posts the updates. Its CheckRedirect is replaced by one that
	// refuses every redirect. Default: a client whose dialer refuses the
	// addresses the policy does not allow, with TLS 1.2 or later, RootCAs
	// and RequestTimeout.
	Client *http.Client
	// RequestTimeout bounds one delivery attempt. Default: 10 s.
	RequestTimeout time.Duration
	// GiveUpAfter is how long an update is retried to one webhook, from
	// its first attempt, before it is dropped (counted in GivenUp) and
	// the next one goes. Default: 1 h.
	GiveUpAfter time.Duration
	// MaxBackoff caps the wait between attempts, which starts at 1 s (or
	// MaxBackoff if less) and doubles, with jitter. It is also the wait
	// between probes of a webhook given up on: in between, its updates
	// are given up at once. Default: 1 min.
	MaxBackoff time.Duration
	// DisableAfter is how long a webhook may fail, from the first failed
	// attempt since it last answered 2xx, before its subscription is
	// removed from the Store (logged, counted in Disabled), as MAX does.
	// The time counts from when this Deliverer saw the failure: not
	// across restarts. Negative: never. Default: 24 h.
	DisableAfter time.Duration
	// MaxConcurrent caps the delivery attempts in flight, all bots
	// together. Default: 64.
	MaxConcurrent int
	// AllowPrivate lets the default client dial loopback, private,
	// link-local and other non-public addresses. Default: false.
	AllowPrivate bool
	// AllowHTTP lets deliveries go to http URLs. Default: false.
	AllowHTTP bool
	// RootCAs verifies the webhooks' certificates in the default client.
	// Default: the system's roots.
	RootCAs *x509.CertPool
	// Log receives lifecycle events and dropped updates. Default:
	// slog.Default().
	Log *slog.Logger
	// Now is the clock of GiveUpAfter. Default: time.Now.
	Now func() time.Time
}

// Stats counts deliveries since New.
type Stats struct {
	// Delivered counts updates a webhook answered with a 2xx.
	Delivered uint64
	// Failed counts attempts that failed: a network error, a timeout, a
	// redirect or another status than 2xx.
	Failed uint64
	// GivenUp counts updates dropped for a webhook: still failing after
	// GiveUpAfter, to a URL the Deliverer's policy refuses, or while the
	// webhook is given up on (between probes).
	GivenUp uint64
	// Disabled counts subscriptions removed after failing for
	// DisableAfter.
	Disabled uint64
}

// Deliverer posts the bots' updates to their webhooks. Safe for
// concurrent use; at most one Run at a time.
type Deliverer struct {
	o      Options
	pol    policy
	client *http.Client
	sem    chan struct{} // one token per attempt in flight
	kick   chan struct{} // cap 1: dirty has bots

	delivered, failed, givenUp, disabled atomic.Uint64

	mu      sync.Mutex // guards the following
	running bool
	dirty   map[int64]struct{} // bots changed since Run last looked
	loops   map[int64]*botLoop // the bots being delivered
}

// New validates o, fills defaults and returns a Deliverer.
func New(o Options) (*Deliverer, error) {
	if o.Store == nil || o.Source == nil {
		return nil, fmt.Errorf("%w: Store and Source are required", ErrConfig)
	}
	if o.RequestTimeout < 0 || o.GiveUpAfter < 0 || o.MaxBackoff < 0 || o.MaxConcurrent < 0 {
		return nil, fmt.Errorf("%w: negative timeout, give-up time, backoff or concurrency", ErrConfig)
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.GiveUpAfter == 0 {
		o.GiveUpAfter = time.Hour
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = time.Minute
	}
	if o.DisableAfter == 0 {
		o.DisableAfter = 24 * time.Hour
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = 64
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Deliverer{
		o:     o,
		pol:   policy{allowPrivate: o.AllowPrivate, allowHTTP: o.AllowHTTP},
		sem:   make(chan struct{}, o.MaxConcurrent),
		kick:  make(chan struct{}, 1),
		dirty: map[int64]struct{}{},
		loops: map[int64]*botLoop{},
	}
	if o.Client != nil {
		c := *o.Client
		d.client = &c
	} else {
		d.client = d.newClient()
	}
	d.client.CheckRedirect = func(*http.Request, []*http.Request) error { return ErrRedirect }
	return d, nil
}

// newClient returns the default client: a dialer that checks every
// address it dials against the policy, no proxy, TLS 1.2 or later.
func (d *Deliverer) newClient() *http.Client {
	dialer := &net.Dialer{Timeout: min(d.o.RequestTimeout, 10*time.Second), KeepAlive: 30 * time.Second}
	if !d.o.AllowPrivate {
		dialer.Control = d.pol.control
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: d.o.RootCAs},
		TLSHandshakeTimeout:    min(d.o.RequestTimeout, 10*time.Second),
		ResponseHeaderTimeout:  d.o.RequestTimeout,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{Transport: tr, Timeout: d.o.RequestTimeout}
}

// Stats returns the counters.
func (d *Deliverer) Stats() Stats {
	return Stats{Delivered: d.delivered.Load(), Failed: d.failed.Load(), GivenUp: d.givenUp.Load(), Disabled: d.disabled.Load()}
}

// Active says whether bot has webhooks: its updates go there, and the
// Bot API refuses it long polling, as MAX does.
func (d *Deliverer) Active(bot int64) bool { return d.o.Store.Active(bot) }

// Notify tells Run that bot's subscriptions changed: it starts or stops
// the bot's delivery and ends a wait for its updates. The Store calls
// it on every Add and Remove while Run runs; calling it again is
// harmless. It never blocks.
func (d *Deliverer) Notify(bot int64) {
	d.mu.Lock()
	d.dirty[bot] = struct{}{}
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run delivers the updates of every bot with subscriptions until ctx
// ends, with a goroutine per such bot; it returns when they all have.
// Updates are posted in order, each to every subscription that takes
// its type, and acknowledged to the Source once all of a batch are
// delivered or given up: an update is delivered at least once, again
// after a restart if its batch was not acknowledged.
func (d *Deliverer) Run(ctx context.Context) {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		d.o.Log.Error("webhook: Run called while running")
		return
	}
	d.running = true
	d.mu.Unlock()

	stop := d.o.Store.watch(d.Notify)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
		d.client.CloseIdleConnections()
		d.mu.Lock()
		d.running = false
		d.mu.Unlock()
	}()
	for _, bot := range d.o.Store.Bots() {
		d.Notify(bot)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		}
		d.mu.Lock()
		for bot := range d.dirty {
			delete(d.dirty, bot)
			if l := d.loops[bot]; l != nil {
				l.wake()
			} else if d.o.Store.Active(bot) {
				l := newBotLoop(d, bot)
				d.loops[bot] = l
				wg.Go(func() { l.run(ctx) })
			}
		}
		d.mu.Unlock()
	}
}

// exitIfIdle ends l's run if its bot has no subscription left, under
// d.mu so that a Notify after an Add starts a new loop.
func (d *Deliverer) exitIfIdle(l *botLoop) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.o.Store.Active(l.bot) {
		return false
	}
	delete(d.loops, l.bot)
	return true
}

// exit removes l after its run ended with Run's ctx.
func (d *Deliverer) exit(l *botLoop) {
	d.mu.Lock()
	if d.loops[l.bot] == l {
		delete(d.loops, l.bot)
	}
	d.mu.Unlock()
}
