package identity

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Errors of Limiter. A refusal is a *RateLimitError, which matches exactly
// one of ErrRateNumber, ErrRateAddress and ErrRatePrefix (errors.Is) and
// says when to try again. None tells whether a number has an account.
var (
	// ErrRateNumber: too many codes were asked for this number.
	ErrRateNumber = errors.New("identity: too many attempts for this number")
	// ErrRateAddress: too many attempts came from this source address (an
	// IPv4 address, or an IPv6 /64).
	ErrRateAddress = errors.New("identity: too many attempts from this address")
	// ErrRatePrefix: too many attempts went to numbers of this range (the
	// number less its last 4 digits: a flood across 10,000 numbers).
	ErrRatePrefix = errors.New("identity: too many attempts for this number range")
	// ErrLimitInput is returned by Allow for a number that is not E.164 or an
	// invalid address; nothing is counted.
	ErrLimitInput = errors.New("identity: rate limit needs an E.164 number and a valid address")
	// ErrLimitConfig is returned by NewLimiter for invalid options.
	ErrLimitConfig = errors.New("identity: invalid rate limit options")
)

// Scopes of a RateLimitError.
const (
	ScopeNumber  = "number"
	ScopeAddress = "address"
	ScopePrefix  = "prefix"
)

// RateLimitError is Allow's refusal.
type RateLimitError struct {
	// Scope is the limit that refused: ScopeNumber, ScopeAddress or
	// ScopePrefix. When several would refuse, it is the one that frees up
	// last.
	Scope string
	// RetryAfter is how long until the same call would pass, other callers
	// aside. The client gets it as retry_after.
	RetryAfter time.Duration
}

// Error implements error.
func (e *RateLimitError) Error() string {
	secs := (e.RetryAfter + time.Second - 1) / time.Second
	return fmt.Sprintf("%s; retry after %ds", e.Unwrap().Error(), secs)
}

// Unwrap returns the scope's sentinel, so errors.Is matches it.
func (e *RateLimitError) Unwrap() error {
	switch e.Scope {
	case ScopeNumber:
		return ErrRateNumber
	case ScopeAddress:
		return ErrRateAddress
	default:
		return ErrRatePrefix
	}
}

// Rate is one limit: Burst attempts at once, then one more each Per/Burst,
// so never more than Burst in any window of Per. A refused attempt waits
// for the next slot: that wait, in RetryAfter, is the backoff.
type Rate struct {
	// Burst is how many attempts pass at once after a quiet spell.
	Burst int
	// Per is the time in which Burst attempts are earned back.
	Per time.Duration
}

// LimitOptions configures Limiter. The zero value of every field means its
// default; a Rate is defaulted as a whole when both its fields are zero.
type LimitOptions struct {
	// Number limits the attempts for one number. Default: 3 per 10 minutes
	// (then one each 3m20s).
	Number Rate
	// Address limits the attempts from one source address; IPv6 addresses
	// are counted by their /64, what one subscriber gets. Default: 120 per
	// minute. The ceiling is high on purpose: behind carrier-grade NAT
	// thousands of honest users share one IPv4 address (design.md,
	// "Invariants"), so this is the last resort against one source, and the
	// number and prefix limits do the fine work.
	Address Rate
	// Prefix limits the attempts across one range of numbers, the number
	// less its last 4 digits (10,000 numbers). Default: 30 per minute.
	Prefix Rate
	// MaxKeys caps the keys each of the three limits tracks. A key whose
	// limit has fully recharged is idle and dropped first; when the cap is
	// reached, the least recently used key is dropped even if it is not idle
	// (forgiving it: that needs MaxKeys distinct keys active within one
	// Per). A key takes about 100 bytes, so the default bounds the three
	// together at about 30 MiB. Default: 100,000.
	MaxKeys int
}

// Defaults of LimitOptions.
var (
	DefaultLimitNumber  = Rate{Burst: 3, Per: 10 * time.Minute}
	DefaultLimitAddress = Rate{Burst: 120, Per: time.Minute}
	DefaultLimitPrefix  = Rate{Burst: 30, Per: time.Minute}
)

// DefaultLimitMaxKeys is LimitOptions.MaxKeys' default.
const DefaultLimitMaxKeys = 100_000

// Limiter bounds the attempts to sign in (to get a code sent) by number, by
// source address and by number range, each a token bucket (kept as GCRA's
// one timestamp per key) in a bounded map. Allow checks all three and takes
// from all three or from none. It has no goroutine: idle keys are dropped
// as Allow passes them and by Sweep. Safe for concurrent use; one mutex
// guards all three, so that check-then-take is atomic.
type Limiter struct {
	mu      sync.Mutex // guards the following
	number  limitScope[string]
	address limitScope[netip.Addr]
	prefix  limitScope[string]
}

// NewLimiter returns a Limiter configured by opts.
func NewLimiter(opts LimitOptions) (*Limiter, error) {
	if opts.MaxKeys < 0 {
		return nil, fmt.Errorf("%w: negative MaxKeys", ErrLimitConfig)
	}
	if opts.MaxKeys == 0 {
		opts.MaxKeys = DefaultLimitMaxKeys
	}
	l := &Limiter{}
	for _, s := range []struct {
		name string
		r    *Rate
		def  Rate
	}{
		{ScopeNumber, &opts.Number, DefaultLimitNumber},
		{ScopeAddress, &opts.Address, DefaultLimitAddress},
		{ScopePrefix, &opts.Prefix, DefaultLimitPrefix},
	} {
		if *s.r == (Rate{}) {
			*s.r = s.def
		}
		if s.r.Burst <= 0 || s.r.Per <= 0 || s.r.Per/time.Duration(s.r.Burst) <= 0 {
			return nil, fmt.Errorf("%w: %s rate %d per %v", ErrLimitConfig, s.name, s.r.Burst, s.r.Per)
		}
	}
	l.number.init(ScopeNumber, opts.Number, opts.MaxKeys)
	l.address.init(ScopeAddress, opts.Address, opts.MaxKeys)
	l.prefix.init(ScopePrefix, opts.Prefix, opts.MaxKeys)
	return l, nil
}

// Allow counts one attempt for number (E.164) from addr at now, or refuses
// it with a *RateLimitError and counts nothing in any scope. It allocates
// nothing for keys it already tracks.
func (l *Limiter) Allow(number string, addr netip.Addr, now time.Time) error {
	if !isE164(number) || !addr.IsValid() {
		return ErrLimitInput
	}
	akey := limitAddrKey(addr)
	pkey := number[:len(number)-4]
	t := now.UnixNano()

	l.mu.Lock()
	defer l.mu.Unlock()
	nn, nt, nwait := l.number.check(number, t)
	an, at, await := l.address.check(akey, t)
	pn, pt, pwait := l.prefix.check(pkey, t)
	if nwait > 0 || await > 0 || pwait > 0 {
		e := &RateLimitError{Scope: ScopeNumber, RetryAfter: nwait}
		if pwait > e.RetryAfter {
			e.Scope, e.RetryAfter = ScopePrefix, pwait
		}
		if await > e.RetryAfter {
			e.Scope, e.RetryAfter = ScopeAddress, await
		}
		return e
	}
	l.number.take(nn, number, nt, t)
	l.address.take(an, akey, at, t)
	l.prefix.take(pn, pkey, pt, t)
	return nil
}

// Sweep drops every idle key (one whose limit has fully recharged by now)
// and returns how many it dropped. Allow drops a few as it goes; the owner
// calls Sweep now and then to return memory after a flood.
func (l *Limiter) Sweep(now time.Time) int {
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.number.sweep(t) + l.address.sweep(t) + l.prefix.sweep(t)
}

// LimiterStats are a Limiter's gauges and counters.
type LimiterStats struct {
	// Numbers, Addresses and Prefixes are the keys tracked now.
	Numbers, Addresses, Prefixes int
	// Evicted counts keys dropped to stay within MaxKeys before they were
	// idle.
	Evicted uint64
}

// Stats returns l's gauges and counters.
func (l *Limiter) Stats() LimiterStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LimiterStats{
		Numbers:   len(l.number.m),
		Addresses: len(l.address.m),
		Prefixes:  len(l.prefix.m),
		Evicted:   l.number.evicted + l.address.evicted + l.prefix.evicted,
	}
}

// limitAddrKey is addr's key: an IPv4 address (4in6 unmapped) as is, an
// IPv6 address by its /64, the zone dropped.
func limitAddrKey(addr netip.Addr) netip.Addr {
	addr = addr.Unmap()
	if addr.Is4() {
		return addr
	}
	return netip.PrefixFrom(addr, 64).Masked().Addr()
}

// limitDropPerAllow is how many idle keys each scope drops from its least
// recently used end per take, so that idle keys go without a Sweep.
const limitDropPerAllow = 2

// limitScope is one limit's bounded map of GCRA states, in least recently
// used order. Its Limiter's mu guards it.
type limitScope[K comparable] struct {
	interval int64 // ns between attempts, Per/Burst
	per      int64 // ns; the bucket is full again Per after a burst
	max      int
	m        map[K]*limitNode[K]
	lru, mru *limitNode[K]
	evicted  uint64
}

// limitNode is one key's state: tat is GCRA's theoretical arrival time, in
// Unix ns; the key is idle (as good as new) once tat <= now.
type limitNode[K comparable] struct {
	key        K
	tat        int64
	prev, next *limitNode[K]
}

func (s *limitScope[K]) init(scope string, r Rate, max int) {
	s.interval = int64(r.Per / time.Duration(r.Burst))
	s.per = int64(r.Per)
	s.max = max
	s.m = make(map[K]*limitNode[K])
}

// check returns key's node (nil when untracked), the tat an attempt at now
// would leave, and how long to wait if the attempt must be refused (0 when
// it may pass).
func (s *limitScope[K]) check(key K, now int64) (*limitNode[K], int64, time.Duration) {
	n := s.m[key]
	tat := now
	if n != nil && n.tat > now {
		tat = n.tat
	}
	tat += s.interval
	if wait := tat - now - s.per; wait > 0 {
		return n, tat, time.Duration(wait)
	}
	return n, tat, 0
}

// take records the attempt check allowed.
func (s *limitScope[K]) take(n *limitNode[K], key K, tat, now int64) {
	if n != nil {
		n.tat = tat
		s.unlink(n)
		s.pushMRU(n)
	} else {
		for range limitDropPerAllow {
			if s.lru == nil || s.lru.tat > now {
				break
			}
			s.remove(s.lru)
		}
		if len(s.m) >= s.max {
			n = s.lru
			s.remove(n)
			if n.tat > now {
				s.evicted++
			}
		} else {
			n = new(limitNode[K])
		}
		n.key, n.tat = limitClone(key), tat
		s.m[n.key] = n
		s.pushMRU(n)
	}
}

// sweep drops every idle key.
func (s *limitScope[K]) sweep(now int64) int {
	dropped := 0
	for n := s.lru; n != nil; {
		next := n.next
		if n.tat <= now {
			s.remove(n)
			dropped++
		}
		n = next
	}
	return dropped
}

func (s *limitScope[K]) remove(n *limitNode[K]) {
	delete(s.m, n.key)
	s.unlink(n)
}

func (s *limitScope[K]) unlink(n *limitNode[K]) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		s.lru = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		s.mru = n.prev
	}
	n.prev, n.next = nil, nil
}

func (s *limitScope[K]) pushMRU(n *limitNode[K]) {
	n.prev = s.mru
	if s.mru != nil {
		s.mru.next = n
	} else {
		s.lru = n
	}
	s.mru = n
}

// limitClone copies a string key, so that a tracked key never pins the
// caller's larger buffer (a prefix is a slice of the number); other keys are
// values already.
func limitClone[K comparable](k K) K {
	if s, ok := any(k).(string); ok {
		return any(strings.Clone(s)).(K)
	}
	return k
}
