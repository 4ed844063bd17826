package media

import (
	"slices"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

func TestInsertRange(t *testing.T) {
	f := func(rs []Range, c Range, want []Range) {
		t.Helper()
		orig := slices.Clone(rs)
		got := insertRange(rs, c)
		if !slices.Equal(got, want) {
			t.Errorf("insert %v into %v = %v, want %v", c, rs, got, want)
		}
		if !slices.Equal(rs, orig) {
			t.Errorf("insert modified its input")
		}
		if !validRanges(got, 1000) {
			t.Errorf("insert produced invalid %v", got)
		}
	}
	f(nil, Range{5, 10}, []Range{{5, 10}})
	f([]Range{{0, 5}}, Range{5, 10}, []Range{{0, 10}})
	f([]Range{{10, 20}}, Range{5, 10}, []Range{{5, 20}})
	f([]Range{{0, 5}, {10, 20}}, Range{5, 10}, []Range{{0, 20}})
	f([]Range{{0, 5}, {30, 40}}, Range{10, 20}, []Range{{0, 5}, {10, 20}, {30, 40}})
	f([]Range{{10, 20}}, Range{30, 40}, []Range{{10, 20}, {30, 40}})
	f([]Range{{10, 20}}, Range{0, 5}, []Range{{0, 5}, {10, 20}})
}

func TestRangePredicates(t *testing.T) {
	rs := []Range{{0, 10}, {20, 30}}
	for _, tc := range []struct {
		c                Range
		overlap, contain bool
	}{
		{Range{0, 10}, true, true},
		{Range{2, 8}, true, true},
		{Range{9, 11}, true, false},
		{Range{10, 20}, false, false},
		{Range{5, 25}, true, false},
		{Range{30, 31}, false, false},
	} {
		if got := overlaps(rs, tc.c); got != tc.overlap {
			t.Errorf("overlaps(%v) = %v", tc.c, got)
		}
		if got := contains(rs, tc.c); got != tc.contain {
			t.Errorf("contains(%v) = %v", tc.c, got)
		}
	}
	if total(rs) != 20 {
		t.Errorf("total = %d", total(rs))
	}
	for _, bad := range [][]Range{{{0, 0}}, {{5, 10}, {10, 20}}, {{10, 20}, {0, 5}}, {{-1, 5}}, {{0, 101}}} {
		if validRanges(bad, 100) {
			t.Errorf("validRanges(%v) = true", bad)
		}
	}
}

// TestMetricsCreatedAtOpen: every series exists before any traffic.
func TestMetricsCreatedAtOpen(t *testing.T) {
	set := metrics.NewSet()
	s := openStore(t, t.TempDir(), newClock(), Options{Metrics: set, MaxFile: 10})
	var b strings.Builder
	set.WritePrometheus(&b)
	for _, name := range []string{
		"gonets_media_put_seconds", "gonets_media_chunk_seconds", "gonets_media_complete_seconds",
		"gonets_media_received_bytes_total", "gonets_media_blobs_created_total", "gonets_media_dedup_total",
		"gonets_media_gc_blobs_removed_total", "gonets_media_gc_removed_bytes_total",
		"gonets_media_uploads_expired_total", `gonets_media_refused_total{reason="quota"}`,
		`gonets_media_refused_total{reason="overlap"}`, "gonets_media_blobs", "gonets_media_uploads_open",
	} {
		if !strings.Contains(b.String(), name) {
			t.Errorf("metric %s missing", name)
		}
	}
	if _, err := s.CreateUpload(1, 11, Meta{}); err == nil {
		t.Fatal("over MaxFile accepted")
	}
	if got := set.GetOrCreateCounter(`gonets_media_refused_total{reason="too_large"}`).Get(); got != 1 {
		t.Errorf("too_large refusals = %d, want 1", got)
	}
}
