package signing_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/signing"
	"github.com/gonets/gonets/identity/signing/signsim"
	"go.uber.org/goleak"
)

// flaky serves h, answering the next fail requests with status instead,
// and counts requests and checks the credentials.
type flaky struct {
	h http.Handler

	mu       sync.Mutex // guards the following
	fail     int
	status   int
	body     string
	requests int
	noAuth   int
	lose     int // the next lose requests reach h, but their answers are replaced by 502
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	if r.Header.Get("Authorization") != "Bearer secret" {
		f.noAuth++
	}
	if f.lose > 0 {
		f.lose--
		f.mu.Unlock()
		f.h.ServeHTTP(httptest.NewRecorder(), r)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	if f.fail > 0 {
		f.fail--
		status, body := f.status, f.body
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(body))
		return
	}
	f.mu.Unlock()
	f.h.ServeHTTP(w, r)
}

func (f *flaky) failNext(n, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.status, f.body, f.requests = n, status, body, 0
}

func (f *flaky) count() (requests, noAuth int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests, f.noAuth
}

// newHTTP serves sim behind a flaky front on 127.0.0.1 and returns a
// provider speaking to it.
func newHTTP(t *testing.T, sim *signsim.Sim, set *metrics.Set) (*signing.HTTPProvider, *flaky) {
	t.Helper()
	f := &flaky{h: sim}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	p, err := signing.NewHTTPProvider(signing.HTTPOptions{
		BaseURL: srv.URL + "/", AuthHeader: "Authorization", AuthValue: "Bearer secret",
		Timeout: 5 * time.Second, BackoffBase: time.Millisecond, BackoffMax: 4 * time.Millisecond,
		Metrics: set, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, f
}

func TestSignHTTP(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
	sim := newSim(t, signsim.Options{Delay: 3})
	p, front := newHTTP(t, sim, nil)
	fin := newFinisher(0)
	m := newManager(t, identity.NewMemKV(), p, fin, func(o *signing.ManagerOptions) {
		o.PollMin, o.PollMax = 2*time.Millisecond, 10*time.Millisecond
	})
	r := run(m)
	defer r.stop(t)
	doc := docFor("h")
	if err := m.Submit(t.Context(), newRequest("h", doc)); err != nil {
		t.Fatal(err)
	}
	if err := m.Decide(t.Context(), "h", testSigner, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "finish", func() bool { return len(fin.acknowledged("h")) > 0 })
	o := fin.checkOne(t, "h", signing.Signed)
	if err := signsim.VerifySignature(doc, o.Signature, sim.Certificate()); err != nil {
		t.Fatal(err)
	}
	if n := sim.Starts("h"); n != 1 {
		t.Fatalf("Starts = %d", n)
	}
	if _, noAuth := front.count(); noAuth != 0 {
		t.Fatalf("%d requests without the credentials", noAuth)
	}
}

func TestHTTPDeclined(t *testing.T) {
	sim := newSim(t, signsim.Options{Delay: -1, Approve: func(d signing.Document) (signing.State, string) {
		return signing.Declined, "not " + d.Title
	}})
	p, _ := newHTTP(t, sim, nil)
	d := signing.Document{RequestID: "d", Signer: signing.Signer{OID: "1"}, Title: "mine", Data: []byte("x"), SHA256: sha256.Sum256([]byte("x"))}
	op, err := p.Start(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(t.Context(), op)
	if err != nil || st.State != signing.Declined || st.Reason != "not mine" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
}

func TestHTTPRetries(t *testing.T) {
	sim := newSim(t, signsim.Options{})
	set := metrics.NewSet()
	p, front := newHTTP(t, sim, set)
	doc := []byte("contract")
	d := signing.Document{RequestID: "r", Signer: signing.Signer{OID: "1", SNILS: "2"}, Title: "t", Data: doc, SHA256: sha256.Sum256(doc)}
	unavailable := `{"error":"unavailable","message":"try later"}`
	for _, tc := range []struct {
		name     string
		fail     int
		status   int
		body     string
		want     error
		requests int
	}{
		{"5xx retried", 2, http.StatusServiceUnavailable, unavailable, nil, 3},
		{"5xx until the retries end", 10, http.StatusInternalServerError, unavailable, signing.ErrUnavailable, 4},
		{"400 not retried", 1, http.StatusBadRequest, `{"error":"bad_document","message":"no"}`, signing.ErrRejected, 1},
		{"401 not retried", 1, http.StatusUnauthorized, `{"error":"unauthorized","message":"who?"}`, signing.ErrUnavailable, 1},
		{"429 not retried", 1, http.StatusTooManyRequests, `{}`, signing.ErrUnavailable, 1},
		{"malformed answer", 1, http.StatusOK, `{"operation_id":`, signing.ErrProtocol, 1},
		{"no operation", 1, http.StatusCreated, `{"state":"pending"}`, signing.ErrProtocol, 1},
		{"answer too large", 1, http.StatusOK, `{"operation_id":"` + strings.Repeat("x", 2<<20) + `"}`, signing.ErrProtocol, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			front.failNext(tc.fail, tc.status, tc.body)
			op, err := p.Start(t.Context(), d)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (op != "") {
				t.Fatalf("Start = %q, %v; want %v", op, err, tc.want)
			}
			if n, _ := front.count(); n != tc.requests {
				t.Fatalf("%d requests, want %d", n, tc.requests)
			}
		})
	}
	// Every successful Start was the same operation, started once per call.
	front.failNext(0, 0, "")
	op1, err1 := p.Start(t.Context(), d)
	op2, err2 := p.Start(t.Context(), d)
	if err1 != nil || err2 != nil || op1 != op2 {
		t.Fatalf("Start twice: %q %v, %q %v", op1, err1, op2, err2)
	}
	if _, err := p.Status(t.Context(), "op-unknown"); !errors.Is(err, signing.ErrRejected) {
		t.Fatalf("Status of an unknown operation: %v", err)
	}
	var out bytes.Buffer
	set.WritePrometheus(&out)
	for _, want := range []string{
		`gonets_signing_provider_calls_total{endpoint="start",outcome="retry"} 6`,
		`gonets_signing_provider_calls_total{endpoint="start",outcome="rejected"} 1`,
		`gonets_signing_provider_calls_total{endpoint="status",outcome="rejected"} 1`,
		`gonets_signing_provider_call_seconds_bucket{endpoint="start"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestHTTPLostAnswer: a Start whose answer is lost after the service
// acted on it is retried and gets the same operation.
func TestHTTPLostAnswer(t *testing.T) {
	sim := newSim(t, signsim.Options{})
	p, front := newHTTP(t, sim, nil)
	front.mu.Lock()
	front.lose = 1
	front.mu.Unlock()
	doc := []byte("contract")
	d := signing.Document{RequestID: "lost", Signer: signing.Signer{OID: "1"}, Data: doc, SHA256: sha256.Sum256(doc)}
	op, err := p.Start(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if n := sim.Starts("lost"); n != 2 {
		t.Fatalf("Starts = %d, want 2", n)
	}
	if again, err := p.Start(t.Context(), d); err != nil || again != op {
		t.Fatalf("Start again = %q, %v; want %q", again, err, op)
	}
}

func TestHTTPNetworkError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	p, err := signing.NewHTTPProvider(signing.HTTPOptions{BaseURL: url, Retries: 2, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = p.Status(t.Context(), "op-1")
	if !errors.Is(err, signing.ErrUnavailable) || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("Status = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Status(ctx, "op-1"); !errors.Is(err, signing.ErrUnavailable) {
		t.Fatalf("Status with a done ctx = %v", err)
	}
}

func TestHTTPOptions(t *testing.T) {
	for _, o := range []signing.HTTPOptions{
		{},
		{BaseURL: "ftp://example.test"},
		{BaseURL: "http://example.test?x=1"},
		{BaseURL: "http://example.test", AuthHeader: "Bad Header", AuthValue: "x"},
		{BaseURL: "http://example.test", AuthValue: "x"},
		{BaseURL: "http://example.test", Timeout: -1},
	} {
		if _, err := signing.NewHTTPProvider(o); !errors.Is(err, signing.ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", o, err)
		}
	}
}
