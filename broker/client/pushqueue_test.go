package client

import (
	"sync/atomic"
	"testing"

	"github.com/gonets/gonets/broker/wire"
)

func pushOf(seq uint64) *wire.Frame {
	return &wire.Frame{Body: &wire.Frame_Deliver{Deliver: &wire.Deliver{Message: &wire.Message{Chat: 1, Seq: seq}}}}
}

// The queue holds pushes up to its byte bound, then drops every push
// until resume, reporting the first drop once; it hands pushes out in
// order.
func TestPushQueueBounds(t *testing.T) {
	var dropped atomic.Uint64
	q := newPushQueue(300, &dropped)
	add := func(seq uint64, size int, wantOK, wantFirst bool) {
		t.Helper()
		if ok, first := q.add(pushOf(seq), size); ok != wantOK || first != wantFirst {
			t.Fatalf("add %d (%d bytes): ok %v first %v, want %v %v", seq, size, ok, first, wantOK, wantFirst)
		}
	}
	add(1, 100, true, false)
	add(2, 200, true, false)
	add(3, 1, false, true) // over 300 bytes
	q.next()
	add(4, 50, false, false) // room again, but dropping until resume
	if dropped.Load() != 2 {
		t.Fatalf("%d dropped, want 2", dropped.Load())
	}
	q.resume()
	add(5, 50, true, false)
	for _, want := range []uint64{2, 5} {
		if f := q.next(); f.GetDeliver().GetMessage().GetSeq() != want {
			t.Fatalf("next: %v, want seq %d", f, want)
		}
	}
	if f := q.next(); f != nil || q.bytes != 0 {
		t.Fatalf("empty queue: next %v, %d bytes", f, q.bytes)
	}
	// One push over the bound passes when nothing else waits.
	add(6, 1000, true, false)
}

// The frame bound holds whatever the bytes, and a queue that never
// empties reuses its array.
func TestPushQueueFrames(t *testing.T) {
	var dropped atomic.Uint64
	q := newPushQueue(1<<30, &dropped)
	seq := uint64(0)
	for range maxQueuedPushes {
		seq++
		if ok, _ := q.add(pushOf(seq), 1); !ok {
			t.Fatalf("push %d dropped", seq)
		}
	}
	if ok, first := q.add(pushOf(seq+1), 1); ok || !first {
		t.Fatalf("push past %d frames: ok %v first %v", maxQueuedPushes, ok, first)
	}
	q.resume()
	want := uint64(1)
	for range 10 * maxQueuedPushes {
		if f := q.next(); f.GetDeliver().GetMessage().GetSeq() != want {
			t.Fatalf("next: %v, want seq %d", f, want)
		}
		want++
		seq++
		if ok, _ := q.add(pushOf(seq), 1); !ok {
			t.Fatalf("push %d dropped", seq)
		}
	}
	if cap(q.frames) > 4*maxQueuedPushes {
		t.Fatalf("array of %d for %d queued", cap(q.frames), len(q.frames)-q.head)
	}
}

// A dropped push queues one Resync for the delivery goroutine; taking it
// resumes the queue.
func TestDroppedPushResyncs(t *testing.T) {
	var dropped atomic.Uint64
	s := &session{control: make(chan *wire.Frame, 2), queue: newPushQueue(10, &dropped)}
	s.queuePush(pushOf(1), 10)
	s.queuePush(pushOf(2), 10)
	s.queuePush(pushOf(3), 10)
	if len(s.control) != 1 || dropped.Load() != 2 {
		t.Fatalf("%d control frames, %d dropped; want one Resync, 2", len(s.control), dropped.Load())
	}
	f := <-s.control
	if f.GetResync() == nil {
		t.Fatalf("control frame %v, want Resync", f)
	}
	s.tookControl(f)
	s.queue.next()
	s.queuePush(pushOf(4), 10)
	if len(s.control) != 0 || dropped.Load() != 2 {
		t.Fatalf("after the Resync: %d control frames, %d dropped", len(s.control), dropped.Load())
	}
}

func TestTransportOrder(t *testing.T) {
	f := func(via, last Transport, want ...Transport) {
		t.Helper()
		got := via.order(last)
		if len(got) != len(want) || got[0] != want[0] || (len(got) > 1 && got[1] != want[1]) {
			t.Fatalf("%v after %v: order %v, want %v", via, last, got, want)
		}
	}
	f(TransportAuto, TransportAuto, TransportQUIC, TransportTCP)
	f(TransportAuto, TransportQUIC, TransportQUIC, TransportTCP)
	f(TransportAuto, TransportTCP, TransportTCP, TransportQUIC)
	f(TransportQUIC, TransportTCP, TransportQUIC)
	f(TransportTCP, TransportQUIC, TransportTCP)
}

func TestTransportText(t *testing.T) {
	for _, tr := range []Transport{TransportAuto, TransportQUIC, TransportTCP} {
		b, err := tr.MarshalText()
		var back Transport
		if err != nil || back.UnmarshalText(b) != nil || back != tr {
			t.Fatalf("%v: %q, %v; back %v", tr, b, err, back)
		}
	}
	var tr Transport
	if err := tr.UnmarshalText([]byte("udp")); err == nil {
		t.Fatal("udp accepted")
	}
	if _, err := Transport(9).MarshalText(); err == nil {
		t.Fatal("transport 9 marshalled")
	}
}
