package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	case "connect":
		if r.Metrics["sessions"] != 50 || r.Metrics["rss_bytes_per_session"] <= 0 || r.Metrics["resumed_per_s"] <= 0 || r.Latency.Count != 50 {
			t.Errorf("metrics %v latency %+v", r.Metrics, r.Latency)
		}
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
