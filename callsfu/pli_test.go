package callsfu

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPLIThrottle(t *testing.T) {
	th := newPLIThrottle(time.Second)
	ms := int64(time.Millisecond)
	for _, c := range []struct {
		layer int
		at    int64
		want  bool
	}{
		{0, -5000 * ms, true}, // the first request always goes, whatever the clock
		{0, -4500 * ms, false},
		{1, -4500 * ms, true}, // each layer its own
		{0, -4001 * ms, false},
		{0, -4000 * ms, true},
		{0, -4200 * ms, false}, // a clock that went back
		{2, 0, true},
		{2, 999 * ms, false},
		{2, 1000 * ms, true},
	} {
		if got := th.allow(c.layer, c.at); got != c.want {
			t.Errorf("allow(%d, %d ms) = %v, want %v", c.layer, c.at/ms, got, c.want)
		}
	}
}

func TestPLIThrottleRace(t *testing.T) {
	th := newPLIThrottle(time.Second)
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if th.allow(1, 42) {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 1 {
		t.Errorf("%d requests allowed at once, want 1", n)
	}
}
