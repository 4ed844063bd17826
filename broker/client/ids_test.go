package client

import (
	"sync"
	"testing"
	"time"
)

func TestIDGenRisesAndIsUnique(t *testing.T) {
	now := time.UnixMicro(1_000_000)
	g := idGen{now: func() time.Time { return now }}
	a, b := g.next(), g.next()
	if a != 1_000_000 || b != 1_000_001 {
		t.Fatalf("stuck clock: ids %d, %d; want 1000000, 1000001", a, b)
	}
	now = time.UnixMicro(5_000_000)
	if c := g.next(); c != 5_000_000 {
		t.Fatalf("clock moved on: id %d, want 5000000", c)
	}
	now = time.UnixMicro(2_000_000) // the clock steps back
	if d := g.next(); d != 5_000_001 {
		t.Fatalf("clock stepped back: id %d, want 5000001", d)
	}
}

func TestIDGenConcurrent(t *testing.T) {
	g := idGen{now: time.Now}
	const workers, each = 8, 1000
	ids := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				ids[w] = append(ids[w], g.next())
			}
		})
	}
	wg.Wait()
	seen := make(map[uint64]bool, workers*each)
	for _, ws := range ids {
		for i, id := range ws {
			if seen[id] {
				t.Fatalf("id %d handed out twice", id)
			}
			seen[id] = true
			if i > 0 && id <= ws[i-1] {
				t.Fatalf("ids of one goroutine fell: %d after %d", id, ws[i-1])
			}
		}
	}
}
