package identity

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/storage"
)

func TestRefreshRotates(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	ctx := context.Background()
	r := mustLogin(t, a, "+79161234567", "a", acctT0)
	addr := netip.MustParseAddr("10.1.2.3")
	tok := r.Refresh
	for i := 1; i <= refreshHistory+3; i++ {
		now := acctT0.Add(time.Duration(i) * time.Hour)
		u, d, next, err := a.Refresh(ctx, tok, addr, now)
		if err != nil || u != r.User || d != r.Device || next == tok || len(next) != refreshTokenLen {
			t.Fatalf("Refresh %d = %d %d %q %v", i, u, d, next, err)
		}
		tok = next
	}
	devs, err := a.Devices(r.User)
	if err != nil || len(devs) != 1 || devs[0].LastAddr != addr ||
		!devs[0].LastSeen.Equal(acctT0.Add((refreshHistory+3)*time.Hour)) || !devs[0].Created.Equal(acctT0) {
		t.Fatalf("Devices = %+v, %v", devs, err)
	}
	// The login token is older than the remembered history: merely unknown.
	if _, _, _, err := a.Refresh(ctx, r.Refresh, addr, acctT0); !errors.Is(err, ErrRefreshInvalid) {
		t.Fatalf("forgotten token = %v", err)
	}
	if !a.DeviceActive(r.User, r.Device) {
		t.Fatal("a forgotten token ended the device")
	}
}

func TestRefreshReuseEndsDevice(t *testing.T) {
	var ended []storage.DeviceID
	set := metrics.NewSet()
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{Metrics: set, OnDeviceEnded: func(_ storage.UserID, d storage.DeviceID) {
		ended = append(ended, d)
	}})
	ctx := context.Background()
	r := mustLogin(t, a, "+79161234567", "a", acctT0)
	keep := mustLogin(t, a, "+79161234567", "b", acctT0)
	_, _, t1, err := a.Refresh(ctx, r.Refresh, netip.Addr{}, acctT0)
	if err != nil {
		t.Fatal(err)
	}
	_, _, t2, err := a.Refresh(ctx, t1, netip.Addr{}, acctT0)
	if err != nil {
		t.Fatal(err)
	}
	// t1 was used: presenting it again is theft or a broken client.
	if _, _, _, err := a.Refresh(ctx, t1, netip.Addr{}, acctT0); !errors.Is(err, ErrRefreshReused) {
		t.Fatalf("reused token = %v", err)
	}
	if a.DeviceActive(r.User, r.Device) {
		t.Fatal("device still active after reuse")
	}
	if _, _, _, err := a.Refresh(ctx, t2, netip.Addr{}, acctT0); !errors.Is(err, ErrRefreshInvalid) {
		t.Fatalf("newest token after reuse = %v", err)
	}
	if _, _, _, err := a.Refresh(ctx, r.Refresh, netip.Addr{}, acctT0); !errors.Is(err, ErrRefreshInvalid) {
		t.Fatalf("first token after reuse = %v", err)
	}
	if !a.DeviceActive(keep.User, keep.Device) {
		t.Fatal("reuse ended the user's other device")
	}
	if len(ended) != 1 || ended[0] != r.Device {
		t.Fatalf("OnDeviceEnded saw %v", ended)
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, want := range []string{"gonets_identity_logins_total 2", "gonets_identity_accounts_created_total 1",
		"gonets_identity_refreshes_total 2", "gonets_identity_refresh_reused_total 1",
		"gonets_identity_refresh_invalid_total 2", "gonets_identity_devices_ended_total 1"} {
		if !strings.Contains(buf.String(), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
		}
	}
}

func TestRefreshExpiredAndMalformed(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{RefreshTTL: 24 * time.Hour})
	ctx := context.Background()
	r := mustLogin(t, a, "+79161234567", "a", acctT0)
	// Sliding: each rotation starts a new day.
	_, _, t1, err := a.Refresh(ctx, r.Refresh, netip.Addr{}, acctT0.Add(23*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, _, t2, err := a.Refresh(ctx, t1, netip.Addr{}, acctT0.Add(46*time.Hour))
	if err != nil {
		t.Fatalf("within the slid TTL: %v", err)
	}
	if _, _, _, err := a.Refresh(ctx, t2, netip.Addr{}, acctT0.Add(70*time.Hour)); !errors.Is(err, ErrRefreshInvalid) {
		t.Fatalf("expired = %v", err)
	}
	for _, bad := range []string{"", "x", strings.Repeat("A", refreshTokenLen+1), strings.Repeat("*", refreshTokenLen), strings.Repeat("A", refreshTokenLen)} {
		if _, _, _, err := a.Refresh(ctx, bad, netip.Addr{}, acctT0); !errors.Is(err, ErrRefreshInvalid) {
			t.Errorf("Refresh(%q) = %v", bad, err)
		}
	}
	if !a.DeviceActive(r.User, r.Device) {
		t.Fatal("bad tokens changed the device")
	}
}

// TestRefreshConcurrent presents one token from many goroutines: exactly
// one rotates it; every other sees a used token, and the device ends (a
// client must not refresh one token twice).
func TestRefreshConcurrent(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	ctx := context.Background()
	r := mustLogin(t, a, "+79161234567", "a", acctT0)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, _, _, errs[i] = a.Refresh(ctx, r.Refresh, netip.Addr{}, acctT0)
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, ErrRefreshReused), errors.Is(err, ErrRefreshInvalid):
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d refreshes won, want 1: %v", won, errs)
	}
	if a.DeviceActive(r.User, r.Device) {
		t.Fatal("device survived a concurrent reuse")
	}
}

// FuzzRefresh presents arbitrary strings as refresh tokens: none is
// accepted, none changes the live device, nothing panics.
func FuzzRefresh(f *testing.F) {
	a, err := OpenAccounts(f.TempDir(), AccountsOptions{Key: acctTestKey})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { a.Close() })
	r, err := a.Login(context.Background(), "+79161234567", DeviceInfo{Name: "a"}, acctT0)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "x", strings.Repeat("A", refreshTokenLen), strings.Repeat("_", refreshTokenLen), r.Refresh[:refreshTokenLen-1] + "=", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if tok == r.Refresh {
			return
		}
		if _, _, _, err := a.Refresh(context.Background(), tok, netip.Addr{}, acctT0); !errors.Is(err, ErrRefreshInvalid) {
			t.Fatalf("Refresh(%q) = %v", tok, err)
		}
		if !a.DeviceActive(r.User, r.Device) {
			t.Fatal("a bad token ended the device")
		}
	})
}
