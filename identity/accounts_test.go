package identity

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/gonets/gonets/storage"
)

var acctTestKey = bytes.Repeat([]byte{7}, 32)

var acctT0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func openTestAccounts(t *testing.T, dir string, opts AccountsOptions) *Accounts {
	t.Helper()
	if opts.Key == nil {
		opts.Key = acctTestKey
	}
	a, err := OpenAccounts(dir, opts)
	if err != nil {
		t.Fatalf("OpenAccounts: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func mustLogin(t *testing.T, a *Accounts, phone, name string, now time.Time) LoginResult {
	t.Helper()
	r, err := a.Login(context.Background(), phone, DeviceInfo{Name: name, Platform: "ios", Addr: netip.MustParseAddr("127.0.0.1")}, now)
	if err != nil {
		t.Fatalf("Login(%s): %v", phone, err)
	}
	return r
}

func TestAccountsLoginCreatesThenFinds(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	r1 := mustLogin(t, a, "+79161234567", "phone", acctT0)
	if !r1.Created || r1.User != 1<<32 || r1.Device != 1 || len(r1.Refresh) != refreshTokenLen {
		t.Fatalf("first login = %+v", r1)
	}
	r2 := mustLogin(t, a, "+79161234567", "laptop", acctT0.Add(time.Minute))
	if r2.Created || r2.User != r1.User || r2.Device != 2 || r2.Refresh == r1.Refresh {
		t.Fatalf("second login = %+v, first %+v", r2, r1)
	}
	r3 := mustLogin(t, a, "+79161234568", "other", acctT0)
	if !r3.Created || r3.User != r1.User+1 || r3.Device != 1 {
		t.Fatalf("other phone = %+v", r3)
	}
	devs, err := a.Devices(r1.User)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].ID != 1 || devs[0].Name != "phone" || devs[1].Name != "laptop" ||
		devs[1].Platform != "ios" || !devs[1].Created.Equal(acctT0.Add(time.Minute)) ||
		devs[0].LastAddr != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("Devices = %+v", devs)
	}
}

func TestAccountsLoginBadInput(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	ctx := context.Background()
	f := func(phone string, dev DeviceInfo, want error) {
		t.Helper()
		if _, err := a.Login(ctx, phone, dev, acctT0); !errors.Is(err, want) {
			t.Errorf("Login(%q, %+v) = %v, want %v", phone, dev, err, want)
		}
	}
	f("79161234567", DeviceInfo{}, ErrAccountPhone)
	f("+0123", DeviceInfo{}, ErrAccountPhone)
	f("+1234567890123456", DeviceInfo{}, ErrAccountPhone)
	f("+7916a", DeviceInfo{}, ErrAccountPhone)
	f("+79161234567", DeviceInfo{Name: string(bytes.Repeat([]byte{'x'}, MaxDeviceName+1))}, ErrDeviceInfo)
	f("+79161234567", DeviceInfo{Name: "a\nb"}, ErrDeviceInfo)
	f("+79161234567", DeviceInfo{Platform: "\xff"}, ErrDeviceInfo)
	f("+79161234567", DeviceInfo{Name: "Anna\u202e's phone"}, ErrDeviceInfo) // a right-to-left override
	f("+79161234567", DeviceInfo{Name: "pho\u200dne"}, ErrDeviceInfo)        // a zero-width joiner
	// Nothing was written: the first good login still creates user base.
	if r := mustLogin(t, a, "+79161234567", "x", acctT0); r.User != 1<<32 || !r.Created {
		t.Fatalf("after bad input: %+v", r)
	}
	if _, err := OpenAccounts(t.TempDir(), AccountsOptions{Key: []byte("short")}); !errors.Is(err, ErrAccountsKey) {
		t.Fatalf("short key: %v", err)
	}
}

func TestAccountsDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenAccounts(dir, AccountsOptions{Key: acctTestKey, UserBase: 1000})
	if err != nil {
		t.Fatal(err)
	}
	r1 := mustLogin(t, a, "+441234567890", "a", acctT0)
	r2 := mustLogin(t, a, "+441234567891", "b", acctT0)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Login(context.Background(), "+441234567892", DeviceInfo{}, acctT0); !errors.Is(err, ErrAccountsClosed) {
		t.Fatalf("Login after Close: %v", err)
	}

	b := openTestAccounts(t, dir, AccountsOptions{UserBase: 1000})
	if r := mustLogin(t, b, "+441234567892", "c", acctT0); r.User != r2.User+1 || !r.Created {
		t.Fatalf("new user after reopen = %+v, before %d", r, r2.User)
	}
	if r := mustLogin(t, b, "+441234567890", "a2", acctT0); r.User != r1.User || r.Device != 2 || r.Created {
		t.Fatalf("old user after reopen = %+v", r)
	}
	if !b.DeviceActive(r1.User, r1.Device) {
		t.Fatal("device lost across reopen")
	}
	if u, d, _, err := b.Refresh(context.Background(), r2.Refresh, netip.Addr{}, acctT0.Add(time.Hour)); err != nil || u != r2.User || d != r2.Device {
		t.Fatalf("Refresh after reopen = %d %d %v", u, d, err)
	}
}

// TestAccountsSyncedWithoutClose copies the store's files while it is
// open, as a crash would leave them, and opens the copy: every acknowledged
// login is there, because each is a synced batch in the WAL.
func TestAccountsSyncedWithoutClose(t *testing.T) {
	dir := t.TempDir()
	a := openTestAccounts(t, dir, AccountsOptions{})
	r := mustLogin(t, a, "+33612345678", "a", acctT0)
	crash := t.TempDir()
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "LOCK" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(crash, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	c := openTestAccounts(t, crash, AccountsOptions{})
	if !c.DeviceActive(r.User, r.Device) {
		t.Fatal("acknowledged login lost")
	}
	if r2 := mustLogin(t, c, "+33612345679", "b", acctT0); r2.User != r.User+1 {
		t.Fatalf("next user after crash = %d, want %d", r2.User, r.User+1)
	}
}

func TestAccountsPhoneNotInClear(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenAccounts(dir, AccountsOptions{Key: acctTestKey})
	if err != nil {
		t.Fatal(err)
	}
	const phone = "+79169876543"
	mustLogin(t, a, phone, "secret-device-name", acctT0)
	if err := a.Close(); err != nil { // flushes nothing new, but ends writes
		t.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range []string{phone, phone[1:], "secret-device-name"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds %q in the clear", p, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another key is refused; without the key check record it still cannot
	// find the account nor read its records.
	other := bytes.Repeat([]byte{8}, 32)
	if _, err := OpenAccounts(dir, AccountsOptions{Key: other}); !errors.Is(err, ErrAccountsKey) {
		t.Fatalf("OpenAccounts with another key: %v, want ErrAccountsKey", err)
	}
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(acctKeyCheck, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b := openTestAccounts(t, dir, AccountsOptions{Key: other})
	if r := mustLogin(t, b, "+10000000000", "x", acctT0); !r.Created {
		t.Fatalf("other key: %+v", r)
	}
	if _, err := b.Devices(1 << 32); err == nil {
		t.Fatal("Devices opened records under another key")
	}
}

func TestAccountsEndDevice(t *testing.T) {
	var mu sync.Mutex
	var ended []storage.DeviceID
	var a *Accounts
	a = openTestAccounts(t, t.TempDir(), AccountsOptions{OnDeviceEnded: func(u storage.UserID, d storage.DeviceID) {
		// Called after commit with no lock held: it may call back in.
		if a.DeviceActive(u, d) {
			t.Errorf("OnDeviceEnded(%d, %d) before the end is visible", u, d)
		}
		mu.Lock()
		ended = append(ended, d)
		mu.Unlock()
	}})
	ctx := context.Background()
	r1 := mustLogin(t, a, "+79161234567", "a", acctT0)
	r2 := mustLogin(t, a, "+79161234567", "b", acctT0)
	other := mustLogin(t, a, "+79161234500", "o", acctT0)
	if err := a.EndDevice(r1.User, 9); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("EndDevice(missing) = %v", err)
	}
	// Device ids are per user: other has a device 1 too, and ending it
	// leaves r1's alone.
	if err := a.EndDevice(other.User, other.Device); err != nil {
		t.Fatalf("EndDevice(other's device) = %v", err)
	}
	if a.DeviceActive(other.User, other.Device) || !a.DeviceActive(r1.User, r1.Device) {
		t.Fatal("ending other's device 1 went wrong")
	}
	if err := a.EndDevice(other.User, r2.Device); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("EndDevice(another user's device id) = %v", err)
	}
	if err := a.EndDevice(r1.User, r1.Device); err != nil {
		t.Fatal(err)
	}
	if a.DeviceActive(r1.User, r1.Device) || !a.DeviceActive(r2.User, r2.Device) {
		t.Fatal("wrong device ended")
	}
	if _, _, _, err := a.Refresh(ctx, r1.Refresh, netip.Addr{}, acctT0); !errors.Is(err, ErrRefreshInvalid) {
		t.Fatalf("Refresh of ended device = %v", err)
	}
	if err := a.EndDevice(r1.User, r1.Device); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("EndDevice twice = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(ended, []storage.DeviceID{other.Device, r1.Device}) {
		t.Fatalf("OnDeviceEnded saw %v", ended)
	}
}

func TestAccountsEndOtherDevices(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	ctx := context.Background()
	var rs []LoginResult
	for range 4 {
		rs = append(rs, mustLogin(t, a, "+79161234567", "d", acctT0))
	}
	if _, err := a.EndOtherDevices(rs[0].User, 99); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("EndOtherDevices(unknown keep) = %v", err)
	}
	if devs, _ := a.Devices(rs[0].User); len(devs) != 4 {
		t.Fatalf("unknown keep changed something: %d devices", len(devs))
	}
	ended, err := a.EndOtherDevices(rs[0].User, rs[2].Device)
	if err != nil || !slices.Equal(ended, []storage.DeviceID{1, 2, 4}) {
		t.Fatalf("EndOtherDevices = %v, %v", ended, err)
	}
	devs, err := a.Devices(rs[0].User)
	if err != nil || len(devs) != 1 || devs[0].ID != rs[2].Device {
		t.Fatalf("Devices after = %+v, %v", devs, err)
	}
	for i, r := range rs {
		_, _, _, err := a.Refresh(ctx, r.Refresh, netip.Addr{}, acctT0)
		if (i == 2) != (err == nil) {
			t.Errorf("Refresh of device %d = %v", r.Device, err)
		}
	}
	if ended, err := a.EndOtherDevices(rs[0].User, rs[2].Device); err != nil || len(ended) != 0 {
		t.Fatalf("EndOtherDevices again = %v, %v", ended, err)
	}
}

func TestAccountsMaxDevices(t *testing.T) {
	var ended []storage.DeviceID
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{MaxDevices: 2, RefreshTTL: time.Hour,
		OnDeviceEnded: func(_ storage.UserID, d storage.DeviceID) { ended = append(ended, d) }})
	r1 := mustLogin(t, a, "+79161234567", "a", acctT0)
	mustLogin(t, a, "+79161234567", "b", acctT0.Add(30*time.Minute))
	if _, err := a.Login(context.Background(), "+79161234567", DeviceInfo{}, acctT0.Add(40*time.Minute)); !errors.Is(err, ErrTooManyDevices) {
		t.Fatalf("third device = %v", err)
	}
	if devs, _ := a.Devices(r1.User); len(devs) != 2 {
		t.Fatalf("refused login changed devices: %d", len(devs))
	}
	// Device a's refresh token has expired: it makes room.
	r3 := mustLogin(t, a, "+79161234567", "c", acctT0.Add(61*time.Minute))
	if r3.Device != 3 || a.DeviceActive(r1.User, r1.Device) {
		t.Fatalf("expired device not ended: %+v", r3)
	}
	if !slices.Equal(ended, []storage.DeviceID{r1.Device}) {
		t.Fatalf("OnDeviceEnded saw %v", ended)
	}
}

// A store opened with another key must refuse to open: with it, every
// returning number would miss its phone index and get a second account.
func TestAccountsRefusesOtherKey(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenAccounts(dir, AccountsOptions{Key: acctTestKey})
	if err != nil {
		t.Fatal(err)
	}
	mustLogin(t, a, "+441234567890", "a", acctT0)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := OpenAccounts(dir, AccountsOptions{Key: bytes.Repeat([]byte{8}, 32)})
	if err == nil {
		r, lerr := b.Login(context.Background(), "+441234567890", DeviceInfo{Name: "a"}, acctT0)
		b.Close()
		t.Fatalf("OpenAccounts with another key succeeded; Login then gave %+v, %v", r, lerr)
	}
	if !errors.Is(err, ErrAccountsKey) {
		t.Fatalf("OpenAccounts with another key: %v, want ErrAccountsKey", err)
	}
	c := openTestAccounts(t, dir, AccountsOptions{})
	if r := mustLogin(t, c, "+441234567890", "a2", acctT0); r.Created {
		t.Fatal("the right key no longer finds the account")
	}
}

// Fifty concurrent logins of one new number make one account with fifty
// devices: the phone stripe keeps the second login out until the first
// has committed the phone index entry. Pebble publishes a batch before its
// fsync, so the window is short: each round releases its logins at once.
func TestAccountsLoginSameNewNumberConcurrently(t *testing.T) {
	a := openTestAccounts(t, t.TempDir(), AccountsOptions{})
	const rounds, n = 10, 50
	var prev storage.UserID
	for round := range rounds {
		phone := "+7916123450" + strconv.Itoa(round)
		res := make([]LoginResult, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				res[i], errs[i] = a.Login(context.Background(), phone, DeviceInfo{Name: "d"}, acctT0)
			})
		}
		close(start)
		wg.Wait()
		created := 0
		devs := map[storage.DeviceID]bool{}
		for i, r := range res {
			if errs[i] != nil {
				t.Fatalf("%s: login %d: %v", phone, i, errs[i])
			}
			if r.User != res[0].User {
				t.Fatalf("%s: login %d got user %d, login 0 user %d", phone, i, r.User, res[0].User)
			}
			if r.Created {
				created++
			}
			devs[r.Device] = true
		}
		if created != 1 || len(devs) != n {
			t.Fatalf("%s: %d accounts created, %d distinct devices; want 1 and %d", phone, created, len(devs), n)
		}
		if round > 0 && res[0].User != prev+1 {
			t.Fatalf("%s: user %d after %d: an id was allocated twice or skipped", phone, res[0].User, prev)
		}
		prev = res[0].User
	}
}

// New user ids never repeat across a reopen after concurrent logins, and
// never go below an id persisted by an older version.
func TestAccountsNewIDsNeverRepeat(t *testing.T) {
	dir := t.TempDir()
	seen := map[storage.UserID]string{}
	phone := 0
	round := func(a *Accounts) {
		t.Helper()
		const goroutines, each = 8, 10
		res := make([]LoginResult, goroutines*each)
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range each {
					n := g*each + i
					r, err := a.Login(context.Background(), "+4420"+strconv.Itoa(7000000+phone+n), DeviceInfo{}, acctT0)
					if err != nil {
						t.Errorf("login: %v", err)
					}
					res[n] = r
				}
			})
		}
		wg.Wait()
		for n, r := range res {
			p := strconv.Itoa(phone + n)
			if !r.Created {
				t.Fatalf("login of new number %s found an account: %+v", p, r)
			}
			if was, ok := seen[r.User]; ok {
				t.Fatalf("user id %d given to number %s and again to %s", r.User, was, p)
			}
			seen[r.User] = p
		}
		phone += len(res)
	}
	for range 3 {
		a, err := OpenAccounts(dir, AccountsOptions{Key: acctTestKey})
		if err != nil {
			t.Fatal(err)
		}
		round(a)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 240 {
		t.Fatalf("%d distinct ids, want 240", len(seen))
	}

	// A store whose older version persisted a next id above its highest
	// user (an allocation it skipped) still starts there.
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(acctKeyNext, binary.BigEndian.AppendUint64(nil, 1<<32+1000), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	a := openTestAccounts(t, dir, AccountsOptions{})
	if r := mustLogin(t, a, "+79160000001", "x", acctT0); r.User != 1<<32+1000 {
		t.Fatalf("after a persisted next of %d, new user %d", 1<<32+1000, r.User)
	}
}
