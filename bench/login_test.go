package bench

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/broker/client"
)

// TestLoginScenarioSmall signs up 20 users against a node started from
// the built binary, over QUIC and over TCP, and checks that every login
// and refresh succeeded, that the refreshes resumed their TLS sessions,
// and that the rates and the node's cost were measured. It asserts no
// speed.
func TestLoginScenarioSmall(t *testing.T) {
	bin := gonetsBinary(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	defer http.DefaultClient.CloseIdleConnections()
	for _, via := range []client.Transport{client.TransportQUIC, client.TransportTCP} {
		t.Run(via.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r, err := Run(ctx, "login", Config{Binary: bin, Transport: via, Users: 20, Concurrency: 4,
				Duration: time.Second, Warmup: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			m := r.Metrics
			for k, want := range map[string]float64{"users": 20, "accounts_created": 20, "login_failures": 0,
				"refresh_failures": 0, "refresh_resumed_ratio": 1} {
				if m[k] != want {
					t.Errorf("%s = %v, want %v", k, m[k], want)
				}
			}
			for _, k := range []string{"logins_per_s", "refreshes_per_s", "refreshes_batched_per_s",
				"login_p50_ms", "refresh_p50_ms", "node_cpu_us_per_login", "node_cpu_us_per_refresh",
				"node_cpu_us_per_refresh_batched", "node_packets_in_per_login", "node_packets_out_per_refresh", "node_rss_bytes"} {
				if v, ok := m[k]; !ok || v <= 0 {
					t.Errorf("metric %s = %v (reported %v)", k, v, ok)
				}
			}
			if r.DeliveredRatio != 1 || r.Latency.Count != 20 || r.Rate != m["logins_per_s"] || r.Node == nil || r.Met {
				t.Errorf("ratio %v, %d logins timed, rate %v, node %v, met %v", r.DeliveredRatio, r.Latency.Count, r.Rate, r.Node, r.Met)
			}
		})
	}
}

// TestOutboxTail checks that the outbox reader takes only what was
// appended after it opened, keeps a torn line until it is complete, and
// finds the code of the advertised length.
func TestOutboxTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sms-outbox.jsonl")
	appendLine := func(s string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	appendLine(`{"to":"+79000000001","text":"Gonets code: 111111.","at":"2026-01-01T00:00:00Z"}` + "\n")
	ob, err := openOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.close()
	appendLine(`{"to":"+79000000002","text":"Gonets code: 2026 is 222222.","at":"2026-01-01T00:00:00Z"}` + "\n")
	appendLine(`{"to":"+79000000003","text":"Gonets code: 33`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := ob.code(ctx, "+79000000002", 6); err != nil || c != "222222" {
		t.Fatalf("code = %q, %v; want 222222", c, err)
	}
	appendLine(`3333.","at":"2026-01-01T00:00:00Z"}` + "\n")
	if c, err := ob.code(ctx, "+79000000003", 6); err != nil || c != "333333" {
		t.Fatalf("code after a torn line = %q, %v; want 333333", c, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if c, err := ob.code(short, "+79000000001", 6); err == nil {
		t.Fatalf("a code written before the reader opened was read: %q", c)
	}
}
