package main

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gonets/gonets/bench/result"
)

// timeline samples a run once a second: the offered rate in force, the
// deliveries and their p99 in that second (from a recorder, or from a
// running count of operations), and the sessions online.
type timeline struct {
	rec *recorder
	// count, when set, is a running total of operations reported as
	// Delivered per second.
	count    *atomic.Int64
	begin    time.Time
	offered  atomic.Uint64 // float64 bits: the rate now in force
	sessions atomic.Int64

	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex // guards the following
	samples []result.Sample
}

// startTimeline samples rec or count (either may be nil) from now until
// close.
func startTimeline(rec *recorder, count *atomic.Int64) *timeline {
	tl := &timeline{rec: rec, count: count, begin: time.Now(), stop: make(chan struct{})}
	tl.wg.Add(1)
	go tl.loop()
	return tl
}

// setOffered sets the offered rate reported from now on.
func (tl *timeline) setOffered(rate float64) { tl.offered.Store(math.Float64bits(rate)) }

// setSessions sets the online sessions reported from now on.
func (tl *timeline) setSessions(n int) { tl.sessions.Store(int64(n)) }

func (tl *timeline) loop() {
	defer tl.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := tl.begin
	var lastCount int64
	for {
		select {
		case <-tl.stop:
			return
		case now := <-tick.C:
			var delivered int64
			var p99 float64
			if tl.rec != nil {
				delivered, p99 = tl.rec.second()
			}
			if tl.count != nil {
				n := tl.count.Load()
				delivered, lastCount = n-lastCount, n
			}
			secs := now.Sub(last).Seconds()
			last = now
			s := result.Sample{
				T:         math.Round(now.Sub(tl.begin).Seconds()*100) / 100,
				Offered:   math.Float64frombits(tl.offered.Load()),
				Delivered: float64(delivered) / secs,
				P99:       p99,
				Sessions:  int(tl.sessions.Load()),
			}
			tl.mu.Lock()
			tl.samples = append(tl.samples, s)
			tl.mu.Unlock()
		}
	}
}

// close stops sampling and returns the samples.
func (tl *timeline) close() []result.Sample {
	close(tl.stop)
	tl.wg.Wait()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.samples
}
