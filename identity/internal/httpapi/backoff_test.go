package httpapi

import (
	"context"
	"errors"
	"math"
	"testing"
	"testing/synctest"
	"time"
)

func TestBackoff(t *testing.T) {
	f := func(base, limit time.Duration, attempt int, want time.Duration) {
		t.Helper()
		if got := Backoff(base, limit, attempt); got != want {
			t.Errorf("Backoff(%v, %v, %d) = %v, want %v", base, limit, attempt, got, want)
		}
	}
	ms := time.Millisecond
	f(200*ms, 5*time.Second, 0, 200*ms)
	f(200*ms, 5*time.Second, 1, 400*ms)
	f(200*ms, 5*time.Second, 4, 3200*ms)
	f(200*ms, 5*time.Second, 5, 5*time.Second)
	f(200*ms, 5*time.Second, 1000, 5*time.Second)
	f(3, 7, 1, 6) // an odd limit: 6 < 7 doubles once more, then the cap
	f(3, 7, 2, 7)
	f(0, time.Second, 10, 0)
	f(time.Second, math.MaxInt64, 1, 2*time.Second)
	f(math.MaxInt64/2+1, math.MaxInt64, 1, math.MaxInt64) // no overflow
	f(math.MaxInt64/2+1, math.MaxInt64, 100, math.MaxInt64)
}

func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{0, 1} {
		if got := Jitter(d); got != d {
			t.Errorf("Jitter(%v) = %v", d, got)
		}
	}
	d := 100 * time.Millisecond
	seen := map[time.Duration]bool{}
	for range 1000 {
		got := Jitter(d)
		if got < d/2 || got > d {
			t.Fatalf("Jitter(%v) = %v, want in [%v, %v]", d, got, d/2, d)
		}
		seen[got] = true
	}
	if len(seen) < 10 {
		t.Errorf("Jitter(%v) took %d values in 1000 draws", d, len(seen))
	}
}

func TestDelay(t *testing.T) {
	ms := time.Millisecond
	for range 100 {
		if d := Delay(100*ms, time.Second, 2, 0); d < 200*ms || d > 400*ms {
			t.Fatalf("Delay without Retry-After = %v, want in [200ms, 400ms]", d)
		}
		if d := Delay(100*ms, time.Second, 0, 700*ms); d != 700*ms {
			t.Fatalf("Delay with a longer Retry-After = %v, want 700ms", d)
		}
		if d := Delay(100*ms, time.Second, 0, time.Hour); d != time.Second {
			t.Fatalf("Delay with Retry-After past the cap = %v, want 1s", d)
		}
		if d := Delay(100*ms, time.Second, 3, time.Millisecond); d < 400*ms || d > 800*ms {
			t.Fatalf("Delay with a shorter Retry-After = %v, want the backoff in [400ms, 800ms]", d)
		}
	}
}

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := Sleep(t.Context(), 3*time.Second); err != nil || time.Since(start) != 3*time.Second {
			t.Errorf("Sleep: %v after %v", err, time.Since(start))
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start = time.Now()
		if err := Sleep(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
			t.Errorf("Sleep past the deadline: %v after %v", err, time.Since(start))
		}
	})
}

func TestFitsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		if !FitsDeadline(t.Context(), time.Hour) {
			t.Error("no deadline: does not fit")
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if !FitsDeadline(ctx, time.Second) || FitsDeadline(ctx, time.Second+1) {
			t.Error("1 s deadline: wrong fit at 1 s or just past it")
		}
	})
}
