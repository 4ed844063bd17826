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
