package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// bloomPolicy lets point lookups (dedupe, members) skip tables that cannot
// hold the key.
var bloomPolicy = bloom.FilterPolicy(10)

// pebbleLogger routes Pebble's log lines into slog, each format at most
// logBurst times per logInterval (Pebble logs a failing background job on
// every retry). Fatalf ends the process through fatal: Pebble calls it in
// states it cannot leave (a commit pipeline wedged, a MANIFEST that could
// not be written), some with its mutexes held, so it must not return and
// must not panic into code that would unlock them.
type pebbleLogger struct {
	l     *slog.Logger
	lim   *logLimiter
	fatal func(what string)
}

// newPebbleLogger returns a logger into l whose Fatalf calls fatal.
func newPebbleLogger(l *slog.Logger, fatal func(what string)) pebbleLogger {
	return pebbleLogger{l: l, lim: newLogLimiter(time.Now), fatal: fatal}
}

func (p pebbleLogger) Infof(format string, args ...any) {
	p.log(slog.LevelDebug, format, args)
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.log(slog.LevelError, format, args)
}

func (p pebbleLogger) log(level slog.Level, format string, args []any) {
	ok, suppressed := p.lim.allow(format)
	if !ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if suppressed > 0 {
		p.l.Log(context.Background(), level, msg, "component", "pebble", "suppressed", suppressed)
		return
	}
	p.l.Log(context.Background(), level, msg, "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.fatal("pebble: " + fmt.Sprintf(format, args...))
}

var _ pebble.Logger = pebbleLogger{}

// fatalExitCode is the exit status after a fatal storage error.
const fatalExitCode = 1

// fatal logs the store's one fatal line and ends the process through
// Options.Exit. It is for errors after which Pebble's state is unknown
// (see doc.go, "Failures"); everything acknowledged was synced to the WAL
// before its ack, so a restart recovers it.
func (o *Options) fatal(what string) {
	line := "storage: fatal: " + what + "; the process stops; acknowledged data is safe in the WAL; restart"
	o.Logger.Error(line)
	if o.fatalStderr != nil {
		fmt.Fprintln(o.fatalStderr, line)
	}
	o.Exit(fatalExitCode)
	select {} // Exit must not return; Pebble's locks may be held
}

// events is the store's Pebble event listener. It counts background
// errors and slows their retries (Pebble retries a failed flush at once,
// forever), fails the store when a flush fails, and ends the process when
// a WAL cannot be created while the store runs (Pebble panics with its
// mutex released there, which no recover survives).
type events struct {
	opts *Options
	lim  *logLimiter

	fail     func(error)      // fails the store
	walArmed *atomic.Bool     // the store runs: WAL creation failures are fatal
	count    *metrics.Counter // background errors

	flushErr   atomic.Pointer[error] // the last failed flush's error
	flushFails atomic.Uint64         // failed flushes, running or not
	streak     atomic.Int32          // background errors since the last success
	lastErr    atomic.Int64          // when the last background error came, Unix ns
}

// maxRetryPause caps the pause events puts between retries of a failing
// background job. Pebble holds its DB mutex while reporting a flush
// error, so the pause also delays commits, snapshots and Close: keep it
// short.
const maxRetryPause = 500 * time.Millisecond

func (e *events) listener() *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: e.backgroundError,
		FlushEnd: func(info pebble.FlushInfo) {
			if info.Err == nil {
				e.streak.Store(0)
				return
			}
			err := info.Err
			e.flushErr.Store(&err)
		},
		CompactionEnd: func(info pebble.CompactionInfo) {
			if info.Err == nil {
				e.streak.Store(0)
			}
		},
		WALCreated: func(info pebble.WALCreateInfo) {
			if info.Err != nil && e.walArmed.Load() {
				e.opts.fatal(fmt.Sprintf("create WAL %s: %v", info.Path, info.Err))
			}
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			if ok, n := e.lim.allow("pebble: data corruption"); ok {
				e.opts.Logger.Error("pebble: data corruption", "path", info.Path, "err", info.Details, "suppressed", n)
			}
		},
	}
}

// backgroundError handles a failed flush or compaction. Pebble calls it
// on the job's goroutine, which then retries the job at once; a pause
// that grows with the streak of failures turns that retry loop (which on
// a full disk wrote millions of log lines) into a slow one.
func (e *events) backgroundError(err error) {
	e.count.Inc()
	if p := e.flushErr.Load(); p != nil && errors.Is(err, *p) {
		e.flushErr.Store(nil)
		e.flushFails.Add(1)
		if e.walArmed.Load() { // not while Open or a reopen waits for the flush (startRunning)
			e.fail(fmt.Errorf("flush: %w", err))
		}
	}
	if ok, n := e.lim.allow("pebble: background error"); ok {
		e.opts.Logger.Error("pebble: background error", "err", err, "suppressed", n)
	}
	now := time.Now().UnixNano()
	if last := e.lastErr.Swap(now); time.Duration(now-last) > 20*maxRetryPause {
		e.streak.Store(0) // an error long after the last one starts a new streak
	}
	if n := e.streak.Add(1); n > 1 {
		time.Sleep(min(10*time.Millisecond<<min(n-2, 10), maxRetryPause))
	}
}

// syncSet writes key and waits for its WAL sync, returning a failed sync
// as an error. (DB.Set with pebble.Sync hands a failed sync to
// Logger.Fatalf.)
func syncSet(db *pebble.DB, key, val []byte) error {
	b := db.NewBatch()
	b.Set(key, val, nil)
	if err := db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		return err
	}
	err := b.SyncWait()
	if err == nil {
		b.Close()
	}
	return err
}
