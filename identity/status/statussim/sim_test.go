package statussim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gonets/gonets/identity/status"
)

func TestSource(t *testing.T) {
	m := New()
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	m.Add("1", "o1", "Паспорт", status.Status{Code: "a", At: at})
	m.Add("1", "o2", "Пособие", status.Status{Code: "b", At: at})
	m.Add("1", "o1", "", status.Status{Code: "c", At: at.Add(time.Hour), Final: true})
	src := m.Source()
	apps, err := src.History(t.Context(), status.Person{OID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 || apps[0].OrderID != "o1" || apps[0].Service != "Паспорт" || len(apps[0].Statuses) != 2 || !apps[0].Statuses[1].Final {
		t.Fatalf("got %+v", apps)
	}
	apps[0].Statuses[0].Code = "changed"
	if again, _ := src.History(t.Context(), status.Person{OID: "1"}); again[0].Statuses[0].Code != "a" {
		t.Fatal("History shares the Sim's statuses")
	}
	if apps, err := src.History(t.Context(), status.Person{OID: "2"}); apps != nil || err != nil {
		t.Fatalf("unknown person: %v %v", apps, err)
	}
	m.Fail(1)
	if _, err := src.History(t.Context(), status.Person{OID: "1"}); !errors.Is(err, status.ErrUnavailable) {
		t.Fatalf("told to fail: %v", err)
	}
	if _, err := src.History(t.Context(), status.Person{OID: "1"}); err != nil {
		t.Fatalf("after the failure: %v", err)
	}
	if m.Calls() != 5 {
		t.Fatalf("%d calls, want 5", m.Calls())
	}
}

func TestServeHTTP(t *testing.T) {
	m := New()
	m.Add("1/2", "o1", "Паспорт", status.Status{Code: "a", Title: "t", At: time.Date(2026, 3, 1, 9, 0, 0, 5, time.UTC)})
	srv := httptest.NewServer(m)
	defer srv.Close()
	get := func(method, path, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("X-Key", auth)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	code, body := get("GET", "/v1/persons/1%2F2/applications", "")
	var h struct {
		Applications []struct {
			OrderID  string `json:"order_id"`
			Statuses []struct {
				Code, At string
				Final    bool
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &h); code != 200 || err != nil || h.Applications[0].OrderID != "o1" || h.Applications[0].Statuses[0].At != "2026-03-01T09:00:00.000000005Z" {
		t.Fatalf("%d %s", code, body)
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/persons/3/applications", 404},
		{"GET", "/v1/persons/1%2F2/other", 404},
		{"GET", "/v2/x", 404},
		{"POST", "/v1/persons/1%2F2/applications", 405},
	} {
		if code, _ := get(c.method, c.path, ""); code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, code, c.want)
		}
	}
	m.Fail(1)
	if code, _ := get("GET", "/v1/persons/1%2F2/applications", ""); code != 503 {
		t.Errorf("told to fail: %d", code)
	}
	m.RequireAuth("X-Key", "k")
	if code, _ := get("GET", "/v1/persons/1%2F2/applications", "wrong"); code != 401 {
		t.Errorf("wrong key: %d", code)
	}
	if code, _ := get("GET", "/v1/persons/1%2F2/applications", "k"); code != 200 {
		t.Errorf("right key: %d", code)
	}
	if m.Calls() != 8 {
		t.Errorf("%d calls, want 8", m.Calls())
	}
}
