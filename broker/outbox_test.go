package broker

import (
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

func payload(n int) *Payload {
	p := NewPayload()
	p.B = append(p.B, make([]byte, n)...)
	return p
}

func TestOutboxOrderAndStall(t *testing.T) {
	drops := newDropCounters(metrics.NewSet())
	o := NewOutbox(OutboxOptions{MaxFrames: 4, MaxBytes: 1000, Drops: drops})
	ps := make([]*Payload, 6)
	for i := range ps {
		ps[i] = payload(10 + i)
	}
	for i := range 4 {
		if !o.Push(ps[i]) {
			t.Fatalf("push %d refused", i)
		}
	}
	if o.Push(ps[4]) {
		t.Fatal("push over MaxFrames accepted")
	}
	dst := make([]*Payload, 2)
	n, stalled := o.Take(dst)
	if n != 2 || dst[0] != ps[0] || dst[1] != ps[1] || !stalled {
		t.Fatalf("Take = %d %v stalled %v", n, dst, stalled)
	}
	if o.Push(ps[5]) {
		t.Fatal("a stalled outbox took a push: the client would see a gap")
	}
	if drops.Full.Get() != 1 || drops.Stalled.Get() != 1 {
		t.Fatalf("drops: full %d, stalled %d; want 1 and 1", drops.Full.Get(), drops.Stalled.Get())
	}
	n, _ = o.Take(dst)
	if n != 2 || dst[0] != ps[2] || dst[1] != ps[3] {
		t.Fatalf("second Take = %d %v", n, dst)
	}
	o.Resume()
	if !o.Push(ps[5]) {
		t.Fatal("push after Resume refused")
	}
	if f, b := o.Len(); f != 1 || b != 15 {
		t.Fatalf("Len = %d, %d", f, b)
	}
}

func TestOutboxBytes(t *testing.T) {
	o := NewOutbox(OutboxOptions{MaxFrames: 100, MaxBytes: 100})
	if !o.Push(payload(60)) || o.Push(payload(60)) {
		t.Fatal("byte bound not enforced")
	}
}

func TestOutboxReleases(t *testing.T) {
	o := NewOutbox(OutboxOptions{})
	p := payload(10)
	for range 3 {
		o.Push(p)
	}
	if got := p.refs.Load(); got != 4 {
		t.Fatalf("refs = %d, want 4 (publisher + 3 queued)", got)
	}
	o.Close()
	if got := p.refs.Load(); got != 1 {
		t.Fatalf("after Close refs = %d, want 1", got)
	}
	if o.Push(p) {
		t.Fatal("closed outbox took a push")
	}
	p.Release()
}

func TestOutboxShrinksWhenDrained(t *testing.T) {
	o := NewOutbox(OutboxOptions{})
	for range 100 {
		o.Push(payload(1))
	}
	dst := make([]*Payload, 128)
	n, _ := o.Take(dst)
	for _, p := range dst[:n] {
		p.Release()
	}
	if n != 100 || o.ring != nil {
		t.Fatalf("took %d, ring of %d kept after a burst", n, len(o.ring))
	}
}

// TestFanoutAllocatesNothing: one message to 1,000 sessions, drained by
// their writers, allocates nothing per recipient (or at all) once warm.
func TestFanoutAllocatesNothing(t *testing.T) {
	boxes := make([]*Outbox, 1000)
	for i := range boxes {
		boxes[i] = NewOutbox(OutboxOptions{})
	}
	dst := make([]*Payload, 8)
	round := func() {
		p := NewPayload()
		p.B = append(p.B, "frame bytes"...)
		if n := Fanout(p, boxes); n != len(boxes) {
			t.Fatalf("delivered %d", n)
		}
		p.Release()
		for _, o := range boxes {
			n, _ := o.Take(dst)
			for _, q := range dst[:n] {
				q.Release()
			}
		}
	}
	round() // warm: rings and the payload pool
	if allocs := testing.AllocsPerRun(100, round); allocs != 0 {
		t.Fatalf("fan-out to 1,000 allocates %.1f times", allocs)
	}
}

func TestFanoutConcurrent(t *testing.T) {
	boxes := []*Outbox{NewOutbox(OutboxOptions{MaxFrames: 1 << 16, MaxBytes: 1 << 30}), NewOutbox(OutboxOptions{MaxFrames: 1 << 16, MaxBytes: 1 << 30})}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				p := payload(8)
				Fanout(p, boxes)
				p.Release()
			}
		})
	}
	wg.Wait()
	for _, o := range boxes {
		if f, _ := o.Len(); f != 4000 {
			t.Fatalf("queued %d, want 4000", f)
		}
		o.Close()
	}
}

// BenchmarkFanout sends one message to 1,000 in-process sessions and
// drains their outboxes as their writers would; it reports ns per
// recipient and must show 0 allocs.
func BenchmarkFanout(b *testing.B) {
	const recipients = 1000
	boxes := make([]*Outbox, recipients)
	for i := range boxes {
		boxes[i] = NewOutbox(OutboxOptions{})
	}
	dst := make([]*Payload, 8)
	body := make([]byte, 300)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p := NewPayload()
		p.B = append(p.B, body...)
		Fanout(p, boxes)
		p.Release()
		for _, o := range boxes {
			n, _ := o.Take(dst)
			for _, q := range dst[:n] {
				q.Release()
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*recipients), "ns/recipient")
}
