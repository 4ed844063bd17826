package broker

import (
	"net/netip"
	"sync"

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

func newAdmission(max, maxPerAddr int, set *metrics.Set) *admission {
	return &admission{
		max:         max,
		maxPerAddr:  maxPerAddr,
		evicted:     set.NewCounter(`gonets_broker_unauthenticated_evictions_total{bound="node"}`),
		evictedAddr: set.NewCounter(`gonets_broker_unauthenticated_evictions_total{bound="address"}`),
		perAddr:     make(map[netip.Addr]int),
	}
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
