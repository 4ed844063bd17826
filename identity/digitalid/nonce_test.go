package digitalid

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNonceCache(t *testing.T) {
	c := NewNonceCache(30*time.Second, 3)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	f := func(nonce string, s int, want bool) {
		t.Helper()
		if got := c.Use(nonce, at(s)); got != want {
			t.Errorf("Use(%q, +%ds) = %v, want %v", nonce, s, got, want)
		}
	}
	f("a", 0, true)
	f("a", 1, false)  // replay
	f("a", 29, false) // still within life
	f("b", 10, true)
	f("c", 20, true)
	f("d", 25, false) // full of live nonces: refused, none forgotten
	f("a", 29, false) // ... so a is still refused
	f("a", 30, true)  // a's life is over: fresh again, and room made
	f("d", 31, false) // full again: a(60), b(40), c(50)
	f("b", 39, false)
	f("d", 40, true) // b's life ended
	if n := c.Len(); n != 3 {
		t.Errorf("Len = %d, want 3", n)
	}
	f("x", 100, true) // everything else ended
	if n := c.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
}

func TestNonceCacheBounded(t *testing.T) {
	c := NewNonceCache(time.Second, 100)
	for i := range 10000 {
		// One nonce every 50 ms: at most 20 live at once.
		if !c.Use(fmt.Sprint(i), t0.Add(time.Duration(i)*50*time.Millisecond)) {
			t.Fatalf("nonce %d refused", i)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seen) > 21 || cap(c.order) > 256 {
		t.Errorf("%d remembered, order cap %d", len(c.seen), cap(c.order))
	}
}

func TestNonceCacheConcurrent(t *testing.T) {
	c := NewNonceCache(time.Minute, 1<<12)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if c.Use(fmt.Sprint(i), t0.Add(time.Duration(g)*time.Millisecond)) {
					wins.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if wins.Load() != 200 {
		t.Errorf("%d nonces accepted, want each of 200 once", wins.Load())
	}
}

func TestNewNonce(t *testing.T) {
	a, b := NewNonce(), NewNonce()
	if a == b || len(a) != 22 {
		t.Errorf("nonces %q %q", a, b)
	}
	if raw, err := b64.DecodeString(a); err != nil || len(raw) != 16 {
		t.Errorf("nonce %q: %v", a, err)
	}
}
