package tools

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// TestMain keeps the tests off the profiles of whoever runs them: the
// client commands read the "default" one when no token is given.
func TestMain(m *testing.M) {
	if os.Getenv(profileChildEnv) == "" {
		dir, err := os.MkdirTemp("", "gonets-tools-config-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Setenv(configDirEnv, dir)
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// testProfiles points the profiles at a fresh directory for one test.
func testProfiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(configDirEnv, dir)
	return filepath.Join(dir, "profiles")
}

// newTestProfile saves a profile name with the refresh token refresh and
// an access token that expired.
func newTestProfile(t *testing.T, name, refresh string) *profileFile {
	t.Helper()
	pf, err := openProfile(name)
	if err != nil {
		t.Fatal(err)
	}
	p := &profile{nodeConn: nodeConn{Server: "127.0.0.1:1"}, Phone: "+79000000001", User: 1, Device: 1,
		Access: "A0", AccessExpires: time.Now().Add(-time.Second), Refresh: refresh, RefreshExpires: time.Now().Add(time.Hour)}
	if err := pf.save(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return pf
}

func TestProfileFile(t *testing.T) {
	dir := testProfiles(t)
	pf, err := openProfile("alice")
	if err != nil {
		t.Fatal(err)
	}
	if pf.path != filepath.Join(dir, "alice.json") {
		t.Fatalf("path %s, want it in %s", pf.path, dir)
	}
	if _, err := pf.load(); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "gonets login --phone +NUMBER --profile alice") {
		t.Fatalf("a missing profile: %v", err)
	}
	exp := time.Now().Add(time.Hour).Round(0)
	want := &profile{
		nodeConn: nodeConn{Server: "h:1", TCPServer: "h:2", Fingerprint: "ab"},
		Phone:    "+79000000001", User: 3, Device: 4, Access: "acc", AccessExpires: exp, Refresh: "ref", RefreshExpires: exp.Add(time.Hour),
	}
	for range 2 { // a new file, then one replaced
		if err := pf.save(context.Background(), want); err != nil {
			t.Fatal(err)
		}
	}
	got, err := pf.load()
	if err != nil || !got.AccessExpires.Equal(want.AccessExpires) || got.Refresh != "ref" || got.nodeConn != want.nodeConn || got.Device != 4 {
		t.Fatalf("load = %+v, %v; want %+v", got, err, want)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, pf.path: 0o600, pf.path + ".lock": 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != mode {
			t.Fatalf("%s: %v, %v; want mode %v", path, fi.Mode(), err, mode)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("%s holds %v: a temporary file left?", dir, ents)
	}
	if err := pf.remove(context.Background()); err != nil || pf.exists() {
		t.Fatalf("remove: %v, exists %v", err, pf.exists())
	}
	// Names that would leave the directory, or be hidden.
	for _, name := range []string{"", "../x", "a/b", ".hidden", "-x", strings.Repeat("n", 65)} {
		var ue *usageError
		if _, err := openProfile(name); !errors.As(err, &ue) {
			t.Errorf("openProfile(%q) = %v, want a usage error", name, err)
		}
	}
	// A file that is not a login.
	if err := os.WriteFile(pf.path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pf.load(); err == nil || !strings.Contains(err.Error(), "log in again") {
		t.Fatalf("a corrupt profile: %v", err)
	}
}

// ledger is a fake node's refresh tokens: each may be presented once.
type ledger struct {
	mu      sync.Mutex // guards the following
	current string
	reused  []string
	n       int
	life    time.Duration // of the access tokens issued
}

func (l *ledger) refresh(_ context.Context, tok string) (client.Tokens, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tok != l.current {
		l.reused = append(l.reused, tok)
		return client.Tokens{}, &client.Error{Code: wire.ErrorCode_ERROR_CODE_REFRESH_REUSED}
	}
	l.n++
	l.current = fmt.Sprintf("R%d", l.n)
	now := time.Now()
	return client.Tokens{User: 1, Device: 1, Access: fmt.Sprintf("A%d", l.n), AccessExpires: now.Add(l.life),
		Refresh: l.current, RefreshExpires: now.Add(time.Hour)}, nil
}

// Goroutines sharing a profile, each opening its own lock file as
// processes do, never present one refresh token twice.
func TestProfileRefreshConcurrent(t *testing.T) {
	testProfiles(t)
	const workers, each = 8, 10
	f := func(life time.Duration, wantRefreshes int) {
		t.Helper()
		pf := newTestProfile(t, "shared", "R0")
		l := &ledger{current: "R0", life: life}
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for range workers {
			wg.Go(func() {
				pf, _ := openProfile("shared")
				for range each {
					p, err := pf.current(context.Background(), time.Now(), refreshMargin, l.refresh)
					if err == nil && p.Access == "A0" {
						err = errors.New("got the expired access token")
					}
					if err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if len(l.reused) != 0 || l.n != wantRefreshes {
			t.Fatalf("access life %v: %d refreshes, tokens presented again %v; want %d refreshes, none again", life, l.n, l.reused, wantRefreshes)
		}
		if p, err := pf.load(); err != nil || p.Refresh != l.current {
			t.Fatalf("saved %+v, %v; want refresh token %s", p, err, l.current)
		}
	}
	// Tokens that are stale at once: every call refreshes, one at a time.
	f(0, workers*each)
	// Tokens that last: the first refreshes, the others find its pair
	// after taking the lock.
	f(time.Hour, 1)
}

// profileChildEnv makes the test binary a child of
// TestProfileRefreshProcesses: TestProfileChild refreshes the profile
// in $GONETS_CONFIG_DIR and records each token it presents in the
// ledger file the variable names.
const profileChildEnv = "GONETS_TEST_PROFILE_LEDGER"

// Processes sharing a profile never present one refresh token twice: each
// refresh is recorded, by the process that made it, in a ledger file
// appended to by all.
func TestProfileRefreshProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	testProfiles(t)
	pf := newTestProfile(t, defaultProfile, "R0")
	ledgerPath := filepath.Join(t.TempDir(), "ledger")
	const procs, each = 3, 20
	cmds := make([]*exec.Cmd, procs)
	outs := make([]bytes.Buffer, procs)
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestProfileChild$", "-test.count=1", "-test.v")
		cmds[i].Env = append(os.Environ(), profileChildEnv+"="+ledgerPath, "GONETS_TEST_REFRESHES="+strconv.Itoa(each))
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil || !strings.Contains(outs[i].String(), "--- PASS: TestProfileChild") {
			t.Fatalf("child %d: %v: %s", i, err, outs[i].String())
		}
	}
	b, err := os.ReadFile(ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	// Each line is "old new": the chain from R0 must use every token once.
	next := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		old, tok, _ := strings.Cut(sc.Text(), " ")
		if _, dup := next[old]; dup {
			t.Fatalf("refresh token %s presented twice:\n%s", old, b)
		}
		next[old] = tok
	}
	if len(next) != procs*each {
		t.Fatalf("%d refreshes recorded, want %d", len(next), procs*each)
	}
	tok := "R0"
	for range procs * each {
		n, ok := next[tok]
		if !ok {
			t.Fatalf("the chain breaks at %s:\n%s", tok, b)
		}
		tok = n
	}
	if p, err := pf.load(); err != nil || p.Refresh != tok {
		t.Fatalf("saved %+v, %v; want refresh token %s", p, err, tok)
	}
}

// TestProfileChild is a child process of TestProfileRefreshProcesses.
func TestProfileChild(t *testing.T) {
	path := os.Getenv(profileChildEnv)
	if path == "" {
		t.Skip("a child of TestProfileRefreshProcesses")
	}
	each, _ := strconv.Atoi(os.Getenv("GONETS_TEST_REFRESHES"))
	lf, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	refresh := func(_ context.Context, old string) (client.Tokens, error) {
		tok := "R" + rand.Text()
		if _, err := fmt.Fprintf(lf, "%s %s\n", old, tok); err != nil {
			return client.Tokens{}, err
		}
		now := time.Now()
		return client.Tokens{User: 1, Device: 1, Access: "A" + tok, AccessExpires: now, Refresh: tok, RefreshExpires: now.Add(time.Hour)}, nil
	}
	pf, err := openProfile(defaultProfile)
	if err != nil {
		t.Fatal(err)
	}
	for range each {
		if _, err := pf.current(context.Background(), time.Now(), refreshMargin, refresh); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProfileRefreshErrors(t *testing.T) {
	testProfiles(t)
	never := func(context.Context, string) (client.Tokens, error) {
		t.Fatal("refreshed")
		return client.Tokens{}, nil
	}
	fail := func(err error) refresher {
		return func(context.Context, string) (client.Tokens, error) { return client.Tokens{}, err }
	}
	ctx := context.Background()

	// A fresh access token is used as it is.
	pf := newTestProfile(t, "p", "R0")
	if _, err := pf.current(ctx, time.Now().Add(-time.Hour), refreshMargin, never); err != nil {
		t.Fatal(err)
	}
	// An expired login is not sent.
	p, _ := pf.load()
	p.RefreshExpires = time.Now().Add(-time.Second)
	if err := pf.save(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := pf.current(ctx, time.Now(), refreshMargin, never); !isDeadLogin(err) || !strings.Contains(err.Error(), "gonets login --phone +79000000001 --profile p") {
		t.Fatalf("an expired login: %v", err)
	}
	// A dead refresh token, or an ended device, says to log in again.
	for _, code := range []wire.ErrorCode{wire.ErrorCode_ERROR_CODE_REFRESH_REUSED, wire.ErrorCode_ERROR_CODE_REFRESH_INVALID, wire.ErrorCode_ERROR_CODE_DEVICE_ENDED} {
		pf := newTestProfile(t, "p", "R0")
		if _, err := pf.current(ctx, time.Now(), refreshMargin, fail(&client.Error{Code: code})); !isDeadLogin(err) || !strings.Contains(err.Error(), "log in again") {
			t.Fatalf("%v: %v", code, err)
		}
	}
	// A node that cannot refresh now leaves the token for later.
	pf = newTestProfile(t, "p", "R0")
	if _, err := pf.current(ctx, time.Now(), refreshMargin, fail(client.ErrRateLimited)); err == nil || isDeadLogin(err) {
		t.Fatalf("rate limited: %v", err)
	}
	if p, err := pf.load(); err != nil || p.Refresh != "R0" {
		t.Fatalf("after a refused refresh: %+v, %v", p, err)
	}
	// A lost answer may have spent the token: it is never sent again.
	if _, err := pf.current(ctx, time.Now(), refreshMargin, fail(fmt.Errorf("%w: timeout", client.ErrRefreshLost))); !isDeadLogin(err) {
		t.Fatalf("lost: %v", err)
	}
	if _, err := pf.current(ctx, time.Now(), refreshMargin, never); !isDeadLogin(err) || !strings.Contains(err.Error(), "may be spent") {
		t.Fatalf("after a lost refresh: %v", err)
	}
	b, _ := os.ReadFile(pf.path)
	if strings.Contains(string(b), `"R0"`) {
		t.Fatalf("the spent refresh token is still saved: %s", b)
	}
}

// Waiting for another process's refresh ends with the context.
func TestProfileLockWait(t *testing.T) {
	testProfiles(t)
	pf := newTestProfile(t, "p", "R0")
	unlock, err := pf.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := pf.current(ctx, time.Now(), refreshMargin, nil); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "another gonets") {
		t.Fatalf("current while locked: %v", err)
	}
	unlock()
	l := &ledger{current: "R0", life: time.Hour}
	if p, err := pf.current(context.Background(), time.Now(), refreshMargin, l.refresh); err != nil || p.Access != "A1" {
		t.Fatalf("current after unlock: %+v, %v", p, err)
	}
}

// The profile's JSON is a contract with the user's files: its field names
// stay.
func TestProfileJSON(t *testing.T) {
	p := profile{nodeConn: nodeConn{Server: "s", Insecure: true}, Phone: "+7", User: 1, Device: 2, Access: "a", Refresh: "r"}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"server":"s"`, `"insecure":true`, `"phone":"+7"`, `"user":1`, `"device":2`, `"access_token":"a"`, `"access_expires"`, `"refresh_token":"r"`, `"refresh_expires"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("%s lacks %s", b, k)
		}
	}
}
