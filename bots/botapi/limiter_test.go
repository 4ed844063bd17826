package botapi

import (
	"testing"
	"time"
)

// TestLimitersBounded checks that idle buckets are dropped and the map
// never holds more than its cap.
func TestLimitersBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiters(10, 10, 100)
	for bot := range int64(1000) {
		if ok, _ := l.allow(bot+1, now); !ok {
			t.Fatalf("bot %d refused its first request", bot+1)
		}
		if n := l.size(); n > 100 {
			t.Fatalf("%d buckets kept, cap 100", n)
		}
	}
	// A bucket idle past its fill time is dropped at the next sweep and
	// a fresh one is the same.
	now = now.Add(2 * time.Minute)
	l.allow(5000, now)
	if n := l.size(); n != 1 {
		t.Errorf("%d buckets after everyone idled, want 1", n)
	}
}

// TestLimiterSpent checks that a refused request takes no token.
func TestLimiterSpent(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiters(1, 1, 10)
	if ok, _ := l.allow(1, now); !ok {
		t.Fatal("first refused")
	}
	for range 5 {
		if ok, wait := l.allow(1, now); ok || wait != time.Second {
			t.Fatalf("allowed %v, wait %s; want refused, 1s", ok, wait)
		}
	}
	if ok, _ := l.allow(1, now.Add(time.Second)); !ok {
		t.Error("refused after the bucket refilled: refusals took tokens")
	}
}

func TestRetryAfter(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, 30 * time.Second: 30} {
		if got := retryAfter(d); got != want {
			t.Errorf("retryAfter(%s) = %d, want %d", d, got, want)
		}
	}
}
