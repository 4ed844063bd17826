package report

import (
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gonets/gonets/bench/result"
)

var keep = flag.String("keep", "", "also write the sample report into this directory, and the edge cases' into its subdirectories, to look at")

// sampleRuns are a chat run with a step search, a channel run, and the
// chat scenario against nats-core.
func sampleRuns() []result.Result {
	started := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	machine := result.Machine{
		Host: "bench-1", OS: "linux", Arch: "amd64", CPUs: 2,
		CPUModel: "AMD EPYC 7B13", MemBytes: 24 << 30, GoVersion: "go1.26.8", Commit: "ab03141",
	}
	// A log-normal-ish spread around a median, as an HDR histogram sees it.
	hist := func(medianUS float64, n int, tail float64) (result.Latency, []result.Bucket) {
		h := result.NewHistogram()
		for i := 1; i < n; i++ {
			q := float64(i) / float64(n)
			z := math.Sqrt(2) * math.Erfinv(2*q-1)
			if z > 2.5 {
				z *= tail
			}
			h.RecordValue(int64(medianUS * math.Exp(0.5*z)))
		}
		return result.Summarize(h), result.Buckets(h)
	}
	timeline := func(secs int, offered, p99 float64) []result.Sample {
		var s []result.Sample
		for t := 1; t <= secs; t++ {
			wobble := 1 + 0.03*math.Sin(float64(t))
			s = append(s, result.Sample{
				T: float64(t), Offered: offered, Delivered: offered * wobble,
				P99: p99 * (1 + 0.2*math.Cos(float64(t)/3)), Sessions: 10000,
			})
		}
		s[secs/2].P99 *= 6 // a stall
		return s
	}

	chatLat, chatHist := hist(900, 200000, 1.4)
	chat := result.Result{
		Scenario: "chat", Target: "gonets", Started: started, Seconds: 30,
		Params:  map[string]any{"users": float64(10000), "body": float64(256), "p99": "10ms", "duration": "30s"},
		Offered: 52000, Sent: 1560000, Expected: 1560000, Delivered: 1559000,
		DeliveredRatio: 1559000.0 / 1560000, Rate: 51966,
		Latency: chatLat, Ack: result.Latency{Count: 1560000, P50: 0.7, P90: 1.1, P99: 2.4, P999: 6.1, Max: 12, Mean: 0.8},
		Histogram: chatHist, Timeline: timeline(30, 52000, chatLat.P99),
		Steps: []result.Step{
			{Offered: 10000, Rate: 10000, P50: 0.4, P99: 1.1, P999: 2, DeliveredRatio: 1, Passed: true},
			{Offered: 20000, Rate: 20000, P50: 0.5, P99: 1.6, P999: 3, DeliveredRatio: 1, Passed: true},
			{Offered: 40000, Rate: 39990, P50: 0.7, P99: 2.9, P999: 6, DeliveredRatio: 0.9999, Passed: true},
			{Offered: 80000, Rate: 61000, P50: 40, P99: 420, P999: 900, DeliveredRatio: 0.97, Passed: false},
			{Offered: 60000, Rate: 58000, P50: 3, P99: 14.5, P999: 30, DeliveredRatio: 0.998, Passed: false},
			{Offered: 52000, Rate: 51966, P50: 0.9, P99: 3.2, P999: 8, DeliveredRatio: 0.9994, Passed: true},
		},
		Goal: "at least 50,000 msgs/s delivered with p99 ≤ 10 ms and ≥ 99.9% delivered", Met: true,
		Node:        &result.Process{PID: 4242, CPUSeconds: 41.2, CPUPercent: 137, RSSBytes: 612 << 20, MaxRSSBytes: 655 << 20},
		Generator:   &result.Process{PID: 4241, CPUSeconds: 17.9, CPUPercent: 59.6, RSSBytes: 301 << 20, MaxRSSBytes: 320 << 20},
		SharedCores: true, Machine: machine,
		Notes: []string{"node and generator shared 2 cores", "fsync per batch <group commit>"},
	}
	chanLat, chanHist := hist(2500, 100000, 1.2)
	channel := result.Result{
		Scenario: "channel", Target: "gonets", Started: started.Add(2 * time.Minute), Seconds: 20,
		Params:  map[string]any{"subscribers": float64(10000), "rate": float64(100)},
		Offered: 100, Sent: 2000, Expected: 20000000, Delivered: 20000000, DeliveredRatio: 1, Rate: 1000000,
		Latency: chanLat, Histogram: chanHist, Timeline: timeline(20, 1e6, chanLat.P99),
		Goal: "at least 1,000,000 deliveries/s to 10,000 online subscribers", Met: false,
		Node:      &result.Process{CPUSeconds: 39, CPUPercent: 195, RSSBytes: 1 << 30, MaxRSSBytes: 1 << 30, CPUs: "0"},
		Generator: &result.Process{CPUSeconds: 19, CPUPercent: 95, RSSBytes: 200 << 20, CPUs: "1"},
		Machine:   machine,
		Metrics:   map[string]float64{"fanout_batches_per_s": 41000, "rss_bytes_per_session": 28672},
	}
	natsLat, natsHist := hist(600, 150000, 1.1)
	nats := result.Result{
		Scenario: "chat", Target: "nats-core", Started: started.Add(time.Minute), Seconds: 30,
		Params:  map[string]any{"users": float64(10000), "body": float64(256)},
		Offered: 40000, Sent: 1200000, Expected: 1200000, Delivered: 1200000, DeliveredRatio: 1, Rate: 40000,
		Latency: natsLat, Histogram: natsHist, Timeline: timeline(30, 40000, natsLat.P99),
		SharedCores: true, Machine: machine,
	}
	return []result.Result{chat, channel, nats}
}

func TestWrite(t *testing.T) {
	runs := sampleRuns()
	path, err := Write(filepath.Join(t.TempDir(), "new", "dir"), runs)
	if err != nil {
		t.Fatal(err)
	}
	page := readPage(t, path)
	if n := strings.Count(page, "<svg"); n != 6+1 {
		t.Errorf("%d charts, want 7 (histogram and timeline per run, steps for chat)", n)
	}
	want := []string{
		"chat", "channel", "nats-core", "Step search", "p99 goal 10 ms",
		"Delivery latency", "Rate and p99 over time",
		ratio(runs[0].Rate, runs[2].Rate),               // gonets ÷ nats-core rate
		ratio(runs[0].Latency.P99, runs[2].Latency.P99), // and p99
		"shared the same cores", "AMD EPYC 7B13", "go1.26.8", "ab03141",
		"rss_bytes_per_session", "28 KiB",
		`class="badge met"`, `class="badge missed"`,
	}
	for _, s := range want {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if strings.Contains(page, "<group commit>") {
		t.Error("a note reached the page unescaped")
	}
	if *keep != "" {
		p, err := Write(*keep, runs)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", p)
	}
}

func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(dir, sampleRuns()); err != nil {
		t.Fatal(err)
	}
	path, err := Write(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if page := readPage(t, path); !strings.Contains(page, "No runs to report") || strings.Contains(page, "<svg") {
		t.Error("the second page did not replace the first")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("%d files in the report directory, want just %s", len(entries), FileName)
	}
}

func TestWriteUnwritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(file, nil); err == nil {
		t.Fatal("wrote a report under a file")
	}
}

func TestWriteEdgeCases(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	f := func(name string, r result.Result, wantSVG int, wantText ...string) {
		t.Helper()
		path, err := Write(t.TempDir(), []result.Result{r})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		page := readPage(t, path)
		if n := strings.Count(page, "<svg"); n != wantSVG {
			t.Errorf("%s: %d charts, want %d", name, n, wantSVG)
		}
		for _, s := range wantText {
			if !strings.Contains(page, s) {
				t.Errorf("%s: page lacks %q", name, s)
			}
		}
		if *keep != "" {
			if _, err := Write(filepath.Join(*keep, strings.ReplaceAll(name, " ", "-")), []result.Result{r}); err != nil {
				t.Fatal(err)
			}
		}
	}
	f("empty", result.Result{}, 0, "No latency histogram", "No timeline", "no goal", "not recorded")
	f("zeros", result.Result{
		Scenario:  "sync",
		Histogram: []result.Bucket{{UpToMS: 0, Count: 5}, {UpToMS: 1, Count: 0}},
		Timeline:  []result.Sample{{}, {T: 1}},
		Steps:     []result.Step{{}},
		Metrics:   map[string]float64{"catch_up_ms": 0},
	}, 2, "No latency histogram", "catch_up_ms")
	f("single points", result.Result{
		Scenario:  "connect",
		Latency:   result.Latency{Count: 1, P50: 2, P99: 2, P999: 2},
		Histogram: []result.Bucket{{UpToMS: 2, Count: 1}},
		Timeline:  []result.Sample{{T: 1, Offered: 5, Delivered: 5, P99: 2}},
		Steps:     []result.Step{{Offered: 100, P99: 2, Passed: true}},
		Params:    map[string]any{"p99": "bogus"},
	}, 3, "p99 goal 10 ms")
	f("huge ranges", result.Result{
		Scenario: "storage",
		Latency:  result.Latency{P50: 0.002, P99: 5e5, P999: 1e300},
		Histogram: []result.Bucket{
			{UpToMS: 0.001, Count: 1e12}, {UpToMS: 1, Count: 1}, {UpToMS: 1e6, Count: 7}, {UpToMS: inf, Count: 3},
		},
		Timeline: []result.Sample{
			{T: 1, Offered: 1e-3, Delivered: 1e12, P99: 1e-3},
			{T: 3600, Offered: 1e15, Delivered: 0, P99: 1e9},
			{T: nan, Offered: inf},
		},
		Steps:   []result.Step{{Offered: 1, P99: 1e-4}, {Offered: 1e12, P99: 1e8, Passed: true}, {Offered: nan}},
		Params:  map[string]any{"p99": "250us", "rate": 1e9, "nested": map[string]any{"a": []int{1}}},
		Metrics: map[string]float64{"appends_per_s": 1e15, "weird": nan, "big_bytes": 1e30},
	}, 3, "p99 goal 0.25 ms", "1000000000")
	f("failed search", result.Result{
		Scenario: "chat", Target: "gonets@10.0.0.1:4443", Goal: "p99 ≤ 10 ms",
		Steps: []result.Step{{Offered: 1000, P99: 50}, {Offered: 500, P99: 30}},
	}, 1, "not met", "gonets@10.0.0.1:4443")
}

func TestWriteEscapes(t *testing.T) {
	evil := `<script>alert("x")</script>`
	path, err := Write(t.TempDir(), []result.Result{{
		Scenario: evil, Target: evil, Goal: evil, Notes: []string{evil},
		Params:  map[string]any{evil: evil},
		Metrics: map[string]float64{evil: 1},
		Machine: result.Machine{Host: evil, CPUModel: evil},
		Latency: result.Latency{P50: 1}, Histogram: []result.Bucket{{UpToMS: 1, Count: 1}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if page := readPage(t, path); strings.Contains(page, "<script") {
		t.Error("text from a run reached the page unescaped")
	}
}

// readPage reads a written page and checks what every page must hold:
// well-formed SVG charts without a NaN or an infinity among their
// coordinates, and no reference to anything outside the page.
func readPage(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.Contains(page, "</html>") {
		t.Fatal("not an HTML page")
	}
	for _, s := range []string{"<script", "src=", "href=\"http", "@import", "url("} {
		if strings.Contains(page, s) {
			t.Errorf("page holds %q: it must be self-contained", s)
		}
	}
	for _, svg := range regexp.MustCompile(`(?s)<svg.*?</svg>`).FindAllString(page, -1) {
		d := xml.NewDecoder(strings.NewReader(svg))
		for {
			tok, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("chart is not well-formed: %v", err)
			}
			if el, ok := tok.(xml.StartElement); ok {
				for _, a := range el.Attr {
					if strings.Contains(a.Value, "NaN") || strings.Contains(a.Value, "Inf") {
						t.Errorf("<%s %s=%q>", el.Name.Local, a.Name.Local, a.Value)
					}
				}
			}
		}
	}
	return page
}

func TestScales(t *testing.T) {
	f := func(s *scale, want ...float64) {
		t.Helper()
		if len(s.ticks) != len(want) {
			t.Fatalf("ticks %v, want %v", s.ticks, want)
		}
		for i := range want {
			if math.Abs(s.ticks[i]-want[i]) > 1e-9*math.Abs(want[i]) {
				t.Fatalf("ticks %v, want %v", s.ticks, want)
			}
		}
		if s.lo != want[0] || s.hi != want[len(want)-1] {
			t.Fatalf("domain [%v, %v], want the ends of %v", s.lo, s.hi, want)
		}
	}
	f(linearScale(0, 0, 5), 0, 0.2, 0.4, 0.6, 0.8, 1)
	f(linearScale(0, 52000, 5), 0, 20000, 40000, 60000)
	f(linearScale(0, 3.3, 5), 0, 1, 2, 3, 4)
	f(linearScale(7, 7, 5), 6, 6.5, 7, 7.5, 8)
	f(linearScale(30, 1, 8), 0, 5, 10, 15, 20, 25, 30)
	f(logScale(0.02, 40), 0.02, 0.1, 1, 10, 50)
	f(logScale(0.3, 7), 0.2, 0.5, 1, 2, 5, 10)
	f(logScale(1, 1), 1, 2)
	f(logScale(0, 5), 0.005, 0.01, 0.1, 1, 5)
	f(logScale(0.087, 25), 0.05, 0.1, 1, 10, 50)
	f(logScale(1e-3, 1e12), 1e-3, 1, 1e3, 1e6, 1e9, 1e12)
	if s := linearScale(-1e308, 1e308, 5); len(s.ticks) > 20 || math.IsInf(s.hi, 0) {
		t.Errorf("a huge range gave ticks %v", s.ticks)
	}
	if s := autoScale(1, 1000, 50); !s.log {
		t.Error("a range of 1000 is not drawn on a log scale")
	}
	if s := autoScale(1, 10, 50); s.log || s.lo != 0 {
		t.Error("a range of 10 is not drawn linearly from zero")
	}
	s := linearScale(0, 10, 5)
	s.a, s.b = 100, 200
	for v, want := range map[float64]float64{0: 100, 5: 150, 10: 200, -3: 100, 1e9: 200, math.NaN(): 100} {
		if got := s.pos(v); got != want {
			t.Errorf("pos(%v) = %v, want %v", v, got, want)
		}
	}
}

func TestFormat(t *testing.T) {
	f := func(got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	f(sig(0.012345, 3), "0.0123")
	f(sig(1.5, 3), "1.5")
	f(sig(123456, 3), "123456")
	f(sig(math.NaN(), 3), dash)
	f(count(51966.4), "51,966")
	f(count(-1234567), "-1,234,567")
	f(count(42.123), "42.1")
	f(percent(0.99999), "99.999%")
	f(percent(0.9999999), "99.999%")
	f(percent(1), "100%")
	f(ratio(52000, 40000), "1.3×")
	f(ratio(1, 0), dash)
	f(bytesIEC(0), dash)
	f(bytesIEC(512), "512 B")
	f(bytesIEC(28672), "28 KiB")
	f(bytesIEC(24<<30), "24 GiB")
	f(tickLabel(0.30000000000000004), "0.3")
	f(tickLabel(2500), "2.5k")
	f(tickLabel(1e7), "10M")
	f(tickLabel(1e-5), "1e-05")
	f(sig(1e300, 3), "1e+300")
	f(sig(1e-9, 3), "1e-09")
	f(count(1e30), "1e+30")
	f(tickLabel(1e44), "1e+44")
	f(param(float64(1e6)), "1000000")
	f(metric("rss_bytes_per_session", 28672), "28,672 (28 KiB)")
}

func TestP99Goal(t *testing.T) {
	for _, c := range []struct {
		v    any
		want time.Duration
	}{
		{nil, 10 * time.Millisecond},
		{"5ms", 5 * time.Millisecond},
		{"bogus", 10 * time.Millisecond},
		{"-1ms", 10 * time.Millisecond},
		{2 * time.Millisecond, 2 * time.Millisecond},
		{float64(3), 10 * time.Millisecond},
	} {
		if got := p99Goal(map[string]any{"p99": c.v}); got != c.want {
			t.Errorf("p99Goal(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestCompare(t *testing.T) {
	run := func(target string, rate, p99 float64) result.Result {
		return result.Result{Scenario: "chat", Target: target, Rate: rate, Latency: result.Latency{P99: p99}}
	}
	got := compare([]result.Result{
		run("nats-core", 40, 2),
		run("gonets", 50, 4), run("gonets", 70, 3), run("gonets", 60, 5),
		run("nats-jetstream", 20, 8),
		{Scenario: "group", Target: "gonets", Rate: 1},
	})
	if len(got) != 2 {
		t.Fatalf("%d comparisons, want 2: %+v", len(got), got)
	}
	want := []comparison{{
		Scenario: "chat", Base: "gonets", Peer: "nats-core", BaseRuns: 3, PeerRuns: 1,
		BaseRate: "60", PeerRate: "40", RateRatio: "1.5×", RateClass: "good",
		BaseP99: "4", PeerP99: "2", P99Ratio: "2×", P99Class: "bad",
	}, {
		Scenario: "chat", Base: "gonets", Peer: "nats-jetstream", BaseRuns: 3, PeerRuns: 1,
		BaseRate: "60", PeerRate: "20", RateRatio: "3×", RateClass: "good",
		BaseP99: "4", PeerP99: "8", P99Ratio: "0.5×", P99Class: "good",
	}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("comparison %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}
