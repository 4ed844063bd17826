package botapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// startPoll starts GET /updates against srv in a goroutine and returns
// its cancel and a channel with its response (nil when it failed).
func startPoll(t *testing.T, srv *httptest.Server) (context.CancelFunc, <-chan *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/updates?types=message_created", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", testToken)
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err != nil {
			resp = nil
		}
		done <- resp
	}()
	return cancel, done
}

// waitHandlers closes srv, which waits for its handlers, and fails if
// that takes long: a long poll that outlives its client.
func waitHandlers(t *testing.T, srv *httptest.Server) {
	t.Helper()
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("a long poll outlived its client")
	}
}

// TestPollClientGone checks that a long poll ends when its client goes
// away, long before its 30 s timeout.
func TestPollClientGone(t *testing.T) {
	f := &fakeBackend{pollStarted: make(chan struct{}, 1)}
	s := New(Options{Backend: f})
	srv := httptest.NewServer(s)
	cancel, done := startPoll(t, srv)
	<-f.pollStarted
	if got, want := f.last(), "Updates bot=42 marker=0 limit=100 types=[message_created] timeout=30s"; got != want {
		t.Errorf("call = %q, want %q", got, want)
	}
	cancel()
	if resp := <-done; resp != nil {
		resp.Body.Close()
		t.Errorf("the poll answered %d after its client went away", resp.StatusCode)
	}
	waitHandlers(t, srv)
}

// TestPollClose checks that Close ends the long polls in flight with 503
// (the SDK retries those, keeping its marker) and refuses new requests.
func TestPollClose(t *testing.T) {
	f := &fakeBackend{pollStarted: make(chan struct{}, 1)}
	s := New(Options{Backend: f})
	srv := httptest.NewServer(s)
	defer waitHandlers(t, srv)
	cancel, done := startPoll(t, srv)
	defer cancel()
	<-f.pollStarted
	s.Close()
	resp := <-done
	if resp == nil {
		t.Fatal("the poll failed")
	}
	defer resp.Body.Close()
	var e Error
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusServiceUnavailable || e.Code != "service.unavailable" {
		t.Errorf("poll after Close: %d %+v %v", resp.StatusCode, e, err)
	}
	wantError(t, do(t, s, "GET", "/me", ""), http.StatusServiceUnavailable, "service.unavailable")
}

// TestPollTimeoutOptions checks DefaultPollTimeout and MaxPollTimeout.
func TestPollTimeoutOptions(t *testing.T) {
	f := &fakeBackend{}
	s := New(Options{Backend: f, RateLimit: 1e6, DefaultPollTimeout: 5 * time.Second, MaxPollTimeout: 10 * time.Second})
	do(t, s, "GET", "/updates", "")
	if got, want := f.last(), "Updates bot=42 marker=0 limit=100 types=[] timeout=5s"; got != want {
		t.Errorf("call = %q, want %q", got, want)
	}
	do(t, s, "GET", "/updates?timeout=10", "")
	if got, want := f.last(), "Updates bot=42 marker=0 limit=100 types=[] timeout=10s"; got != want {
		t.Errorf("call = %q, want %q", got, want)
	}
	wantError(t, do(t, s, "GET", "/updates?timeout=11", ""), http.StatusBadRequest, "proto.payload")
}
