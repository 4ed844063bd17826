package broker

import (
	"sync"
	"sync/atomic"
)

// Payload is an encoded frame shared by all its recipients. The publisher
// gets it with one reference (NewPayload), fills B, takes one reference per
// recipient queue it pushes to (Retain) and drops its own (Release); each
// writer releases after writing. At zero references B goes back to a pool.
type Payload struct {
	// B is the encoded frame, length prefix included.
	B    []byte
	refs atomic.Int32
}

// maxPooledPayload caps the buffers kept for reuse; larger ones are left
// to the garbage collector so one large message does not pin memory.
const maxPooledPayload = 64 << 10

var payloadPool = sync.Pool{New: func() any { return new(Payload) }}

// NewPayload returns an empty payload holding one reference.
func NewPayload() *Payload {
	p := payloadPool.Get().(*Payload)
	p.B = p.B[:0]
	p.refs.Store(1)
	return p
}

// Retain adds a reference.
func (p *Payload) Retain() { p.refs.Add(1) }

// Release drops a reference; the last one returns the payload to the pool.
func (p *Payload) Release() {
	switch n := p.refs.Add(-1); {
	case n > 0:
		return
	case n < 0:
		panic("broker: payload released more often than retained")
	}
	if cap(p.B) > maxPooledPayload {
		p.B = nil
	}
	payloadPool.Put(p)
}
