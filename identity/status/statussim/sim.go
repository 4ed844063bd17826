package statussim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gonets/gonets/identity/status"
)

// Sim is an in-memory state-service side. Safe for concurrent use.
type Sim struct {
	mu         sync.Mutex                       // guards the following
	people     map[string][]*status.Application // by OID, applications in the order added
	fail       int
	calls      int
	authHeader string
	authValue  string
}

// New returns a Sim with no applications that asks for no credentials.
func New() *Sim { return &Sim{people: make(map[string][]*status.Application)} }

// Add appends s to the application orderID of the person oid, creating the
// application (with service) on its first status; a non-empty service
// renames an existing one.
func (m *Sim) Add(oid, orderID, service string, s status.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.people[oid] {
		if a.OrderID == orderID {
			if service != "" {
				a.Service = service
			}
			a.Statuses = append(a.Statuses, s)
			return
		}
	}
	m.people[oid] = append(m.people[oid], &status.Application{OrderID: orderID, Service: service, Statuses: []status.Status{s}})
}

// Fail makes the next n calls (HTTP or Source) fail: HTTP with 503, Source
// with status.ErrUnavailable.
func (m *Sim) Fail(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = n
}

// RequireAuth makes every HTTP request carry header: value; one without
// gets 401. The in-process Source is not checked.
func (m *Sim) RequireAuth(header, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.authHeader, m.authValue = header, value
}

// Calls returns how many calls reached the Sim, failed ones included.
func (m *Sim) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// answer reports whether a call is to fail, and the person's applications
// (a deep copy; nil when none).
func (m *Sim) answer(oid string) (fail bool, apps []status.Application) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return true, nil
	}
	for _, a := range m.people[oid] {
		apps = append(apps, status.Application{OrderID: a.OrderID, Service: a.Service, Statuses: append([]status.Status(nil), a.Statuses...)})
	}
	return false, apps
}

// Source returns the Sim as an in-process status.Source.
func (m *Sim) Source() status.Source { return source{m} }

type source struct{ m *Sim }

func (s source) History(ctx context.Context, p status.Person) ([]status.Application, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", status.ErrUnavailable, err)
	}
	s.m.mu.Lock()
	s.m.calls++
	s.m.mu.Unlock()
	fail, apps := s.m.answer(p.OID)
	if fail {
		return nil, fmt.Errorf("%w: statussim: simulated failure", status.ErrUnavailable)
	}
	return apps, nil
}

// The answer's JSON, as documented in package status.
type (
	wireHistory struct {
		Applications []wireApplication `json:"applications"`
	}
	wireApplication struct {
		OrderID  string       `json:"order_id"`
		Service  string       `json:"service"`
		Statuses []wireStatus `json:"statuses"`
	}
	wireStatus struct {
		Code  string `json:"code"`
		Title string `json:"title"`
		At    string `json:"at"`
		Final bool   `json:"final"`
	}
)

// ServeHTTP serves GET /v1/persons/{oid}/applications: 200 with the
// person's applications, 404 when they have none, 503 while told to fail,
// 401 without the credentials RequireAuth set.
func (m *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.calls++
	header, value := m.authHeader, m.authValue
	m.mu.Unlock()
	if header != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(header)), []byte(value)) != 1 {
		httpError(w, http.StatusUnauthorized, "bad credentials")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/v1/persons/")
	escOID, tail, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || tail != "applications" || escOID == "" {
		httpError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	if r.Method != http.MethodGet {
		httpError(w, http.StatusMethodNotAllowed, "GET only")
		return
	}
	oid, err := url.PathUnescape(escOID)
	if err != nil {
		httpError(w, http.StatusBadRequest, "bad oid")
		return
	}
	fail, apps := m.answer(oid)
	if fail {
		httpError(w, http.StatusServiceUnavailable, "simulated failure")
		return
	}
	if len(apps) == 0 {
		httpError(w, http.StatusNotFound, "no applications")
		return
	}
	h := wireHistory{Applications: make([]wireApplication, len(apps))}
	for i, a := range apps {
		wa := wireApplication{OrderID: a.OrderID, Service: a.Service, Statuses: make([]wireStatus, len(a.Statuses))}
		for j, s := range a.Statuses {
			wa.Statuses[j] = wireStatus{Code: s.Code, Title: s.Title, At: s.At.Format(time.RFC3339Nano), Final: s.Final}
		}
		h.Applications[i] = wa
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(h)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Write(append(b, '\n'))
}
