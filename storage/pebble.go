package storage

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// bloomPolicy lets point lookups (dedupe, members) skip tables that cannot
// hold the key.
var bloomPolicy = bloom.FilterPolicy(10)

// pebbleLogger routes Pebble's log lines into slog. Fatalf panics, as Pebble
// requires that it not return; Open and commitSync turn such a panic into
// an error.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble")
	panic(msg)
}

var _ pebble.Logger = pebbleLogger{}
