package status

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// entry is one linked user in Run's schedule.
type entry struct {
	user    uint64
	who     Person
	next    time.Time // when the user is due
	fails   int       // consecutive failed polls
	gen     uint64    // the last listing that named the user
	since   uint64    // Poller.forgets when that listing began
	index   int       // in the heap; -1 while polled or removed
	removed bool      // dropped while polled: not put back
}

// schedule is a min-heap of entries by next.
type schedule []*entry

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].next.Before(s[j].next) }
func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].index, s[j].index = i, j
}
func (s *schedule) Push(x any) {
	e := x.(*entry)
	e.index = len(*s)
	*s = append(*s, e)
}
func (s *schedule) Pop() any {
	old := *s
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*s = old[:len(old)-1]
	e.index = -1
	return e
}

var _ heap.Interface = (*schedule)(nil)

// userLocks serialises the polls and Forget of one user. An entry lives
// only while someone holds or waits for it, so the map is bounded by the
// polls in flight.
type userLocks struct {
	mu sync.Mutex // guards the following
	m  map[uint64]*userLock
}

type userLock struct {
	ch   chan struct{} // holds one token while locked
	refs int           // holders and waiters; guarded by userLocks.mu
}

// lock takes user's lock, or gives up when ctx is done. The returned func
// unlocks.
func (l *userLocks) lock(ctx context.Context, user uint64) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[uint64]*userLock)
	}
	e := l.m[user]
	if e == nil {
		e = &userLock{ch: make(chan struct{}, 1)}
		l.m[user] = e
	}
	e.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, user)
		}
		l.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// held returns how many users' locks are held or waited for.
func (l *userLocks) held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
