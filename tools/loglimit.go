package tools

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// The node's log is rate-limited per distinct message: a fault that
// repeats (a full disk, a flapping peer) costs a few lines a minute, not
// a core and the disk. Debug lines, which an operator asks for, pass.
const (
	logLimitBurst    = 10          // lines of one message per interval
	logLimitInterval = time.Minute // the interval
	logLimitKeys     = 4096        // past this many distinct messages the limiter restarts
)

// limitHandler is a slog.Handler that lets each distinct (level, message)
// through at most logLimitBurst times per logLimitInterval and drops the
// rest; the next line of a message that passes after drops carries
// suppressed=N.
type limitHandler struct {
	h slog.Handler
	l *logLimits // shared by the handlers WithAttrs and WithGroup derive
}

// newLimitHandler wraps h. now is the clock.
func newLimitHandler(h slog.Handler, now func() time.Time) *limitHandler {
	return &limitHandler{h: h, l: &logLimits{now: now, seen: make(map[logKey]*logWindow)}}
}

// logLimits counts lines per message.
type logLimits struct {
	now func() time.Time

	mu   sync.Mutex // guards the following
	seen map[logKey]*logWindow
}

type logKey struct {
	level slog.Level
	msg   string
}

type logWindow struct {
	start   time.Time
	n       int // lines let through since start
	dropped int // lines dropped since the last one let through
}

// allow reports whether a line may pass now and how many of its kind were
// dropped before it.
func (l *logLimits) allow(k logKey) (bool, int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.seen[k]
	if w == nil {
		if len(l.seen) >= logLimitKeys {
			clear(l.seen)
		}
		w = &logWindow{start: now}
		l.seen[k] = w
	}
	if now.Sub(w.start) >= logLimitInterval {
		w.start, w.n = now, 0
	}
	if w.n >= logLimitBurst {
		w.dropped++
		return false, 0
	}
	w.n++
	dropped := w.dropped
	w.dropped = 0
	return true, dropped
}

func (h *limitHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.h.Enabled(ctx, level)
}

func (h *limitHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelInfo {
		return h.h.Handle(ctx, r)
	}
	ok, dropped := h.l.allow(logKey{r.Level, r.Message})
	if !ok {
		return nil
	}
	if dropped > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", dropped))
	}
	return h.h.Handle(ctx, r)
}

func (h *limitHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &limitHandler{h: h.h.WithAttrs(attrs), l: h.l}
}

func (h *limitHandler) WithGroup(name string) slog.Handler {
	return &limitHandler{h: h.h.WithGroup(name), l: h.l}
}
