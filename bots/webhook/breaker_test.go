package webhook

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/identity"
)

func TestDeadWebhookFailsFast(t *testing.T) {
	// Once an update is given up to a webhook, the next ones are given
	// up at once, without a request, until a probe (one attempt, at
	// most every MaxBackoff) succeeds.
	var healthy atomic.Bool
	h := newHook(t, func(botapi.Update, int) int {
		if healthy.Load() {
			return 0
		}
		return http.StatusBadGateway
	})
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	o := testOptions(store, src, h)
	o.Now = clock.Now
	o.GiveUpAfter = time.Hour
	o.MaxBackoff = time.Millisecond
	d, _ := runDeliverer(t, o)
	src.push(1, msgs(1, 1)...)
	waitFor(t, "two failures", func() bool { return d.Stats().Failed >= 2 })
	clock.advance(time.Hour)
	waitFor(t, "update 1 given up", func() bool { return d.Stats().GivenUp == 1 })
	tries := h.tries()

	src.push(1, msgs(2, 20)...)
	waitFor(t, "updates 2 to 20 given up", func() bool { return d.Stats().GivenUp == 20 && src.ackedTo(1) == 21 })
	if n := h.tries(); n != tries {
		t.Fatalf("%d requests to a webhook given up on, want none until the next probe", n-tries)
	}

	// The webhook answers again: the next update after MaxBackoff is a
	// probe, and delivery goes on.
	healthy.Store(true)
	clock.advance(time.Minute)
	src.push(1, msgs(21, 22)...)
	waitFor(t, "updates 21 and 22", func() bool { return len(h.received()) == 2 })
	if got := h.received(); !slices.Equal(got, []int64{21, 22}) {
		t.Fatalf("received %v", got)
	}
}

func TestFailedProbeGivesUpAtOnce(t *testing.T) {
	h := newHook(t, func(botapi.Update, int) int { return http.StatusBadGateway })
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	o := testOptions(store, src, h)
	o.Now = clock.Now
	o.GiveUpAfter = time.Hour
	o.MaxBackoff = time.Millisecond
	d, _ := runDeliverer(t, o)
	src.push(1, msgs(1, 1)...)
	waitFor(t, "a failure", func() bool { return d.Stats().Failed >= 1 })
	clock.advance(time.Hour)
	waitFor(t, "update 1 given up", func() bool { return d.Stats().GivenUp == 1 })
	tries := h.tries()
	clock.advance(time.Minute)
	src.push(1, msgs(2, 3)...)
	waitFor(t, "updates 2 and 3 given up", func() bool { return d.Stats().GivenUp == 3 && src.ackedTo(1) == 4 })
	if n := h.tries() - tries; n != 1 {
		t.Fatalf("%d requests after the give-up, want one probe", n)
	}
}

func TestDeadWebhookDoesNotStallOthers(t *testing.T) {
	// One of the bot's webhooks fails: the other gets the whole batch
	// meanwhile, in order; the batch is acknowledged once the failing
	// one gave its updates up.
	dead := newHook(t, func(botapi.Update, int) int { return http.StatusBadGateway })
	ok := newHook(t, nil)
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	for _, h := range []*hook{dead, ok} {
		if err := store.Add(context.Background(), 1, h.srv.URL, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	clock := newFakeClock()
	o := testOptions(store, src, dead, ok)
	o.Now = clock.Now
	o.GiveUpAfter = time.Hour
	o.MaxBackoff = time.Millisecond
	d, _ := runDeliverer(t, o)
	src.push(1, msgs(1, 3)...)
	waitFor(t, "3 updates at the healthy webhook", func() bool { return len(ok.received()) == 3 })
	if got := ok.received(); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("received %v", got)
	}
	if s := d.Stats(); s.GivenUp != 0 || src.ackedTo(1) != 1 {
		t.Fatalf("stats %+v, acknowledged to %d: the failing webhook still retries update 1", s, src.ackedTo(1))
	}
	clock.advance(time.Hour)
	waitFor(t, "the batch acknowledged", func() bool { return d.Stats().GivenUp == 3 && src.ackedTo(1) == 4 })
}

func TestDisableAfter(t *testing.T) {
	// A webhook failing for DisableAfter is unsubscribed, and logged.
	h := newHook(t, func(botapi.Update, int) int { return http.StatusBadGateway })
	store, src := newTestStore(t, identity.NewMemKV()), newFakeSource()
	if err := store.Add(context.Background(), 1, h.srv.URL+"/secret-path", "", nil); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	var logs logBuffer
	o := testOptions(store, src, h)
	o.Now = clock.Now
	o.GiveUpAfter = time.Hour
	o.DisableAfter = 2 * time.Hour
	o.MaxBackoff = time.Millisecond
	o.Log = slog.New(slog.NewTextHandler(&logs, nil))
	d, _ := runDeliverer(t, o)
	src.push(1, msgs(1, 1)...)
	waitFor(t, "a failure", func() bool { return d.Stats().Failed >= 1 })
	clock.advance(time.Hour)
	waitFor(t, "update 1 given up", func() bool { return d.Stats().GivenUp == 1 })
	if !store.Active(1) {
		t.Fatal("unsubscribed before DisableAfter")
	}
	clock.advance(time.Hour)
	src.push(1, msgs(2, 2)...)
	waitFor(t, "the subscription removed", func() bool { return !store.Active(1) })
	waitFor(t, "the loop to end", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.loops) == 0
	})
	if s := d.Stats(); s.Disabled != 1 {
		t.Fatalf("stats %+v, want Disabled 1", s)
	}
	out := logs.String()
	if !strings.Contains(out, "webhook: subscription removed") || strings.Contains(out, "secret-path") {
		t.Fatalf("log %q: want the removal logged, without the URL's path", out)
	}
}
