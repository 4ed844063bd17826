package status

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// listRetry caps the wait before listing the users again after a failed
// listing.
const listRetry = 30 * time.Second

// result is a poll's outcome, handed from its goroutine to Run.
type result struct {
	e   *entry
	err error
}

// Run polls every linked user about once an Interval, at most Concurrency
// at once, until ctx ends; then it waits for the polls under way, whose
// context it cancels, and returns nil. It lists the users at start and each
// Interval: a new user is due at a random time within the first Interval, a
// user no longer listed is dropped. A second Run while one runs returns
// ErrRunning.
func (p *Poller) Run(ctx context.Context) error {
	if p.opts.Users == nil {
		return fmt.Errorf("%w: Run needs Users", ErrConfig)
	}
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return ErrRunning
	}
	p.running = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.running = false
		clear(p.sched)
		p.due = nil
		p.mu.Unlock()
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	results := make(chan result, p.opts.Concurrency) // one slot per poll in flight: a poll never waits on Run
	inflight := 0
	var nextList time.Time
	for {
		if now := p.opts.Now(); !now.Before(nextList) {
			if err := p.list(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				p.listFailed.Inc()
				p.opts.Log.Warn("status: list linked users failed", "err", err)
				nextList = now.Add(min(p.opts.Interval, listRetry))
			} else {
				nextList = now.Add(p.opts.Interval)
			}
		}
		now := p.opts.Now()
		p.mu.Lock()
		for inflight < p.opts.Concurrency && len(p.due) > 0 && !p.due[0].next.After(now) {
			e := heap.Pop(&p.due).(*entry)
			p.beginLocked(e.since)
			inflight++
			wg.Add(1)
			go func(user uint64, who Person, since uint64) {
				defer wg.Done()
				_, err := p.pollCounted(ctx, user, who, since)
				p.end(since)
				results <- result{e: e, err: err}
			}(e.user, e.who, e.since)
		}
		wake := nextList
		if inflight < p.opts.Concurrency && len(p.due) > 0 && p.due[0].next.Before(wake) {
			wake = p.due[0].next
		}
		p.mu.Unlock()

		t := time.NewTimer(wake.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case r := <-results:
			t.Stop()
			inflight--
			p.finish(r)
		case <-t.C:
		}
	}
}

// finish puts a polled user back in the schedule.
func (p *Poller) finish(r result) {
	now := p.opts.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	e := r.e
	if e.removed {
		return
	}
	if r.err != nil {
		e.fails++
	} else {
		e.fails = 0
	}
	e.next = p.nextAfter(now, e.fails)
	heap.Push(&p.due, e)
}

// list adds the linked users to the schedule and, after a complete
// listing, drops those it did not name.
func (p *Poller) list(ctx context.Context) error {
	p.mu.Lock()
	p.gen++
	gen, since := p.gen, p.forgets
	p.listing = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.listing = false
		p.forgotten = nil
		p.mu.Unlock()
	}()
	now := p.opts.Now()
	err := p.opts.Users(ctx, func(user uint64, who Person) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if e := p.sched[user]; e != nil {
			e.who, e.gen, e.since = who, gen, since
		} else if _, gone := p.forgotten[user]; !gone {
			e = &entry{user: user, who: who, gen: gen, since: since, next: now.Add(rand.N(p.opts.Interval + 1))}
			p.sched[user] = e
			heap.Push(&p.due, e)
		}
		return ctx.Err() == nil
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("status: list linked users: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for user, e := range p.sched {
		if e.gen != gen {
			p.dropLocked(user)
		}
	}
	return nil
}
