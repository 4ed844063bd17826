package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/bench/result"
	"go.uber.org/goleak"
)

// TestMain lets the test binary play the node: runScenario re-executes
// its own binary with roleEnv=server.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "server" {
		if err := serverCommand(os.Args[2:], os.Stdout); err != nil {
			os.Stderr.WriteString("natspeer server: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// tiny is a scenario at a scale that runs in about a second.
func tiny(scenario, target string) Options {
	return Options{
		Scenario:     scenario,
		Target:       target,
		Duration:     time.Second,
		Warmup:       200 * time.Millisecond,
		Idle:         200 * time.Millisecond,
		Users:        20,
		Groups:       4,
		Members:      5,
		Subscribers:  20,
		Publishers:   2,
		Sessions:     50,
		Dialers:      8,
		Messages:     200,
		Chats:        10,
		Rounds:       1,
		Writers:      4,
		UsersPerConn: 8,
		StepStart:    100,
		StepDuration: 500 * time.Millisecond,
		MaxSteps:     2,
		P99:          time.Second, // a loaded CI box must not fail a step
	}
}

func TestScenarios(t *testing.T) {
	for _, target := range []string{targetCore, targetJetStream} {
		for _, tc := range []struct {
			scenario string
			rate     float64
		}{
			{"chat", 200},
			{"chat", 0}, // step search
			{"group", 50},
			{"channel", 20},
			{"connect", 0},
			{"sync", 0},
			{"storage", 0},   // closed loop
			{"storage", 300}, // open loop
		} {
			if (tc.scenario == "sync" || tc.scenario == "storage") && target == targetCore {
				continue
			}
			name := tc.scenario + "/" + target
			if tc.rate > 0 {
				name += "/rate"
			}
			t.Run(name, func(t *testing.T) {
				o := tiny(tc.scenario, target)
				o.Rate, o.RateSet = tc.rate, true
				res, err := runScenario(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				checkResult(t, res, tc.rate)
			})
		}
	}
}

// checkResult checks what every result must hold, and each scenario's
// own figures.
func checkResult(t *testing.T, r *result.Result, rate float64) {
	t.Helper()
	if r.DeliveredRatio != 1 {
		t.Errorf("delivered ratio %v (%d of %d)", r.DeliveredRatio, r.Delivered, r.Expected)
	}
	if r.Node == nil || r.Node.PID == 0 || r.Node.RSSBytes == 0 || r.Generator == nil {
		t.Errorf("processes not measured: node %+v generator %+v", r.Node, r.Generator)
	}
	if r.Machine.CPUs == 0 || r.Machine.MemBytes == 0 || r.Machine.GoVersion == "" || !r.SharedCores {
		t.Errorf("machine %+v shared %v", r.Machine, r.SharedCores)
	}
	if r.Rate <= 0 || r.Seconds <= 0 || len(r.Notes) == 0 {
		t.Errorf("rate %v over %v s, %d notes", r.Rate, r.Seconds, len(r.Notes))
	}
	js := r.Target == targetJetStream
	switch r.Scenario {
	case "chat", "group", "channel":
		if r.Delivered == 0 || r.Latency.Count != r.Delivered || r.Latency.P50 <= 0 || len(r.Histogram) == 0 {
			t.Errorf("delivered %d, latency %+v", r.Delivered, r.Latency)
		}
		if js && (r.Ack.Count == 0 || r.Ack.P50 <= 0 || r.Metrics["ack_ratio"] != 1) {
			t.Errorf("ack %+v, ack ratio %v", r.Ack, r.Metrics["ack_ratio"])
		}
		if len(r.Timeline) == 0 {
			t.Error("no timeline")
		}
		if r.Scenario == "chat" && rate == 0 && (len(r.Steps) != 2 || r.Offered != 150) {
			t.Errorf("steps %+v, offered %v", r.Steps, r.Offered)
		}
		for _, st := range r.Steps {
			if !(st.NodeCPUPerMessage > 0) || !(st.NodePacketsInPerMessage > 0) {
				t.Errorf("step %+v: no cost", st)
			}
		}
		positive(t, r, "node_cpu_us_per_message", "node_cpu_us_per_delivery", "node_packets_in_per_message", "node_packets_out_per_message")
		fanout := map[string]float64{"chat": 1, "group": 4, "channel": 20}[r.Scenario]
		// Each connection a message is delivered on gets at least one
		// segment.
		perConn, _ := r.Params["users-per-conn"].(int)
		if conns := math.Ceil(20 / float64(perConn)); perConn > 0 {
			if out := r.Metrics["node_packets_out_per_message"]; out < 0.9*min(fanout, conns) {
				t.Errorf("%.2f segments out per message, fan-out %v over %v connections", out, fanout, conns)
			}
		}
		if fanout > 1 && r.Metrics["node_cpu_us_per_delivery"] >= r.Metrics["node_cpu_us_per_message"] {
			t.Errorf("CPU per delivery %v not below per message %v", r.Metrics["node_cpu_us_per_delivery"], r.Metrics["node_cpu_us_per_message"])
		}
		idle(t, r)
	case "connect":
		if r.Metrics["sessions"] != 50 || r.Metrics["rss_bytes_per_session"] <= 0 || r.Metrics["resumed_per_s"] <= 0 || r.Latency.Count != 50 {
			t.Errorf("metrics %v latency %+v", r.Metrics, r.Latency)
		}
		positive(t, r, "node_cpu_us_per_handshake", "node_packets_in_per_handshake", "node_packets_out_per_handshake",
			"node_cpu_us_per_resumption", "node_packets_in_per_resumption", "node_packets_out_per_resumption")
		idle(t, r)
	case "sync":
		if r.Delivered != 200 || r.Metrics["catch_up_ms"] <= 0 || r.Latency.Max <= 0 {
			t.Errorf("delivered %d, metrics %v", r.Delivered, r.Metrics)
		}
	case "storage":
		if r.Ack.Count == 0 || r.Ack.P50 <= 0 || r.Metrics["appends_per_s"] <= 0 || r.Metrics["reads_per_s"] <= 0 {
			t.Errorf("ack %+v, metrics %v", r.Ack, r.Metrics)
		}
	}
	var buf bytes.Buffer
	if err := printTable(&buf, r); err != nil || !strings.Contains(buf.String(), r.Scenario+" on "+r.Target) {
		t.Errorf("table: %v\n%s", err, buf.String())
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back result.Result
	if err := json.Unmarshal(b, &back); err != nil || back.Scenario != r.Scenario {
		t.Errorf("JSON round trip: %v", err)
	}
}

// positive checks that metrics exist and are positive and finite.
func positive(t *testing.T, r *result.Result, names ...string) {
	t.Helper()
	for _, k := range names {
		if v, ok := r.Metrics[k]; !ok || !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s = %v (present %v), want positive and finite", k, v, ok)
		}
	}
}

// idle checks the quiet window's figures.
func idle(t *testing.T, r *result.Result) {
	t.Helper()
	for _, k := range []string{"node_idle_cpu_pct_per_1000_sessions", "node_idle_packets_per_s_per_1000_sessions", "idle_sessions"} {
		if v, ok := r.Metrics[k]; !ok || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			t.Errorf("%s = %v (present %v)", k, v, ok)
		}
	}
}

// TestLikeForLike runs the channel as gonets bench --peer nats runs it:
// one TLS connection per user, so that each delivery is the node's own
// write on its own connection.
func TestLikeForLike(t *testing.T) {
	o := tiny("channel", targetCore)
	o.Rate, o.RateSet, o.UsersPerConn, o.TLS = 20, true, 1, true
	res, err := runScenario(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, 20)
	if out := res.Metrics["node_packets_out_per_message"]; out < 18 {
		t.Errorf("%.2f segments out per post to 20 connections", out)
	}
}

func TestConnectTLSResumes(t *testing.T) {
	o := tiny("connect", targetCore)
	o.TLS = true
	res, err := runScenario(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, 0)
	if res.Metrics["tls_resumed"] != 50 {
		t.Errorf("%v of 50 reconnects resumed their TLS session", res.Metrics["tls_resumed"])
	}
}

func TestStoresNeedJetStream(t *testing.T) {
	for _, s := range []string{"sync", "storage"} {
		if _, err := runScenario(context.Background(), tiny(s, targetCore)); err == nil || !strings.Contains(err.Error(), "nats-jetstream") {
			t.Errorf("%s on core: %v", s, err)
		}
	}
}

func TestOptions(t *testing.T) {
	bad := func(o Options) {
		t.Helper()
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	bad(Options{Scenario: "chat", Target: "nats"})
	bad(Options{Scenario: "nope", Target: targetCore})
	bad(Options{Scenario: "chat", Target: targetCore, Size: 8})
	bad(Options{Scenario: "group", Target: targetCore, Members: 1})
	bad(Options{Scenario: "chat", Target: targetCore, StepFactor: 1})

	o, err := Options{Scenario: "group", Target: targetCore}.withDefaults()
	if err != nil || o.Rate != 2000 || o.Groups != 100 || o.Members != 100 || o.Duration != 10*time.Second {
		t.Errorf("group defaults: %+v, %v", o, err)
	}
	o, err = Options{Scenario: "chat", Target: targetCore}.withDefaults()
	if err != nil || o.Rate != 0 || o.StepStart != 1000 || o.StepFactor != 1.5 || o.P99 != 10*time.Millisecond || o.StepDuration != 5*time.Second {
		t.Errorf("chat defaults: %+v, %v", o, err)
	}
	o, err = Options{Scenario: "chat", Target: targetCore, Duration: 3 * time.Second}.withDefaults()
	if err != nil || o.StepDuration != 3*time.Second {
		t.Errorf("chat --duration 3s: steps of %v, %v", o.StepDuration, err)
	}
}

func TestParseCPUs(t *testing.T) {
	f := func(list string, want []int) {
		t.Helper()
		set, err := parseCPUs(list)
		if err != nil {
			t.Fatalf("%q: %v", list, err)
		}
		if set.Count() != len(want) {
			t.Errorf("%q: %d CPUs, want %v", list, set.Count(), want)
		}
		for _, c := range want {
			if !set.IsSet(c) {
				t.Errorf("%q: CPU %d not set", list, c)
			}
		}
	}
	f("0", []int{0})
	f("0-1", []int{0, 1})
	f("0,2-3", []int{0, 2, 3})
	for _, bad := range []string{"", "a", "2-1", "-1"} {
		if _, err := parseCPUs(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if shared, _ := sharedCores("0", "1"); shared {
		t.Error("disjoint pins reported as shared")
	}
	if shared, _ := sharedCores("0-1", "1"); !shared {
		t.Error("overlapping pins reported as apart")
	}
}

func TestReadProc(t *testing.T) {
	s, err := readProc(0)
	if err != nil {
		t.Fatal(err)
	}
	if s.rss <= 0 || s.hwm < s.rss || s.cpuSeconds < 0 {
		t.Errorf("%+v", s)
	}
	if got := statusKB([]byte("Name:\tx\nVmRSS:\t  1234 kB\n"), "VmRSS:"); got != 1234*1024 {
		t.Errorf("statusKB = %d", got)
	}
}
