package client

import (
	"sync"
	"sync/atomic"

	"github.com/gonets/gonets/broker/wire"
)

// maxQueuedPushes caps the pushes a TCP session holds for the delivery
// goroutine, as the node's outbox caps a session's queued frames.
const maxQueuedPushes = 1024

// pushQueue holds the pushes a TCP connection read and the delivery
// goroutine has not taken yet. Over TCP pushes share the one stream with
// responses and control frames, so the reader cannot stop reading when
// the delivery goroutine is busy (over QUIC it does, and flow control
// holds the node back): a response would wait behind the pushes. The
// queue is bounded instead, by the node's own outbox bounds by default
// (Options.PushBuffer bytes, maxQueuedPushes frames), and past them the
// client does what the node does for a QUIC client that reads too slowly:
// it drops pushes, counting them, until the delivery goroutine takes a
// Resync, and that Resync catches up from history everything dropped.
// Receipts and typing signals dropped are not replayed, as after the
// node's own Resync.
type pushQueue struct {
	maxBytes int
	ready    chan struct{} // capacity 1: signalled when a push is added
	dropped  *atomic.Uint64

	mu     sync.Mutex   // guards the following
	frames []queuedPush // from head on
	head   int
	bytes  int  // encoded size of the queued pushes
	full   bool // dropping pushes until resume
}

// queuedPush is a push and its encoded size.
type queuedPush struct {
	f    *wire.Frame
	size int
}

// newPushQueue returns a queue of up to maxBytes of pushes (encoded
// size), which counts the pushes it drops in dropped.
func newPushQueue(maxBytes int, dropped *atomic.Uint64) *pushQueue {
	return &pushQueue{maxBytes: maxBytes, ready: make(chan struct{}, 1), dropped: dropped}
}

// add queues f, of encoded size bytes, unless the queue is full or still
// dropping since it was. ok is false when f was dropped, and first when
// it was the first drop since the last resume: the caller then asks for a
// Resync.
func (q *pushQueue) add(f *wire.Frame, size int) (ok, first bool) {
	q.mu.Lock()
	if q.full || len(q.frames)-q.head >= maxQueuedPushes || (q.bytes+size > q.maxBytes && q.bytes > 0) {
		first = !q.full
		q.full = true
		q.mu.Unlock()
		q.dropped.Add(1)
		return false, first
	}
	q.frames = append(q.frames, queuedPush{f: f, size: size})
	q.bytes += size
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true, false
}

// resume takes pushes again: the delivery goroutine is about to catch up
// from history, which covers every push dropped before.
func (q *pushQueue) resume() {
	q.mu.Lock()
	q.full = false
	q.mu.Unlock()
}

// next takes the oldest push, or nil when none waits.
func (q *pushQueue) next() *wire.Frame {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.frames) {
		return nil
	}
	p := q.frames[q.head]
	q.frames[q.head] = queuedPush{}
	q.head++
	q.bytes -= p.size
	switch {
	case q.head == len(q.frames):
		q.frames, q.head = q.frames[:0], 0
	case q.head >= 64 && 2*q.head >= len(q.frames):
		// Move the rest to the front, so that a queue that never
		// empties does not grow its array.
		n := copy(q.frames, q.frames[q.head:])
		clear(q.frames[n:])
		q.frames, q.head = q.frames[:n], 0
	}
	return p.f
}

// run hands the queued pushes to the delivery goroutine one at a time,
// in order, until the session ends.
func (q *pushQueue) run(s *session) {
	defer s.wg.Done()
	for {
		f := q.next()
		if f == nil {
			select {
			case <-q.ready:
				continue
			case <-s.dead:
				return
			}
		}
		select {
		case s.pushes <- f:
		case <-s.dead:
			return
		}
	}
}
