package httpapi

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay returns the wait before retry number attempt+1 (attempt counts
// from 0): Jitter(Backoff(base, limit, attempt)), or retryAfter capped at
// limit when that is longer. A retryAfter of 0 means the answer asked for
// none.
func Delay(base, limit time.Duration, attempt int, retryAfter time.Duration) time.Duration {
	return max(Jitter(Backoff(base, limit, attempt)), min(retryAfter, limit))
}

// Backoff returns base doubled attempt times, capped at limit. The
// doubling stops at limit, so it does not overflow.
func Backoff(base, limit time.Duration, attempt int) time.Duration {
	d := base
	for i := 0; i < attempt && d < limit; i++ {
		if d > limit/2 {
			return limit
		}
		d *= 2
	}
	return min(d, limit)
}

// Jitter returns between half and all of d, d itself when d is 1 ns or
// less.
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d or until ctx is done, returning ctx.Err() then.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// FitsDeadline reports whether a wait of d ends before ctx's deadline;
// true when ctx has none.
func FitsDeadline(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) >= d
}
