package esia

import (
	"bytes"
	"context"
	"encoding/base64"
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

// signingService is an httptest signing service that signs with a
// DevSigner after failing the first fail requests with failStatus.
type signingService struct {
	t          *testing.T
	dev        *DevSigner
	fail       int
	failStatus int
	failBody   string
	calls      atomic.Int32
	srv        *httptest.Server
}

func newSigningService(t *testing.T, fail, failStatus int, failBody string) *signingService {
	t.Helper()
	cert, key, err := GenerateDevKey("operator")
	if err != nil {
		t.Fatal(err)
	}
	s := &signingService{t: t, dev: NewDevSigner(cert, key), fail: fail, failStatus: failStatus, failBody: failBody}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *signingService) serve(w http.ResponseWriter, r *http.Request) {
	n := int(s.calls.Add(1))
	if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer secret" || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad request shape", http.StatusBadRequest)
		return
	}
	var req struct {
		Data     string `json:"data"`
		Detached *bool  `json:"detached"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Detached == nil || !*req.Detached {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	if n <= s.fail {
		http.Error(w, s.failBody, s.failStatus)
		return
	}
	data, err := base64.StdEncoding.DecodeString(req.Data)
	if err != nil {
		http.Error(w, "bad base64", http.StatusBadRequest)
		return
	}
	sig, err := s.dev.Sign(r.Context(), data)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"signature": base64.StdEncoding.EncodeToString(sig)})
}

func (s *signingService) signer(t *testing.T, set *metrics.Set) *HTTPSigner {
	t.Helper()
	hs, err := NewHTTPSigner(HTTPSignerOptions{URL: s.srv.URL + "/sign", AuthHeader: "Authorization", AuthValue: "Bearer secret",
		Backoff: time.Millisecond, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

func metricsText(set *metrics.Set) string {
	var b bytes.Buffer
	set.WritePrometheus(&b)
	return b.String()
}

func TestHTTPSigner(t *testing.T) {
	data := []byte("gonetsopenid fullname2026.12.02 22:10:00 +0300")
	for _, tc := range []struct {
		name       string
		fail       int
		failStatus int
		wantErr    error
		wantCalls  int32
		wantMetric string
	}{
		{"ok", 0, 0, nil, 1, `outcome="ok"} 1`},
		{"5xx retried then ok", 2, http.StatusBadGateway, nil, 3, `outcome="ok"} 1`},
		{"5xx every try", 5, http.StatusServiceUnavailable, ErrUnavailable, 3, `outcome="unavailable"} 1`},
		{"4xx not retried", 5, http.StatusForbidden, ErrSignerRejected, 1, `outcome="rejected"} 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := newSigningService(t, tc.fail, tc.failStatus, strings.Repeat("x", 300))
			set := metrics.NewSet()
			sig, err := svc.signer(t, set).Sign(context.Background(), data)
			if got := svc.calls.Load(); got != tc.wantCalls {
				t.Errorf("%d requests, want %d", got, tc.wantCalls)
			}
			if !strings.Contains(metricsText(set), `gonets_esia_requests_total{endpoint="signer",`+tc.wantMetric) {
				t.Errorf("metrics lack %s:\n%s", tc.wantMetric, metricsText(set))
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				// The body is quoted, cut at 200 bytes.
				if !strings.Contains(err.Error(), strings.Repeat("x", 200)) || strings.Contains(err.Error(), strings.Repeat("x", 201)) {
					t.Fatalf("err %v does not quote 200 bytes of the body", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifySecret(EncodeSecret(sig), data, svc.dev.Certificate()); err != nil {
				t.Fatalf("the service's signature does not verify: %v", err)
			}
		})
	}
}

func TestHTTPSignerMalformed(t *testing.T) {
	for name, body := range map[string]string{
		"not json":       `<html>`,
		"not base64":     `{"signature":"***"}`,
		"empty":          `{"signature":""}`,
		"not DER":        `{"signature":"` + base64.StdEncoding.EncodeToString([]byte("hello")) + `"}`,
		"trailing bytes": `{"signature":"` + base64.StdEncoding.EncodeToString([]byte{0x30, 0x00, 0x01}) + `"}`,
	} {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			io.WriteString(w, body)
		}))
		hs, err := NewHTTPSigner(HTTPSignerOptions{URL: srv.URL, Backoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		_, err = hs.Sign(context.Background(), []byte("x"))
		srv.Close()
		if !errors.Is(err, ErrProtocol) || calls.Load() != 1 {
			t.Errorf("%s: err %v after %d requests, want ErrProtocol after 1", name, err, calls.Load())
		}
	}
}

func TestHTTPSignerDeadline(t *testing.T) {
	svc := newSigningService(t, 5, http.StatusInternalServerError, "down")
	hs, err := NewHTTPSigner(HTTPSignerOptions{URL: svc.srv.URL, AuthHeader: "Authorization", AuthValue: "Bearer secret", Backoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = hs.Sign(ctx, []byte("x"))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no time left") || svc.calls.Load() != 1 {
		t.Fatalf("err %v after %d requests, want no retry past the deadline", err, svc.calls.Load())
	}
}

func TestNewHTTPSignerConfig(t *testing.T) {
	for _, o := range []HTTPSignerOptions{
		{},
		{URL: "ftp://host/x"},
		{URL: "http://"},
		{URL: "http://h", AuthValue: "v"},
		{URL: "http://h", Timeout: -1},
	} {
		if _, err := NewHTTPSigner(o); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err %v, want ErrConfig", o, err)
		}
	}
}
