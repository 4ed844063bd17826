package status_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/status"
	"github.com/gonets/gonets/identity/status/statussim"
)

func newHTTPSource(t *testing.T, o status.HTTPOptions) *status.HTTPSource {
	t.Helper()
	if o.BackoffBase == 0 {
		o.BackoffBase, o.BackoffMax = time.Millisecond, 4*time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s, err := status.NewHTTPSource(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func simServer(t *testing.T) (*statussim.Sim, *httptest.Server) {
	t.Helper()
	sim := statussim.New()
	sim.RequireAuth("Authorization", "Bearer s3cret")
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv
}

func TestHTTPSourceAgainstSim(t *testing.T) {
	checkLeaks(t)
	sim, srv := simServer(t)
	msk := time.FixedZone("MSK", 3*3600)
	sim.Add(alice.OID, "o1", "Паспорт", status.Status{Code: "accepted", Title: "Заявление принято\nждите", At: time.Date(2026, 3, 1, 12, 0, 0, 123, msk)})
	sim.Add(alice.OID, "o1", "", status.Status{Code: "done", Title: "Готово", At: at(60), Final: true})
	sim.Add(alice.OID, "o2", "Пособие", st("sent", 5))
	set := metrics.NewSet()
	s := newHTTPSource(t, status.HTTPOptions{BaseURL: srv.URL + "/", AuthHeader: "Authorization", AuthValue: "Bearer s3cret", Metrics: set})

	apps, err := s.History(t.Context(), alice)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := sim.Source().History(t.Context(), alice)
	if len(apps) != 2 || len(apps[0].Statuses) != 2 || apps[1].Service != "Пособие" {
		t.Fatalf("got %+v", apps)
	}
	for i := range want {
		for j, w := range want[i].Statuses {
			g := apps[i].Statuses[j]
			if g.Code != w.Code || g.Title != w.Title || !g.At.Equal(w.At) || g.Final != w.Final {
				t.Errorf("status %d/%d: got %+v, want %+v", i, j, g, w)
			}
		}
	}
	if apps, err := s.History(t.Context(), status.Person{OID: "nobody"}); apps != nil || err != nil {
		t.Fatalf("a person without applications: %v, %v", apps, err)
	}
	if _, err := s.History(t.Context(), status.Person{}); !errors.Is(err, status.ErrInvalidPerson) {
		t.Fatalf("no OID: %v", err)
	}

	// 503 twice, then the answer: retried.
	sim.Fail(2)
	calls := sim.Calls()
	if _, err := s.History(t.Context(), alice); err != nil {
		t.Fatalf("after two 503s: %v", err)
	}
	if n := sim.Calls() - calls; n != 3 {
		t.Fatalf("%d calls for two 503s and an answer, want 3", n)
	}
	// Failing past the retries.
	sim.Fail(10)
	calls = sim.Calls()
	if _, err := s.History(t.Context(), alice); !errors.Is(err, status.ErrUnavailable) {
		t.Fatalf("503 throughout: %v", err)
	}
	if n := sim.Calls() - calls; n != 4 {
		t.Fatalf("%d calls, want 4 (3 retries)", n)
	}
	sim.Fail(0)

	// Wrong credentials: refused at once.
	bad := newHTTPSource(t, status.HTTPOptions{BaseURL: srv.URL, AuthHeader: "Authorization", AuthValue: "Bearer nope", Metrics: set})
	calls = sim.Calls()
	if _, err := bad.History(t.Context(), alice); !errors.Is(err, status.ErrRejected) || sim.Calls()-calls != 1 {
		t.Fatalf("bad credentials: %v after %d calls", err, sim.Calls()-calls)
	}

	var b bytes.Buffer
	set.WritePrometheus(&b)
	for _, line := range []string{
		`gonets_identity_status_source_requests_total{result="ok"} 2`,
		`gonets_identity_status_source_requests_total{result="none"} 1`,
		`gonets_identity_status_source_requests_total{result="unavailable"} 1`,
		`gonets_identity_status_source_requests_total{result="rejected"} 1`,
		"gonets_identity_status_source_retries_total 5",
		"gonets_identity_status_source_request_duration_seconds_count 5",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, b.String())
		}
	}
}

func TestHTTPSourceRequest(t *testing.T) {
	checkLeaks(t)
	var mu sync.Mutex
	var got *url.URL
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.URL
		mu.Unlock()
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	s := newHTTPSource(t, status.HTTPOptions{BaseURL: srv.URL + "/api"})
	who := status.Person{OID: "10/01 ?x", SNILS: "112-233-445 95"}
	if apps, err := s.History(t.Context(), who); apps != nil || err != nil {
		t.Fatal(apps, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.EscapedPath() != "/api/v1/persons/10%2F01%20%3Fx/applications" || got.Query().Get("snils") != who.SNILS {
		t.Fatalf("request %s", got)
	}
}

// TestHTTPSourceRefusesMalformed: an answer outside the contract is
// refused whole and not retried.
func TestHTTPSourceRefusesMalformed(t *testing.T) {
	checkLeaks(t)
	var mu sync.Mutex
	var body string
	var code, calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		w.WriteHeader(code)
		w.Write([]byte(body))
	}))
	defer srv.Close()
	s := newHTTPSource(t, status.HTTPOptions{BaseURL: srv.URL})
	app := func(order, title string, n int) string {
		var sts []string
		for i := range n {
			sts = append(sts, fmt.Sprintf(`{"code":"c%d","title":%q,"at":"2026-03-01T09:00:00Z"}`, i, title))
		}
		return fmt.Sprintf(`{"order_id":%q,"service":"s","statuses":[%s]}`, order, strings.Join(sts, ","))
	}
	var many []string
	for i := range status.MaxApplications + 1 {
		many = append(many, app(fmt.Sprint("o", i), "t", 0))
	}
	for name, c := range map[string]struct {
		code int
		body string
		want error
	}{
		"not json":        {200, `<html>`, status.ErrInvalidResponse},
		"no list":         {200, `{"apps":[]}`, status.ErrInvalidResponse},
		"empty order":     {200, `{"applications":[` + app("", "t", 1) + `]}`, status.ErrInvalidResponse},
		"long order":      {200, `{"applications":[` + app(strings.Repeat("o", 129), "t", 1) + `]}`, status.ErrInvalidResponse},
		"long title":      {200, `{"applications":[` + app("o", strings.Repeat("т", 501), 1) + `]}`, status.ErrInvalidResponse},
		"many statuses":   {200, `{"applications":[` + app("o", "t", status.MaxStatuses+1) + `]}`, status.ErrInvalidResponse},
		"many apps":       {200, `{"applications":[` + strings.Join(many, ",") + `]}`, status.ErrInvalidResponse},
		"over 4 MiB":      {200, `{"applications":[],"pad":"` + strings.Repeat("x", status.MaxResponse) + `"}`, status.ErrInvalidResponse},
		"bad time":        {200, `{"applications":[{"order_id":"o","statuses":[{"code":"c","at":"1 March"}]}]}`, status.ErrInvalidResponse},
		"redirect":        {302, ``, status.ErrInvalidResponse},
		"bad request":     {400, `{"error":"no"}`, status.ErrRejected},
		"unknown person ": {403, ``, status.ErrRejected},
	} {
		mu.Lock()
		code, body, calls = c.code, c.body, 0
		mu.Unlock()
		apps, err := s.History(t.Context(), alice)
		mu.Lock()
		n := calls
		mu.Unlock()
		if !errors.Is(err, c.want) || apps != nil || n != 1 {
			t.Errorf("%s: %d apps, %v after %d calls; want %v after 1", name, len(apps), err, n, c.want)
		}
	}
	mu.Lock()
	code, body = 200, `{"applications":[`+app("o", strings.Repeat("т", 500), status.MaxStatuses)+`]}`
	mu.Unlock()
	if apps, err := s.History(t.Context(), alice); err != nil || len(apps[0].Statuses) != status.MaxStatuses {
		t.Fatalf("at the limits: %v", err)
	}
}

func TestHTTPSourceErrorsHideThePerson(t *testing.T) {
	checkLeaks(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens: every attempt is a network error
	s := newHTTPSource(t, status.HTTPOptions{BaseURL: base, Retries: 1, Timeout: time.Second})
	_, err := s.History(t.Context(), alice)
	if !errors.Is(err, status.ErrUnavailable) {
		t.Fatalf("no server: %v", err)
	}
	if strings.Contains(err.Error(), alice.OID) || strings.Contains(err.Error(), "445") {
		t.Fatalf("error names the person: %v", err)
	}
}

func TestNewHTTPSourceOptions(t *testing.T) {
	for _, o := range []status.HTTPOptions{
		{},
		{BaseURL: "ftp://host"},
		{BaseURL: "http://host?x=1"},
		{BaseURL: "http://host", AuthHeader: "Bad Header", AuthValue: "v"},
		{BaseURL: "http://host", AuthValue: "v"},
		{BaseURL: "http://host", Timeout: -1},
		{BaseURL: "http://host", BackoffBase: time.Second, BackoffMax: time.Millisecond},
	} {
		if _, err := status.NewHTTPSource(o); !errors.Is(err, status.ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", o, err)
		}
	}
}

// TestPollerOverHTTP: the poller with the real client against the
// simulator, through a failure.
func TestPollerOverHTTP(t *testing.T) {
	checkLeaks(t)
	sim, srv := simServer(t)
	sim.Add(alice.OID, "o1", "Паспорт", st("accepted", 0))
	s := newHTTPSource(t, status.HTTPOptions{BaseURL: srv.URL, AuthHeader: "Authorization", AuthValue: "Bearer s3cret", Retries: -1})
	c := &chat{}
	p := newPoller(t, status.PollerOptions{Source: s, KV: identity.NewMemKV(), Post: c.post})
	pollNow(t, p, 7, alice, 1)
	sim.Add(alice.OID, "o1", "", st("done", 1))
	sim.Fail(1)
	if _, err := p.PollNow(t.Context(), 7, alice); !errors.Is(err, status.ErrUnavailable) {
		t.Fatalf("503 without retries: %v", err)
	}
	pollNow(t, p, 7, alice, 1)
	pollNow(t, p, 7, alice, 0)
	wantCodes(t, c, "accepted", "done")
}

// limiter answers 429 with a Retry-After to its next limited calls, then
// 404 (no applications).
type limiter struct {
	mu      sync.Mutex // guards the following
	limited int
	after   string
	calls   int
}

func (l *limiter) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.limited > 0 {
		l.limited--
		if l.after != "" {
			w.Header().Set("Retry-After", l.after)
		}
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	w.WriteHeader(http.StatusNotFound)
}

func (l *limiter) set(limited int, after string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limited, l.after, l.calls = limited, after, 0
}

func (l *limiter) callCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

func TestHTTPSourceRetryAfter(t *testing.T) {
	checkLeaks(t)
	l := &limiter{}
	srv := httptest.NewServer(l)
	defer srv.Close()
	set := metrics.NewSet()
	// BackoffMax allows an hour: a Retry-After of an hour is waited for,
	// and since that is past the call's deadline the call gives up at
	// once instead of retrying after the 1 ms backoff.
	patient := newHTTPSource(t, status.HTTPOptions{BaseURL: srv.URL, BackoffBase: time.Millisecond, BackoffMax: time.Hour, Metrics: set})
	for name, after := range map[string]string{
		"seconds":   "3600",
		"HTTP date": time.Now().Add(time.Hour + time.Minute).UTC().Format(http.TimeFormat),
	} {
		l.set(1, after)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := patient.History(ctx, alice)
		cancel()
		if !errors.Is(err, status.ErrUnavailable) || !strings.Contains(err.Error(), "past the deadline") || l.callCount() != 1 {
			t.Errorf("%s: %v after %d calls, want ErrUnavailable past the deadline after 1", name, err, l.callCount())
		}
	}
	// Without a Retry-After, the backoff: retried and answered.
	l.set(1, "")
	if apps, err := patient.History(t.Context(), alice); apps != nil || err != nil || l.callCount() != 2 {
		t.Fatalf("429 without Retry-After: %v after %d calls, want an answer after 2", err, l.callCount())
	}

	// A Retry-After over BackoffMax waits BackoffMax.
	capped := newHTTPSource(t, status.HTTPOptions{BaseURL: srv.URL, BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond, Metrics: set})
	l.set(2, "3600")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if apps, err := capped.History(ctx, alice); apps != nil || err != nil || l.callCount() != 3 {
		t.Fatalf("Retry-After over BackoffMax: %v after %d calls, want an answer after 3", err, l.callCount())
	}
	// Limited past the retries.
	l.set(10, "0")
	if _, err := capped.History(t.Context(), alice); !errors.Is(err, status.ErrUnavailable) || l.callCount() != 4 {
		t.Fatalf("429 throughout: %v after %d calls, want ErrUnavailable after 4", err, l.callCount())
	}

	var b bytes.Buffer
	set.WritePrometheus(&b)
	for _, line := range []string{
		`gonets_identity_status_source_requests_total{result="429"} 3`,
		`gonets_identity_status_source_requests_total{result="none"} 2`,
		`gonets_identity_status_source_requests_total{result="unavailable"} 0`,
		"gonets_identity_status_source_retries_total 6",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, b.String())
		}
	}
}
