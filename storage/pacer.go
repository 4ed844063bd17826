package storage

import "time"

// syncPacer sets the committer's adaptive minimum interval between WAL
// syncs. On a virtualised disk the kernel's fdatasync is charged as CPU,
// several times what a message's own work costs (BenchmarkAppendSyncDelay:
// one appender, a sync per message, about 200–500 µs of CPU per message;
// eight appenders sharing syncs, 40–80 µs), so at moderate rates, where a
// group commit holds one or two messages, the syncs are most of the cost
// per message. Under load the pacer
// lets a group that is ready wait, until at most SyncDelayMax after the
// previous sync began, so that the messages arriving meanwhile share its
// sync.
//
// The rule follows PostgreSQL's commit_delay and commit_siblings: delay
// only when others are about to commit too. Here "others" is measured,
// not counted: rate is an average of the requests that arrived while the
// committer was busy (holding, building or syncing a group), per second
// of busy time, and a group waits only when that rate expects at least
// one more request within SyncDelayMax. Requests that arrive only once
// an ack lets them (one sender in a closed loop) never arrive while the
// committer is busy, so they never make it wait; neither does a store
// that was idle: once SyncDelayMax has passed since the previous sync
// began, a lone request is synced at once. A group stops waiting as soon
// as it holds as many requests as the previous one (the closed-loop
// senders just answered have all come back) or fills a batch, so the
// wait is usually shorter than its bound.
//
// The pacer is the committer's: it is used by one goroutine and needs no
// lock. Its methods take the time as an argument, so its tests use a
// fake clock.
type syncPacer struct {
	max  time.Duration // the bound; 0 never waits
	rate float64       // requests per second arriving while busy, averaged
	busy time.Time     // when the current group was taken; zero before the first
	sync time.Time     // when the previous group's sync began
	prev int           // the previous group's requests
}

// pacerWeight is the weight of the newest sample in the pacer's average:
// a change of load shows within a few group commits.
const pacerWeight = 0.25

// syncSiblings is how many other requests the pacer must expect within
// its bound before a group waits (PostgreSQL's commit_siblings).
const syncSiblings = 1

// idle records the end of the committer's busy period at now, during
// which arrived requests came in. It is called before the committer
// blocks for the next group.
func (p *syncPacer) idle(now time.Time, arrived int) {
	if p.busy.IsZero() {
		return
	}
	d := now.Sub(p.busy).Seconds()
	if d <= 0 {
		return
	}
	p.rate += (float64(arrived)/d - p.rate) * pacerWeight
}

// hold returns how long a group taken at now may wait for more requests,
// and the requests it waits for at most: it stops once it holds goal
// (or a batch is full). wait is 0 when the group goes at once, and never
// more than p.max.
func (p *syncPacer) hold(now time.Time) (wait time.Duration, goal int) {
	p.busy = now
	if p.max <= 0 || p.rate*p.max.Seconds() < syncSiblings {
		return 0, 0
	}
	wait = p.sync.Add(p.max).Sub(now)
	if wait <= 0 {
		return 0, 0 // the previous sync began long enough ago
	}
	return min(wait, p.max), max(p.prev, 2)
}

// synced records that a group of n requests began its sync at now.
func (p *syncPacer) synced(now time.Time, n int) {
	p.sync, p.prev = now, n
}
