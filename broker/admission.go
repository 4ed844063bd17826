package broker

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// admission bounds the connections that have not yet sent a verified
// Hello, in number overall and per source address. A connection beyond a
// bound evicts the oldest (of all, or of its own address) instead of
// being refused: under a flood of idle connections an honest client,
// which authenticates within milliseconds of connecting, still gets in,
// while the flood only evicts itself.
type admission struct {
	max, maxPerAddr int
	evicted         *metrics.Counter // evicted over the overall bound
	evictedAddr     *metrics.Counter // evicted over the per-address bound
	handshakes      *handshakeGate

	mu         sync.Mutex // guards the following
	head, tail *pending   // oldest first
	n          int
	perAddr    map[netip.Addr]int
}

// pending is one connection waiting to authenticate.
type pending struct {
	addr       netip.Addr
	evict      func() // closes the connection; called outside the lock
	prev, next *pending
	gone       bool // evicted or left
}

// newAdmission returns the bounds of opts, their metrics registered in
// opts.Metrics. Handshakes waiting for a slot are unauthenticated
// connections too: at most MaxUnauthenticated of them wait.
func newAdmission(opts Options) *admission {
	set := opts.Metrics
	a := &admission{
		max:         opts.MaxUnauthenticated,
		maxPerAddr:  opts.MaxUnauthenticatedPerAddr,
		evicted:     set.NewCounter(`gonets_broker_unauthenticated_evictions_total{bound="node"}`),
		evictedAddr: set.NewCounter(`gonets_broker_unauthenticated_evictions_total{bound="address"}`),
		handshakes:  newHandshakeGate(opts.MaxHandshakes, opts.MaxUnauthenticated, opts.HandshakeWait, opts.HandshakeHold, set),
		perAddr:     make(map[netip.Addr]int),
	}
	set.NewGauge("gonets_broker_unauthenticated_connections", func() float64 { return float64(a.len()) })
	return a
}

// admit registers a new connection from addr, evicting (with evict, each
// called after the lock is released) the connections it pushes over a
// bound. The caller calls leave once the connection authenticated or
// ended.
func (a *admission) admit(addr netip.Addr, evict func()) *pending {
	p := &pending{addr: addr.Unmap(), evict: evict}
	var out []*pending
	a.mu.Lock()
	a.pushLocked(p)
	if a.perAddr[p.addr] > a.maxPerAddr {
		for q := a.head; q != nil; q = q.next {
			if q.addr == p.addr {
				a.removeLocked(q)
				out = append(out, q)
				a.evictedAddr.Inc()
				break
			}
		}
	}
	for a.n > a.max {
		q := a.head
		a.removeLocked(q)
		out = append(out, q)
		a.evicted.Inc()
	}
	a.mu.Unlock()
	for _, q := range out {
		q.evict()
	}
	return p
}

// leave unregisters p; it does nothing if p was evicted.
func (a *admission) leave(p *pending) {
	a.mu.Lock()
	if !p.gone {
		a.removeLocked(p)
	}
	a.mu.Unlock()
}

// len returns the connections waiting to authenticate.
func (a *admission) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

func (a *admission) pushLocked(p *pending) {
	p.prev = a.tail
	if a.tail != nil {
		a.tail.next = p
	} else {
		a.head = p
	}
	a.tail = p
	a.n++
	a.perAddr[p.addr]++
}

func (a *admission) removeLocked(p *pending) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		a.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		a.tail = p.prev
	}
	p.prev, p.next, p.gone = nil, nil, true
	a.n--
	if c := a.perAddr[p.addr] - 1; c > 0 {
		a.perAddr[p.addr] = c
	} else {
		delete(a.perAddr, p.addr)
	}
}

// handshakeGate bounds the TLS handshakes the node computes at once, over
// QUIC and TCP together. A handshake holds a slot from when its
// ClientHello has been read until its CPU-heavy part has been computed
// (over TCP its first flight: key exchange, certificate signature and
// Finished; over QUIC its key exchange, see getConfigForClient); it does
// not hold one while it waits for
// the client, so that the bound costs no throughput on slow networks and
// a client that connects and says nothing holds no slot. A handshake that
// finds every slot taken waits, first come first served, for at most
// wait, and is refused after that; past maxWaiting waiters the oldest is
// refused. Under a storm the node so completes a few handshakes at a time
// at full speed instead of all of them slowly, each past its client's
// patience, which would then retransmit and redial into more work.
//
// A slot held longer than hold while a handshake waits is taken back and
// handed to the oldest waiter; its holder's late release does nothing.
// Computing a first flight takes well under hold, so a slot held that
// long is a handshake waiting on its client after all: over QUIC, one
// the node answered with a HelloRetryRequest (neither crypto/tls nor
// quic-go says when one goes out), whose client may never send its
// second ClientHello.
type handshakeGate struct {
	max, maxWaiting int
	wait, hold      time.Duration
	refusedWait     *metrics.Counter // waited past wait
	refusedFull     *metrics.Counter // the oldest waiter, pushed out by a new one
	reclaimed       *metrics.Counter // slots taken back, held past hold

	mu             sync.Mutex // guards the following
	running        int        // slots held
	oldest, newest *hsHold    // the slots held, oldest first
	head, tail     *hsWaiter  // oldest first
	waiting        int
	timer          *time.Timer // reclaims the oldest slot; armed while handshakes wait
}

// hsHold is one slot held.
type hsHold struct {
	since      time.Time
	prev, next *hsHold
	held       bool // false once released or reclaimed
}

// hsWaiter is one handshake waiting for a slot.
type hsWaiter struct {
	ready      chan struct{} // closed when granted a slot or refused
	hold       *hsHold       // the slot handed to it; nil if refused
	queued     bool
	prev, next *hsWaiter
}

// Refusals of a handshake by the gate. They reach the client as a TLS
// internal_error alert (QUIC: CRYPTO_ERROR 0x150) with this text.
var (
	errHandshakeWait = errors.New("broker: too many handshakes in progress; retry later")
	errHandshakeFull = errors.New("broker: too many handshakes waiting; retry later")
	errClientGone    = errors.New("broker: client left while its handshake waited")
)

func newHandshakeGate(max, maxWaiting int, wait, hold time.Duration, set *metrics.Set) *handshakeGate {
	g := &handshakeGate{
		max:         max,
		maxWaiting:  maxWaiting,
		wait:        wait,
		hold:        hold,
		refusedWait: set.NewCounter(`gonets_broker_handshakes_refused_total{reason="wait"}`),
		refusedFull: set.NewCounter(`gonets_broker_handshakes_refused_total{reason="queue_full"}`),
		reclaimed:   set.NewCounter("gonets_broker_handshake_slots_reclaimed_total"),
	}
	set.NewGauge("gonets_broker_handshakes_in_progress", func() float64 { r, _ := g.counts(); return float64(r) })
	set.NewGauge("gonets_broker_handshakes_waiting", func() float64 { _, w := g.counts(); return float64(w) })
	return g
}

// acquire takes a slot, waiting for one if all are held: until it is
// handed one, wait passes, ctx is done, quit is closed, or the channel
// watch returns (when watch is not nil; it is called only if acquire has
// to wait, and its stop function before acquire returns) is closed. The
// caller gives the slot back with release.
func (g *handshakeGate) acquire(ctx context.Context, quit <-chan struct{}, watch func() (gone <-chan struct{}, stop func())) (*hsHold, error) {
	g.mu.Lock()
	now := time.Now()
	if g.running < g.max || g.waiting == 0 && g.staleLocked(now) {
		if g.running == g.max {
			g.reclaimLocked()
		}
		h := g.holdLocked(now)
		g.mu.Unlock()
		return h, nil
	}
	w := &hsWaiter{ready: make(chan struct{})}
	g.pushLocked(w)
	var out *hsWaiter
	if g.waiting > g.maxWaiting {
		out = g.head
		g.removeLocked(out)
		g.refusedFull.Inc()
	}
	g.armLocked(now)
	g.mu.Unlock()
	if out != nil {
		close(out.ready)
	}
	var gone <-chan struct{}
	if watch != nil {
		var stop func()
		gone, stop = watch()
		defer stop()
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	var err error
	select {
	case <-w.ready:
	case <-t.C:
		err = errHandshakeWait
	case <-ctx.Done():
		err = ctx.Err()
	case <-quit:
		err = ErrShutdown
	case <-gone:
		err = errClientGone
	}
	g.mu.Lock()
	if w.queued { // still waiting: leave
		g.removeLocked(w)
		g.armLocked(time.Now())
		if err == errHandshakeWait {
			g.refusedWait.Inc()
		}
		g.mu.Unlock()
		return nil, err
	}
	h := w.hold
	g.mu.Unlock()
	switch {
	case h == nil:
		return nil, errHandshakeFull
	case err != nil: // handed a slot as it gave up: pass it on
		g.release(h)
		return nil, err
	}
	return h, nil
}

// release gives h back, to the oldest waiter if there is one. It does
// nothing if h was reclaimed.
func (g *handshakeGate) release(h *hsHold) {
	g.mu.Lock()
	if !h.held {
		g.mu.Unlock()
		return
	}
	g.unholdLocked(h)
	w := g.grantLocked(time.Now())
	g.mu.Unlock()
	if w != nil {
		close(w.ready)
	}
}

// reclaim takes back the slots held past hold, while handshakes wait, and
// hands them to the oldest waiters. The timer calls it.
func (g *handshakeGate) reclaim() {
	var ready []*hsWaiter
	g.mu.Lock()
	now := time.Now()
	for g.head != nil && g.staleLocked(now) {
		g.reclaimLocked()
		ready = append(ready, g.grantLocked(now))
	}
	g.armLocked(now)
	g.mu.Unlock()
	for _, w := range ready {
		close(w.ready)
	}
}

// counts returns the slots held and the handshakes waiting.
func (g *handshakeGate) counts() (running, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.waiting
}

// staleLocked reports whether the oldest slot has been held past hold.
func (g *handshakeGate) staleLocked(now time.Time) bool {
	return g.oldest != nil && now.Sub(g.oldest.since) >= g.hold
}

// reclaimLocked takes the oldest slot back from its holder.
func (g *handshakeGate) reclaimLocked() {
	g.unholdLocked(g.oldest)
	g.reclaimed.Inc()
}

// grantLocked hands a free slot to the oldest waiter and returns it, to
// be woken once the lock is released; with none waiting, it returns nil.
func (g *handshakeGate) grantLocked(now time.Time) *hsWaiter {
	w := g.head
	if w == nil {
		g.armLocked(now)
		return nil
	}
	g.removeLocked(w)
	w.hold = g.holdLocked(now)
	g.armLocked(now)
	return w
}

// holdLocked takes a free slot.
func (g *handshakeGate) holdLocked(now time.Time) *hsHold {
	h := &hsHold{since: now, prev: g.newest, held: true}
	if g.newest != nil {
		g.newest.next = h
	} else {
		g.oldest = h
	}
	g.newest = h
	g.running++
	return h
}

func (g *handshakeGate) unholdLocked(h *hsHold) {
	if h.prev != nil {
		h.prev.next = h.next
	} else {
		g.oldest = h.next
	}
	if h.next != nil {
		h.next.prev = h.prev
	} else {
		g.newest = h.prev
	}
	h.prev, h.next, h.held = nil, nil, false
	g.running--
}

// armLocked sets the timer for when the oldest slot goes stale, if a
// handshake waits, and stops it otherwise.
func (g *handshakeGate) armLocked(now time.Time) {
	if g.head == nil || g.oldest == nil {
		if g.timer != nil {
			g.timer.Stop()
		}
		return
	}
	d := g.oldest.since.Add(g.hold).Sub(now)
	if g.timer == nil {
		g.timer = time.AfterFunc(d, g.reclaim)
	} else {
		g.timer.Reset(d)
	}
}

func (g *handshakeGate) pushLocked(w *hsWaiter) {
	w.prev, w.queued = g.tail, true
	if g.tail != nil {
		g.tail.next = w
	} else {
		g.head = w
	}
	g.tail = w
	g.waiting++
}

func (g *handshakeGate) removeLocked(w *hsWaiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		g.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		g.tail = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	g.waiting--
}

// hsSlot is one connection's claim on a handshake slot, released once:
// when its first flight is written (or, over QUIC, the connection is
// accepted), or when the handshake ends first.
type hsSlot struct {
	g    *handshakeGate
	hold atomic.Pointer[hsHold]
}

func (s *hsSlot) acquire(ctx context.Context, quit <-chan struct{}, watch func() (<-chan struct{}, func())) error {
	h, err := s.g.acquire(ctx, quit, watch)
	if err != nil {
		return err
	}
	s.hold.Store(h)
	if ctx.Err() != nil {
		// The connection ended as the slot came: its release on ending
		// may have found nothing to free.
		s.release()
		return ctx.Err()
	}
	return nil
}

func (s *hsSlot) release() {
	if s.hold.Load() == nil {
		return
	}
	if h := s.hold.Swap(nil); h != nil {
		s.g.release(h)
	}
}
