package bench

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/identity/digitalid"
)

// TestDigitalIDScenarioSmall runs the id scenario tiny, on one core and on
// two, with Ed25519 holders and forged presentations in the mix, and
// checks the counts: every genuine presentation accepted, every forged one
// refused, the rates and latencies measured, GOMAXPROCS restored. It
// asserts no speed.
func TestDigitalIDScenarioSmall(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	procs := runtime.GOMAXPROCS(0)
	for _, cores := range []int{1, 2} {
		r, err := RunDigitalID(context.Background(), IDConfig{Credentials: 50, Runs: 2, Cores: cores, Ed25519Share: 0.2, TamperedShare: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		if got := runtime.GOMAXPROCS(0); got != procs {
			t.Errorf("GOMAXPROCS %d after the run, want %d", got, procs)
		}
		m := r.Metrics
		for k, want := range map[string]float64{"credentials": 50, "holders_ed25519": 10, "holders_p256": 40, "verifies": 100,
			"accepted": 90, "refused": 10, "tampered": 10, "tampered_refused": 10, "failures": 0, "cores": float64(cores)} {
			if m[k] != want {
				t.Errorf("cores %d: %s = %v, want %v", cores, k, m[k], want)
			}
		}
		for _, k := range []string{"verifies_per_s", "verifies_per_s_min", "verifies_per_s_max", "verify_us", "verify_cpu_us",
			"verify_p50_us", "verify_p99_us", "verify_p256_1_p50_us", "verify_p256_3_p50_us", "verify_ed25519_1_p50_us",
			"verify_ed25519_3_p50_us", "issues_per_s", "issue_us", "issue_cpu_us", "issue_p50_us", "issue_p99_us"} {
			if v, ok := m[k]; !ok || v <= 0 {
				t.Errorf("cores %d: metric %s = %v (reported %v)", cores, k, v, ok)
			}
		}
		if r.Sent != 100 || r.Expected != 90 || r.Delivered != 90 || r.DeliveredRatio != 1 || r.Latency.Count != 90 ||
			r.Ack.Count != 100 || r.Rate != m["verifies_per_s"] || r.Machine.CPUs == 0 {
			t.Errorf("cores %d: sent %d, expected %d, delivered %d (%v), %d verifies timed, %d issues timed, rate %v, machine %+v",
				cores, r.Sent, r.Expected, r.Delivered, r.DeliveredRatio, r.Latency.Count, r.Ack.Count, r.Rate, r.Machine)
		}
		if cores == 2 && r.Met {
			t.Error("met on 2 cores: the goal is one core's")
		}
		var out bytes.Buffer
		WriteDigitalID(&out, r)
		for _, want := range []string{"verifies/s on", "issues/s on 1 core", "(10 of 10 tampered refused), 0 failures", "machine: ", "generator and verifier in one process"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("cores %d: summary lacks %q:\n%s", cores, want, out.String())
			}
		}
	}
}

// TestDigitalIDConfig checks the scenario's defaults and that it refuses
// what it cannot run.
func TestDigitalIDConfig(t *testing.T) {
	c := IDConfig{}.withDefaults()
	if c.Credentials != 20000 || c.Runs != 5 || c.Cores != 1 || c.Ed25519Share != 0 || c.TamperedShare != 0 {
		t.Errorf("defaults %+v", c)
	}
	for _, bad := range []IDConfig{{Credentials: 1}, {Runs: -1}, {Cores: -2}, {Credentials: 4, Cores: 5},
		{Ed25519Share: 1.5}, {Ed25519Share: -0.1}, {TamperedShare: 1}} {
		if _, err := RunDigitalID(context.Background(), bad); err == nil || !strings.HasPrefix(err.Error(), "bench: id:") {
			t.Errorf("%+v: err %v", bad, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunDigitalID(ctx, IDConfig{Credentials: 4, Runs: 1}); err != context.Canceled {
		t.Errorf("cancelled: err %v", err)
	}
}

// TestShareMarks checks that a share marks that many items, spread out.
func TestShareMarks(t *testing.T) {
	f := func(n int, share float64, want int) {
		t.Helper()
		mark, got, run := shareMarks(n, share), 0, 0
		for i := range n {
			if mark(i) {
				got++
				run++
				if share <= 0.5 && run > 1 {
					t.Errorf("share %g of %d: two marked in a row at %d", share, n, i)
				}
			} else {
				run = 0
			}
		}
		if got != want {
			t.Errorf("share %g of %d: %d marked, want %d", share, n, got, want)
		}
	}
	f(50, 0, 0)
	f(50, 0.2, 10)
	f(50, 0.1, 5)
	f(1000, 0.5, 500)
	f(7, 1, 7)
}

// TestForgeAge checks that the forged presentation differs only in its
// age_over_18 disclosure and that Verify refuses it, while the original
// passes.
func TestForgeAge(t *testing.T) {
	b, err := newIDBench(IDConfig{Credentials: 2, Runs: 1, Cores: 1})
	if err != nil {
		t.Fatal(err)
	}
	h := &b.holders[0]
	now := time.Now()
	if h.sdjwt, err = b.issuer.Issue(h.attrs.Subject, h.key.Public(), digitalid.Claims(h.attrs, now)); err != nil {
		t.Fatal(err)
	}
	p, err := digitalid.Present(h.sdjwt, h.key, idAskAgeName, idVerifierID, "n-1", now)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := forgeAge(p)
	if err != nil {
		t.Fatal(err)
	}
	ps, fs := strings.Split(p, "~"), strings.Split(forged, "~")
	diff := 0
	for i := range ps {
		if ps[i] != fs[i] {
			diff++
		}
	}
	if len(ps) != len(fs) || diff != 1 {
		t.Fatalf("forged differs in %d of %d segments (%d)", diff, len(ps), len(fs))
	}
	o := digitalid.VerifyOptions{Keys: b.keys, Issuer: idIssuerURL, Audience: idVerifierID, Nonce: "n-1", Now: now,
		Allowed: idAskAgeName, Required: idAskAgeName}
	if _, err := digitalid.Verify(p, o); err != nil {
		t.Fatalf("original refused: %v", err)
	}
	if _, err := digitalid.Verify(forged, o); err == nil {
		t.Fatal("forged accepted")
	}
	if _, err := forgeAge("a~b~"); err == nil {
		t.Error("forged a presentation without an age_over_18 disclosure")
	}
}
