package status_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/status"
)

// gated is a Source whose calls wait until open is closed (or their
// context ends), then answer apps. Made inside a synctest bubble, a call
// waiting is durably blocked.
type gated struct {
	open chan struct{}
	apps []status.Application

	mu    sync.Mutex // guards the following
	calls int
}

func newGated(apps ...status.Application) *gated {
	return &gated{open: make(chan struct{}), apps: apps}
}

func (g *gated) History(ctx context.Context, _ status.Person) ([]status.Application, error) {
	g.mu.Lock()
	g.calls++
	g.mu.Unlock()
	select {
	case <-g.open:
		return g.apps, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *gated) callCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

// cursorCount returns how many keys kv holds: the poller's cursors.
func cursorCount(t *testing.T, kv identity.KV) int {
	t.Helper()
	n := 0
	if err := kv.Scan(nil, func(_, _ []byte) (bool, error) { n++; return true, nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// wantMetric checks that set holds line.
func wantMetric(t *testing.T, set *metrics.Set, line string) {
	t.Helper()
	var b bytes.Buffer
	set.WritePrometheus(&b)
	if !strings.Contains(b.String(), line) {
		t.Errorf("metrics lack %q:\n%s", line, b.String())
	}
}

type pollResult struct {
	posted int
	err    error
}

// pollAsync runs PollNow in a goroutine and returns its result's channel.
func pollAsync(p *status.Poller, user uint64, who status.Person) <-chan pollResult {
	ch := make(chan pollResult, 1)
	go func() {
		n, err := p.PollNow(context.Background(), user, who)
		ch <- pollResult{n, err}
	}()
	return ch
}

// Polls of a user begun before a Forget of the user, one in the Source
// and one waiting for the user's lock, post nothing, call the Source no
// more and leave no cursor, whichever of them and the Forget gets the lock
// first.
func TestForgetStopsPollsBegunBefore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newGated(app("o1", st("a", 0), st("b", 1)))
		kv := identity.NewMemKV()
		c := &chat{}
		set := metrics.NewSet()
		p := newPoller(t, status.PollerOptions{Source: src, KV: kv, Post: c.post, Metrics: set})

		first := pollAsync(p, 7, alice)
		synctest.Wait() // in the Source, holding the lock
		second := pollAsync(p, 7, alice)
		synctest.Wait() // waiting for the lock
		forgot := make(chan error, 1)
		go func() { forgot <- p.Forget(context.Background(), 7) }()
		synctest.Wait() // the user marked; waiting for the lock
		close(src.open)
		for i, ch := range []<-chan pollResult{first, second} {
			if r := <-ch; r.posted != 0 || r.err != nil {
				t.Errorf("poll %d after Forget: posted %d, %v; want 0, nil", i, r.posted, r.err)
			}
		}
		if err := <-forgot; err != nil {
			t.Fatal(err)
		}
		if n := src.callCount(); n != 1 {
			t.Errorf("%d Source calls, want only the first poll's", n)
		}
		wantCodes(t, c)
		if n := cursorCount(t, kv); n != 0 {
			t.Errorf("%d cursors after Forget", n)
		}
		wantMetric(t, set, `gonets_identity_status_polls_total{result="forgotten"} 2`)

		// Linked again: a poll begun after the Forget posts the history.
		pollNow(t, p, 7, alice, 2)
		wantCodes(t, c, "a", "b")
	})
}

// A poll of Run's whose person came from a listing older than a Forget of
// the user, waiting for the user's lock when the Forget comes, does not
// call the Source, post or write a cursor.
func TestForgetStopsRunPollFromOlderListing(t *testing.T) {
	checkLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		src := newGated(app("o1", st("a", 0)))
		kv := identity.NewMemKV()
		c := &chat{}
		set := metrics.NewSet()
		users := newLinked(1)
		who := users.users[1]
		p := newPoller(t, status.PollerOptions{
			Source: src, KV: kv, Post: c.post, Users: users.list, Metrics: set, Interval: time.Minute, Jitter: -1, Timeout: time.Hour,
		})
		first := pollAsync(p, 1, who) // holds user 1's lock in the Source
		synctest.Wait()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(time.Minute) // user 1 falls due: Run's poll waits for the lock
		synctest.Wait()

		users.mu.Lock()
		delete(users.users, 1) // unlinked, then forgotten
		users.mu.Unlock()
		forgot := make(chan error, 1)
		go func() { forgot <- p.Forget(context.Background(), 1) }()
		synctest.Wait()
		close(src.open)
		if r := <-first; r.posted != 0 || r.err != nil {
			t.Errorf("PollNow: posted %d, %v; want 0, nil", r.posted, r.err)
		}
		if err := <-forgot; err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n := src.callCount(); n != 1 {
			t.Errorf("%d Source calls, want only PollNow's", n)
		}
		wantCodes(t, c)
		if n := cursorCount(t, kv); n != 0 {
			t.Errorf("%d cursors after Forget", n)
		}
		wantMetric(t, set, `gonets_identity_status_polls_total{result="forgotten"} 2`)
	})
}

// Forget's context bounds its wait for a poll under way; the poll still
// stops at the Forget: after the Post under way, no more posts and no
// cursor write, though Forget has returned.
func TestForgetContextBoundsTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newGated(app("o1", st("a", 0), st("b", 1), st("c", 2)))
		close(src.open)
		kv := identity.NewMemKV()
		forgot := make(chan error, 1)
		var p *status.Poller
		c := &chat{}
		c.after = func(ev status.Event) {
			if ev.Status.Code != "a" {
				return
			}
			// The user unlinks while the first status is posted; the
			// node's Forget gives up after a second.
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				forgot <- p.Forget(ctx, 7)
			}()
			time.Sleep(2 * time.Second)
		}
		p = newPoller(t, status.PollerOptions{Source: src, KV: kv, Post: c.post})
		start := time.Now()
		posted, err := p.PollNow(t.Context(), 7, alice)
		if posted != 1 || err != nil {
			t.Fatalf("poll: posted %d, %v; want the status under way, nil", posted, err)
		}
		if err := <-forgot; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Forget past its deadline: %v", err)
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Fatalf("poll took %v, want the 2 s of the post", d)
		}
		wantCodes(t, c, "a")
		if n := cursorCount(t, kv); n != 0 {
			t.Errorf("%d cursors written after Forget", n)
		}
		if err := p.Forget(t.Context(), 7); err != nil {
			t.Fatal(err)
		}
	})
}
