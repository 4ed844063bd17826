// Package storagetest holds test helpers for code that runs a
// storage.Store: a file system that holds the WAL's syncs back on demand,
// to test what happens while an append waits for its group commit; and
// WaitFor, the tests' one polling helper (here, at the bottom of the
// package graph, so that every package's tests may use it).
package storagetest

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// SyncGate is a file system (pass FS as storage.Options.FS) that counts
// WAL syncs and, while held, blocks them until opened.
type SyncGate struct {
	// FS is the gated file system.
	FS vfs.FS
	// Hold makes the next WAL syncs block until Open.
	Hold atomic.Bool
	// Held is signalled when a sync blocks.
	Held chan struct{}

	syncs   atomic.Int64
	release chan struct{}
	once    sync.Once
}

// NewSyncGate returns a gate over the OS file system that is opened when
// the test ends at the latest (register it before anything whose cleanup
// needs syncs, such as the store's Close), so that a failing test cannot
// hang.
func NewSyncGate(t testing.TB) *SyncGate {
	g := &SyncGate{Held: make(chan struct{}, 1), release: make(chan struct{})}
	g.FS = errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.HasSuffix(op.Path, ".log") ||
			(op.Kind != errorfs.OpFileSync && op.Kind != errorfs.OpFileSyncData && op.Kind != errorfs.OpFileSyncTo) {
			return nil
		}
		g.syncs.Add(1)
		if g.Hold.Load() {
			select {
			case g.Held <- struct{}{}:
			default:
			}
			<-g.release
		}
		return nil
	}))
	t.Cleanup(g.Open)
	return g
}

// Syncs returns how many WAL syncs began.
func (g *SyncGate) Syncs() int64 { return g.syncs.Load() }

// Open lets every blocked and later sync through, for good.
func (g *SyncGate) Open() { g.once.Do(func() { g.Hold.Store(false); close(g.release) }) }
