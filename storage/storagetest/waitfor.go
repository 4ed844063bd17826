package storagetest

import (
	"testing"
	"time"
)

// WaitLimit is how long WaitFor waits before it fails the test: long
// enough for a loaded CI machine, short enough to report a hang.
const WaitLimit = 15 * time.Second

// WaitFor polls cond, backing off from 1 ms to 50 ms, until it holds; if
// it does not within WaitLimit it fails the test, saying what it waited
// for. It is the one polling helper of the repository's tests, for
// waiting on what another goroutine or process does.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitLimit)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", WaitLimit, what)
		}
		time.Sleep(wait)
	}
}
