package broker

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/gonets/gonets/storage"
)

// registryShards spreads the user map over this many locks.
const registryShards = 64

// registry maps each online user to its sessions. Fan-out reads it under a
// shard's read lock, once per recipient.
type registry struct {
	shards [registryShards]registryShard
}

type registryShard struct {
	mu    sync.RWMutex // guards the following
	users map[storage.UserID]*userEntry
}

// userEntry is one online user: its sessions and its send bucket, shared
// by all its devices.
type userEntry struct {
	sessions []*Session // oldest first
	limiter  *rate.Limiter
}

func newRegistry() *registry {
	r := &registry{}
	for i := range r.shards {
		r.shards[i].users = make(map[storage.UserID]*userEntry)
	}
	return r
}

func (r *registry) shard(u storage.UserID) *registryShard {
	return &r.shards[(uint64(u)*0x9E3779B97F4A7C15)>>58]
}

// add registers s and returns the user's bucket and the sessions beyond
// maxSessions that s displaces (oldest first), for the caller to close.
func (r *registry) add(s *Session, maxSessions int, newLimiter func() *rate.Limiter) (*rate.Limiter, []*Session) {
	sh := r.shard(s.user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.users[s.user]
	if e == nil {
		e = &userEntry{limiter: newLimiter()}
		sh.users[s.user] = e
	}
	e.sessions = append(e.sessions, s)
	var evicted []*Session
	if n := len(e.sessions) - maxSessions; n > 0 {
		evicted = append(evicted, e.sessions[:n]...)
	}
	return e.limiter, evicted
}

// remove unregisters s; the user's entry goes with its last session.
func (r *registry) remove(s *Session) {
	sh := r.shard(s.user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.users[s.user]
	if e == nil {
		return
	}
	for i, x := range e.sessions {
		if x == s {
			e.sessions = append(e.sessions[:i:i], e.sessions[i+1:]...)
			break
		}
	}
	if len(e.sessions) == 0 {
		delete(sh.users, s.user)
	}
}

// appendOutboxes appends the outboxes of u's sessions other than except.
func (r *registry) appendOutboxes(dst []*Outbox, u storage.UserID, except *Session) []*Outbox {
	sh := r.shard(u)
	sh.mu.RLock()
	if e := sh.users[u]; e != nil {
		for _, s := range e.sessions {
			if s != except {
				dst = append(dst, s.out)
			}
		}
	}
	sh.mu.RUnlock()
	return dst
}

// all returns every registered session.
func (r *registry) all() []*Session {
	var out []*Session
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, e := range sh.users {
			out = append(out, e.sessions...)
		}
		sh.mu.RUnlock()
	}
	return out
}

// reserve takes one token from lim, or reports how long to wait for it.
func reserve(lim *rate.Limiter, now time.Time) (wait time.Duration, ok bool) {
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Second, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}
