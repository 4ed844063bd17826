package callsfu

import (
	"math"
	"sync/atomic"
	"time"
)

// pliInterval is the least time between two keyframe requests (PLI) sent to
// a publisher for the same layer. A keyframe costs the publisher several
// times a delta frame's bits; subscribers joining, switching layers and
// losing packets all ask for one, and one a second serves them all.
const pliInterval = time.Second

// pliNever marks a layer that has had no keyframe request yet.
const pliNever = math.MinInt64

// pliThrottle lets through at most one keyframe request per interval per
// layer. Times are nanoseconds on the owning upTrack's clock (since its
// epoch). It is lock-free: any goroutine may ask, and of racing askers
// exactly one wins.
type pliThrottle struct {
	interval int64
	last     [maxLayers]atomic.Int64 // when the last request of each layer went out; pliNever: none yet
}

// newPLIThrottle returns a throttle that allows one request per interval per
// layer.
func newPLIThrottle(interval time.Duration) *pliThrottle {
	t := &pliThrottle{interval: int64(interval)}
	for i := range t.last {
		t.last[i].Store(pliNever)
	}
	return t
}

// allow reports whether a keyframe request for layer may go out at now, and
// if so records it as sent. A clock read that went backwards (two goroutines'
// arrival times) counts as too soon.
func (t *pliThrottle) allow(layer int, now int64) bool {
	for {
		last := t.last[layer].Load()
		if last != pliNever && now-last < t.interval {
			return false
		}
		if t.last[layer].CompareAndSwap(last, now) {
			return true
		}
	}
}
