package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// CodeLen is the number of decimal digits in a one-time code.
const CodeLen = 6

// Errors of Codes. Each is stable (errors.Is); none tells whether a number
// has an account, since codes are issued for any well-formed number.
var (
	// ErrCodeNumber is returned by Issue for a number that is not E.164
	// ("+", then 7 to 15 digits, the first not 0). Nothing is stored.
	ErrCodeNumber = errors.New("identity: one-time code needs an E.164 number")
	// ErrWrongCode is returned by Verify for a code that does not match; the
	// error is a *WrongCodeError that says how many tries are left.
	ErrWrongCode = errors.New("identity: wrong code")
	// ErrCodeExpired is returned by Verify for a code past its validity, and
	// equally for an attempt that is unknown, already used, replaced by a
	// newer code for the same number, or evicted: ask for a new code.
	ErrCodeExpired = errors.New("identity: code expired or unknown; ask for a new one")
	// ErrTooManyTries is returned by Verify for the wrong guess that uses up
	// the attempt's last try; the code is burned and a new one is needed.
	ErrTooManyTries = errors.New("identity: too many wrong codes; ask for a new one")
	// ErrCodesConfig is returned by NewCodes for invalid options.
	ErrCodesConfig = errors.New("identity: invalid one-time code options")
)

// WrongCodeError is Verify's error for a wrong code while tries are left.
// errors.Is(err, ErrWrongCode) holds for it.
type WrongCodeError struct {
	// TriesLeft is how many more wrong codes the attempt takes before it is
	// burned; always at least 1 (the last wrong try gets ErrTooManyTries).
	TriesLeft int
}

// Error implements error.
func (e *WrongCodeError) Error() string {
	return fmt.Sprintf("%s, %d tries left", ErrWrongCode.Error(), e.TriesLeft)
}

// Unwrap makes errors.Is(err, ErrWrongCode) hold.
func (e *WrongCodeError) Unwrap() error { return ErrWrongCode }

// CodeOptions configures Codes. The zero value of every field but Secret
// means its default.
type CodeOptions struct {
	// Secret is the node's 32-byte key for the codes' HMAC-SHA256. Required;
	// it never leaves the node. Codes pending when it changes (a restart with
	// a new one) no longer verify.
	Secret []byte
	// TTL is how long a code stays valid after Issue. Default: 5 minutes.
	TTL time.Duration
	// MaxTries is how many codes Verify takes for one attempt; the
	// MaxTries-th wrong one burns it. Default: 5.
	MaxTries int
	// MaxPending caps the codes held at once, all numbers together. When it
	// is reached, Issue first drops expired codes and then evicts the oldest
	// pending one rather than refusing the new one: a flood (which the
	// Limiter bounds first) can then only delay a code issued earlier, never
	// keep an honest user from getting one, as the design's carrier-grade
	// NAT rule asks. Each pending code takes about 250 bytes, so the default
	// holds about 25 MiB at most. Default: 100,000.
	MaxPending int
}

// Defaults of CodeOptions.
const (
	DefaultCodeTTL        = 5 * time.Minute
	DefaultCodeMaxTries   = 5
	DefaultCodeMaxPending = 100_000
)

// Codes holds pending one-time codes in memory, one per number: a new Issue
// for a number replaces its pending code. Codes are stored only as
// HMAC-SHA256(Secret, attemptID || code) and compared in constant time.
// A replaced code's tries do not carry over, so guesses at a number are
// bounded by MaxTries times the codes the Limiter lets be issued for it
// (with the defaults, 15 guesses at 10^6 codes per 10 minutes).
// Expired codes are dropped lazily (by Issue when full and by Verify) and by
// Sweep, which the owner calls now and then; Codes has no goroutine. Safe
// for concurrent use.
type Codes struct {
	secret     []byte
	ttl        time.Duration
	maxTries   int
	maxPending int

	mu sync.Mutex // guards the following
	// byAttempt maps an attempt id to its pending code.
	byAttempt map[string]*codeEntry
	// byNumber maps a number to its one pending code.
	byNumber map[string]*codeEntry
	// oldest and newest end the list of pending codes in issue order, which
	// (the TTL being one for all) is also expiry order.
	oldest, newest *codeEntry
	// evicted counts pending codes dropped to make room before they expired.
	evicted uint64
}

// codeEntry is one pending code. The code itself is not kept.
type codeEntry struct {
	number    string
	attemptID string
	mac       [sha256.Size]byte
	expires   time.Time
	tries     int // wrong codes so far
	prev      *codeEntry
	next      *codeEntry
}

// NewCodes returns an empty store configured by opts.
func NewCodes(opts CodeOptions) (*Codes, error) {
	if len(opts.Secret) != 32 {
		return nil, fmt.Errorf("%w: secret is %d bytes, want 32", ErrCodesConfig, len(opts.Secret))
	}
	if opts.TTL < 0 || opts.MaxTries < 0 || opts.MaxPending < 0 {
		return nil, fmt.Errorf("%w: negative TTL, MaxTries or MaxPending", ErrCodesConfig)
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultCodeTTL
	}
	if opts.MaxTries == 0 {
		opts.MaxTries = DefaultCodeMaxTries
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = DefaultCodeMaxPending
	}
	return &Codes{
		secret:     append([]byte(nil), opts.Secret...),
		ttl:        opts.TTL,
		maxTries:   opts.MaxTries,
		maxPending: opts.MaxPending,
		byAttempt:  make(map[string]*codeEntry),
		byNumber:   make(map[string]*codeEntry),
	}, nil
}

// Issue makes a new code for number (E.164), valid until now+TTL, and
// returns it with the attempt id that Verify takes. The code goes to the
// user by SMS, the attempt id to the client that asked. A pending code for
// the same number is replaced: its attempt then gets ErrCodeExpired. Issue
// does not rate-limit; the caller asks its Limiter first.
func (c *Codes) Issue(number string, now time.Time) (code, attemptID string, err error) {
	if !isE164(number) {
		return "", "", ErrCodeNumber
	}
	code = randomCode()
	attemptID = rand.Text()
	e := &codeEntry{
		number:    number,
		attemptID: attemptID,
		mac:       c.sum(attemptID, code),
		expires:   now.Add(c.ttl),
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.byNumber[number]; ok {
		c.removeLocked(old)
	}
	if len(c.byAttempt) >= c.maxPending {
		c.sweepLocked(now)
	}
	for len(c.byAttempt) >= c.maxPending {
		c.removeLocked(c.oldest)
		c.evicted++
	}
	c.byAttempt[attemptID] = e
	c.byNumber[number] = e
	e.prev = c.newest
	if c.newest != nil {
		c.newest.next = e
	} else {
		c.oldest = e
	}
	c.newest = e
	return code, attemptID, nil
}

// Verify checks code against the attempt's pending code and, when it
// matches, uses it up and returns the number it was issued for. A wrong
// code (of any length) counts a try and returns a *WrongCodeError; the
// MaxTries-th burns the code and returns ErrTooManyTries. An expired,
// unknown, used, replaced or evicted attempt returns ErrCodeExpired.
func (c *Codes) Verify(attemptID, code string, now time.Time) (number string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byAttempt[attemptID]
	if !ok {
		return "", ErrCodeExpired
	}
	if !now.Before(e.expires) {
		c.removeLocked(e)
		return "", ErrCodeExpired
	}
	mac := c.sum(attemptID, code)
	if hmac.Equal(mac[:], e.mac[:]) {
		c.removeLocked(e)
		return e.number, nil
	}
	e.tries++
	if e.tries >= c.maxTries {
		c.removeLocked(e)
		return "", ErrTooManyTries
	}
	return "", &WrongCodeError{TriesLeft: c.maxTries - e.tries}
}

// Sweep drops the codes expired at now and returns how many it dropped.
func (c *Codes) Sweep(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sweepLocked(now)
}

// CodesStats are a Codes' gauges and counters.
type CodesStats struct {
	// Pending is the number of codes held now, expired ones not yet swept
	// included.
	Pending int
	// Evicted counts codes dropped unexpired to stay within MaxPending.
	Evicted uint64
}

// Stats returns c's gauges and counters.
func (c *Codes) Stats() CodesStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CodesStats{Pending: len(c.byAttempt), Evicted: c.evicted}
}

// sweepLocked drops expired codes from the oldest end.
func (c *Codes) sweepLocked(now time.Time) int {
	n := 0
	for c.oldest != nil && !now.Before(c.oldest.expires) {
		c.removeLocked(c.oldest)
		n++
	}
	return n
}

// removeLocked unlinks e and forgets it.
func (c *Codes) removeLocked(e *codeEntry) {
	delete(c.byAttempt, e.attemptID)
	if c.byNumber[e.number] == e {
		delete(c.byNumber, e.number)
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.newest = e.prev
	}
	e.prev, e.next = nil, nil
}

// sum is HMAC-SHA256(secret, attemptID || code). Attempt ids have one
// length, so the concatenation is unambiguous.
func (c *Codes) sum(attemptID, code string) [sha256.Size]byte {
	h := hmac.New(sha256.New, c.secret)
	h.Write([]byte(attemptID))
	h.Write([]byte(code))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// codeRange is the number of distinct codes, 10^CodeLen.
const codeRange = 1_000_000

// codeRejectAbove is the largest multiple of codeRange that fits in a
// uint32; draws at or above it are redrawn, so that every code is equally
// likely (no modulo bias).
const codeRejectAbove = (1 << 32) / codeRange * codeRange

// randomCode returns CodeLen uniformly random decimal digits from
// crypto/rand.
func randomCode() string {
	var b [4]byte
	for {
		rand.Read(b[:]) // never fails (crypto/rand's contract since Go 1.24)
		v := binary.LittleEndian.Uint32(b[:])
		if v < codeRejectAbove {
			return fmt.Sprintf("%0*d", CodeLen, v%codeRange)
		}
	}
}
