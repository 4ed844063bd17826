package botapi

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters holds a token bucket per bot. A bucket idle for longer than it
// takes to fill is dropped: a fresh one is the same, so dropping it loses
// nothing. The map is swept when it is full or a minute has passed; if it
// is still full after a sweep, arbitrary entries go (their bots get a full
// bucket again), so it never holds more than max.
type limiters struct {
	limit rate.Limit
	burst int
	idle  time.Duration // a bucket idle this long is full
	max   int

	mu        sync.Mutex // guards the following
	bots      map[int64]*botLimiter
	lastSweep time.Time
}

// botLimiter is one bot's bucket and when it was last used.
type botLimiter struct {
	lim  *rate.Limiter
	last time.Time
}

// sweepEvery is how often the map is swept of idle buckets at most.
const sweepEvery = time.Minute

func newLimiters(perSecond float64, burst, capacity int) *limiters {
	fill := time.Duration(float64(burst) / perSecond * float64(time.Second))
	return &limiters{
		limit: rate.Limit(perSecond),
		burst: burst,
		idle:  max(fill, time.Second),
		max:   capacity,
		bots:  make(map[int64]*botLimiter),
	}
}

// allow takes a token from bot's bucket at now. When there is none it
// returns false and how long until there is one.
func (l *limiters) allow(bot int64, now time.Time) (ok bool, retry time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bots[bot]
	if b == nil {
		if len(l.bots) >= l.max || now.Sub(l.lastSweep) >= sweepEvery {
			l.sweepLocked(now)
		}
		b = &botLimiter{lim: rate.NewLimiter(l.limit, l.burst)}
		l.bots[bot] = b
	}
	if now.After(b.last) {
		b.last = now
	}
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweepLocked drops idle buckets, then arbitrary ones while the map is
// full.
func (l *limiters) sweepLocked(now time.Time) {
	l.lastSweep = now
	for id, b := range l.bots {
		if now.Sub(b.last) >= l.idle {
			delete(l.bots, id)
		}
	}
	for id := range l.bots {
		if len(l.bots) < l.max {
			break
		}
		delete(l.bots, id)
	}
}

// size returns how many buckets are kept.
func (l *limiters) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.bots)
}

// retryAfter is the Retry-After header's value for a wait of d: whole
// seconds, rounded up, at least 1.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
