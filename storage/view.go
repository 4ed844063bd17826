package storage

import (
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// view is a Pebble snapshot of the store just after a batch, published
// once that batch is durable. Pebble makes a batch visible before its WAL
// sync completes; readers go through the latest view instead, so they
// never see data that is not yet durable.
type view struct {
	snap *pebble.Snapshot
	ver  uint64        // the store version the snapshot holds
	refs atomic.Int32  // the store's reference plus one per reader
	open *atomic.Int64 // the store's count of unclosed views
}

// setView publishes a new durable view and drops the store's reference to
// the previous one. Only the committer (and Open) call it; the committer
// also removes the view (closeDB) before it reopens a failed database.
func (s *Store) setView(snap *pebble.Snapshot, ver uint64) {
	v := &view{snap: snap, ver: ver, open: &s.openViews}
	v.refs.Store(1)
	s.openViews.Add(1)
	if old := s.view.Swap(v); old != nil {
		old.release()
	}
}

// acquire returns the current view with a reference the caller releases,
// ErrClosed after Close, or the store's failure while a failed store
// reopens its database (there is no view then).
func (s *Store) acquire() (*view, error) {
	for {
		v := s.view.Load()
		if v == nil {
			if s.closed.Load() {
				return nil, ErrClosed
			}
			if err := s.failure(); err != nil {
				return nil, err
			}
			// A reopen published its view and cleared the failure
			// between the two loads: take that view.
			continue
		}
		// Take a reference only while one is held: once the count reaches
		// zero the snapshot is closed and the view is dead; a newer one has
		// been published, so retry.
		if n := v.refs.Load(); n > 0 && v.refs.CompareAndSwap(n, n+1) {
			return v, nil
		}
	}
}

func (v *view) release() {
	if v.refs.Add(-1) == 0 {
		v.snap.Close()
		v.open.Add(-1)
	}
}

// get returns a copy of key's value, or found false.
func (v *view) get(key []byte) (val []byte, found bool, err error) {
	return getCopy(v.snap, key)
}

// newIter opens an iterator over [lo, hi) in the view.
func (v *view) newIter(lo, hi []byte) (*pebble.Iterator, error) {
	return v.snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
}
