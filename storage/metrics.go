package storage

import "github.com/VictoriaMetrics/metrics"

// storeMetrics are the gonets_storage_* series. Every update is per batch
// or per message counter add; none allocates.
type storeMetrics struct {
	appends          *metrics.Counter
	appendBytes      *metrics.Counter
	dedupeHits       *metrics.Counter
	commits          *metrics.Counter
	commitErrors     *metrics.Counter
	batchMessages    *metrics.Histogram
	batchBytes       *metrics.Histogram
	commitSeconds    *metrics.Histogram
	syncSeconds      *metrics.Histogram
	retentionDeleted *metrics.Counter
	dedupeExpired    *metrics.Counter
	sweepErrors      *metrics.Counter
}

func newStoreMetrics(set *metrics.Set, s *Store) *storeMetrics {
	m := &storeMetrics{
		appends:          set.NewCounter("gonets_storage_appends_total"),
		appendBytes:      set.NewCounter("gonets_storage_append_bytes_total"),
		dedupeHits:       set.NewCounter("gonets_storage_dedupe_hits_total"),
		commits:          set.NewCounter("gonets_storage_commits_total"),
		commitErrors:     set.NewCounter("gonets_storage_commit_errors_total"),
		batchMessages:    set.NewHistogram("gonets_storage_batch_messages"),
		batchBytes:       set.NewHistogram("gonets_storage_batch_bytes"),
		commitSeconds:    set.NewHistogram("gonets_storage_commit_seconds"),
		syncSeconds:      set.NewHistogram("gonets_storage_sync_seconds"),
		retentionDeleted: set.NewCounter("gonets_storage_retention_deleted_total"),
		dedupeExpired:    set.NewCounter("gonets_storage_dedupe_expired_total"),
		sweepErrors:      set.NewCounter("gonets_storage_sweep_errors_total"),
	}
	set.NewGauge("gonets_storage_cached_chats", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.chats))
	})
	set.NewGauge("gonets_storage_queued_bytes", func() float64 {
		return float64(s.q.queuedBytes())
	})
	return m
}
