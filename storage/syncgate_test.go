package storage

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// syncGate is a file system that counts WAL syncs and, while held, blocks
// them until opened.
type syncGate struct {
	FS      vfs.FS
	hold    atomic.Bool
	syncs   atomic.Int64
	held    chan struct{} // signalled when a sync blocks
	release chan struct{}
	once    sync.Once
}

// newSyncGate returns a gate that is opened at the test's end at the
// latest, before openTest's Close, so that a failing test cannot hang.
func newSyncGate(t *testing.T) *syncGate {
	g := &syncGate{held: make(chan struct{}, 1), release: make(chan struct{})}
	g.FS = errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.HasSuffix(op.Path, ".log") ||
			(op.Kind != errorfs.OpFileSync && op.Kind != errorfs.OpFileSyncData && op.Kind != errorfs.OpFileSyncTo) {
			return nil
		}
		g.syncs.Add(1)
		if g.hold.Load() {
			select {
			case g.held <- struct{}{}:
			default:
			}
			<-g.release
		}
		return nil
	}))
	t.Cleanup(g.open)
	return g
}

// open lets every blocked and later sync through.
func (g *syncGate) open() { g.once.Do(func() { g.hold.Store(false); close(g.release) }) }
