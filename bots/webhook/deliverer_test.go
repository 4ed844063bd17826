package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/identity"
)

func TestNewOptions(t *testing.T) {
	store := newTestStore(t, identity.NewMemKV())
	for _, o := range []Options{
		{Source: newFakeSource()},
		{Store: store},
		{Store: store, Source: newFakeSource(), GiveUpAfter: -1},
	} {
		if _, err := New(o); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", o, err)
		}
	}
}

func TestDeliverInOrder(t *testing.T) {
	h := newHook(t, nil)
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	const secret = "s3cr3t_-Tok"
	if err := store.Add(context.Background(), 1, h.srv.URL+"/webhook/x", secret, nil); err != nil {
		t.Fatal(err)
	}
	src.push(1, msgs(1, 150)...) // two batches
	d, _ := runDeliverer(t, testOptions(store, src, h))
	if !d.Active(1) || d.Active(2) {
		t.Fatal("Active is wrong")
	}
	waitFor(t, "150 updates", func() bool { return len(h.received()) >= 150 })
	want := make([]int64, 150)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if got := h.received(); !slices.Equal(got, want) {
		t.Fatalf("received %v", got)
	}
	h.mu.Lock()
	for i := range h.secrets {
		if h.secrets[i] != secret || h.ctypes[i] != "application/json" {
			t.Fatalf("delivery %d: secret %q, content type %q", i, h.secrets[i], h.ctypes[i])
		}
	}
	h.mu.Unlock()
	// Both batches are acknowledged once delivered.
	waitFor(t, "the acknowledgement", func() bool { return src.ackedTo(1) == 151 })
	if s := d.Stats(); s.Delivered != 150 || s.Failed != 0 || s.GivenUp != 0 {
		t.Fatalf("Stats = %+v", s)
	}
	// More updates go on the same way.
	src.push(1, msgs(151, 152)...)
	waitFor(t, "2 more", func() bool { return len(h.received()) == 152 })
}

func TestRetryThenSuccess(t *testing.T) {
	h := newHook(t, func(u botapi.Update, attempt int) int {
		if attempt <= 3 {
			return http.StatusInternalServerError
		}
		return 0
	})
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	src.push(1, msgs(1, 3)...)
	d, _ := runDeliverer(t, testOptions(store, src, h))
	// The hook records an update before the deliverer has its answer.
	waitFor(t, "3 updates", func() bool { return len(h.received()) == 3 && d.Stats().Delivered == 3 })
	if got := h.received(); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("received %v", got)
	}
	if s := d.Stats(); s.Delivered != 3 || s.Failed != 3 || s.GivenUp != 0 {
		t.Fatalf("Stats = %+v", s)
	}
}

func TestGiveUp(t *testing.T) {
	h := newHook(t, func(u botapi.Update, _ int) int {
		if u.Timestamp == 2 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	// A clock that moves a minute per reading: update 2 is given up
	// after its sixth failure.
	var clock atomic.Int64
	o := testOptions(store, src, h)
	o.GiveUpAfter = 5 * time.Minute
	o.Now = func() time.Time { return time.Unix(clock.Add(60), 0) }
	src.push(1, msgs(1, 3)...)
	d, _ := runDeliverer(t, o)
	waitFor(t, "updates 1 and 3", func() bool { return len(h.received()) == 2 && d.Stats().Delivered == 2 })
	if got := h.received(); !slices.Equal(got, []int64{1, 3}) {
		t.Fatalf("received %v", got)
	}
	if s := d.Stats(); s.Delivered != 2 || s.GivenUp != 1 || s.Failed != 5 {
		t.Fatalf("Stats = %+v, want 2 delivered, 5 failed, 1 given up", s)
	}
	waitFor(t, "the acknowledgement", func() bool { return src.ackedTo(1) == 4 })
}

func TestRetryAfterIsCapped(t *testing.T) {
	h := newHookServer(t, true, func(u botapi.Update, attempt int) int {
		if attempt == 1 {
			return http.StatusTooManyRequests
		}
		return 0
	}, func(next http.Handler) http.Handler { return withHeader(next, "Retry-After", "3600") })
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	src.push(1, msgs(1, 1)...)
	runDeliverer(t, testOptions(store, src, h)) // MaxBackoff 5 ms
	waitFor(t, "the retry", func() bool { return len(h.received()) == 1 })
}

func withHeader(next http.Handler, k, v string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(k, v)
		next.ServeHTTP(w, r)
	})
}

func TestRedirectNotFollowed(t *testing.T) {
	target := newHook(t, nil)
	redirector := newHookServer(t, true, nil, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(noWrite{w}, r) // counts the attempt
			http.Redirect(w, r, target.srv.URL, http.StatusTemporaryRedirect)
		})
	})
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	if err := store.Add(context.Background(), 1, redirector.srv.URL+"/webhook/pathsecret", "", nil); err != nil {
		t.Fatal(err)
	}
	var log logBuffer
	o := testOptions(store, src, target, redirector)
	o.GiveUpAfter = 20 * time.Millisecond
	o.Log = slog.New(slog.NewTextHandler(&log, nil))
	src.push(1, msgs(1, 1)...)
	d, _ := runDeliverer(t, o)
	waitFor(t, "the give-up", func() bool { return d.Stats().GivenUp == 1 })
	if target.tries() != 0 || redirector.tries() == 0 {
		t.Fatalf("target got %d requests, redirector %d", target.tries(), redirector.tries())
	}
	if !strings.Contains(log.String(), "redirect") || strings.Contains(log.String(), "pathsecret") {
		t.Fatalf("log does not say why, or names the URL's path:\n%s", log.String())
	}
}

func TestTypeFilter(t *testing.T) {
	a, b, c := newHook(t, nil), newHook(t, nil), newHook(t, nil)
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	ctx := context.Background()
	for _, s := range []struct {
		h      *hook
		secret string
		types  []string
	}{
		{a, "sa", []string{"message_created"}},
		{b, "", nil},
		{c, "sc", []string{"bot_started", "message_edited"}},
	} {
		if err := store.Add(ctx, 1, s.h.srv.URL, s.secret, s.types); err != nil {
			t.Fatal(err)
		}
	}
	src.push(1, upd(1, "message_created"), upd(2, "bot_started"), upd(3, "message_edited"),
		upd(4, "message_created"), upd(5, "user_added"))
	runDeliverer(t, testOptions(store, src, a, b, c))
	waitFor(t, "all deliveries", func() bool {
		return len(a.received()) == 2 && len(b.received()) == 5 && len(c.received()) == 2
	})
	for _, w := range []struct {
		h      *hook
		ids    []int64
		secret string
	}{{a, []int64{1, 4}, "sa"}, {b, []int64{1, 2, 3, 4, 5}, ""}, {c, []int64{2, 3}, "sc"}} {
		if got := w.h.received(); !slices.Equal(got, w.ids) {
			t.Errorf("received %v, want %v", got, w.ids)
		}
		w.h.mu.Lock()
		for _, s := range w.h.secrets {
			if s != w.secret {
				t.Errorf("secret header %q, want %q", s, w.secret)
			}
		}
		w.h.mu.Unlock()
	}
	waitFor(t, "the acknowledgement", func() bool { return src.ackedTo(1) == 6 })
}

func TestPrivateRefusedAtDial(t *testing.T) {
	h := newHook(t, nil)
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource() // the store allows it
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	var log logBuffer
	o := testOptions(store, src, h)
	o.AllowPrivate = false
	o.GiveUpAfter = 20 * time.Millisecond
	o.Log = slog.New(slog.NewTextHandler(&log, nil))
	src.push(1, msgs(1, 1)...)
	d, _ := runDeliverer(t, o)
	waitFor(t, "the give-up", func() bool { return d.Stats().GivenUp == 1 })
	if h.tries() != 0 || d.Stats().Failed == 0 {
		t.Fatalf("hook got %d requests; stats %+v", h.tries(), d.Stats())
	}
	if !strings.Contains(log.String(), "loopback address 127.0.0.1") {
		t.Fatalf("log does not say why:\n%s", log.String())
	}
}

func TestHTTP(t *testing.T) {
	h := newHookServer(t, false, nil, nil)
	strict := newTestStore(t, identity.NewMemKV())
	if err := strict.Add(context.Background(), 1, h.srv.URL, "", nil); !errors.Is(err, botapi.ErrWebhookURL) {
		t.Fatalf("Add(http) = %v, want ErrWebhookURL", err)
	}
	store, err := NewStore(identity.NewMemKV(), StoreOptions{AllowPrivate: true, AllowHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	src := newFakeSource()
	src.push(1, msgs(1, 2)...)

	// A deliverer that does not allow http drops at once: update 1
	// fails without a request, update 2 is given up without an attempt
	// (the webhook is given up on until a probe).
	d, stop := runDeliverer(t, testOptions(store, src))
	waitFor(t, "the give-ups", func() bool { return d.Stats().GivenUp == 2 })
	stop()
	if h.tries() != 0 || d.Stats().Failed != 1 {
		t.Fatalf("hook got %d requests; stats %+v", h.tries(), d.Stats())
	}

	// One that does delivers.
	o := testOptions(store, src)
	o.AllowHTTP = true
	src.push(1, msgs(3, 3)...)
	runDeliverer(t, o)
	waitFor(t, "update 3", func() bool { return slices.Equal(h.received(), []int64{3}) })
}

func TestRestartResumes(t *testing.T) {
	h := newHook(t, nil)
	kv := identity.NewMemKV()
	store, src := newTestStore(t, kv), newFakeSource()
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	src.push(1, msgs(1, 5)...)
	_, stop := runDeliverer(t, testOptions(store, src, h))
	waitFor(t, "the first batch acknowledged", func() bool { return src.ackedTo(1) == 6 })
	stop()

	// Updates that arrive while the node is down go after a restart,
	// over a store reloaded from the KV.
	src.push(1, msgs(6, 9)...)
	store2 := newTestStore(t, kv)
	runDeliverer(t, testOptions(store2, src, h))
	waitFor(t, "9 updates", func() bool { return len(h.received()) == 9 })
	if got := h.received(); !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("received %v", got)
	}
	waitFor(t, "the acknowledgement", func() bool { return src.ackedTo(1) == 10 })
}

func TestUnacknowledgedBatchRedelivered(t *testing.T) {
	// The hook holds update 2 until the deliverer stops: the batch is
	// not acknowledged, and a new deliverer delivers it again.
	release := make(chan struct{})
	var holding atomic.Bool
	h := newHook(t, func(u botapi.Update, _ int) int {
		if u.Timestamp == 2 && !holding.Swap(true) {
			<-release
			return http.StatusServiceUnavailable
		}
		return 0
	})
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	src.push(1, msgs(1, 3)...)
	_, stop := runDeliverer(t, testOptions(store, src, h))
	waitFor(t, "update 2 in flight", holding.Load)
	stop() // cancels the request in flight
	close(release)
	if src.ackedTo(1) != 1 {
		t.Fatalf("acknowledged to %d before the batch was delivered", src.ackedTo(1))
	}
	runDeliverer(t, testOptions(store, src, h))
	waitFor(t, "the batch again", func() bool { return len(h.received()) == 4 })
	if got := h.received(); !slices.Equal(got, []int64{1, 1, 2, 3}) {
		t.Fatalf("received %v", got)
	}
}

func TestSubscribeWhileRunning(t *testing.T) {
	h := newHook(t, nil)
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	d, _ := runDeliverer(t, testOptions(store, src, h))
	src.push(1, msgs(1, 2)...)
	ctx := context.Background()
	if err := store.Add(ctx, 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 updates", func() bool { return d.Stats().Delivered == 2 })

	// Unsubscribing ends the bot's loop, which acknowledges what it
	// delivered: long polling goes on from there.
	if err := store.Remove(1, h.srv.URL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the loop to end", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.loops) == 0
	})
	if src.ackedTo(1) != 3 || d.Active(1) {
		t.Fatalf("acknowledged to %d, active %v", src.ackedTo(1), d.Active(1))
	}
	src.push(1, msgs(3, 3)...)
	if err := store.Add(ctx, 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "update 3", func() bool { return len(h.received()) == 3 })
	if got := h.received(); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("received %v", got)
	}
}

func TestUnsubscribeEndsRetries(t *testing.T) {
	h := newHook(t, func(botapi.Update, int) int { return http.StatusBadGateway })
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	src.push(1, msgs(1, 2)...)
	o := testOptions(store, src, h)
	o.MaxBackoff = time.Hour // only a change ends the wait
	d, _ := runDeliverer(t, o)
	waitFor(t, "a failure", func() bool { return d.Stats().Failed >= 1 })
	if err := store.Remove(1, h.srv.URL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the loop to end", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.loops) == 0
	})
	// The batch was abandoned, not acknowledged: long polling gets it.
	if src.ackedTo(1) != 1 || d.Stats().GivenUp != 0 {
		t.Fatalf("acknowledged to %d; stats %+v", src.ackedTo(1), d.Stats())
	}
}

func TestConcurrencyCap(t *testing.T) {
	var inFlight, peak atomic.Int32
	h := newHook(t, func(botapi.Update, int) int {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		inFlight.Add(-1)
		return 0
	})
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	for bot := int64(1); bot <= 4; bot++ {
		for i := range 2 {
			if err := store.Add(context.Background(), bot, fmt.Sprintf("%s/%d", h.srv.URL, i), "", nil); err != nil {
				t.Fatal(err)
			}
		}
		src.push(bot, msgs(1, 5)...)
	}
	o := testOptions(store, src, h)
	o.MaxConcurrent = 2
	runDeliverer(t, o)
	waitFor(t, "40 deliveries", func() bool { return len(h.received()) == 40 })
	if p := peak.Load(); p > 2 {
		t.Fatalf("%d requests in flight at once, cap 2", p)
	}
}

func TestCancelStops(t *testing.T) {
	// A hook that hangs, another bot waiting for updates, a third in
	// backoff: cancelling Run ends them all (TestMain checks for leaks).
	hung := make(chan struct{})
	var once sync.Once
	slow := newHookServer(t, true, func(botapi.Update, int) int {
		once.Do(func() { close(hung) })
		return 0
	}, hangUntilDone)
	failing := newHook(t, func(botapi.Update, int) int { return http.StatusInternalServerError })
	idle := newHook(t, nil)
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	ctx := context.Background()
	for bot, h := range map[int64]*hook{1: slow, 2: failing, 3: idle} {
		if err := store.Add(ctx, bot, h.srv.URL, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	src.push(1, msgs(1, 1)...)
	src.push(2, msgs(1, 1)...)
	o := testOptions(store, src, slow, failing, idle)
	o.MaxBackoff = time.Hour
	o.RequestTimeout = time.Hour
	d, stop := runDeliverer(t, o)
	<-hung
	waitFor(t, "a failure", func() bool { return d.Stats().Failed >= 1 })
	stop()
	// The hung request may count as delivered: its answer, sent when
	// the cancel closes the connection, can race the cancel.
	if s := d.Stats(); s.GivenUp != 0 {
		t.Fatalf("Stats = %+v", s)
	}
}

// hangUntilDone calls next, discarding its answer, then answers nothing
// until the request's context ends.
func hangUntilDone(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(noWrite{w}, r)
		<-r.Context().Done()
	})
}

// noWrite swallows the inner handler's answer.
type noWrite struct{ http.ResponseWriter }

func (noWrite) WriteHeader(int)             {}
func (noWrite) Write(p []byte) (int, error) { return len(p), nil }

// flakySource fails its first calls.
type flakySource struct {
	*fakeSource
	fails atomic.Int32
}

func (s *flakySource) Updates(ctx context.Context, bot, marker int64, limit int, types []string, timeout time.Duration) (botapi.UpdateList, error) {
	if s.fails.Add(-1) >= 0 {
		return botapi.UpdateList{}, errors.New("store unavailable")
	}
	return s.fakeSource.Updates(ctx, bot, marker, limit, types, timeout)
}

func TestSourceErrorsRetried(t *testing.T) {
	h := newHook(t, nil)
	store, src := newTestStore(t, identity.NewMemKV()), &flakySource{fakeSource: newFakeSource()}
	src.fails.Store(3)
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	src.push(1, msgs(1, 2)...)
	runDeliverer(t, testOptions(store, src, h))
	waitFor(t, "2 updates", func() bool { return len(h.received()) == 2 })
	if got := h.received(); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("received %v", got)
	}
}

func TestUnsubscribeDoesNotAckLastUpdate(t *testing.T) {
	// As TestUnsubscribeEndsRetries, but the failing update is the last
	// of its batch (a batch of one, as a chat bot usually gets): the
	// batch must not be acknowledged, so that long polling gets it.
	h := newHook(t, func(botapi.Update, int) int { return http.StatusBadGateway })
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	src.push(1, msgs(1, 1)...)
	o := testOptions(store, src, h)
	o.MaxBackoff = time.Hour
	d, _ := runDeliverer(t, o)
	waitFor(t, "a failure", func() bool { return d.Stats().Failed >= 1 })
	if err := store.Remove(1, h.srv.URL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the loop to end", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.loops) == 0
	})
	if src.ackedTo(1) != 1 {
		t.Fatalf("undelivered update 1 acknowledged (acked to %d), stats %+v", src.ackedTo(1), d.Stats())
	}
}

func TestAbandonedBatchReadAgain(t *testing.T) {
	// Both webhooks of the bot unsubscribe during update 1 of a batch,
	// and the second subscribes a third one: the batch was abandoned by
	// both, so it is read again (from the last acknowledged update) and
	// the new webhook gets all of it, not only what followed.
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	ctx := context.Background()
	c := newHook(t, nil)
	var a, b *hook
	var removedA atomic.Bool
	a = newHook(t, func(u botapi.Update, _ int) int {
		if u.Timestamp == 1 && !removedA.Swap(true) {
			if err := store.Remove(1, a.srv.URL); err != nil {
				t.Error(err)
			}
		}
		return http.StatusBadGateway
	})
	var removedB atomic.Bool
	b = newHook(t, func(u botapi.Update, _ int) int {
		if u.Timestamp == 1 && !removedB.Swap(true) {
			for !removedA.Load() { // A's attempt first, so that both abandon
				time.Sleep(time.Millisecond)
			}
			if err := store.Remove(1, b.srv.URL); err != nil {
				t.Error(err)
			}
			if err := store.Add(ctx, 1, c.srv.URL, "", nil); err != nil {
				t.Error(err)
			}
		}
		return http.StatusBadGateway
	})
	for _, h := range []*hook{a, b} {
		if err := store.Add(ctx, 1, h.srv.URL, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	src.push(1, msgs(1, 2)...)
	o := testOptions(store, src, a, b, c)
	o.MaxBackoff = time.Hour
	runDeliverer(t, o)
	waitFor(t, "2 updates at the new webhook", func() bool { return len(c.received()) >= 2 })
	if got := c.received(); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("new webhook received %v, want [1 2]", got)
	}
	waitFor(t, "the acknowledgement", func() bool { return src.ackedTo(1) == 3 })
}

func TestRemoveAllStopsLoop(t *testing.T) {
	// A request hangs; RemoveAll (the bot is deleted) cancels it and
	// ends the bot's loop without waiting for the request's timeout.
	inFlight := make(chan struct{})
	var once sync.Once
	h := newHookServer(t, true, func(botapi.Update, int) int {
		once.Do(func() { close(inFlight) })
		return 0
	}, hangUntilDone)
	other := newHook(t, nil)
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	ctx := context.Background()
	for _, url := range []string{h.srv.URL, other.srv.URL} {
		if err := store.Add(ctx, 1, url, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	src.push(1, msgs(1, 1)...)
	o := testOptions(store, src, h, other)
	o.RequestTimeout = time.Hour
	d, _ := runDeliverer(t, o)
	<-inFlight
	if err := store.RemoveAll(1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the loop to end", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.loops) == 0
	})
	if d.Active(1) || len(store.List(1)) != 0 {
		t.Fatal("the bot still has subscriptions")
	}
}
