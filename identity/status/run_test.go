package status_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/status"
	"github.com/gonets/gonets/identity/status/statussim"
)

// linked is the Users list of a test, changed as it runs.
type linked struct {
	mu    sync.Mutex
	users map[uint64]status.Person
	fail  int // the next listings that fail
	lists int
}

func newLinked(n int) *linked {
	l := &linked{users: map[uint64]status.Person{}}
	for i := range n {
		l.users[uint64(i+1)] = status.Person{OID: fmt.Sprint(1000 + i + 1)}
	}
	return l
}

func (l *linked) list(ctx context.Context, fn func(uint64, status.Person) bool) error {
	l.mu.Lock()
	l.lists++
	if l.fail > 0 {
		l.fail--
		l.mu.Unlock()
		return errors.New("accounts store down")
	}
	users := make(map[uint64]status.Person, len(l.users))
	for u, p := range l.users {
		users[u] = p
	}
	l.mu.Unlock()
	for u, p := range users {
		if !fn(u, p) {
			return ctx.Err()
		}
	}
	return nil
}

// recorder is a Source that records when each person was asked, can fail
// a person's next calls, can take a while, and counts calls in flight.
type recorder struct {
	inner status.Source
	delay time.Duration

	mu       sync.Mutex // guards the following
	calls    map[string][]time.Time
	fail     map[string]int
	inflight int
	peak     int
}

func newRecorder(inner status.Source) *recorder {
	return &recorder{inner: inner, calls: map[string][]time.Time{}, fail: map[string]int{}}
}

func (r *recorder) History(ctx context.Context, p status.Person) ([]status.Application, error) {
	r.mu.Lock()
	r.calls[p.OID] = append(r.calls[p.OID], time.Now())
	r.inflight++
	r.peak = max(r.peak, r.inflight)
	fail := r.fail[p.OID] > 0
	if fail {
		r.fail[p.OID]--
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inflight--
		r.mu.Unlock()
	}()
	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail {
		return nil, fmt.Errorf("%w: down for this person", status.ErrUnavailable)
	}
	return r.inner.History(ctx, p)
}

func (r *recorder) times(oid string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls[oid])
}

// runFor runs p for d of the bubble's time, then cancels it and checks
// that Run returned nil.
func runFor(t *testing.T, p *status.Poller, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	time.Sleep(d)
	synctest.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func checkLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func TestRunPollsRepeatedly(t *testing.T) {
	checkLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		sim := statussim.New()
		users := newLinked(5)
		rec := newRecorder(sim.Source())
		c := &chat{}
		p := newPoller(t, status.PollerOptions{Source: rec, KV: identity.NewMemKV(), Post: c.post, Users: users.list, Interval: time.Minute})
		sim.Add("1001", "o1", "Паспорт", st("accepted", 0))

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if err := p.Run(ctx); !errors.Is(err, status.ErrRunning) {
			t.Errorf("a second Run: %v", err)
		}
		for oid := range 5 {
			n := len(rec.times(fmt.Sprint(1001 + oid)))
			if n < 7 || n > 13 { // about one a minute: spread over the first, then 1 min ± 20%
				t.Errorf("user %d polled %d times in 10 min", oid+1, n)
			}
		}
		// A user linked now is found by the next listing; one unlinked is
		// polled no more.
		users.mu.Lock()
		users.users[6] = status.Person{OID: "1006"}
		delete(users.users, 1)
		users.mu.Unlock()
		sim.Add("1006", "o6", "Пособие", st("sent", 1))
		time.Sleep(time.Minute) // the listing
		synctest.Wait()
		gone := len(rec.times("1001"))
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if n := len(rec.times("1001")); n != gone {
			t.Errorf("an unlinked user was polled %d more times", n-gone)
		}
		if n := len(rec.times("1006")); n < 4 {
			t.Errorf("a newly linked user was polled %d times in 6 min", n)
		}
		wantCodes(t, c, "accepted", "sent")
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

func TestRunBacksOffFailingUser(t *testing.T) {
	checkLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		sim := statussim.New()
		sim.Add("1001", "o1", "Паспорт", st("accepted", 0))
		rec := newRecorder(sim.Source())
		rec.fail["1001"] = 4
		c := &chat{}
		p := newPoller(t, status.PollerOptions{
			Source: rec, KV: identity.NewMemKV(), Post: c.post, Users: newLinked(2).list,
			Interval: time.Minute, Jitter: -1, BackoffMax: 6 * time.Minute,
		})
		runFor(t, p, 25*time.Minute)
		calls := rec.times("1001")
		var gaps []time.Duration
		for i := 1; i < len(calls) && i <= 6; i++ {
			gaps = append(gaps, calls[i].Sub(calls[i-1]))
		}
		want := []time.Duration{2 * time.Minute, 4 * time.Minute, 6 * time.Minute, 6 * time.Minute, time.Minute, time.Minute}
		if !slices.Equal(gaps, want) {
			t.Errorf("gaps between polls %v, want %v", gaps, want)
		}
		wantCodes(t, c, "accepted")
		if n := len(rec.times("1002")); n < 23 {
			t.Errorf("a healthy user was polled %d times in 25 min", n)
		}
	})
}

func TestRunConcurrencyBound(t *testing.T) {
	checkLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder(statussim.New().Source())
		rec.delay = 40 * time.Second
		p := newPoller(t, status.PollerOptions{
			Source: rec, KV: identity.NewMemKV(), Post: (&chat{}).post, Users: newLinked(30).list,
			Interval: time.Minute, Concurrency: 3,
		})
		runFor(t, p, 10*time.Minute)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.peak != 3 {
			t.Errorf("at most %d polls at once, want 3", rec.peak)
		}
		total := 0
		for _, c := range rec.calls {
			total += len(c)
		}
		if total < 40 { // 3 at a time for 40 s each: 45 in 10 min
			t.Errorf("%d polls in 10 min", total)
		}
	})
}

func TestRunRetriesFailedListing(t *testing.T) {
	checkLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		users := newLinked(1)
		users.fail = 2
		rec := newRecorder(statussim.New().Source())
		p := newPoller(t, status.PollerOptions{
			Source: rec, KV: identity.NewMemKV(), Post: (&chat{}).post, Users: users.list, Interval: 5 * time.Minute,
		})
		runFor(t, p, 2*time.Minute)
		if users.lists != 3 {
			t.Errorf("%d listings in 2 min after two failures, want 3 (retried after 30 s)", users.lists)
		}
		if len(rec.times("1001")) > 1 {
			t.Errorf("polled %d times", len(rec.times("1001")))
		}
	})
}

func TestRunForgetStopsPolls(t *testing.T) {
	checkLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder(statussim.New().Source())
		users := newLinked(2)
		p := newPoller(t, status.PollerOptions{
			Source: rec, KV: identity.NewMemKV(), Post: (&chat{}).post, Users: users.list, Interval: time.Minute, Jitter: -1,
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		users.mu.Lock()
		delete(users.users, 1)
		users.mu.Unlock()
		if err := p.Forget(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		n := len(rec.times("1001"))
		time.Sleep(59 * time.Second) // the user was due in it; the next listing is at 4 min
		synctest.Wait()
		if got := len(rec.times("1001")); got != n {
			t.Errorf("polled %d times after Forget", got-n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
