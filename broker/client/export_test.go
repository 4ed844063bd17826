package client

import "time"

// WithFallbackDelay returns o with the happy-eyeballs delay set to d: how
// long the first transport of a race has to itself.
func WithFallbackDelay(o Options, d time.Duration) Options {
	o.fallbackDelay = d
	return o
}
