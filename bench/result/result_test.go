package result

import (
	"encoding/json"
	"testing"
)

func TestSummaryAndBuckets(t *testing.T) {
	h := NewHistogram()
	for us := int64(1); us <= 10000; us++ {
		h.RecordValue(us)
	}
	l := Summarize(h)
	if l.Count != 10000 || l.P50 < 4.9 || l.P50 > 5.1 || l.P99 < 9.8 || l.P99 > 10.0 || l.Max < 9.99 {
		t.Fatalf("summary %+v", l)
	}
	var total int64
	last := 0.0
	for _, b := range Buckets(h) {
		if b.UpToMS <= last {
			t.Fatalf("bounds not rising: %v after %v", b.UpToMS, last)
		}
		last = b.UpToMS
		total += b.Count
	}
	if total != 10000 {
		t.Fatalf("buckets hold %d values", total)
	}
	if _, err := json.Marshal(Result{Latency: l}); err != nil {
		t.Fatal(err)
	}
}
