package bench

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/bench/result"
)

func TestStampRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	body := make([]byte, 16)
	stamp(body, at)
	got, ok := stampOf(body)
	if !ok || !got.Equal(at) {
		t.Fatalf("stampOf = %v %v, want %v", got, ok, at)
	}
	if _, ok := stampOf(body[:7]); ok {
		t.Fatal("a short body has a stamp")
	}
}

func TestRecorderWindow(t *testing.T) {
	r := newRecorder()
	begin := time.Now()
	before := begin.Add(-time.Second)
	r.scheduled(before) // no window yet
	r.start(begin)
	r.scheduled(before) // warm-up: not counted
	r.acked(0, before, begin, 1)
	r.deliveredAt(0, before, begin)
	for i := range 10 {
		at := begin.Add(time.Duration(i) * time.Millisecond)
		r.scheduled(at)
		r.acked(i, at, at.Add(time.Millisecond), 2)
		r.deliveredAt(i, at, at.Add(3*time.Millisecond))
	}
	s := r.tick(begin.Add(time.Second), 5)
	if s.Offered != 10 || s.Delivered != 10 || s.Sessions != 5 || s.P99 < 2.9 || s.P99 > 3.1 {
		t.Fatalf("sample %+v", s)
	}
	out := newResult()
	r.fill(out, 1)
	if out.Sent != 10 || out.Expected != 20 || out.Delivered != 10 || out.DeliveredRatio != 0.5 || out.Offered != 10 {
		t.Fatalf("filled %+v", out)
	}
	if out.Ack.P50 < 0.9 || out.Ack.P50 > 1.1 || len(out.Timeline) != 1 {
		t.Fatalf("ack %+v, timeline %d", out.Ack, len(out.Timeline))
	}
}

// TestTallyMerge checks that what two recorders count, sent as a worker
// sends it (JSON), merges into what one recorder counting it all would
// report.
func TestTallyMerge(t *testing.T) {
	begin := time.Now()
	parts, all := []*recorder{newRecorder(), newRecorder()}, newRecorder()
	for _, r := range append(parts, all) {
		r.start(begin)
	}
	record := func(r *recorder, i int) {
		at := begin.Add(time.Duration(i) * time.Millisecond)
		r.scheduled(at)
		r.acked(i, at, at.Add(time.Duration(i)*10*time.Microsecond), 3)
		for d := range 2 + i%2 {
			r.deliveredAt(i+d, at, at.Add(time.Duration(i*(d+1))*100*time.Microsecond))
		}
	}
	for i := range 200 {
		record(parts[i%3/2], i) // uneven: two thirds in the first
		record(all, i)
	}
	roundTrip := func(rep reply) reply {
		t.Helper()
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var out reply
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	var sec second
	var tl tally
	for _, r := range parts {
		s, tt := r.take(), r.tally()
		if s.Offered == 0 || tt.Delivered == 0 {
			t.Fatalf("a part recorded nothing: %+v", s)
		}
		rep := roundTrip(reply{Second: &s, Tally: &tt})
		sec.add(*rep.Second)
		tl.add(*rep.Tally)
	}
	wantSec, wantTally := all.take(), all.tally()
	if got, want := sec.sample(1), wantSec.sample(1); got != want {
		t.Fatalf("merged second %+v, want %+v", got, want)
	}
	if tl.Arrived != wantTally.Arrived || tl.Offered != 200 || tl.Sent != 200 || tl.Expected != 600 || tl.Delivered != 500 ||
		tl.Delivered != wantTally.Delivered || tl.Expected != wantTally.Expected {
		t.Fatalf("merged tally %+v, want %+v", tl, wantTally)
	}
	got, want := newResult(), newResult()
	tl.fill(got, 2)
	wantTally.fill(want, 2)
	if got.Latency != want.Latency || got.Ack != want.Ack || !slices.Equal(got.Histogram, want.Histogram) ||
		got.Rate != want.Rate || got.DeliveredRatio != want.DeliveredRatio || got.Latency.Count != 500 {
		t.Fatalf("merged result %+v %+v, want %+v %+v", got.Latency, got.Ack, want.Latency, want.Ack)
	}
}

func TestParseCPUs(t *testing.T) {
	if _, err := parseCPUs("0"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "x", "1-0", "-1", "9999"} {
		if _, err := parseCPUs(bad); err == nil {
			t.Errorf("parseCPUs(%q) passed", bad)
		}
	}
	if !overlap("", "0") || !overlap("0", "0") {
		t.Fatal("overlap misses a shared CPU")
	}
}

var (
	buildOnce   sync.Once
	builtBinary string
	buildErr    error
)

// TestMain removes the gonets binary the scenario tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtBinary != "" {
		os.RemoveAll(filepath.Dir(builtBinary))
	}
	os.Exit(code)
}

// gonetsBinary builds the gonets command once for the scenario tests.
func gonetsBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and starts a node")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gonets-bench-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtBinary = filepath.Join(dir, "gonets")
		out, err := exec.Command("go", "build", "-o", builtBinary, "github.com/gonets/gonets").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBinary
}

// TestScenariosSmall runs every scenario at a tiny scale against a node
// started from the built binary, and checks that each measured what it
// should. It asserts no speed.
func TestScenariosSmall(t *testing.T) {
	bin := gonetsBinary(t)
	base := Config{Binary: bin, Duration: time.Second, Warmup: 200 * time.Millisecond}
	for _, tc := range []struct {
		scenario string
		cfg      func(Config) Config
		check    func(t *testing.T, r *resultView)
	}{
		{"chat", func(c Config) Config { c.Users, c.Rate = 6, 60; return c }, func(t *testing.T, r *resultView) {
			r.delivered(t)
		}},
		{"chat", func(c Config) Config { c.Users, c.StepStart, c.P99, c.MaxSteps = 4, 40, time.Second, 2; return c }, func(t *testing.T, r *resultView) {
			if len(r.Steps) < 2 || !r.Steps[0].Passed || r.Offered < 40 {
				t.Fatalf("step search: %+v, offered %v", r.Steps, r.Offered)
			}
		}},
		{"group", func(c Config) Config { c.Groups, c.Members, c.Rate = 2, 3, 20; return c }, func(t *testing.T, r *resultView) {
			r.delivered(t)
			if r.Expected != 2*r.Sent {
				t.Fatalf("group posts owe %d deliveries for %d sent", r.Expected, r.Sent)
			}
		}},
		{"channel", func(c Config) Config { c.Subscribers, c.Publishers, c.Rate = 5, 2, 20; return c }, func(t *testing.T, r *resultView) {
			r.delivered(t)
			if r.Expected != 5*r.Sent {
				t.Fatalf("channel posts owe %d deliveries for %d sent", r.Expected, r.Sent)
			}
		}},
		// The same load spread over two worker processes.
		{"chat", func(c Config) Config { c.Users, c.Rate, c.Procs = 6, 60, 2; return c }, func(t *testing.T, r *resultView) {
			r.delivered(t)
			r.spread(t, 2, 6)
		}},
		{"chat", func(c Config) Config {
			c.Users, c.StepStart, c.P99, c.MaxSteps, c.Procs = 4, 40, time.Second, 2, 2
			return c
		}, func(t *testing.T, r *resultView) {
			if len(r.Steps) != 2 || !r.Steps[0].Passed || !r.Steps[1].Passed || r.Offered != 60 || r.DeliveredRatio != 1 {
				t.Fatalf("step search: %+v, offered %v", r.Steps, r.Offered)
			}
			r.spread(t, 2, 4)
		}},
		{"group", func(c Config) Config { c.Groups, c.Members, c.Rate, c.Procs = 2, 3, 20, 2; return c }, func(t *testing.T, r *resultView) {
			r.delivered(t)
			if r.Expected != 2*r.Sent {
				t.Fatalf("group posts owe %d deliveries for %d sent", r.Expected, r.Sent)
			}
			r.spread(t, 2, 6)
		}},
		{"channel", func(c Config) Config { c.Subscribers, c.Publishers, c.Rate, c.Procs = 5, 2, 20, 2; return c }, func(t *testing.T, r *resultView) {
			r.delivered(t)
			if r.Expected != 5*r.Sent {
				t.Fatalf("channel posts owe %d deliveries for %d sent", r.Expected, r.Sent)
			}
			r.spread(t, 2, 7)
		}},
		{"connect", func(c Config) Config { c.Sessions = 20; return c }, func(t *testing.T, r *resultView) {
			if r.Metrics["handshakes_per_s"] <= 0 || r.Metrics["resumed_ratio"] != 1 || r.Metrics["rss_bytes_per_session"] == 0 {
				t.Fatalf("connect metrics %v", r.Metrics)
			}
		}},
		{"sync", func(c Config) Config { c.Messages, c.Chats, c.Rounds = 50, 5, 2; return c }, func(t *testing.T, r *resultView) {
			if r.Metrics["catch_up_ms"] <= 0 || r.Delivered != 100 {
				t.Fatalf("sync: %v, delivered %d", r.Metrics, r.Delivered)
			}
		}},
		{"storage", func(c Config) Config { c.Writers = 4; return c }, func(t *testing.T, r *resultView) {
			if r.Metrics["appends_per_s"] <= 0 || r.Metrics["reads_per_s"] <= 0 || r.Latency.Count == 0 {
				t.Fatalf("storage: %v, latency %+v", r.Metrics, r.Latency)
			}
		}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			res, err := Run(context.Background(), tc.scenario, tc.cfg(base))
			if err != nil {
				t.Fatal(err)
			}
			if res.Scenario != tc.scenario || res.Machine.CPUs == 0 {
				t.Fatalf("result %+v", res)
			}
			if tc.scenario != "storage" && (res.Node == nil || res.Node.RSSBytes == 0) {
				t.Fatalf("the node was not measured: %+v", res.Node)
			}
			tc.check(t, &resultView{res})
		})
	}
}

// resultView adds checks to a result.
type resultView struct{ *result.Result }

func (r *resultView) delivered(t *testing.T) {
	t.Helper()
	if r.Sent == 0 || r.Expected == 0 || r.DeliveredRatio != 1 || r.Latency.Count == 0 || r.Latency.P50 <= 0 || len(r.Timeline) == 0 {
		t.Fatalf("sent %d, expected %d, ratio %v, latency %+v, timeline %d", r.Sent, r.Expected, r.DeliveredRatio, r.Latency, len(r.Timeline))
	}
}

// spread checks a run over procs worker processes, which held sessions
// between them.
func (r *resultView) spread(t *testing.T, procs, sessions int) {
	t.Helper()
	if r.Generator == nil || r.Generator.Procs != procs || r.Generator.CPUSeconds <= 0 || r.Generator.RSSBytes == 0 || r.Params["procs"] != procs {
		t.Fatalf("generator %+v, params %v", r.Generator, r.Params)
	}
	if n := len(r.Timeline); n == 0 || r.Timeline[n-1].Sessions != sessions {
		t.Fatalf("timeline %+v, want %d sessions", r.Timeline, sessions)
	}
}

func newResult() *result.Result { return &result.Result{Metrics: map[string]float64{}} }
