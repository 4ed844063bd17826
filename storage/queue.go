package storage

import (
	"context"
	"sync"
)

// queue hands requests from callers to the committer. It is bounded by the
// bytes of queued bodies: enqueue blocks while it is full.
type queue struct {
	mu      sync.Mutex // guards the following
	reqs    []*request
	bytes   int
	max     int
	closed  bool
	ready   chan struct{} // signalled when reqs becomes non-empty
	space   chan struct{} // closed (and replaced) when take frees room
	waiting bool          // someone waits on space
	woken   bool          // wake was called: take returns even if empty
}

func (q *queue) init(max int) {
	q.max = max
	q.ready = make(chan struct{}, 1)
	q.space = make(chan struct{})
}

// put queues r, waiting while the queue is full. It fails with ctx's error
// or ErrClosed.
func (q *queue) put(ctx context.Context, r *request) error {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return ErrClosed
		}
		if q.bytes == 0 || q.bytes+r.size <= q.max {
			q.reqs = append(q.reqs, r)
			q.bytes += r.size
			q.mu.Unlock()
			select {
			case q.ready <- struct{}{}:
			default:
			}
			return nil
		}
		space := q.space
		q.waiting = true
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take moves queued requests, up to maxBytes of bodies but at least one,
// into dst. It blocks until there is one, or until wake is called (then
// it may return none); it returns false once the queue is closed and
// empty.
func (q *queue) take(dst []*request, maxBytes int) ([]*request, bool) {
	for {
		q.mu.Lock()
		if len(q.reqs) > 0 {
			dst = q.popLocked(dst, maxBytes, true)
			q.mu.Unlock()
			return dst, true
		}
		if q.closed {
			q.mu.Unlock()
			return dst, false
		}
		if q.woken {
			q.woken = false
			q.mu.Unlock()
			return dst, true
		}
		q.mu.Unlock()
		<-q.ready
	}
}

// tryTake moves queued requests, up to maxBytes of bodies, into dst
// without blocking; it may move none.
func (q *queue) tryTake(dst []*request, maxBytes int) []*request {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.popLocked(dst, maxBytes, false)
}

// popLocked moves the queue's first requests, up to maxBytes of bodies
// (but at least one when atLeastOne), into dst, and wakes callers waiting
// for room.
func (q *queue) popLocked(dst []*request, maxBytes int, atLeastOne bool) []*request {
	n, bytes := 0, 0
	for n < len(q.reqs) && ((atLeastOne && n == 0) || bytes+q.reqs[n].size <= maxBytes) {
		bytes += q.reqs[n].size
		n++
	}
	if n == 0 {
		return dst
	}
	dst = append(dst, q.reqs[:n]...)
	rest := copy(q.reqs, q.reqs[n:])
	clear(q.reqs[rest:])
	q.reqs = q.reqs[:rest]
	q.bytes -= bytes
	if rest > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	if q.waiting {
		close(q.space) // wake every waiting caller
		q.space, q.waiting = make(chan struct{}), false
	}
	return dst
}

// queued returns the number of queued requests and their bytes.
func (q *queue) queued() (n, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.reqs), q.bytes
}

// wake makes a blocked or the next take return, with or without requests.
func (q *queue) wake() {
	q.mu.Lock()
	q.woken = true
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// failQueued answers every queued request with err, without blocking.
func (q *queue) failQueued(err error) {
	q.mu.Lock()
	reqs := q.reqs
	q.reqs, q.bytes = nil, 0
	if q.waiting {
		close(q.space)
		q.space, q.waiting = make(chan struct{}), false
	}
	q.mu.Unlock()
	for _, r := range reqs {
		r.answer(err)
	}
}

// close makes put fail and lets take drain what is queued.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *queue) queuedBytes() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}
