package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/bench/result"
)

// TestUploadScenarioSmall runs the upload scenario at a tiny scale (an
// 8 MiB file, 20 photos) against a node started from the built binary,
// and checks that every byte sent was stored, that the disk, the rates
// and the node's memory were measured, and that the report prints and
// survives JSON. It asserts no speed.
func TestUploadScenarioSmall(t *testing.T) {
	bin := gonetsBinary(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	defer http.DefaultClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const size, photos, photoSize = 8 << 20, 20, 100 << 10
	r, err := RunUpload(ctx, UploadConfig{Binary: bin, Size: size, Photos: photos, PhotoSize: photoSize, Concurrency: 10, Data: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	m := r.Metrics
	if m["photos_failed"] != 0 {
		t.Errorf("notes: %q", r.Notes)
	}
	for k, want := range map[string]float64{"disk_bytes": size, "large_bytes": size, "large_stored_bytes": size,
		"photos": photos, "photos_failed": 0, "photos_bytes": photos * photoSize, "photos_stored_bytes": photos * photoSize, "photo_sessions": 3,
		"large_node_chunks": 1, "large_node_completes": 1, "photos_node_puts": photos} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	for _, k := range []string{"disk_mb_per_s", "disk_before_mb_per_s", "disk_after_mb_per_s", "large_mb_per_s", "large_disk_ratio", "photos_per_s", "photos_mb_per_s", "photo_p50_ms",
		"large_node_rss_base_bytes", "large_node_rss_peak_bytes", "large_node_rss_samples", "photos_node_rss_base_bytes", "photos_node_rss_samples"} {
		if v, ok := m[k]; !ok || v <= 0 {
			t.Errorf("metric %s = %v (reported %v)", k, v, ok)
		}
	}
	for _, p := range []string{"large", "photos"} {
		base, peak, growth := m[p+"_node_rss_base_bytes"], m[p+"_node_rss_peak_bytes"], m[p+"_node_rss_growth_bytes"]
		if peak < base || growth != peak-base {
			t.Errorf("%s: node RSS base %v, peak %v, growth %v", p, base, peak, growth)
		}
	}
	if r.Latency.Count != photos || r.DeliveredRatio != 1 || r.Node == nil || r.Node.PID == 0 {
		t.Errorf("%d photos timed, delivered ratio %v, node %+v", r.Latency.Count, r.DeliveredRatio, r.Node)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back result.Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	WriteUpload(&out, &back)
	for _, want := range []string{"disk:", "large:", "photos: 20 × 100 KiB, 10 at once", "× the disk's speed", "growth", "share this machine's"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestUploadValidation checks that bad parameters are refused before a
// node is started.
func TestUploadValidation(t *testing.T) {
	for _, c := range []UploadConfig{
		{Size: 1000},
		{Photos: -1},
		{PhotoSize: -1},
		{Photos: 5, Concurrency: 6},
		{Data: "/nonexistent/gonets-bench"},
	} {
		if _, err := RunUpload(context.Background(), c); err == nil || !strings.Contains(err.Error(), "bench: upload:") {
			t.Errorf("%+v: %v, want a validation error", c, err)
		}
	}
}

// TestRSSSampler checks that the sampler sees this process's resident set
// grow by what it touched, from the kernel's high-water mark or its own
// last sample, with no waiting.
func TestRSSSampler(t *testing.T) {
	s := startRSS("self")
	b := make([]byte, 64<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	st := s.finish()
	runtime.KeepAlive(b)
	if st.base <= 0 || st.peak-st.base < 32<<20 || st.samples < 2 {
		t.Fatalf("base %d, peak %d (growth %d MiB), %d samples; want a growth of 64 MiB seen", st.base, st.peak, (st.peak-st.base)>>20, st.samples)
	}
}
