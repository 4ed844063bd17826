package media

import (
	"fmt"
	"sync"
	"time"
)

// quota counts each user's uploaded bytes per UTC day, in memory: a
// restart forgets the day's counts. It guards against abuse, not billing.
type quota struct {
	limit int64

	mu    sync.Mutex // guards the following
	usage map[uint64]dayUsage
}

type dayUsage struct {
	day   int64 // days since the Unix epoch, UTC
	bytes int64
}

func utcDay(t time.Time) int64 { return t.Unix() / 86400 }

// reserve counts n more bytes for user today, or refuses with ErrQuota.
func (q *quota) reserve(user uint64, n int64, now time.Time) error {
	day := utcDay(now)
	q.mu.Lock()
	defer q.mu.Unlock()
	u := q.usage[user]
	if u.day != day {
		u = dayUsage{day: day}
	}
	if u.bytes+n > q.limit {
		return fmt.Errorf("%w: user %d has %d of %d bytes left today, wants %d",
			ErrQuota, user, q.limit-u.bytes, q.limit, n)
	}
	u.bytes += n
	q.usage[user] = u
	return nil
}

// release gives back n bytes reserved on day; a reservation from an
// earlier day has already lapsed.
func (q *quota) release(user uint64, n int64, day int64) {
	if n <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	u, ok := q.usage[user]
	if !ok || u.day != day {
		return
	}
	u.bytes = max(0, u.bytes-n)
	if u.bytes == 0 {
		delete(q.usage, user)
		return
	}
	q.usage[user] = u
}
