package tools

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gonets/gonets/bench/result"
)

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{{"bench"}, {"bench", "--json"}, {"bench", "chat", "--peer", "kafka"}, {"bench", "chat", "extra"}, {"bench", "call", "--peer", "nats"}} {
		var out, errOut bytes.Buffer
		if code := Main(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{"bench", "nosuch"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "unknown scenario") {
		t.Errorf("unknown scenario: exit %d, %s", code, errOut.String())
	}
	errOut.Reset()
	if code := Main([]string{"bench", "chat", "--procs", "2", "--cpuprofile", "x"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "holds no sessions") {
		t.Errorf("--cpuprofile with --procs: exit %d, %s", code, errOut.String())
	}
	errOut.Reset()
	if code := Main([]string{"bench", "sync", "--procs", "2"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "sync runs in one process") {
		t.Errorf("sync --procs 2: exit %d, %s", code, errOut.String())
	}
}

func TestBenchWorkerHidden(t *testing.T) {
	var out, errOut bytes.Buffer
	Main([]string{"help"}, &out, &errOut)
	if strings.Contains(out.String(), "bench-worker") || !strings.Contains(out.String(), "bench-summary") {
		t.Fatalf("usage lists the internal worker, or misses bench-summary:\n%s", out.String())
	}
	if code := Main([]string{"bench-worker", "extra"}, &out, &errOut); code != 2 {
		t.Fatalf("bench-worker extra: exit %d", code)
	}
}

func TestPeerPassThrough(t *testing.T) {
	got := passThrough([]string{"--users", "10", "--json", "--rate=5", "--out", "f", "-duration", "2s", "--server", "x:1", "--procs", "2", "--procs=3", "--idle", "1s", "--peer-tls=false"})
	want := []string{"--users=10", "--rate=5", "--duration=2s", "--idle=1s"}
	if !slices.Equal(got, want) {
		t.Fatalf("passThrough = %v, want %v", got, want)
	}
}

func TestBenchSummary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.jsonl")
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, rate := range []float64{100, 300, 200} {
		enc.Encode(result.Result{Scenario: "sync", Target: "gonets", Rate: rate, DeliveredRatio: 1, Met: rate > 150,
			Latency: result.Latency{P99: rate / 100}, Metrics: map[string]float64{"catch_up_ms": rate, "node_cpu_us_per_message": rate / 10,
				"node_cpu_us_per_delivery": rate / 100, "node_packets_in_per_message": 1.5, "node_packets_out_per_message": 2.5,
				"node_idle_cpu_pct_per_1000_sessions": 0.3}})
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{"bench-summary", path}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "| sync | gonets | 3 | 0 | 200 | 100.00% | 0.00 | 2.00 |") ||
		!strings.Contains(out.String(), "| 20 | 2.0 | 1.50 / 2.50 | 0.30% |") ||
		!strings.Contains(out.String(), "2 of 3") || !strings.Contains(out.String(), "catch_up_ms 200") {
		t.Fatalf("summary:\n%s", out.String())
	}
}

func TestBenchTableCost(t *testing.T) {
	gonets := result.Result{Scenario: "chat", Target: "gonets", Rate: 1000, Latency: result.Latency{P99: 4},
		Metrics: map[string]float64{"node_cpu_us_per_message": 300, "node_cpu_us_per_delivery": 300, "node_packets_in_per_message": 2.1,
			"node_packets_out_per_message": 2.3, "node_idle_cpu_pct_per_1000_sessions": 0.5}}
	peer := result.Result{Scenario: "chat", Target: "nats-core", Rate: 2000, Latency: result.Latency{P99: 2},
		Params:  map[string]any{"users-per-conn": 1.0, "tls": true},
		Metrics: map[string]float64{"node_cpu_us_per_message": 100}}
	var out bytes.Buffer
	printTable(&out, []result.Result{gonets, peer})
	for _, want := range []string{"µs/msg", "2.10 / 2.30", "0.50%", "vs nats-core: rate ×0.50, node CPU per message ×3.00, p99 ×2.00",
		"one TCP connection per user, TLS 1.3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
}
