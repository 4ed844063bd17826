package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func TestNewRequest(t *testing.T) {
	req, err := NewRequest(t.Context(), http.MethodPost, "http://h/v1/x", []byte(`{"a":1}`), "Authorization", "Bearer t")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	if req.Method != http.MethodPost || string(body) != `{"a":1}` || req.ContentLength != 7 ||
		req.Header.Get("Content-Type") != "application/json" || req.Header.Get("Accept") != "application/json" ||
		req.Header.Get("Authorization") != "Bearer t" {
		t.Errorf("POST request: %s %q %d %v", req.Method, body, req.ContentLength, req.Header)
	}
	req, err = NewRequest(t.Context(), http.MethodGet, "http://h/v1/x", nil, "", "ignored")
	if err != nil {
		t.Fatal(err)
	}
	if req.Body != nil || req.Header.Get("Content-Type") != "" || req.Header.Get("Accept") != "application/json" || len(req.Header) != 1 {
		t.Errorf("GET request: body %v, header %v", req.Body, req.Header)
	}
	if _, err := NewRequest(t.Context(), "BAD METHOD", "http://h/", nil, "", ""); err == nil {
		t.Error("a bad method built")
	}
}

func TestNewClientDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Store(true)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	c, tr := NewClient()
	defer tr.CloseIdleConnections()
	if c.Transport != tr || tr == http.DefaultTransport {
		t.Error("the client's transport is not its own")
	}
	resp, err := c.Get(srv.URL + "/start")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || followed.Load() {
		t.Errorf("status %d, followed %v; want the 302 itself", resp.StatusCode, followed.Load())
	}
}

func TestRedactURL(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL + "/v1/persons/secret-oid?snils=123"
	srv.Close() // connections are refused from now on
	c, tr := NewClient()
	defer tr.CloseIdleConnections()
	req, err := NewRequest(context.Background(), http.MethodGet, u, nil, "", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(req)
	if err == nil {
		t.Fatal("a closed server answered")
	}
	err = RedactURL(err, "http://api.example")
	if strings.Contains(err.Error(), "secret-oid") || strings.Contains(err.Error(), "snils") || !strings.Contains(err.Error(), "http://api.example") {
		t.Errorf("redacted error %q", err)
	}
	if _, ok := errors.AsType[*url.Error](err); !ok {
		t.Errorf("redacted error %T is no longer a *url.Error", err)
	}
	plain := errors.New("plain")
	if RedactURL(plain, "x") != plain {
		t.Error("a non-URL error changed")
	}
}
