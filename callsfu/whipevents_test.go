package callsfu

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// eventsAuth is fakeAuth whose publishers' grants carry an Events
// function that records what it hears.
type eventsAuth struct {
	*fakeAuth
	mu     sync.Mutex
	events []Event
}

func (a *eventsAuth) Authorize(ctx context.Context, req AuthRequest) (Grant, error) {
	g, err := a.fakeAuth.Authorize(ctx, req)
	if err == nil && req.Publish {
		g.Events = func(e Event) {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.events = append(a.events, e)
		}
	}
	return g, err
}

// heard returns the events heard so far.
func (a *eventsAuth) heard() []Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Event(nil), a.events...)
}

// TestWHIPGrantEvents: a grant's Events hears its publisher's own tracks
// published, and the DELETE that ends the session as EventRemoved with
// ReasonLeft, once (events of the participant's own still queued may come
// after it, on its events goroutine).
func TestWHIPGrantEvents(t *testing.T) {
	s := newTestSFU(t, Options{})
	auth := &eventsAuth{fakeAuth: &fakeAuth{
		sfu:         s,
		admins:      map[string]Peer{"admin": {1, 1}},
		subscribers: map[string]Peer{"sub1": {10, 1}},
	}}
	h, err := NewWHIP(s, WHIPOptions{Authorizer: auth, Logger: s.log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	w := &whipTest{t: t, sfu: s, h: h, srv: srv}

	_, session := w.publishWHIP("admin", 1)
	waitFor(t, "both tracks published to the grant's Events", func() bool {
		n := 0
		for _, e := range auth.heard() {
			if e.Kind == EventTrackPublished && e.Peer == (Peer{1, 1}) {
				n++
			}
		}
		return n == 2
	})
	if r := w.do("DELETE", session, "admin", "", ""); r.status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	waitFor(t, "the call to end", func() bool { return w.state() == "no call, 0 sessions" })
	var removed []Reason
	for _, e := range auth.heard() {
		if e.Kind == EventRemoved {
			removed = append(removed, e.Reason)
		}
	}
	if len(removed) != 1 || removed[0] != ReasonLeft {
		t.Errorf("removals heard %v, want one ReasonLeft", removed)
	}
	if r := w.do("DELETE", session, "admin", "", ""); r.status != http.StatusNotFound {
		t.Errorf("second DELETE: %d %s", r.status, r.body)
	}
}

// TestWHIPDeleteOfReplacedSession: the DELETE of a session whose
// participant a newer session of the same peer already replaced (the
// encoder reconnected, then deleted its old session) tells the old grant's
// Events nothing more: it hears its removal once, ReasonReplaced, not a
// ReasonLeft after it that would end the stream the new session carries on.
func TestWHIPDeleteOfReplacedSession(t *testing.T) {
	s := newTestSFU(t, Options{})
	hold := make(chan struct{}) // keeps the old session's removal on its way
	t.Cleanup(func() { close(hold) })
	var mu sync.Mutex
	var heard [][]Event // by grant
	auth := authorizerFunc(func(ctx context.Context, req AuthRequest) (Grant, error) {
		g, err := (&fakeAuth{sfu: s, admins: map[string]Peer{"admin": {1, 1}}}).Authorize(ctx, req)
		if err != nil {
			return g, err
		}
		mu.Lock()
		i := len(heard)
		heard = append(heard, nil)
		mu.Unlock()
		g.Events = func(e Event) {
			mu.Lock()
			heard[i] = append(heard[i], e)
			mu.Unlock()
			if e.Kind == EventRemoved && e.Reason == ReasonReplaced {
				<-hold
			}
		}
		return g, nil
	})
	h, err := NewWHIP(s, WHIPOptions{Authorizer: auth, Logger: s.log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	w := &whipTest{t: t, sfu: s, h: h, srv: srv}
	removals := func(i int) []Reason {
		mu.Lock()
		defer mu.Unlock()
		var rs []Reason
		for _, e := range heard[i] {
			if e.Kind == EventRemoved {
				rs = append(rs, e.Reason)
			}
		}
		return rs
	}

	_, old := w.publishWHIP("admin", 1)
	w.publishWHIP("admin", 2)
	waitFor(t, "the old session's participant replaced", func() bool { return len(removals(0)) > 0 })
	if r := w.do("DELETE", old, "admin", "", ""); r.status != http.StatusOK && r.status != http.StatusNotFound {
		t.Fatalf("DELETE of the old session: %d %s", r.status, r.body)
	}
	if got := removals(0); len(got) != 1 || got[0] != ReasonReplaced {
		t.Errorf("old session's removals heard %v, want one ReasonReplaced", got)
	}
	if got := removals(1); len(got) != 0 {
		t.Errorf("new session's removals heard %v, want none", got)
	}
}

// authorizerFunc is an Authorizer of a function.
type authorizerFunc func(context.Context, AuthRequest) (Grant, error)

func (f authorizerFunc) Authorize(ctx context.Context, req AuthRequest) (Grant, error) {
	return f(ctx, req)
}
