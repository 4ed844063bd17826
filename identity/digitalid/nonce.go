package digitalid

import (
	"crypto/rand"
	"sync"
	"time"
)

// NewNonce returns a fresh verifier nonce: 128 random bits, base64url.
func NewNonce() string {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	return b64.EncodeToString(b[:])
}

// NonceCache remembers the nonces verifiers have accepted, so that a
// presentation is accepted once: a nonce seen within life is refused.
//
// Its memory is bounded by max nonces. Nonces leave it oldest first once
// their life is over. When it holds max nonces that are all still live it
// refuses new ones (Use returns false) rather than forget a live one: a
// forgotten nonce would let its presentation be replayed, while a refused
// one only makes a holder present again with a new nonce. It is safe for
// concurrent use.
type NonceCache struct {
	life time.Duration
	max  int

	mu sync.Mutex // guards the following
	// seen maps each remembered nonce to the end of its life.
	seen map[string]time.Time
	// order holds the nonces in the order they were used, from head on;
	// an entry whose end no longer matches seen's is a stale duplicate.
	order []nonceEntry
	head  int
}

type nonceEntry struct {
	nonce string
	end   time.Time
}

// NewNonceCache returns a cache that remembers each nonce for life (default:
// 1 min; Verify wants at least its MaxAge + FutureSkew) and at most max
// nonces at once (default: 65536).
func NewNonceCache(life time.Duration, max int) *NonceCache {
	if life <= 0 {
		life = time.Minute
	}
	if max <= 0 {
		max = 1 << 16
	}
	return &NonceCache{life: life, max: max, seen: make(map[string]time.Time)}
}

// Use records nonce as used at now. It returns false if nonce was used
// within life before now, or if the cache is full of live nonces.
func (c *NonceCache) Use(nonce string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evictLocked(now)
	if end, ok := c.seen[nonce]; ok && end.After(now) {
		return false
	}
	if len(c.order)-c.head >= c.max {
		return false
	}
	end := now.Add(c.life)
	c.seen[nonce] = end
	c.order = append(c.order, nonceEntry{nonce: nonce, end: end})
	return true
}

// Len returns the number of nonces remembered.
func (c *NonceCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// evictLocked drops the nonces whose life ended by now, oldest first. It
// stops at the first live one; with a clock that stepped back, an ended
// nonce behind it waits for the next call, and still counts against max.
func (c *NonceCache) evictLocked(now time.Time) {
	for c.head < len(c.order) && !c.order[c.head].end.After(now) {
		e := c.order[c.head]
		if c.seen[e.nonce].Equal(e.end) {
			delete(c.seen, e.nonce)
		}
		c.order[c.head] = nonceEntry{}
		c.head++
	}
	if c.head == len(c.order) {
		c.order, c.head = c.order[:0], 0
	} else if c.head > len(c.order)/2 && c.head > 64 {
		n := copy(c.order, c.order[c.head:])
		clear(c.order[n:])
		c.order, c.head = c.order[:n], 0
	}
}
