package identity

import (
	"context"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchInFlight is how many calls a benchmark keeps in flight per
// GOMAXPROCS. Login and Refresh wait on an fsync, so one goroutine per core
// measures the disk's latency, not the store's throughput; a node serves
// many clients at once.
const benchInFlight = 64

var benchDevice = DeviceInfo{Name: "bench", Platform: "android", Addr: netip.MustParseAddr("192.0.2.1")}

func openBenchAccounts(b *testing.B) *Accounts {
	b.Helper()
	a, err := OpenAccounts(b.TempDir(), AccountsOptions{Key: acctTestKey})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	return a
}

// benchPhone returns the n-th of a run of distinct valid numbers.
func benchPhone(buf []byte, n uint64) string {
	buf = append(buf[:0], "+1"...)
	return string(strconv.AppendUint(buf, 2_000_000_000+n, 10))
}

// BenchmarkLogin logs in new numbers, each creating an account, from many
// goroutines at once on a store in a temporary directory.
func BenchmarkLogin(b *testing.B) {
	a := openBenchAccounts(b)
	ctx := context.Background()
	var seq atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(benchInFlight)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var buf []byte
		for pb.Next() {
			if _, err := a.Login(ctx, benchPhone(buf, seq.Add(1)), benchDevice, acctT0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
}

// BenchmarkRefresh rotates the refresh tokens of many devices, each
// goroutine its own few, as clients renewing their sessions do.
func BenchmarkRefresh(b *testing.B) {
	const perG = 4
	a := openBenchAccounts(b)
	ctx := context.Background()
	goroutines := benchInFlight * runtime.GOMAXPROCS(0)
	toks := make([]string, goroutines*perG)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			var buf []byte
			for i := range perG {
				n := g*perG + i
				r, err := a.Login(ctx, benchPhone(buf, uint64(n)), benchDevice, acctT0)
				if err != nil {
					b.Error(err)
					return
				}
				toks[n] = r.Refresh
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	var slot atomic.Int64
	now := acctT0.Add(time.Minute)
	b.ReportAllocs()
	b.SetParallelism(benchInFlight)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mine := toks[(slot.Add(1)-1)*perG:][:perG]
		addr := netip.MustParseAddr("192.0.2.2")
		for i := 0; pb.Next(); i++ {
			t := &mine[i%perG]
			_, _, next, err := a.Refresh(ctx, *t, addr, now)
			if err != nil {
				b.Error(err)
				return
			}
			*t = next
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "refreshes/s")
}

// BenchmarkRefreshOneDevice rotates one device's token in a loop: the
// latency of a refresh, one synced commit after the other.
func BenchmarkRefreshOneDevice(b *testing.B) {
	a := openBenchAccounts(b)
	ctx := context.Background()
	r, err := a.Login(ctx, "+79161234567", DeviceInfo{Name: "a"}, acctT0)
	if err != nil {
		b.Fatal(err)
	}
	tok := r.Refresh
	b.ReportAllocs()
	for b.Loop() {
		if _, _, tok, err = a.Refresh(ctx, tok, netip.Addr{}, acctT0); err != nil {
			b.Fatal(err)
		}
	}
}
