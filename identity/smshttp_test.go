package identity

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// smsSleeps records the waits an HTTPSender asks for instead of sleeping.
type smsSleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *smsSleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *smsSleeps) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// smsLeakCheck fails t if the test left goroutines behind; call it first so
// its cleanup runs after the servers' and senders'.
func smsLeakCheck(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// smsSimServer serves a SimGateway with credentials on 127.0.0.1.
func smsSimServer(t *testing.T) (*SimGateway, *httptest.Server) {
	t.Helper()
	gw := NewSimGateway(SimGatewayOptions{HeaderName: "Authorization", HeaderValue: "Bearer s3cret"})
	srv := httptest.NewServer(gw) // listens on 127.0.0.1:0
	t.Cleanup(srv.Close)
	return gw, srv
}

// smsHTTPSender returns a sender for srv with the gateway's credentials and
// a recording sleep; o adjusts the options.
func smsHTTPSender(t *testing.T, srv *httptest.Server, o func(*HTTPSenderOptions)) (*HTTPSender, *smsSleeps) {
	t.Helper()
	sl := &smsSleeps{}
	opts := HTTPSenderOptions{
		URL:         srv.URL + "/send",
		HeaderName:  "Authorization",
		HeaderValue: "Bearer s3cret",
		Sleep:       sl.sleep,
		Logger:      slog.New(slog.DiscardHandler),
	}
	if o != nil {
		o(&opts)
	}
	s, err := NewHTTPSender(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, sl
}

var smsTestMsg = SMS{To: "+79161234567", Text: "Your code: 123456"}

func TestHTTPSenderSuccess(t *testing.T) {
	smsLeakCheck(t)
	gw, srv := smsSimServer(t)
	s, sl := smsHTTPSender(t, srv, nil)
	if err := s.Send(context.Background(), smsTestMsg); err != nil {
		t.Fatal(err)
	}
	msgs := gw.Messages()
	if len(msgs) != 1 || msgs[0].To != smsTestMsg.To || msgs[0].Text != smsTestMsg.Text || msgs[0].ID == "" {
		t.Fatalf("gateway got %+v", msgs)
	}
	if st := s.Stats(); st != (SenderStats{Sent: 1}) {
		t.Fatalf("stats %+v", st)
	}
	if len(sl.get()) != 0 {
		t.Fatalf("slept %v on success", sl.get())
	}
}

func TestHTTPSenderAuthHeader(t *testing.T) {
	smsLeakCheck(t)
	gw, srv := smsSimServer(t)
	s, sl := smsHTTPSender(t, srv, func(o *HTTPSenderOptions) { o.HeaderValue = "Bearer wrong" })
	err := s.Send(context.Background(), smsTestMsg)
	if !errors.Is(err, ErrSMSRejected) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Send with wrong credentials: %v, want ErrSMSRejected (401)", err)
	}
	if gw.Requests() != 1 || len(gw.Messages()) != 0 || len(sl.get()) != 0 {
		t.Fatalf("requests %d, messages %d, sleeps %v: want one request, no retry", gw.Requests(), len(gw.Messages()), sl.get())
	}
}

func TestHTTPSenderRetries503(t *testing.T) {
	smsLeakCheck(t)
	gw, srv := smsSimServer(t)
	s, sl := smsHTTPSender(t, srv, nil)
	gw.FailNext(2, http.StatusServiceUnavailable, 0)
	if err := s.Send(context.Background(), smsTestMsg); err != nil {
		t.Fatal(err)
	}
	if gw.Requests() != 3 || len(gw.Messages()) != 1 {
		t.Fatalf("requests %d, messages %d; want 3, 1", gw.Requests(), len(gw.Messages()))
	}
	waits := sl.get()
	if len(waits) != 2 {
		t.Fatalf("waits %v, want 2", waits)
	}
	// 100 ms doubling, jittered to [d/2, d].
	for i, d := range waits {
		hi := 100 * time.Millisecond << i
		if d < hi/2 || d > hi {
			t.Errorf("wait %d = %v, want in [%v, %v]", i, d, hi/2, hi)
		}
	}
	if st := s.Stats(); st != (SenderStats{Sent: 1, Retried: 2}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestHTTPSenderGivesUp(t *testing.T) {
	smsLeakCheck(t)
	gw, srv := smsSimServer(t)
	s, sl := smsHTTPSender(t, srv, func(o *HTTPSenderOptions) { o.Retries = 2 })
	gw.FailNext(10, http.StatusBadGateway, 0)
	err := s.Send(context.Background(), smsTestMsg)
	if !errors.Is(err, ErrSMSUnavailable) || errors.Is(err, ErrSMSRejected) {
		t.Fatalf("Send: %v, want ErrSMSUnavailable", err)
	}
	if gw.Requests() != 3 || len(sl.get()) != 2 {
		t.Fatalf("requests %d, waits %v; want 3 requests, 2 waits", gw.Requests(), sl.get())
	}
	if st := s.Stats(); st != (SenderStats{Failed: 1, Retried: 2}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestHTTPSenderBackoffCap(t *testing.T) {
	s, err := NewHTTPSender(HTTPSenderOptions{URL: "http://127.0.0.1:1/", BackoffMax: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := range 40 {
		d := s.backoff(attempt)
		hi := min(100*time.Millisecond<<min(attempt, 10), 300*time.Millisecond)
		if d < hi/2 || d > hi {
			t.Fatalf("backoff(%d) = %v, want in [%v, %v]", attempt, d, hi/2, hi)
		}
	}
}

func TestHTTPSender429RetryAfter(t *testing.T) {
	smsLeakCheck(t)
	f := func(retryAfter, max, want time.Duration) {
		t.Helper()
		gw, srv := smsSimServer(t)
		s, sl := smsHTTPSender(t, srv, func(o *HTTPSenderOptions) { o.RetryAfterMax = max })
		gw.FailNext(1, http.StatusTooManyRequests, retryAfter)
		if err := s.Send(context.Background(), smsTestMsg); err != nil {
			t.Fatal(err)
		}
		if waits := sl.get(); len(waits) != 1 || waits[0] != want {
			t.Fatalf("Retry-After %v, cap %v: waits %v, want [%v]", retryAfter, max, waits, want)
		}
		if gw.Requests() != 2 || len(gw.Messages()) != 1 {
			t.Fatalf("requests %d, messages %d", gw.Requests(), len(gw.Messages()))
		}
	}
	f(3*time.Second, 0, 3*time.Second)              // honoured
	f(30*time.Second, 2*time.Second, 2*time.Second) // capped
}

func TestHTTPSender429PastDeadline(t *testing.T) {
	smsLeakCheck(t)
	gw, srv := smsSimServer(t)
	s, sl := smsHTTPSender(t, srv, nil)
	gw.FailNext(1, http.StatusTooManyRequests, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.Send(ctx, smsTestMsg)
	if !errors.Is(err, ErrSMSUnavailable) || len(sl.get()) != 0 {
		t.Fatalf("Send: %v, waits %v; want ErrSMSUnavailable at once", err, sl.get())
	}
}

func TestHTTPSenderRejected(t *testing.T) {
	smsLeakCheck(t)
	gw, srv := smsSimServer(t)
	s, sl := smsHTTPSender(t, srv, nil)
	if !gw.Reject(smsTestMsg.To) {
		t.Fatal("Reject refused")
	}
	err := s.Send(context.Background(), smsTestMsg)
	if !errors.Is(err, ErrSMSRejected) || errors.Is(err, ErrSMSUnavailable) {
		t.Fatalf("Send: %v, want ErrSMSRejected", err)
	}
	if gw.Requests() != 1 || len(sl.get()) != 0 {
		t.Fatalf("requests %d, waits %v; want no retry", gw.Requests(), sl.get())
	}
	if st := s.Stats(); st != (SenderStats{Failed: 1}) {
		t.Fatalf("stats %+v", st)
	}
	// Another number still goes through.
	if err := s.Send(context.Background(), SMS{To: "+79161234568", Text: "x"}); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPSenderAttemptTimeout(t *testing.T) {
	smsLeakCheck(t)
	gw, srv := smsSimServer(t)
	gw.SetDelay(time.Minute) // the handler returns when the client gives up
	s, sl := smsHTTPSender(t, srv, func(o *HTTPSenderOptions) {
		o.Timeout = 50 * time.Millisecond
		o.Retries = 1
	})
	err := s.Send(context.Background(), smsTestMsg)
	if !errors.Is(err, ErrSMSUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send: %v, want ErrSMSUnavailable wrapping a deadline", err)
	}
	if len(sl.get()) != 1 {
		t.Fatalf("waits %v, want one retry", sl.get())
	}
}

func TestHTTPSenderContextBound(t *testing.T) {
	smsLeakCheck(t)
	gw, srv := smsSimServer(t)
	gw.SetDelay(time.Minute)
	s, _ := smsHTTPSender(t, srv, func(o *HTTPSenderOptions) { o.Sleep = sleepCtx }) // per attempt: 5 s
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := s.Send(ctx, smsTestMsg)
	if !errors.Is(err, ErrSMSUnavailable) || ctx.Err() == nil {
		t.Fatalf("Send: %v (ctx %v), want ErrSMSUnavailable after ctx ended", err, ctx.Err())
	}
}

func TestHTTPSenderRefusesBadSMS(t *testing.T) {
	smsLeakCheck(t)
	gw, srv := smsSimServer(t)
	s, _ := smsHTTPSender(t, srv, nil)
	if err := s.Send(context.Background(), SMS{To: "89161234567", Text: "x"}); !errors.Is(err, ErrSMSInvalid) {
		t.Fatalf("Send: %v, want ErrSMSInvalid", err)
	}
	if gw.Requests() != 0 {
		t.Fatal("an invalid SMS reached the gateway")
	}
}

func TestNewHTTPSenderRefusesBadOptions(t *testing.T) {
	for name, o := range map[string]HTTPSenderOptions{
		"empty URL":        {},
		"ftp":              {URL: "ftp://127.0.0.1/x"},
		"file":             {URL: "file:///etc/passwd"},
		"no host":          {URL: "http:///send"},
		"relative":         {URL: "/send"},
		"unparseable":      {URL: "http://[::1"},
		"bad method":       {URL: "http://127.0.0.1/", Method: "GE T"},
		"bad header name":  {URL: "http://127.0.0.1/", HeaderName: "Auth orization", HeaderValue: "x"},
		"bad header value": {URL: "http://127.0.0.1/", HeaderName: "Authorization", HeaderValue: "a\r\nX-Evil: 1"},
		"value no name":    {URL: "http://127.0.0.1/", HeaderValue: "x"},
		"template syntax":  {URL: "http://127.0.0.1/", BodyTemplate: "{{json .To"},
		"template field":   {URL: "http://127.0.0.1/", BodyTemplate: "{{.Phone}}"},
		"content type":     {URL: "http://127.0.0.1/", ContentType: "text/plain\n"},
		"negative timeout": {URL: "http://127.0.0.1/", Timeout: -time.Second},
		"backoff inverted": {URL: "http://127.0.0.1/", BackoffBase: time.Second, BackoffMax: time.Millisecond},
	} {
		if _, err := NewHTTPSender(o); !errors.Is(err, ErrSMSConfig) {
			t.Errorf("%s: %v, want ErrSMSConfig", name, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080/send", "https://sms.example.com/v1/messages?x=1"} {
		s, err := NewHTTPSender(HTTPSenderOptions{URL: u})
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		s.Close()
	}
}

func TestHTTPSenderTemplateEscaping(t *testing.T) {
	smsLeakCheck(t)
	text := "code \"123\"\nline2\t\\ </script> {{.To}} кириллица"
	// The default template, decoded by the simulator.
	gw, srv := smsSimServer(t)
	s, _ := smsHTTPSender(t, srv, nil)
	if err := s.Send(context.Background(), SMS{To: "+79161234567", Text: text}); err != nil {
		t.Fatal(err)
	}
	if msgs := gw.Messages(); len(msgs) != 1 || msgs[0].Text != text {
		t.Fatalf("gateway got %+v, want text %q", msgs, text)
	}

	// A custom template, its raw body checked.
	var (
		mu   sync.Mutex
		body string
		hdr  http.Header
	)
	raw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		body, hdr = string(b), r.Header.Clone()
		mu.Unlock()
	}))
	t.Cleanup(raw.Close)
	s2, _ := smsHTTPSender(t, raw, func(o *HTTPSenderOptions) {
		o.Method = http.MethodPut
		o.HeaderName, o.HeaderValue = "X-Api-Key", "k1"
		o.ContentType = "application/vnd.sms+json"
		o.BodyTemplate = `{"phone":{{json .To}},"message":{{json .Text}}}`
	})
	if err := s2.Send(context.Background(), SMS{To: "+79161234567", Text: text}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := `{"phone":"+79161234567","message":"code \"123\"\nline2\t\\ \u003c/script\u003e {{.To}} кириллица"}`
	if body != want {
		t.Fatalf("body\n%s\nwant\n%s", body, want)
	}
	if hdr.Get("X-Api-Key") != "k1" || hdr.Get("Content-Type") != "application/vnd.sms+json" {
		t.Fatalf("headers %v", hdr)
	}
}

func TestHTTPSenderNoRedirect(t *testing.T) {
	smsLeakCheck(t)
	gw, srv := smsSimServer(t)
	redir := httptest.NewServer(http.RedirectHandler(srv.URL+"/send", http.StatusTemporaryRedirect))
	t.Cleanup(redir.Close)
	s, sl := smsHTTPSender(t, redir, nil)
	if err := s.Send(context.Background(), smsTestMsg); !errors.Is(err, ErrSMSUnavailable) {
		t.Fatalf("Send through a redirect: %v, want ErrSMSUnavailable", err)
	}
	if gw.Requests() != 0 || len(sl.get()) != 0 {
		t.Fatalf("redirect followed or retried: requests %d, waits %v", gw.Requests(), sl.get())
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		" 7 ":                           7 * time.Second,
		"0":                             0,
		"-5":                            0,
		"99999999999":                   24 * time.Hour,
		"soon":                          0,
		"Fri, 02 Jan 2026 03:04:15 GMT": 10 * time.Second,
		"Fri, 02 Jan 2026 03:04:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "3", "-1", "99999999999999999999", "Fri, 02 Jan 2026 03:04:15 GMT", "x"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d := parseRetryAfter(s, now); d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v < 0", s, d)
		}
	})
}

func BenchmarkHTTPSenderSend(b *testing.B) {
	gw := NewSimGateway(SimGatewayOptions{MaxMessages: 1})
	srv := httptest.NewServer(gw)
	defer srv.Close()
	s, err := NewHTTPSender(HTTPSenderOptions{URL: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Send(context.Background(), smsTestMsg); err != nil {
			b.Fatal(err)
		}
	}
}

// A gateway URL often carries its credentials in the query (api_key=…);
// a network error must not put them in the log line or the error.
func TestHTTPSenderNetworkErrorHidesURLSecrets(t *testing.T) {
	smsLeakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: the attempt fails with a network error
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	s, err := NewHTTPSender(HTTPSenderOptions{
		URL:     "http://" + addr + "/send?api_key=SECRETKEY",
		Retries: -1,
		Logger:  slog.New(slog.NewTextHandler(&lockedWriter{w: &logBuf, mu: &logMu}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	err = s.Send(context.Background(), smsTestMsg)
	if !errors.Is(err, ErrSMSUnavailable) {
		t.Fatalf("Send to a closed port: %v, want ErrSMSUnavailable", err)
	}
	logMu.Lock()
	logged := logBuf.String()
	logMu.Unlock()
	if strings.Contains(err.Error(), "SECRETKEY") || strings.Contains(logged, "SECRETKEY") {
		t.Fatalf("gateway credentials leaked:\nerr: %v\nlog: %s", err, logged)
	}
	if !strings.Contains(logged, addr) {
		t.Fatalf("log line lost the gateway's address: %s", logged)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A gateway's error body may echo the number and the text (its code): the
// error and the log line keep the gist of the body but neither of those.
func TestHTTPSenderErrorBodyHidesNumberAndCode(t *testing.T) {
	smsLeakCheck(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"number +7 916 123-45-67 (79161234567) barred","text":"Your code: 123456"}`)
	}))
	t.Cleanup(srv.Close)
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	s, err := NewHTTPSender(HTTPSenderOptions{
		URL:    srv.URL + "/send",
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logBuf, mu: &logMu}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	err = s.Send(context.Background(), smsTestMsg)
	if !errors.Is(err, ErrSMSRejected) {
		t.Fatalf("Send refused 400: %v, want ErrSMSRejected", err)
	}
	logMu.Lock()
	logged := logBuf.String()
	logMu.Unlock()
	for _, secret := range []string{"123-45-67", "1234567", "123456", "916 123"} {
		if strings.Contains(err.Error(), secret) || strings.Contains(logged, secret) {
			t.Fatalf("%q leaked:\nerr: %v\nlog: %s", secret, err, logged)
		}
	}
	if !strings.Contains(err.Error(), "barred") {
		t.Fatalf("the error lost the gateway's words: %v", err)
	}
}
