package broker

import (
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// OutboxOptions bound a session's outbox.
type OutboxOptions struct {
	// MaxFrames caps the queued payloads. Default: 1,024.
	MaxFrames int
	// MaxBytes caps the queued bytes. Default: 4 MiB.
	MaxBytes int
	// Drops counts refused pushes by reason. Default: none.
	Drops *DropCounters
	// Wake, when set, is called (outside the outbox's lock) each time the
	// outbox goes from empty to non-empty, instead of signalling Ready, so
	// that a writer need not wait while there is nothing to write.
	Wake func()
	// Stall, when set, is called (outside the lock) when a push stalls
	// the outbox, so that the session tells the client to resync.
	// Default: Wake is called instead.
	Stall func()
}

// Outbox is one session's bounded queue of payloads, filled by publishers
// and drained by the session's single writer. It is safe for concurrent
// use. A drained outbox keeps at most a minRing-slot ring.
type Outbox struct {
	maxFrames, maxBytes int
	drops               DropCounters
	wake                func()        // called when the queue becomes non-empty, or
	ready               chan struct{} // signalled then, when wake is nil
	stall               func()        // called when the outbox stalls

	mu      sync.Mutex // guards the following
	ring    []*Payload
	head, n int
	bytes   int
	stalled bool // full once: live pushes stop until Resume
	closed  bool
}

// NewOutbox returns an empty outbox.
func NewOutbox(opts OutboxOptions) *Outbox {
	if opts.MaxFrames <= 0 {
		opts.MaxFrames = 1024
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 4 << 20
	}
	o := &Outbox{maxFrames: opts.MaxFrames, maxBytes: opts.MaxBytes, wake: opts.Wake, stall: opts.Stall}
	if opts.Drops != nil {
		o.drops = *opts.Drops
	}
	if o.stall == nil {
		o.stall = o.wake
	}
	if o.wake == nil {
		o.ready = make(chan struct{}, 1)
	}
	return o
}

// Push queues p, taking a reference to it, and reports whether it did. It
// never blocks. A push that would exceed a bound stalls the outbox: it and
// every later push are refused (and counted) until Resume.
func (o *Outbox) Push(p *Payload) bool { return o.add(p, true) }

// Offer queues p like Push, but a full outbox refuses it without
// stalling: for best-effort pushes whose loss the client does not need to
// repair. A refusal is not counted as a drop.
func (o *Outbox) Offer(p *Payload) bool { return o.add(p, false) }

func (o *Outbox) add(p *Payload, stall bool) bool {
	o.mu.Lock()
	if o.stalled || o.closed || o.n == o.maxFrames || o.bytes+len(p.B) > o.maxBytes {
		if !stall {
			o.mu.Unlock()
			return false
		}
		var reason *metrics.Counter
		switch {
		case o.closed:
			reason = o.drops.Closed
		case o.stalled:
			reason = o.drops.Stalled
		default:
			reason = o.drops.Full
		}
		stalls := !o.stalled && !o.closed
		o.stalled = o.stalled || !o.closed
		o.mu.Unlock()
		if reason != nil {
			reason.Inc()
		}
		if stalls && o.stall != nil {
			o.stall() // the session tells the client to resync
		}
		return false
	}
	if o.n == len(o.ring) {
		o.growLocked()
	}
	p.Retain() // before the writer can see it, take and release it
	o.ring[(o.head+o.n)%len(o.ring)] = p
	o.n++
	o.bytes += len(p.B)
	wake := o.n == 1
	o.mu.Unlock()
	if wake {
		o.signal()
	}
	return true
}

// signal tells the writer the outbox became non-empty.
func (o *Outbox) signal() {
	if o.wake != nil {
		o.wake()
		return
	}
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// minRing is the ring an outbox keeps while idle (64 bytes): enough that
// steady traffic allocates nothing, small enough for 100,000 idle sessions.
const minRing = 8

// growLocked doubles the ring (from minRing), up to maxFrames.
func (o *Outbox) growLocked() {
	size := min(max(2*len(o.ring), minRing), o.maxFrames)
	ring := make([]*Payload, size)
	for i := range o.n {
		ring[i] = o.ring[(o.head+i)%len(o.ring)]
	}
	o.ring, o.head = ring, 0
}

// Ready is signalled when the outbox goes from empty to non-empty; it is
// nil when OutboxOptions.Wake is set.
func (o *Outbox) Ready() <-chan struct{} { return o.ready }

// Take moves up to len(dst) queued payloads, oldest first, into dst and
// returns how many; the caller owns their references. It also reports
// whether the outbox is stalled, so that the writer, once it has written
// what it took and the outbox is empty, tells the client to resync.
func (o *Outbox) Take(dst []*Payload) (n int, stalled bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for n < len(dst) && o.n > 0 {
		p := o.ring[o.head]
		o.ring[o.head] = nil
		o.head = (o.head + 1) % len(o.ring)
		o.n--
		o.bytes -= len(p.B)
		dst[n] = p
		n++
	}
	if o.n == 0 && len(o.ring) > minRing {
		o.ring, o.head = nil, 0 // a burst is over: give its ring back
	}
	return n, o.stalled
}

// Resume lets live pushes in again, after the client resynced, and
// reports whether the outbox was stalled.
func (o *Outbox) Resume() (wasStalled bool) {
	o.mu.Lock()
	wasStalled, o.stalled = o.stalled, false
	o.mu.Unlock()
	return wasStalled
}

// Stalled reports whether live pushes are refused until Resume.
func (o *Outbox) Stalled() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stalled
}

// Close refuses further pushes and releases what is queued.
func (o *Outbox) Close() {
	o.mu.Lock()
	o.closed = true
	var queued []*Payload
	for o.n > 0 {
		queued = append(queued, o.ring[o.head])
		o.ring[o.head] = nil
		o.head = (o.head + 1) % len(o.ring)
		o.n--
	}
	o.ring, o.bytes = nil, 0
	o.mu.Unlock()
	for _, p := range queued {
		p.Release()
	}
}

// Len returns the queued payloads and bytes.
func (o *Outbox) Len() (frames, bytes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n, o.bytes
}

// Offer offers p to every outbox (Outbox.Offer) and returns how many took
// it.
func Offer(p *Payload, to []*Outbox) (delivered int) {
	for _, o := range to {
		if o.Offer(p) {
			delivered++
		}
	}
	return delivered
}

// Fanout pushes p to every outbox and returns how many took it. It
// allocates nothing per recipient. The caller keeps its own reference.
func Fanout(p *Payload, to []*Outbox) (delivered int) {
	for _, o := range to {
		if o.Push(p) {
			delivered++
		}
	}
	return delivered
}
