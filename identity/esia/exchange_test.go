package esia

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// fakeESIA answers te and prns with what a test sets.
type fakeESIA struct {
	te        func(w http.ResponseWriter, form map[string][]string)
	prns      func(w http.ResponseWriter, n int)
	teCalls   atomic.Int32
	prnsCalls atomic.Int32
}

func (f *fakeESIA) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/aas/oauth2/v3/te":
		f.teCalls.Add(1)
		r.ParseForm()
		f.te(w, r.PostForm)
	case strings.HasPrefix(r.URL.Path, "/rs/prns/"):
		if r.Header.Get("Authorization") != "Bearer AT" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		f.prns(w, int(f.prnsCalls.Add(1)))
	default:
		http.NotFound(w, r)
	}
}

func newFakeClient(t *testing.T, f *fakeESIA) (*Client, *metrics.Set) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	set := metrics.NewSet()
	cl, _ := newTestClient(t, func(c *Config) {
		c.BaseURL = srv.URL
		c.Metrics = set
		c.Now = time.Now
	})
	cl.retryW = time.Millisecond
	return cl, set
}

func goodTE(w http.ResponseWriter, form map[string][]string) {
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": "AT", "token_type": "Bearer", "expires_in": 3600, "state": form["state"][0],
		"id_token": jwtOf(map[string]any{"aud": "gonets", "exp": time.Now().Add(time.Hour).Unix(), "urn:esia:sbj_id": 7}),
	})
}

func TestExchangeAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		te   func(w http.ResponseWriter, form map[string][]string)
		want error
	}{
		{"ok", goodTE, nil},
		{"other state", func(w http.ResponseWriter, form map[string][]string) {
			form["state"][0] = NewState()
			goodTE(w, form)
		}, ErrProtocol},
		{"5xx", func(w http.ResponseWriter, _ map[string][]string) {
			http.Error(w, "down", http.StatusBadGateway)
		}, ErrUnavailable},
		{"invalid_grant", func(w http.ResponseWriter, _ map[string][]string) {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant","error_description":"ESIA-007014"}`)
		}, ErrInvalidGrant},
		{"over 1 MiB", func(w http.ResponseWriter, _ map[string][]string) {
			io.WriteString(w, `{"access_token":"`+strings.Repeat("a", 2<<20)+`"}`)
		}, ErrProtocol},
		{"not json", func(w http.ResponseWriter, _ map[string][]string) { io.WriteString(w, "<html>") }, ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeESIA{te: tc.te}
			cl, set := newFakeClient(t, f)
			tok, err := cl.Exchange(context.Background(), "CODE", NewState())
			if tc.want == nil && (err != nil || tok.OID != "7" || tok.Access != "AT") || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("token %+v err %v, want %v", tok, err, tc.want)
			}
			if n := f.teCalls.Load(); n != 1 {
				t.Fatalf("%d token requests: a code exchange is never retried", n)
			}
			if want := `gonets_esia_requests_total{endpoint="te",outcome="` + outcomeOf(tc.want) + `"} 1`; !strings.Contains(metricsText(set), want) {
				t.Fatalf("metrics lack %s", want)
			}
		})
	}
}

func TestPersonRetries(t *testing.T) {
	record := `{"firstName":"Иван","lastName":"Иванов","birthDate":"15.03.1990","snils":"123-456-789 64","trusted":true,"oid":7}`
	for _, tc := range []struct {
		name      string
		prns      func(w http.ResponseWriter, n int)
		want      error
		wantCalls int32
	}{
		{"ok", func(w http.ResponseWriter, _ int) { io.WriteString(w, record) }, nil, 1},
		{"5xx then ok", func(w http.ResponseWriter, n int) {
			if n < 3 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, record)
		}, nil, 3},
		{"5xx every try", func(w http.ResponseWriter, _ int) { http.Error(w, "busy", http.StatusServiceUnavailable) }, ErrUnavailable, 3},
		{"403 not retried", func(w http.ResponseWriter, _ int) { w.WriteHeader(http.StatusForbidden) }, ErrProtocol, 1},
		{"bad snils", func(w http.ResponseWriter, _ int) { io.WriteString(w, `{"snils":"123-456-789 00"}`) }, ErrProtocol, 1},
		{"bad birth date", func(w http.ResponseWriter, _ int) { io.WriteString(w, `{"birthDate":"1990-03-15"}`) }, ErrProtocol, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeESIA{prns: tc.prns}
			cl, _ := newFakeClient(t, f)
			p, err := cl.Person(context.Background(), Token{Access: "AT", OID: "7", Expires: time.Now().Add(time.Hour)})
			if tc.want == nil && (err != nil || p.OID != "7" || p.BirthDateISO() != "1990-03-15") || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("person %+v err %v, want %v", p, err, tc.want)
			}
			if n := f.prnsCalls.Load(); n != tc.wantCalls {
				t.Fatalf("%d requests, want %d", n, tc.wantCalls)
			}
		})
	}
	// A token past its expiry is not sent.
	f := &fakeESIA{prns: func(w http.ResponseWriter, _ int) { io.WriteString(w, record) }}
	cl, _ := newFakeClient(t, f)
	if _, err := cl.Person(context.Background(), Token{Access: "AT", OID: "7", Expires: time.Now().Add(-time.Second)}); !errors.Is(err, ErrInvalidGrant) || f.prnsCalls.Load() != 0 {
		t.Fatalf("expired token: %v after %d requests", err, f.prnsCalls.Load())
	}
	if _, err := cl.Person(context.Background(), Token{Access: "other", OID: "7"}); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("401: %v", err)
	}
}
