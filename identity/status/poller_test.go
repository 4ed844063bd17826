package status_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/status"
	"github.com/gonets/gonets/identity/status/statussim"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// at is t0 plus min minutes.
func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

func st(code string, min int) status.Status {
	return status.Status{Code: code, Title: "title " + code, At: at(min)}
}

// chat records the events posted, and fails posts while told to.
type chat struct {
	mu     sync.Mutex // guards the following
	events []status.Event
	fail   int                   // the next posts that fail
	after  func(ev status.Event) // called after a successful post
}

func (c *chat) post(ctx context.Context, ev status.Event) error {
	c.mu.Lock()
	if c.fail > 0 {
		c.fail--
		c.mu.Unlock()
		return errors.New("broker down")
	}
	c.events = append(c.events, ev)
	after := c.after
	c.mu.Unlock()
	if after != nil {
		after(ev)
	}
	return nil
}

func (c *chat) all() []status.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// codes returns the status codes posted, in order.
func (c *chat) codes() []string {
	var out []string
	for _, ev := range c.all() {
		out = append(out, ev.Status.Code)
	}
	return out
}

func newPoller(t *testing.T, o status.PollerOptions) *status.Poller {
	t.Helper()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	p, err := status.NewPoller(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pollNow(t *testing.T, p *status.Poller, user uint64, who status.Person, want int) {
	t.Helper()
	n, err := p.PollNow(t.Context(), user, who)
	if err != nil || n != want {
		t.Fatalf("PollNow(%d): posted %d, %v; want %d", user, n, err, want)
	}
}

func wantCodes(t *testing.T, c *chat, want ...string) {
	t.Helper()
	if got := c.codes(); !slices.Equal(got, want) {
		t.Fatalf("posted %q, want %q", got, want)
	}
}

var alice = status.Person{OID: "1000001", SNILS: "112-233-445 95"}

func TestPollPostsEachStatusOnce(t *testing.T) {
	sim := statussim.New()
	sim.Add(alice.OID, "o1", "Паспорт", st("accepted", 0))
	sim.Add(alice.OID, "o2", "Пособие", st("sent", 1))
	sim.Add(alice.OID, "o1", "", st("review", 2))
	c := &chat{}
	set := metrics.NewSet()
	p := newPoller(t, status.PollerOptions{Source: sim.Source(), KV: identity.NewMemKV(), Post: c.post, Metrics: set})

	pollNow(t, p, 7, alice, 3)
	wantCodes(t, c, "accepted", "sent", "review") // time order across applications
	pollNow(t, p, 7, alice, 0)
	pollNow(t, p, 7, alice, 0)
	sim.Add(alice.OID, "o2", "", st("done", 3))
	pollNow(t, p, 7, alice, 1)
	pollNow(t, p, 7, alice, 0)
	wantCodes(t, c, "accepted", "sent", "review", "done")

	evs := c.all()
	ids := map[uint64]bool{}
	for _, ev := range evs {
		if ev.User != 7 || ev.MsgID == 0 || ids[ev.MsgID] {
			t.Fatalf("event %+v: wrong user, zero or repeated MsgID", ev)
		}
		ids[ev.MsgID] = true
	}
	if evs[1].OrderID != "o2" || evs[1].Service != "Пособие" || evs[1].Status != st("sent", 1) {
		t.Fatalf("event %+v", evs[1])
	}
	var b bytes.Buffer
	set.WritePrometheus(&b)
	for _, line := range []string{`gonets_identity_status_polls_total{result="ok"} 5`, "gonets_identity_status_posted_total 4", "gonets_identity_status_poll_duration_seconds_bucket"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, b.String())
		}
	}
}

func TestPollAfterRestartPostsNothingAgain(t *testing.T) {
	sim := statussim.New()
	sim.Add(alice.OID, "o1", "Паспорт", st("accepted", 0))
	sim.Add(alice.OID, "o1", "", st("review", 1))
	kv := identity.NewMemKV()
	c := &chat{}
	pollNow(t, newPoller(t, status.PollerOptions{Source: sim.Source(), KV: kv, Post: c.post}), 7, alice, 2)

	kv.Close()
	if _, err := newPoller(t, status.PollerOptions{Source: sim.Source(), KV: kv, Post: c.post}).PollNow(t.Context(), 7, alice); !errors.Is(err, identity.ErrKVClosed) {
		t.Fatalf("poll on a closed KV: %v", err)
	}
	kv.Reopen()
	p := newPoller(t, status.PollerOptions{Source: sim.Source(), KV: kv, Post: c.post})
	pollNow(t, p, 7, alice, 0)
	sim.Add(alice.OID, "o1", "", st("done", 2))
	pollNow(t, p, 7, alice, 1)
	wantCodes(t, c, "accepted", "review", "done")
}

// failingKV fails Set while failSet is on.
type failingKV struct {
	identity.KV
	mu      sync.Mutex
	failSet bool
}

func (k *failingKV) Set(key, value []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failSet {
		return errors.New("disk full")
	}
	return k.KV.Set(key, value)
}

func TestCursorSaveFailureRepostsWithSameMsgID(t *testing.T) {
	sim := statussim.New()
	sim.Add(alice.OID, "o1", "Паспорт", st("accepted", 0))
	sim.Add(alice.OID, "o1", "", st("review", 1))
	kv := &failingKV{KV: identity.NewMemKV(), failSet: true}
	c := &chat{}
	p := newPoller(t, status.PollerOptions{Source: sim.Source(), KV: kv, Post: c.post})

	n, err := p.PollNow(t.Context(), 7, alice)
	if err == nil || n != 1 {
		t.Fatalf("poll with a failing KV: posted %d, %v; want 1 and an error", n, err)
	}
	kv.failSet = false
	pollNow(t, p, 7, alice, 2)
	pollNow(t, p, 7, alice, 0)
	evs := c.all()
	wantCodes(t, c, "accepted", "accepted", "review")
	if evs[0] != evs[1] {
		t.Fatalf("re-post differs: %+v then %+v", evs[0], evs[1])
	}
}

// TestKilledAfterPostRepostsWithSameMsgID: the node dies right after a Post
// (its store closes before the cursor is saved); a new poller after the
// restart posts that status again with the same MsgID, then the rest.
func TestKilledAfterPostRepostsWithSameMsgID(t *testing.T) {
	sim := statussim.New()
	sim.Add(alice.OID, "o1", "Паспорт", st("accepted", 0))
	sim.Add(alice.OID, "o2", "Пособие", st("sent", 1))
	kv := identity.NewMemKV()
	c := &chat{}
	c.after = func(status.Event) { kv.Close() }
	if _, err := newPoller(t, status.PollerOptions{Source: sim.Source(), KV: kv, Post: c.post}).PollNow(t.Context(), 7, alice); !errors.Is(err, identity.ErrKVClosed) {
		t.Fatalf("killed poll: %v", err)
	}
	c.after = nil
	kv.Reopen()
	p := newPoller(t, status.PollerOptions{Source: sim.Source(), KV: kv, Post: c.post})
	pollNow(t, p, 7, alice, 2)
	pollNow(t, p, 7, alice, 0)
	evs := c.all()
	wantCodes(t, c, "accepted", "accepted", "sent")
	if evs[0].MsgID != evs[1].MsgID {
		t.Fatal("the re-post has another MsgID")
	}
}

func TestPostFailureRetriesInOrder(t *testing.T) {
	sim := statussim.New()
	sim.Add(alice.OID, "o1", "Паспорт", st("accepted", 0))
	sim.Add(alice.OID, "o1", "", st("review", 1))
	sim.Add(alice.OID, "o1", "", st("done", 2))
	c := &chat{}
	p := newPoller(t, status.PollerOptions{Source: sim.Source(), KV: identity.NewMemKV(), Post: c.post})
	pollNow(t, p, 7, alice, 3)
	c.events = nil

	sim.Add(alice.OID, "o1", "", st("appeal", 3))
	sim.Add(alice.OID, "o1", "", st("appeal-done", 4))
	c.fail = 1
	if n, err := p.PollNow(t.Context(), 7, alice); err == nil || n != 0 {
		t.Fatalf("poll with a failing Post: %d, %v", n, err)
	}
	pollNow(t, p, 7, alice, 2)
	wantCodes(t, c, "appeal", "appeal-done")
}

// scripted is a Source answering from a list that the test changes.
type scripted struct {
	mu   sync.Mutex
	apps []status.Application
	err  error
}

func (s *scripted) set(apps ...status.Application) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps = apps
}

func (s *scripted) History(context.Context, status.Person) ([]status.Application, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.apps), s.err
}

func app(order string, sts ...status.Status) status.Application {
	return status.Application{OrderID: order, Service: "svc", Statuses: sts}
}

func TestReorderedAndResentHistory(t *testing.T) {
	src := &scripted{}
	c := &chat{}
	p := newPoller(t, status.PollerOptions{Source: src, KV: identity.NewMemKV(), Post: c.post})

	src.set(app("o1", st("a", 0), st("b", 5)))
	pollNow(t, p, 7, alice, 2)
	// Reversed, with an old status sent twice more and the applications
	// in another order: nothing new.
	src.set(app("o2"), app("o1", st("b", 5), st("a", 0), st("a", 0)))
	pollNow(t, p, 7, alice, 0)
	// A new status placed before the others, one dated between them in
	// another application, and a duplicate within the answer: posted once
	// each, in time order.
	src.set(app("o1", st("b", 5), st("late-report", 1), st("a", 0)), app("o2", st("x", 3), st("x", 3)))
	pollNow(t, p, 7, alice, 2)
	wantCodes(t, c, "a", "b", "late-report", "x")
	// A corrected title is a new status; the same code in another
	// application is too.
	fixed := st("b", 5)
	fixed.Title = "corrected"
	src.set(app("o1", st("a", 0), fixed, st("late-report", 1)), app("o2", st("x", 3), st("a", 0)))
	pollNow(t, p, 7, alice, 2)
	wantCodes(t, c, "a", "b", "late-report", "x", "a", "b")
}

func TestInvalidHistoryPostsNothing(t *testing.T) {
	src := &scripted{}
	c := &chat{}
	p := newPoller(t, status.PollerOptions{Source: src, KV: identity.NewMemKV(), Post: c.post})
	src.set(app("o1", st("a", 0)), app("o1", st("b", 1)))
	if _, err := p.PollNow(t.Context(), 7, alice); !errors.Is(err, status.ErrInvalidResponse) {
		t.Fatalf("repeated order: %v", err)
	}
	if _, err := p.PollNow(t.Context(), 7, status.Person{}); !errors.Is(err, status.ErrInvalidPerson) {
		t.Fatalf("no OID: %v", err)
	}
	wantCodes(t, c)
}

func TestForget(t *testing.T) {
	sim := statussim.New()
	bob := status.Person{OID: "2000002"}
	sim.Add(alice.OID, "o1", "Паспорт", st("accepted", 0))
	sim.Add(alice.OID, "o2", "Пособие", st("sent", 1))
	sim.Add(bob.OID, "o3", "Паспорт", st("accepted", 0))
	kv := identity.NewMemKV()
	c := &chat{}
	p := newPoller(t, status.PollerOptions{Source: sim.Source(), KV: kv, Post: c.post})
	pollNow(t, p, 7, alice, 2)
	pollNow(t, p, 8, bob, 1)
	keys := func() int {
		n := 0
		kv.Scan(nil, func(_, _ []byte) (bool, error) { n++; return true, nil })
		return n
	}
	if keys() != 3 {
		t.Fatalf("%d cursors, want 3", keys())
	}
	if err := p.Forget(t.Context(), 7); err != nil {
		t.Fatal(err)
	}
	if keys() != 1 {
		t.Fatalf("%d cursors after Forget, want bob's 1", keys())
	}
	pollNow(t, p, 8, bob, 0)
	before := c.all()
	pollNow(t, p, 7, alice, 2) // linked again: the history again, same ids
	after := c.all()[len(before):]
	if after[0] != before[0] || after[1] != before[1] {
		t.Fatalf("after Forget posted %+v, want %+v", after, before[:2])
	}
	if err := p.Forget(t.Context(), 99); err != nil {
		t.Fatalf("Forget of an unknown user: %v", err)
	}
}

func TestNewPollerOptions(t *testing.T) {
	ok := status.PollerOptions{Source: statussim.New().Source(), KV: identity.NewMemKV(), Post: (&chat{}).post}
	for name, mod := range map[string]func(o *status.PollerOptions){
		"no source":         func(o *status.PollerOptions) { o.Source = nil },
		"no kv":             func(o *status.PollerOptions) { o.KV = nil },
		"no post":           func(o *status.PollerOptions) { o.Post = nil },
		"negative interval": func(o *status.PollerOptions) { o.Interval = -1 },
		"jitter over 0.5":   func(o *status.PollerOptions) { o.Jitter = 0.6 },
	} {
		o := ok
		mod(&o)
		if _, err := status.NewPoller(o); !errors.Is(err, status.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	p := newPoller(t, ok)
	if err := p.Run(t.Context()); !errors.Is(err, status.ErrConfig) {
		t.Errorf("Run without Users: %v", err)
	}
}

func TestPollTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stuck := sourceFunc(func(ctx context.Context, _ status.Person) ([]status.Application, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		p := newPoller(t, status.PollerOptions{Source: stuck, KV: identity.NewMemKV(), Post: (&chat{}).post, Timeout: 30 * time.Second})
		start := time.Now()
		if _, err := p.PollNow(t.Context(), 7, alice); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("stuck source: %v", err)
		}
		if d := time.Since(start); d != 30*time.Second {
			t.Fatalf("gave up after %v, want the 30 s Timeout", d)
		}
	})
}

type sourceFunc func(context.Context, status.Person) ([]status.Application, error)

func (f sourceFunc) History(ctx context.Context, p status.Person) ([]status.Application, error) {
	return f(ctx, p)
}

// BenchmarkPollUnchanged is the cost of one user's poll that finds
// nothing new: 50 applications of 10 statuses, each checked against its
// cursor.
func BenchmarkPollUnchanged(b *testing.B) {
	src := &scripted{}
	var apps []status.Application
	for i := range 50 {
		a := app(fmt.Sprint("order-", i))
		for j := range 10 {
			a.Statuses = append(a.Statuses, st(fmt.Sprint("code-", j), i*10+j))
		}
		apps = append(apps, a)
	}
	src.set(apps...)
	p, err := status.NewPoller(status.PollerOptions{Source: src, KV: identity.NewMemKV(), Post: (&chat{}).post, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	if n, err := p.PollNow(b.Context(), 7, alice); n != 500 || err != nil {
		b.Fatal(n, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if n, err := p.PollNow(b.Context(), 7, alice); n != 0 || err != nil {
			b.Fatal(n, err)
		}
	}
}
