package status

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gonets/gonets/identity"
)

// Event is one status to post in a user's service chat.
type Event struct {
	// User is the account whose chat gets the message.
	User uint64
	// OrderID and Service name the application.
	OrderID, Service string
	// Status is the new status.
	Status Status
	// MsgID is a stable non-zero id of this (user, order, status): the
	// node posts with it as the client message id, so a re-post after a
	// crash is deduplicated by the store.
	MsgID uint64
}

// PollerOptions configures a Poller.
type PollerOptions struct {
	// Source reads the applications. Required.
	Source Source
	// KV keeps the cursors of what was posted. Required.
	KV identity.KV
	// Users calls fn for every user with a linked account, with their
	// person; it stops when fn returns false. Required for Run.
	Users func(ctx context.Context, fn func(user uint64, p Person) bool) error
	// Post writes one status as a message in the user's service chat,
	// idempotent on ev.MsgID. An error: the status is posted again at a
	// later poll. Required.
	Post func(ctx context.Context, ev Event) error
	// Interval is about how often each user is polled, and how often Run
	// lists the linked users. Default: 5 min.
	Interval time.Duration
	// Jitter spreads a user's next poll over Interval ± Jitter×Interval.
	// Default: 0.2; negative means none; at most 0.5.
	Jitter float64
	// Concurrency caps the users polled at once by Run. Default: 8.
	Concurrency int
	// Timeout bounds one user's poll: the Source call and the posts.
	// Default: 30 s.
	Timeout time.Duration
	// BackoffMax caps the wait of a user whose polls fail: Interval
	// doubled per consecutive failure, up to this. Default: 1 h.
	BackoffMax time.Duration
	// Now is the clock of the schedule; Run's waits are real timers (tests
	// run it under testing/synctest). Default: time.Now.
	Now func() time.Time
	// Log receives failed polls and listings (the user id and the error,
	// never the person). Default: slog.Default().
	Log *slog.Logger
	// Metrics receives gonets_identity_status_polls_total{result} (ok,
	// failed, forgotten: stopped by a Forget of the user),
	// …_posted_total, …_post_failures_total, …_poll_duration_seconds,
	// …_list_failures_total and the gauge …_users_scheduled. Default: a
	// private set.
	Metrics *metrics.Set
}

// Poller posts the new statuses of linked users' applications. Safe for
// concurrent use; at most one Run at a time.
type Poller struct {
	opts  PollerOptions
	locks userLocks

	pollsOK, pollsFailed, pollsForgotten, posted, postFailed, listFailed *metrics.Counter
	latency                                                              *metrics.PrometheusHistogram

	mu        sync.Mutex // guards the following
	running   bool
	sched     map[uint64]*entry
	due       schedule
	gen       uint64              // listings started
	listing   bool                // a listing is under way
	forgotten map[uint64]struct{} // users forgotten during the listing
	forgets   uint64              // Forget calls so far
	forgotAt  map[uint64]uint64   // user → forgets after their last Forget, while polls begun earlier run
	begun     map[uint64]int      // forgets when a poll's person was read → such polls in flight
}

// NewPoller validates o, fills defaults and returns a poller. Invalid
// options return ErrConfig.
func NewPoller(o PollerOptions) (*Poller, error) {
	if o.Source == nil || o.KV == nil || o.Post == nil {
		return nil, fmt.Errorf("%w: Source, KV and Post are required", ErrConfig)
	}
	if o.Interval == 0 {
		o.Interval = 5 * time.Minute
	}
	if o.Jitter == 0 {
		o.Jitter = 0.2
	} else if o.Jitter < 0 {
		o.Jitter = 0
	}
	if o.Concurrency == 0 {
		o.Concurrency = 8
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = time.Hour
	}
	if o.Interval < 0 || o.Jitter > 0.5 || o.Concurrency < 0 || o.Timeout < 0 || o.BackoffMax < 0 {
		return nil, fmt.Errorf("%w: negative interval, concurrency, timeout or backoff, or jitter over 0.5", ErrConfig)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	m := o.Metrics
	p := &Poller{
		opts:           o,
		pollsOK:        m.GetOrCreateCounter(`gonets_identity_status_polls_total{result="ok"}`),
		pollsFailed:    m.GetOrCreateCounter(`gonets_identity_status_polls_total{result="failed"}`),
		pollsForgotten: m.GetOrCreateCounter(`gonets_identity_status_polls_total{result="forgotten"}`),
		posted:         m.GetOrCreateCounter("gonets_identity_status_posted_total"),
		postFailed:     m.GetOrCreateCounter("gonets_identity_status_post_failures_total"),
		listFailed:     m.GetOrCreateCounter("gonets_identity_status_list_failures_total"),
		latency:        m.GetOrCreatePrometheusHistogram("gonets_identity_status_poll_duration_seconds"),
		sched:          make(map[uint64]*entry),
		forgotAt:       make(map[uint64]uint64),
		begun:          make(map[uint64]int),
	}
	m.GetOrCreateGauge("gonets_identity_status_users_scheduled", func() float64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return float64(len(p.sched))
	})
	return p, nil
}

// PollNow polls user now and posts what is new, returning how many
// statuses it posted (a status posted whose cursor could not be saved
// counts, with the error). The node calls it right after an account is
// linked. It waits for a poll of the same user under way. A Forget of user
// that starts before it ends stops it: it calls the Source, posts and
// writes cursors no more, and returns what it posted before, without an
// error.
func (p *Poller) PollNow(ctx context.Context, user uint64, who Person) (posted int, err error) {
	p.mu.Lock()
	since := p.forgets
	p.beginLocked(since)
	p.mu.Unlock()
	defer p.end(since)
	return p.pollCounted(ctx, user, who, since)
}

// pollCounted polls user, whose person was read when the Forget calls
// numbered since, and counts and logs the outcome. The caller has
// registered the poll (beginLocked).
func (p *Poller) pollCounted(ctx context.Context, user uint64, who Person, since uint64) (posted int, err error) {
	start := time.Now()
	posted, err = p.poll(ctx, user, who, since)
	p.latency.UpdateDuration(start)
	if errors.Is(err, errForgotten) {
		p.pollsForgotten.Inc()
		return posted, nil
	}
	if err != nil {
		p.pollsFailed.Inc()
		p.opts.Log.Warn("status: poll failed", "user", user, "posted", posted, "err", err)
		return posted, err
	}
	p.pollsOK.Inc()
	return posted, nil
}

// pending is a status to post.
type pending struct {
	app int // index in the answer
	st  Status
	d   digest
}

// errForgotten stops a poll of a user forgotten after its person was read.
var errForgotten = errors.New("status: user forgotten")

// beginLocked registers a poll whose person was read when the Forget calls
// numbered since: a later Forget of its user stops it. end unregisters it.
func (p *Poller) beginLocked(since uint64) { p.begun[since]++ }

// end unregisters a poll begun with since and drops the Forget marks no
// poll in flight is older than.
func (p *Poller) end(since uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.begun[since]--; p.begun[since] == 0 {
		delete(p.begun, since)
	}
	if len(p.forgotAt) == 0 {
		return
	}
	if len(p.begun) == 0 {
		clear(p.forgotAt)
		return
	}
	oldest := uint64(math.MaxUint64)
	for s := range p.begun {
		oldest = min(oldest, s)
	}
	maps.DeleteFunc(p.forgotAt, func(_, f uint64) bool { return f <= oldest })
}

// forgottenSince reports whether user was forgotten after the Forget calls
// numbered since.
func (p *Poller) forgottenSince(user, since uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forgotAt[user] > since
}

// poll polls user, whose person was read when the Forget calls numbered
// since; errForgotten when a Forget of user came later.
func (p *Poller) poll(ctx context.Context, user uint64, who Person, since uint64) (int, error) {
	if err := who.validate(); err != nil {
		return 0, fmt.Errorf("status: poll user %d: %w", user, err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	unlock, err := p.locks.lock(ctx, user)
	if err != nil {
		return 0, fmt.Errorf("status: poll user %d: wait for the poll under way: %w", user, err)
	}
	defer unlock()
	if p.forgottenSince(user, since) {
		return 0, errForgotten
	}
	apps, err := p.opts.Source.History(ctx, who)
	if err != nil {
		return 0, fmt.Errorf("status: poll user %d: %w", user, err)
	}
	if err := Validate(apps); err != nil {
		return 0, fmt.Errorf("status: poll user %d: %w", user, err)
	}
	cursors := make([]cursor, len(apps))
	var todo []pending
	for i, a := range apps {
		c, err := p.loadCursor(user, a.OrderID)
		if err != nil {
			return 0, fmt.Errorf("status: poll user %d: %w", user, err)
		}
		cursors[i] = c
		first := len(todo)
		for _, s := range a.Statuses {
			d := digestOf(s)
			if c.posted(d, s.At.UnixNano()) || slices.ContainsFunc(todo[first:], func(q pending) bool { return q.d == d }) {
				continue
			}
			todo = append(todo, pending{app: i, st: s, d: d})
		}
	}
	slices.SortStableFunc(todo, func(a, b pending) int { return a.st.At.Compare(b.st.At) })
	posted := 0
	for _, q := range todo {
		a := apps[q.app]
		ev := Event{User: user, OrderID: a.OrderID, Service: a.Service, Status: q.st, MsgID: msgID(user, a.OrderID, q.d)}
		// A Forget waits for the user's lock, which the poll holds: it
		// marks the user first, and the poll stops at the mark.
		if p.forgottenSince(user, since) {
			return posted, errForgotten
		}
		if err := p.opts.Post(ctx, ev); err != nil {
			p.postFailed.Inc()
			return posted, fmt.Errorf("status: post user %d order %q status %q: %w", user, a.OrderID, q.st.Code, err)
		}
		p.posted.Inc()
		posted++
		if p.forgottenSince(user, since) {
			return posted, errForgotten // the Post is out; the cursor would outlive the link
		}
		c := &cursors[q.app]
		c.add(q.d, q.st.At.UnixNano())
		if err := p.opts.KV.Set(cursorKey(user, a.OrderID), c.marshal()); err != nil {
			return posted, fmt.Errorf("status: save cursor of user %d order %q (the status is posted again, same MsgID): %w", user, a.OrderID, err)
		}
	}
	return posted, nil
}

// loadCursor reads user's cursor of orderID; a new one when none is stored.
func (p *Poller) loadCursor(user uint64, orderID string) (cursor, error) {
	b, found, err := p.opts.KV.Get(cursorKey(user, orderID))
	if err != nil {
		return cursor{}, fmt.Errorf("read cursor of order %q: %w", orderID, err)
	}
	if !found {
		return newCursor(), nil
	}
	c, err := parseCursor(b)
	if err != nil {
		return cursor{}, fmt.Errorf("order %q: %w", orderID, err)
	}
	return c, nil
}

// Forget drops user's cursors and schedule entry: the user unlinked their
// account. Polls of the user begun before it, and Run's polls whose person
// came from a listing begun before it, stop: they call the Source, post and
// write cursors no more (a Post under way is not taken back). Forget waits
// for a poll of the user under way, or until ctx ends: then it returns the
// context's error with the cursors kept (call it again), while the polls
// still stop. A user linked again later has their whole history posted
// again (with the same MsgIDs).
func (p *Poller) Forget(ctx context.Context, user uint64) error {
	p.mu.Lock()
	p.forgets++
	if len(p.begun) > 0 {
		p.forgotAt[user] = p.forgets
	}
	p.dropLocked(user)
	if p.listing {
		if p.forgotten == nil {
			p.forgotten = make(map[uint64]struct{})
		}
		p.forgotten[user] = struct{}{}
	}
	p.mu.Unlock()
	unlock, err := p.locks.lock(ctx, user)
	if err != nil {
		return fmt.Errorf("status: forget user %d: wait for the poll under way: %w", user, err)
	}
	defer unlock()
	var keys [][]byte
	err = p.opts.KV.Scan(userPrefix(user), func(key, _ []byte) (bool, error) {
		keys = append(keys, key)
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("status: forget user %d: %w", user, err)
	}
	for _, k := range keys {
		if err := p.opts.KV.Delete(k); err != nil {
			return fmt.Errorf("status: forget user %d: %w", user, err)
		}
	}
	return nil
}

// dropLocked removes user from the schedule; a poll under way is not
// rescheduled.
func (p *Poller) dropLocked(user uint64) {
	e := p.sched[user]
	if e == nil {
		return
	}
	delete(p.sched, user)
	if e.index >= 0 {
		heap.Remove(&p.due, e.index)
	} else {
		e.removed = true
	}
}

// nextAfter returns when a user is due after a poll at now that was the
// fails-th failure in a row (0: a success).
func (p *Poller) nextAfter(now time.Time, fails int) time.Time {
	d := p.opts.Interval
	for i := 0; i < fails && d < p.opts.BackoffMax; i++ {
		d *= 2
	}
	if fails > 0 {
		d = max(min(d, p.opts.BackoffMax), p.opts.Interval)
	}
	if j := p.opts.Jitter; j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*rand.Float64()-1)))
	}
	return now.Add(d)
}
