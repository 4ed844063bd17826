package identity

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

var limitT0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func newTestLimiter(t testing.TB, opts LimitOptions) *Limiter {
	t.Helper()
	l, err := NewLimiter(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// wantRefused checks that err is a *RateLimitError of scope, matching
// sentinel and only it, and returns its RetryAfter.
func wantRefused(t *testing.T, err error, scope string, sentinel error) time.Duration {
	t.Helper()
	var re *RateLimitError
	if !errors.As(err, &re) || re.Scope != scope || !errors.Is(err, sentinel) {
		t.Fatalf("got %v, want a %s refusal", err, scope)
	}
	for _, other := range []error{ErrRateNumber, ErrRateAddress, ErrRatePrefix} {
		if other != sentinel && errors.Is(err, other) {
			t.Fatalf("%v matches %v too", err, other)
		}
	}
	if re.RetryAfter <= 0 {
		t.Fatalf("RetryAfter %v, want > 0", re.RetryAfter)
	}
	return re.RetryAfter
}

var (
	addrA = netip.MustParseAddr("203.0.113.7")
	addrB = netip.MustParseAddr("198.51.100.9")
)

func TestLimiterScopesRefuseAndRecover(t *testing.T) {
	wide := Rate{Burst: 1000, Per: time.Minute}
	cases := []struct {
		scope    string
		sentinel error
		opts     LimitOptions
		// call makes the i-th attempt, all hitting the one limit under test.
		call func(l *Limiter, i int, now time.Time) error
	}{
		{ScopeNumber, ErrRateNumber, LimitOptions{Number: Rate{3, 10 * time.Minute}, Address: wide, Prefix: wide},
			func(l *Limiter, i int, now time.Time) error {
				return l.Allow("+79161234567", netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now)
			}},
		{ScopeAddress, ErrRateAddress, LimitOptions{Number: wide, Address: Rate{20, time.Minute}, Prefix: wide},
			func(l *Limiter, i int, now time.Time) error {
				return l.Allow(fmt.Sprintf("+7916%07d", i*10000), addrA, now)
			}},
		{ScopePrefix, ErrRatePrefix, LimitOptions{Number: wide, Address: wide, Prefix: Rate{30, time.Minute}},
			func(l *Limiter, i int, now time.Time) error {
				return l.Allow(fmt.Sprintf("+7916123%04d", i), netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now)
			}},
	}
	for _, c := range cases {
		t.Run(c.scope, func(t *testing.T) {
			l := newTestLimiter(t, c.opts)
			var burst int
			switch c.scope {
			case ScopeNumber:
				burst = c.opts.Number.Burst
			case ScopeAddress:
				burst = c.opts.Address.Burst
			default:
				burst = c.opts.Prefix.Burst
			}
			i := 0
			for ; i < burst; i++ {
				if err := c.call(l, i, limitT0); err != nil {
					t.Fatalf("attempt %d of the burst: %v", i, err)
				}
			}
			wait := wantRefused(t, c.call(l, i, limitT0), c.scope, c.sentinel)
			// Just short of RetryAfter it still refuses; at it, it passes.
			i++
			wantRefused(t, c.call(l, i, limitT0.Add(wait-time.Nanosecond)), c.scope, c.sentinel)
			i++
			if err := c.call(l, i, limitT0.Add(wait)); err != nil {
				t.Fatalf("after RetryAfter %v: %v", wait, err)
			}
		})
	}
}

func TestLimiterDefaults(t *testing.T) {
	l := newTestLimiter(t, LimitOptions{})
	for i := range DefaultLimitNumber.Burst {
		if err := l.Allow("+79161234567", addrA, limitT0); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	wait := wantRefused(t, l.Allow("+79161234567", addrA, limitT0), ScopeNumber, ErrRateNumber)
	if want := DefaultLimitNumber.Per / time.Duration(DefaultLimitNumber.Burst); wait != want {
		t.Fatalf("RetryAfter %v, want %v", wait, want)
	}
}

func TestLimiterRefusalTakesNothing(t *testing.T) {
	l := newTestLimiter(t, LimitOptions{
		Number:  Rate{1, time.Hour},
		Address: Rate{2, time.Hour},
		Prefix:  Rate{3, time.Hour},
	})
	if err := l.Allow("+79161230001", addrA, limitT0); err != nil {
		t.Fatal(err)
	}
	// Refused by the number limit, many times: the address and the range
	// lose nothing.
	for range 10 {
		wantRefused(t, l.Allow("+79161230001", addrA, limitT0), ScopeNumber, ErrRateNumber)
	}
	if err := l.Allow("+79161230002", addrA, limitT0); err != nil {
		t.Fatalf("address lost tokens to number refusals: %v", err)
	}
	// Now the address is spent: refusals by it take nothing from the range.
	for range 10 {
		wantRefused(t, l.Allow("+79161230003", addrA, limitT0), ScopeAddress, ErrRateAddress)
	}
	if err := l.Allow("+79161230003", addrB, limitT0); err != nil {
		t.Fatalf("range or number lost tokens to address refusals: %v", err)
	}
	wantRefused(t, l.Allow("+79161230004", addrB, limitT0), ScopePrefix, ErrRatePrefix)
	// Another range is untouched.
	if err := l.Allow("+79161240004", addrB, limitT0); err != nil {
		t.Fatal(err)
	}
}

func TestLimiterLongestWaitWins(t *testing.T) {
	l := newTestLimiter(t, LimitOptions{
		Number:  Rate{1, time.Minute},
		Address: Rate{1, time.Hour},
	})
	if err := l.Allow("+79161230001", addrA, limitT0); err != nil {
		t.Fatal(err)
	}
	// Both number and address refuse; the address frees up last.
	if wait := wantRefused(t, l.Allow("+79161230001", addrA, limitT0), ScopeAddress, ErrRateAddress); wait != time.Hour {
		t.Fatalf("RetryAfter %v, want 1h", wait)
	}
}

func TestLimiterIPv6By64(t *testing.T) {
	l := newTestLimiter(t, LimitOptions{Address: Rate{2, time.Hour}})
	in := []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::7%eth0"}
	for i, a := range in[:2] {
		if err := l.Allow(fmt.Sprintf("+7916%07d", i*10000), netip.MustParseAddr(a), limitT0); err != nil {
			t.Fatal(err)
		}
	}
	wantRefused(t, l.Allow("+79169990000", netip.MustParseAddr(in[2]), limitT0), ScopeAddress, ErrRateAddress)
	// The next /64 is another subscriber.
	if err := l.Allow("+79169990000", netip.MustParseAddr("2001:db8:1:3::1"), limitT0); err != nil {
		t.Fatal(err)
	}
	// A 4in6 address counts as its IPv4 address.
	l.Allow("+79168880000", addrA, limitT0)
	l.Allow("+79167770000", addrA, limitT0)
	wantRefused(t, l.Allow("+79166660000", netip.AddrFrom16(addrA.As16()), limitT0), ScopeAddress, ErrRateAddress)
}

func TestLimiterBadInput(t *testing.T) {
	l := newTestLimiter(t, LimitOptions{})
	for _, c := range []struct {
		n string
		a netip.Addr
	}{{"", addrA}, {"79161234567", addrA}, {"+7916x234567", addrA}, {"+79161234567", netip.Addr{}}} {
		if err := l.Allow(c.n, c.a, limitT0); !errors.Is(err, ErrLimitInput) {
			t.Errorf("Allow(%q, %v): %v, want ErrLimitInput", c.n, c.a, err)
		}
	}
	if st := l.Stats(); st != (LimiterStats{}) {
		t.Fatalf("bad input tracked keys: %+v", st)
	}
	for _, o := range []LimitOptions{
		{MaxKeys: -1},
		{Number: Rate{Burst: 0, Per: time.Minute}},
		{Address: Rate{Burst: 5, Per: -time.Minute}},
		{Prefix: Rate{Burst: 10, Per: 5}},
	} {
		if _, err := NewLimiter(o); !errors.Is(err, ErrLimitConfig) {
			t.Errorf("NewLimiter(%+v): %v, want ErrLimitConfig", o, err)
		}
	}
}

func TestLimiterIdleEvictedAndBounded(t *testing.T) {
	const max = 50
	l := newTestLimiter(t, LimitOptions{MaxKeys: max, Number: Rate{1, time.Minute}, Address: Rate{1000, time.Minute}, Prefix: Rate{1000, time.Minute}})
	// A flood of distinct numbers, ranges and addresses: each map stays
	// within MaxKeys.
	for i := range 500 {
		l.Allow(fmt.Sprintf("+7%010d", i*10000), netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), limitT0)
	}
	st := l.Stats()
	if st.Numbers > max || st.Addresses > max || st.Prefixes > max {
		t.Fatalf("over MaxKeys %d: %+v", max, st)
	}
	if st.Evicted == 0 {
		t.Fatal("no active key evicted under the flood")
	}
	// Once recharged, every key is idle and Sweep drops them all.
	if n := l.Sweep(limitT0.Add(time.Minute)); n != st.Numbers+st.Addresses+st.Prefixes {
		t.Fatalf("Sweep dropped %d of %+v", n, st)
	}
	if st := l.Stats(); st.Numbers+st.Addresses+st.Prefixes != 0 {
		t.Fatalf("after Sweep: %+v", st)
	}
	// Without Sweep, Allow drops idle keys as it goes.
	for i := range 10 {
		l.Allow(fmt.Sprintf("+7%010d", i*10000), addrA, limitT0)
	}
	later := limitT0.Add(time.Hour)
	for i := range 10 {
		l.Allow(fmt.Sprintf("+8%010d", i*10000), addrB, later)
	}
	if st := l.Stats(); st.Numbers != 10 || st.Prefixes != 10 || st.Addresses != 1 {
		t.Fatalf("idle keys kept: %+v", st)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	// 160 numbers fit in MaxKeys, so none is forgiven by eviction; the
	// 2048 addresses do not, and churn.
	l := newTestLimiter(t, LimitOptions{MaxKeys: 200, Number: Rate{2, time.Minute}, Address: Rate{1000, time.Minute}, Prefix: Rate{1000, time.Minute}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := map[string]int{}
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				num := fmt.Sprintf("+7916%03d%04d", i%20, g)
				err := l.Allow(num, netip.AddrFrom4([4]byte{10, 2, byte(g), byte(i)}), limitT0)
				if err == nil {
					mu.Lock()
					passed[num]++
					mu.Unlock()
				} else if !errors.Is(err, ErrRateNumber) && !errors.Is(err, ErrRatePrefix) && !errors.Is(err, ErrRateAddress) {
					t.Error(err)
				}
				if i%50 == 0 {
					l.Sweep(limitT0)
					l.Stats()
				}
			}
		})
	}
	wg.Wait()
	for num, n := range passed {
		if n > 2 {
			t.Fatalf("%s passed %d times, burst is 2", num, n)
		}
	}
}

func TestLimiterAllowAllocs(t *testing.T) {
	l := newTestLimiter(t, LimitOptions{Number: Rate{1 << 20, time.Minute}, Address: Rate{1 << 20, time.Minute}, Prefix: Rate{1 << 20, time.Minute}})
	v6 := netip.MustParseAddr("2001:db8::1")
	l.Allow("+79161234567", v6, limitT0)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := l.Allow("+79161234567", v6, limitT0); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("Allow of tracked keys: %v allocs", allocs)
	if allocs != 0 {
		t.Fatalf("Allow of tracked keys allocates %v times, want 0", allocs)
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	l := newTestLimiter(b, LimitOptions{Number: Rate{1 << 30, time.Minute}, Address: Rate{1 << 30, time.Minute}, Prefix: Rate{1 << 30, time.Minute}})
	nums := make([]string, 1024)
	for i := range nums {
		nums[i] = fmt.Sprintf("+7916%07d", i*37)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(nums[i%len(nums)], addrA, limitT0)
		i++
	}
}
