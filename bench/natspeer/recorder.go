package main

import (
	"sync"
	"sync/atomic"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gonets/gonets/bench/result"
)

// maxMicros is the largest latency a histogram holds (result.NewHistogram's
// bound); larger values are recorded as this.
const maxMicros = int64(5 * 60 * 1e6)

// recordMicros records a duration in nanoseconds into a histogram of
// microseconds, clamped to the histogram's range.
func recordMicros(h *hdrhistogram.Histogram, ns int64) {
	us := min(max(ns/1000, 1), maxMicros)
	_ = h.RecordValue(us) // in range by construction
}

// recorder counts deliveries and acks, per connection, of the messages
// whose scheduled send time falls in the current window, and keeps a
// per-second view of everything for the timeline.
type recorder struct {
	// from and to bound the window of scheduled times (UnixNano, [from, to)).
	from, to atomic.Int64
	shards   []*shard
}

// recorderShards is how many shards a recorder has: connections share
// them in turn, so that thousands of connections do not each carry
// histograms that the sampler merges every second.
const recorderShards = 8

// newRecorder returns a recorder with recorderShards shards.
func newRecorder() *recorder {
	r := &recorder{}
	for range recorderShards {
		r.shards = append(r.shards, &shard{
			lat:    result.NewHistogram(),
			ack:    result.NewHistogram(),
			latSec: result.NewHistogram(),
		})
	}
	return r
}

// shardFor returns the shard of the i-th connection.
func (r *recorder) shardFor(i int) *shard { return r.shards[i%len(r.shards)] }

// shard is a share of a recorder for the connections assigned to it:
// their receivers and JetStream ack goroutines write it; the sampler and
// the phase's owner read and reset it.
type shard struct {
	mu           sync.Mutex              // guards the following
	lat          *hdrhistogram.Histogram // deliveries in the window
	ack          *hdrhistogram.Histogram // acks in the window
	latSec       *hdrhistogram.Histogram // every delivery this second
	delivered    int64                   // in the window
	acked        int64                   // in the window
	ackErrs      int64                   // in the window
	deliveredSec int64                   // every delivery this second
	// deliveredAll and ackedAll count every delivery and ack of the run,
	// for the node's cost over a window of receive times.
	deliveredAll, ackedAll int64
}

// setWindow starts counting messages scheduled in [from, to).
func (r *recorder) setWindow(from, to int64) {
	r.from.Store(from)
	r.to.Store(to)
}

// inWindow reports whether a message scheduled at at is counted.
func (r *recorder) inWindow(at int64) bool {
	return at >= r.from.Load() && at < r.to.Load()
}

// deliveryLocked records a message scheduled at at and received at now;
// s.mu is held.
func (r *recorder) deliveryLocked(s *shard, at, now int64) {
	recordMicros(s.latSec, now-at)
	s.deliveredSec++
	s.deliveredAll++
	if r.inWindow(at) {
		recordMicros(s.lat, now-at)
		s.delivered++
	}
}

// acknowledged records the ack (err == false) or the failure of a publish
// scheduled at at.
func (r *recorder) acknowledged(s *shard, at, now int64, failed bool) {
	if !r.inWindow(at) {
		if !failed {
			s.mu.Lock()
			s.ackedAll++
			s.mu.Unlock()
		}
		return
	}
	s.mu.Lock()
	if !failed {
		s.ackedAll++
	}
	if failed {
		s.ackErrs++
	} else {
		recordMicros(s.ack, now-at)
		s.acked++
	}
	s.mu.Unlock()
}

// tally is a window's counts summed over the shards.
type tally struct {
	delivered, acked, ackErrs int64
	lat, ack                  *hdrhistogram.Histogram
}

// counts sums the window's counters without resetting them.
func (r *recorder) counts() (delivered, acked, ackErrs int64) {
	for _, s := range r.shards {
		s.mu.Lock()
		delivered += s.delivered
		acked += s.acked
		ackErrs += s.ackErrs
		s.mu.Unlock()
	}
	return delivered, acked, ackErrs
}

// totals returns the deliveries and acks of the whole run so far.
func (r *recorder) totals() (delivered, acked int64) {
	for _, s := range r.shards {
		s.mu.Lock()
		delivered += s.deliveredAll
		acked += s.ackedAll
		s.mu.Unlock()
	}
	return delivered, acked
}

// take sums the window's counts and resets them for the next window.
func (r *recorder) take() tally {
	t := tally{lat: result.NewHistogram(), ack: result.NewHistogram()}
	for _, s := range r.shards {
		s.mu.Lock()
		t.lat.Merge(s.lat)
		t.ack.Merge(s.ack)
		t.delivered += s.delivered
		t.acked += s.acked
		t.ackErrs += s.ackErrs
		s.lat.Reset()
		s.ack.Reset()
		s.delivered, s.acked, s.ackErrs = 0, 0, 0
		s.mu.Unlock()
	}
	return t
}

// second returns the deliveries and their p99 (ms) since the last call.
func (r *recorder) second() (delivered int64, p99 float64) {
	h := result.NewHistogram()
	for _, s := range r.shards {
		s.mu.Lock()
		h.Merge(s.latSec)
		delivered += s.deliveredSec
		s.latSec.Reset()
		s.deliveredSec = 0
		s.mu.Unlock()
	}
	return delivered, float64(h.ValueAtQuantile(99)) / 1000
}
