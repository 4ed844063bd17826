package tools

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/goleak"

	"github.com/gonets/gonets/storage"
)

// scrapeNode starts a node on loopback ports, appends two messages through
// its store so that the storage histograms have observations, and returns
// its /metrics page, raw and parsed.
func scrapeNode(t *testing.T) ([]byte, map[string]*dto.MetricFamily) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Calls.TURN, cfg.Calls.TURNPort = true, 0 // its metrics too
	stateMetricsConfig(t, &cfg)                  // and the state services'
	n, err := startNode(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()

	c, err := n.store.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatGroup, Creator: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(2) {
		m := storage.Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: i + 1, Kind: storage.MsgText, Body: []byte("hello")}
		if _, err := n.store.Append(ctx, []storage.Message{m}); err != nil {
			t.Fatal(err)
		}
	}

	resp, err := http.Get("http://" + n.httpLn.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page bytes.Buffer
	if _, err := page.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics = %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("/metrics Content-Type %q", ct)
	}
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(bytes.NewReader(page.Bytes()))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, page.Bytes())
	}
	return page.Bytes(), families
}

// TestMetricsLint holds /metrics to what Prometheus tooling expects:
// promlint finds nothing, every family has help and a type, histograms
// have le buckets up to +Inf, and the process metrics are there.
func TestMetricsLint(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	page, families := scrapeNode(t)

	problems, err := promlint.New(bytes.NewReader(page)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	typed := map[string]bool{}
	for line := range strings.Lines(string(page)) {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			typed[f[2]] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(families)) {
		mf := families[name]
		switch {
		case mf.GetHelp() == "":
			t.Errorf("%s has no help text; add it to metricHelp in tools/metrics.go", name)
		case mf.GetHelp() == libraryHelp && runtime.GOOS == "linux":
			t.Errorf("%s has the generic help text; give it its own in metricHelp in tools/metrics.go", name)
		}
		if !typed[name] {
			t.Errorf("%s has no # TYPE line", name)
		}
	}

	for _, name := range []string{"gonets_storage_commit_seconds", "gonets_storage_sync_seconds", "gonets_storage_batch_messages", "gonets_storage_batch_bytes"} {
		mf := families[name]
		if mf.GetType() != dto.MetricType_HISTOGRAM || len(mf.GetMetric()) != 1 {
			t.Errorf("%s is not a histogram: %v", name, mf)
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		b := h.GetBucket()
		if h.GetSampleCount() == 0 || len(b) < 2 || !math.IsInf(b[len(b)-1].GetUpperBound(), 1) || b[len(b)-1].GetCumulativeCount() != h.GetSampleCount() {
			t.Errorf("%s: want le buckets ending in +Inf holding its %d observations: %v", name, h.GetSampleCount(), h)
		}
		if inf := fmt.Sprintf("%s_bucket{le=\"+Inf\"} %d\n", name, h.GetSampleCount()); !bytes.Contains(page, []byte(inf)) {
			t.Errorf("/metrics lacks %q", inf)
		}
	}

	want := []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"}
	if runtime.GOOS == "linux" {
		want = append(want, "process_open_fds", "process_max_fds")
	}
	for _, name := range want {
		if len(families[name].GetMetric()) == 0 {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if fds := families["process_open_fds"]; fds != nil && fds.GetMetric()[0].GetGauge().GetValue() < 1 {
		t.Errorf("process_open_fds = %v", fds.GetMetric()[0])
	}
}

// documentedMetrics returns the gonets_* families in the metrics table of
// docs/operations.md with their types: rows of the form
// "| `gonets_x_total` | counter | meaning |", labels in the name ignored.
func documentedMetrics(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	docs := map[string]string{}
	inMetrics := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			inMetrics = line == "## Metrics"
		}
		if !inMetrics || !strings.HasPrefix(line, "| `gonets_") {
			continue
		}
		cols := strings.Split(line, "|")
		if len(cols) < 4 {
			t.Fatalf("docs/operations.md: a metrics row without a type: %q", line)
		}
		name, _, _ := strings.Cut(strings.Trim(strings.TrimSpace(cols[1]), "`"), "{")
		docs[name] = strings.TrimSpace(cols[2])
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("docs/operations.md: no gonets_* rows under ## Metrics")
	}
	return docs
}

// TestMetricsDocumented keeps docs/operations.md, metricHelp and the
// served page in step: every gonets_* family served is documented with its
// type and has help, and every documented one is served.
func TestMetricsDocumented(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	_, families := scrapeNode(t)
	docs := documentedMetrics(t)

	var served []string
	for _, name := range slices.Sorted(maps.Keys(families)) {
		mf := families[name]
		if !strings.HasPrefix(name, "gonets_") {
			continue
		}
		served = append(served, name)
		typ := strings.ToLower(mf.GetType().String())
		switch doc, ok := docs[name]; {
		case !ok:
			t.Errorf("%s (%s) is served but not documented: add a row to the metrics table in docs/operations.md", name, typ)
		case doc != typ:
			t.Errorf("%s is served as a %s, docs/operations.md says %s", name, typ, doc)
		}
		if _, ok := metricHelp[name]; !ok {
			t.Errorf("%s is served without help: add it to metricHelp in tools/metrics.go", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(docs)) {
		if !slices.Contains(served, name) {
			t.Errorf("%s is documented in docs/operations.md but not served: create it when its component starts (every label value too), or remove the row", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(metricHelp)) {
		if strings.HasPrefix(name, "gonets_") && !slices.Contains(served, name) {
			t.Errorf("%s has help in metricHelp in tools/metrics.go but is not served: remove it or create the metric", name)
		}
	}
}
