package identity

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestSimGatewayRequests(t *testing.T) {
	gw := NewSimGateway(SimGatewayOptions{HeaderName: "X-Key", HeaderValue: "k", MaxMessages: 2, MaxBody: 100})
	f := func(method, key, body string, want int) {
		t.Helper()
		r := httptest.NewRequest(method, "/send", strings.NewReader(body))
		if key != "" {
			r.Header.Set("X-Key", key)
		}
		w := httptest.NewRecorder()
		gw.ServeHTTP(w, r)
		if w.Code != want {
			t.Fatalf("%s %q key %q: status %d, want %d (%s)", method, body, key, w.Code, want, w.Body)
		}
	}
	msg := func(to, text string) string { return fmt.Sprintf(`{"to":%q,"text":%q}`, to, text) }
	f("POST", "", msg("+79161234567", "a"), http.StatusUnauthorized)
	f("POST", "bad", msg("+79161234567", "a"), http.StatusUnauthorized)
	f("GET", "k", "", http.StatusMethodNotAllowed)
	f("POST", "k", "not json", http.StatusBadRequest)
	f("POST", "k", msg("89161234567", "a"), http.StatusBadRequest)
	f("POST", "k", msg("+79161234567", ""), http.StatusBadRequest)
	f("POST", "k", msg("+79161234567", strings.Repeat("a", 100)), http.StatusRequestEntityTooLarge)
	if n := len(gw.Messages()); n != 0 {
		t.Fatalf("%d messages recorded from bad requests", n)
	}

	gw.FailNext(1, http.StatusTooManyRequests, 1500*time.Millisecond)
	r := httptest.NewRequest("POST", "/send", strings.NewReader(msg("+79161234567", "a")))
	r.Header.Set("X-Key", "k")
	w := httptest.NewRecorder()
	gw.ServeHTTP(w, r)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("status %d Retry-After %q, want 429, 2", w.Code, w.Header().Get("Retry-After"))
	}

	for i := range 3 {
		f("POST", "k", msg("+79161234567", fmt.Sprint(i)), http.StatusOK)
	}
	msgs := gw.Messages()
	if len(msgs) != 2 || msgs[0].Text != "1" || msgs[1].Text != "2" || gw.Dropped() != 1 {
		t.Fatalf("messages %+v, dropped %d; want the last two, one dropped", msgs, gw.Dropped())
	}
	if gw.Requests() != 11 {
		t.Fatalf("requests %d, want 11", gw.Requests())
	}
}

func TestSimGatewayRejectBounded(t *testing.T) {
	gw := NewSimGateway(SimGatewayOptions{})
	for i := range simMaxRejected {
		if !gw.Reject(fmt.Sprintf("+7916%07d", i)) {
			t.Fatalf("Reject %d refused", i)
		}
	}
	if gw.Reject("+79990000000") {
		t.Fatal("Reject past the bound accepted")
	}
	if !gw.Reject("+79160000000") {
		t.Fatal("Reject of a number already refused failed")
	}
}
