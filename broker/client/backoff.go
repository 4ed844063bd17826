package client

import "time"

// backoff draws the waits between reconnection attempts: exponential
// ceilings from min to max with full jitter, so that clients cut off
// together do not return together.
type backoff struct {
	min, max time.Duration
	// rand returns a uniform value in [0, n).
	rand func(n int64) int64
}

// delay returns the wait before attempt n (0 for the first retry): a
// uniform draw from [0, min(max, min·2ⁿ)].
func (b backoff) delay(n int) time.Duration {
	ceiling := b.min
	for i := 0; i < n && ceiling < b.max; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, b.max)
	return time.Duration(b.rand(int64(ceiling) + 1))
}
