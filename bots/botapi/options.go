package botapi

import (
	"errors"
	"log/slog"
	"time"
)

// Options configures a Server. The zero value of each field but Backend
// means its default.
type Options struct {
	// Backend serves the bots' calls. Required.
	Backend Backend
	// RateLimit is the requests per second each bot may make. Default: 30.
	RateLimit float64
	// Burst is how many requests a bot may make at once. Default:
	// RateLimit, at least 1.
	Burst int
	// MaxBody caps a request body in bytes; larger is 413. Default: 1 MiB.
	MaxBody int64
	// MaxPollTimeout caps GET /updates' timeout. Default: 90 s.
	MaxPollTimeout time.Duration
	// DefaultPollTimeout is GET /updates' timeout when the request names
	// none (the SDK's polling loop never does). Default: 30 s.
	DefaultPollTimeout time.Duration
	// MaxLimiters caps the per-bot rate limiters kept at once; idle ones
	// are dropped first. Default: 100,000.
	MaxLimiters int
	// Log receives errors. Default: slog.Default().
	Log *slog.Logger
	// Now is the clock of the rate limit. Default: time.Now.
	Now func() time.Time
}

// errNoBackend is New's refusal of Options without a Backend.
var errNoBackend = errors.New("botapi: Options.Backend is required")

// withDefaults returns o with its defaults filled in, or an error when o
// cannot work.
func (o Options) withDefaults() (Options, error) {
	if o.Backend == nil {
		return o, errNoBackend
	}
	if o.RateLimit <= 0 {
		o.RateLimit = 30
	}
	if o.Burst <= 0 {
		o.Burst = max(1, int(o.RateLimit))
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.MaxPollTimeout <= 0 {
		o.MaxPollTimeout = 90 * time.Second
	}
	if o.DefaultPollTimeout <= 0 {
		o.DefaultPollTimeout = 30 * time.Second
	}
	o.DefaultPollTimeout = min(o.DefaultPollTimeout, o.MaxPollTimeout)
	if o.MaxLimiters <= 0 {
		o.MaxLimiters = 100_000
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}
