package webhook

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/identity"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor fails t unless cond becomes true within 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fakeSource keeps per-bot queues with the Backend's marker semantics:
// update i of a queue is at position i+1; asking with marker M
// acknowledges the positions before M; marker 0 reads from the first
// position not acknowledged.
type fakeSource struct {
	mu      sync.Mutex
	queues  map[int64][]botapi.Update
	acked   map[int64]int64 // first position not acknowledged; 0 means 1
	changed chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{queues: map[int64][]botapi.Update{}, acked: map[int64]int64{}, changed: make(chan struct{})}
}

func (s *fakeSource) push(bot int64, us ...botapi.Update) {
	s.mu.Lock()
	s.queues[bot] = append(s.queues[bot], us...)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// ackedTo returns the first position of bot not acknowledged.
func (s *fakeSource) ackedTo(bot int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.acked[bot], 1)
}

func (s *fakeSource) Updates(ctx context.Context, bot, marker int64, limit int, _ []string, timeout time.Duration) (botapi.UpdateList, error) {
	timer := time.NewTimer(max(timeout, 0))
	defer timer.Stop()
	for {
		s.mu.Lock()
		acked := max(s.acked[bot], 1)
		if marker > acked {
			acked = marker
			s.acked[bot] = marker
		}
		start := marker
		if start == 0 {
			start = acked
		}
		q := s.queues[bot]
		if int(start-1) < len(q) {
			end := min(len(q), int(start-1)+limit)
			list := botapi.UpdateList{Updates: slices.Clone(q[start-1 : end]), Marker: int64(end) + 1}
			s.mu.Unlock()
			return list, nil
		}
		ch := s.changed
		s.mu.Unlock()
		if timeout <= 0 {
			return botapi.UpdateList{Updates: []botapi.Update{}, Marker: start}, nil
		}
		select {
		case <-ctx.Done():
			return botapi.UpdateList{}, ctx.Err()
		case <-timer.C:
			return botapi.UpdateList{Updates: []botapi.Update{}, Marker: start}, nil
		case <-ch:
		}
	}
}

// upd returns an update of typ whose Timestamp is n, its id in tests.
func upd(n int64, typ string) botapi.Update {
	return botapi.Update{UpdateType: typ, Timestamp: n, ChatID: 7}
}

// msgs returns updates message_created numbered from..to.
func msgs(from, to int64) []botapi.Update {
	var us []botapi.Update
	for n := from; n <= to; n++ {
		us = append(us, upd(n, "message_created"))
	}
	return us
}

// hook is a webhook endpoint on 127.0.0.1.
type hook struct {
	srv *httptest.Server
	// status answers an attempt (numbered from 1 for this hook) of u:
	// 0 means 200.
	status func(u botapi.Update, attempt int) int

	mu       sync.Mutex
	attempts int
	got      []int64 // the ids of the updates answered 2xx, in order
	secrets  []string
	ctypes   []string
}

func newHook(t *testing.T, status func(u botapi.Update, attempt int) int) *hook {
	return newHookServer(t, true, status, nil)
}

// newHookServer returns a hook served with TLS or not, its handler
// wrapped by wrap when not nil.
func newHookServer(t *testing.T, tls bool, status func(u botapi.Update, attempt int) int, wrap func(http.Handler) http.Handler) *hook {
	h := &hook{status: status}
	var handler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var u botapi.Update
		if err != nil || r.Method != http.MethodPost || json.Unmarshal(body, &u) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.attempts++
		n := h.attempts
		h.mu.Unlock()
		code := http.StatusOK
		if h.status != nil {
			if c := h.status(u, n); c != 0 {
				code = c
			}
		}
		if code/100 == 2 {
			h.mu.Lock()
			h.got = append(h.got, u.Timestamp)
			h.secrets = append(h.secrets, r.Header.Get(SecretHeader))
			h.ctypes = append(h.ctypes, r.Header.Get("Content-Type"))
			h.mu.Unlock()
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("OK"))
	})
	if wrap != nil {
		handler = wrap(handler)
	}
	if tls {
		h.srv = httptest.NewTLSServer(handler)
	} else {
		h.srv = httptest.NewServer(handler)
	}
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) received() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

func (h *hook) tries() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attempts
}

// pool returns the roots that verify the test servers.
func pool(hs ...*hook) *x509.CertPool {
	p := x509.NewCertPool()
	for _, h := range hs {
		p.AddCert(h.srv.Certificate())
	}
	return p
}

// newTestStore returns a Store over kv that allows 127.0.0.1.
func newTestStore(t *testing.T, kv identity.KV) *Store {
	t.Helper()
	s, err := NewStore(kv, StoreOptions{AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logBuffer collects a Logger's output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testOptions are fast options for a deliverer over store and src that
// trusts hs.
func testOptions(store *Store, src Source, hs ...*hook) Options {
	return Options{
		Store:          store,
		Source:         src,
		RequestTimeout: 5 * time.Second,
		GiveUpAfter:    10 * time.Second,
		MaxBackoff:     5 * time.Millisecond,
		AllowPrivate:   true,
		RootCAs:        pool(hs...),
		Log:            quietLog(),
	}
}

// runDeliverer starts a Deliverer's Run; the returned func (also run at
// cleanup) cancels it and waits for Run to return.
func runDeliverer(t *testing.T, o Options) (*Deliverer, func()) {
	t.Helper()
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		d.Run(ctx)
		close(done)
	}()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return d, stop
}

// fakeResolver resolves the names it holds; "slow.example" waits for
// the context.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	if host == "slow.example" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
