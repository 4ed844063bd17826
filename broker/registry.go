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
	// presence serialises, per user of the shard, coming online and going
	// offline with the membership changes that follow a commit, so that
	// the chat index holds exactly the online users' committed chats.
	// It is taken before mu and before any chat index lock.
	presence sync.Mutex

	mu    sync.RWMutex // guards the following
	users map[storage.UserID]*userEntry
	// idle keeps the send buckets of users who went offline with a
	// bucket not yet full, so that reconnecting does not refill it.
	idle map[storage.UserID]*rate.Limiter
}

// maxIdleBuckets caps each shard's idle buckets; past it, arbitrary ones
// (most of them long refilled) are dropped.
const maxIdleBuckets = 4096

// userEntry is one online user: its sessions, its send bucket, shared by
// all its devices, and the chat index entries it joined. chats is changed
// only under the shard's presence lock.
type userEntry struct {
	sessions []*Session // oldest first
	limiter  *rate.Limiter
	chats    []*chatEntry
}

func newRegistry() *registry {
	r := &registry{}
	for i := range r.shards {
		r.shards[i].users = make(map[storage.UserID]*userEntry)
		r.shards[i].idle = make(map[storage.UserID]*rate.Limiter)
	}
	return r
}

func (r *registry) shard(u storage.UserID) *registryShard {
	return &r.shards[(uint64(u)*0x9E3779B97F4A7C15)>>58]
}

// add registers s and returns its user's entry, the sessions beyond
// maxSessions that s displaces (oldest first), for the caller to close,
// and whether s is the user's first session.
func (r *registry) add(s *Session, maxSessions int, newLimiter func() *rate.Limiter) (*userEntry, []*Session, bool) {
	sh := r.shard(s.user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.users[s.user]
	first := e == nil
	if e == nil {
		lim := sh.idle[s.user]
		if lim != nil {
			delete(sh.idle, s.user)
		} else {
			lim = newLimiter()
		}
		e = &userEntry{limiter: lim}
		sh.users[s.user] = e
	}
	e.sessions = append(e.sessions, s)
	var evicted []*Session
	if n := len(e.sessions) - maxSessions; n > 0 {
		evicted = append(evicted, e.sessions[:n]...)
	}
	return e, evicted, first
}

// remove unregisters s; the user's entry goes with its last session, its
// send bucket to the idle set unless it is full at now. It returns the
// entry when s was the user's last session.
func (r *registry) remove(s *Session, now time.Time) (last *userEntry) {
	sh := r.shard(s.user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.users[s.user]
	if e == nil {
		return nil
	}
	for i, x := range e.sessions {
		if x == s {
			e.sessions = append(e.sessions[:i:i], e.sessions[i+1:]...)
			break
		}
	}
	if len(e.sessions) == 0 {
		delete(sh.users, s.user)
		if e.limiter.TokensAt(now) < float64(e.limiter.Burst()) {
			for u := range sh.idle {
				if len(sh.idle) < maxIdleBuckets {
					break
				}
				delete(sh.idle, u)
			}
			sh.idle[s.user] = e.limiter
		}
		return e
	}
	return nil
}

// online returns the entry of user if it has a session.
func (r *registry) online(u storage.UserID) *userEntry {
	sh := r.shard(u)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.users[u]
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

// appendSessions appends u's sessions other than except.
func (r *registry) appendSessions(dst []*Session, u storage.UserID, except *Session) []*Session {
	sh := r.shard(u)
	sh.mu.RLock()
	if e := sh.users[u]; e != nil {
		for _, s := range e.sessions {
			if s != except {
				dst = append(dst, s)
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

// reserve takes n tokens from lim, or reports how long to wait for them.
func reserve(lim *rate.Limiter, now time.Time, n int) (wait time.Duration, ok bool) {
	res := lim.ReserveN(now, n)
	if !res.OK() {
		return time.Second, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}
