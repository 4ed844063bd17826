package client

import (
	"testing"
	"time"
)

func TestBackoffCeilings(t *testing.T) {
	top := func(n int64) int64 { return n - 1 } // the highest draw
	b := backoff{min: 100 * time.Millisecond, max: 10 * time.Second, rand: top}
	f := func(attempt int, want time.Duration) {
		t.Helper()
		if got := b.delay(attempt); got != want {
			t.Fatalf("delay(%d) = %v, want %v", attempt, got, want)
		}
	}
	f(0, 100*time.Millisecond)
	f(1, 200*time.Millisecond)
	f(3, 800*time.Millisecond)
	f(6, 6400*time.Millisecond)
	f(7, 10*time.Second)
	f(1000, 10*time.Second) // no overflow
	b.rand = func(int64) int64 { return 0 }
	f(5, 0) // full jitter reaches down to zero
}

func TestBackoffDrawsUniformly(t *testing.T) {
	var asked int64
	b := backoff{min: time.Second, max: time.Minute, rand: func(n int64) int64 { asked = n; return n / 2 }}
	if got := b.delay(2); got != 2*time.Second || asked != int64(4*time.Second)+1 {
		t.Fatalf("delay(2) = %v drawn from [0, %v); want 2s from [0, 4s]", got, time.Duration(asked))
	}
}
