package storage

import "github.com/VictoriaMetrics/metrics"

// storeMetrics are the gonets_storage_* series. Every update is per batch
// or per message counter add; none allocates. Their help texts and the
// list in docs/operations.md live with the /metrics writer in tools.
type storeMetrics struct {
	appends          *metrics.Counter
	appendBytes      *metrics.Counter
	dedupeHits       *metrics.Counter
	commits          *metrics.Counter
	syncs            *metrics.Counter
	commitErrors     *metrics.Counter
	batchMessages    *metrics.PrometheusHistogram
	batchBytes       *metrics.PrometheusHistogram
	commitSeconds    *metrics.PrometheusHistogram
	syncSeconds      *metrics.PrometheusHistogram
	syncDelaySeconds *metrics.PrometheusHistogram
	retentionDeleted *metrics.Counter
	dedupeExpired    *metrics.Counter
	sweepErrors      *metrics.Counter
}

// Histogram buckets (upper bounds; +Inf is implied). Latencies span a fast
// disk's sync to a stalled one; batch sizes span one message to a full
// MaxBatchBytes of small ones.
var (
	latencyBuckets      = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	batchMessageBuckets = metrics.ExponentialBuckets(1, 2, 17)  // 1 … 65,536
	batchByteBuckets    = metrics.ExponentialBuckets(64, 4, 10) // 64 B … 16 MiB
)

func newStoreMetrics(set *metrics.Set, s *Store) *storeMetrics {
	m := &storeMetrics{
		appends:          set.NewCounter("gonets_storage_appends_total"),
		appendBytes:      set.NewCounter("gonets_storage_append_bytes_total"),
		dedupeHits:       set.NewCounter("gonets_storage_dedupe_hits_total"),
		commits:          set.NewCounter("gonets_storage_commits_total"),
		syncs:            set.NewCounter("gonets_storage_syncs_total"),
		commitErrors:     set.NewCounter("gonets_storage_commit_errors_total"),
		batchMessages:    set.NewPrometheusHistogramExt("gonets_storage_batch_messages", batchMessageBuckets),
		batchBytes:       set.NewPrometheusHistogramExt("gonets_storage_batch_bytes", batchByteBuckets),
		commitSeconds:    set.NewPrometheusHistogramExt("gonets_storage_commit_seconds", latencyBuckets),
		syncSeconds:      set.NewPrometheusHistogramExt("gonets_storage_sync_seconds", latencyBuckets),
		syncDelaySeconds: set.NewPrometheusHistogramExt("gonets_storage_sync_delay_seconds", latencyBuckets),
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
