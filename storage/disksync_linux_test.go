package storage

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// BenchmarkDiskSync is the floor under every durable ack: the latency of
// one fdatasync after a 4 KiB write to a preallocated file in the same
// directory kind the store uses (as Pebble's recycled WAL does). It
// reports p50 and p99 so that the store's figures can be read against the
// disk's.
func BenchmarkDiskSync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const block = 4 << 10
	n := max(b.N, 1000)
	if err := f.Truncate(int64(n) * block); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	buf := benchRandomBodies(1)[0]
	buf = append(buf, make([]byte, block-len(buf))...)
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		if _, err := f.WriteAt(buf, int64(i)*block); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(benchPercentile(lat, 0.50), "p50-ms")
	b.ReportMetric(benchPercentile(lat, 0.99), "p99-ms")
}
