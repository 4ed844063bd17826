package storage

import (
	"bytes"
	"strings"
	"testing"
)

func TestMetrics(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	mustAppend(t, s, text(c.ID, 1, 1, "a"), text(c.ID, 1, 2, "bc"))
	mustAppend(t, s, text(c.ID, 1, 1, "a")) // a dedupe hit
	var buf bytes.Buffer
	s.Metrics().WritePrometheus(&buf)
	out := buf.String()
	for _, want := range []string{
		"gonets_storage_appends_total 2\n",
		"gonets_storage_append_bytes_total 3\n",
		"gonets_storage_dedupe_hits_total 1\n",
		"gonets_storage_commit_seconds_count",
		`gonets_storage_batch_messages_bucket{le="2"} `, // Prometheus buckets, not vmrange
		`gonets_storage_batch_messages_bucket{le="+Inf"} `,
		"gonets_storage_sync_seconds_count",
		"gonets_storage_batch_messages_count",
		"gonets_storage_retention_deleted_total 0\n",
		"gonets_storage_cached_chats 1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
}
