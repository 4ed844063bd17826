package client

import (
	"sync/atomic"
	"time"
)

// idGen hands out client message ids: unique and rising for the life of
// the generator. Each id is the current Unix time in microseconds, or the
// previous id plus one when the clock has not moved past it, so ids also
// keep rising across restarts of an app (unless its clock steps back, or
// it sent more than a million messages a second before the restart).
type idGen struct {
	last atomic.Uint64
	now  func() time.Time
}

// next returns a fresh id.
func (g *idGen) next() uint64 {
	for {
		last := g.last.Load()
		id := max(last+1, uint64(g.now().UnixMicro()))
		if g.last.CompareAndSwap(last, id) {
			return id
		}
	}
}
