package bench

import (
	"os"
	"sync"
	"time"
)

// rssEvery is how often a process's resident set is sampled.
const rssEvery = 100 * time.Millisecond

// rssSampler samples a process's resident set every rssEvery, from its
// start until finish.
type rssSampler struct {
	pid  string
	base int64
	hwm  bool // the kernel's high-water mark was reset at the start
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex // guards the following
	last    int64
	peak    int64
	samples int
}

// rssStats are a phase's resident set: at its start, and its peak.
type rssStats struct {
	base, peak int64
	samples    int
}

// startRSS resets pid's high-water mark (VmHWM) where the kernel lets it,
// reads its resident set and starts sampling it.
func startRSS(pid string) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.hwm = os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0) == nil
	s.base, _, _ = memory(pid)
	s.last, s.peak, s.samples = s.base, s.base, 1
	go func() {
		defer close(s.done)
		tick := time.NewTicker(rssEvery)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	rss, _, err := memory(s.pid)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.peak = rss, max(s.peak, rss)
	s.samples++
}

// now returns the latest resident set and the peak growth so far.
func (s *rssSampler) now() (last, growth int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.peak - s.base
}

// finish stops sampling and returns the phase's figures, the peak raised
// to the kernel's high-water mark when it was reset at the start.
func (s *rssSampler) finish() rssStats {
	close(s.stop)
	<-s.done
	s.sample()
	if s.hwm {
		if _, hwm, err := memory(s.pid); err == nil {
			s.mu.Lock()
			s.peak = max(s.peak, hwm)
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return rssStats{base: s.base, peak: s.peak, samples: s.samples}
}
