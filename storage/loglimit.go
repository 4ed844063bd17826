package storage

import (
	"sync"
	"time"
)

// Log rate limits: each distinct line (by its format or message) is let
// through at most logBurst times per logInterval; the first one let
// through after a suppression says how many were dropped.
const (
	logBurst    = 5
	logInterval = time.Minute
	maxLogKeys  = 1024 // past this many distinct keys the limiter restarts
)

// logLimiter rate-limits log lines by key. It is safe for concurrent use.
type logLimiter struct {
	now func() time.Time

	mu   sync.Mutex // guards the following
	keys map[string]*logWindow
}

// logWindow counts one key's lines in its current interval.
type logWindow struct {
	start   time.Time
	n       int // lines let through since start
	dropped int // lines suppressed since the last one let through
}

func newLogLimiter(now func() time.Time) *logLimiter {
	return &logLimiter{now: now, keys: make(map[string]*logWindow)}
}

// allow reports whether a line with key may be logged now and, if so, how
// many lines with key were suppressed before it.
func (l *logLimiter) allow(key string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.keys[key]
	if w == nil {
		if len(l.keys) >= maxLogKeys {
			clear(l.keys)
		}
		w = &logWindow{start: now}
		l.keys[key] = w
	}
	if now.Sub(w.start) >= logInterval {
		w.start, w.n = now, 0
	}
	if w.n >= logBurst {
		w.dropped++
		return false, 0
	}
	w.n++
	suppressed, w.dropped = w.dropped, 0
	return true, suppressed
}
