package tools

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"go.uber.org/goleak"

	"github.com/gonets/gonets/storage"
	"github.com/gonets/gonets/storage/storagetest"
)

// diskFull fails every write with ENOSPC while on, as a full disk does.
func diskFull(on *atomic.Bool) errorfs.Injector {
	return errorfs.InjectorFunc(func(op errorfs.Op) error {
		if on.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && op.Kind != errorfs.OpLock && op.Kind != errorfs.OpMkdirAll {
			return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
		}
		return nil
	})
}

// TestServeDiskFull starts a node whose store's disk is full: it must
// fail within seconds with one clear error naming the directory and what
// to do, and log next to nothing. (It used to retry a flush forever, with
// a log line per try, and never open HTTP.)
func TestServeDiskFull(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	cfg.Node.LogLevel = slog.LevelDebug
	var full atomic.Bool
	// A store that held data when the disk filled.
	ctx, cancel := context.WithCancel(context.Background())
	_, errc := startServe(t, ctx, cfg, io.Discard)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	var stderr bytes.Buffer
	start := time.Now()
	err := serveNode(context.Background(), cfg, nodeOptions{storageFS: errorfs.Wrap(vfs.Default, diskFull(&full))}, io.Discard, &stderr)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("start on a full disk failed after %v", d)
	}
	store := filepath.Join(cfg.Node.DataDir, storeDir)
	if err == nil || !errors.Is(err, storage.ErrNoSpace) || !strings.Contains(err.Error(), store) || !strings.Contains(err.Error(), "free space") {
		t.Fatalf("serve on a full disk = %v; want ErrNoSpace naming %s and what to do", err, store)
	}
	t.Logf("gonets serve: %v", err)
	if n := strings.Count(stderr.String(), "\n"); n > 2 {
		t.Errorf("start on a full disk logged %d lines:\n%s", n, stderr.String())
	}
}

// TestServeLocked starts a second node on the data directory of a running
// one: it must exit 1 saying another node holds the directory.
func TestServeLocked(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	_, errc := startServe(t, ctx, cfg, io.Discard)
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	var stdout, stderr bytes.Buffer
	code := runServe([]string{"--data", cfg.Node.DataDir, "--quic", "127.0.0.1:0", "--http", "127.0.0.1:0"}, &stdout, &stderr)
	want := "gonets serve: another node holds " + cfg.Node.DataDir
	if code != 1 || !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("second node: exit %d, stderr %q; want 1 and one line starting %q", code, stderr.String(), want)
	}
}

// TestServeSignalDuringStartup signals a node whose start-up is blocked
// (here: taking the store's lock). If the start-up ends within
// node.shutdown_timeout the node closes what it opened and serve returns
// nil; if not, serve returns an error at the deadline, and the process
// would exit. The start-up that hangs is let go only once serve has
// returned, so that a slow machine cannot turn one case into the other;
// the bounds on how long serve takes leave room for a loaded machine.
func TestServeSignalDuringStartup(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tc := range []struct {
		name    string
		timeout time.Duration // node.shutdown_timeout
		hangs   bool          // the start-up ends only after serve returned
	}{
		{"StartEnds", 10 * time.Second, false},
		{"StartHangs", time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Node.ShutdownTimeout = duration(tc.timeout)
			blocked, release := make(chan struct{}), make(chan struct{})
			var once atomic.Bool
			fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if op.Kind == errorfs.OpLock && once.CompareAndSwap(false, true) {
					close(blocked)
					<-release
				}
				return nil
			}))
			ctx, cancel := context.WithCancelCause(context.Background())
			done := make(chan error, 1)
			go func() { done <- serveNode(ctx, cfg, nodeOptions{storageFS: fs}, io.Discard, io.Discard) }()
			<-blocked
			cancel(errors.New("signal terminated"))
			start := time.Now()
			if !tc.hangs {
				time.AfterFunc(100*time.Millisecond, func() { close(release) })
			}
			err := <-done
			d := time.Since(start)
			if tc.hangs {
				close(release)
			}
			if d > tc.timeout+2*time.Second {
				t.Errorf("serve returned %v after the signal; node.shutdown_timeout is %v", d, tc.timeout)
			}
			switch {
			case !tc.hangs:
				if err != nil {
					t.Fatalf("serve = %v, want nil", err)
				}
			case tc.hangs:
				if err == nil || !strings.Contains(err.Error(), "start-up") {
					t.Fatalf("serve = %v, want an error about the start-up", err)
				}
				if d < tc.timeout {
					t.Errorf("serve gave up on the start-up after %v, before node.shutdown_timeout (%v)", d, tc.timeout)
				}
			}
			// Whatever the start-up opened is closed again.
			storagetest.WaitFor(t, "the store to be closed", func() bool {
				st, err := storage.Open(filepath.Join(cfg.Node.DataDir, storeDir), storage.Options{SweepInterval: -1})
				if err != nil {
					return false
				}
				st.Close()
				return true
			})
		})
	}
}

// TestServeReadyzFollowsStore fills the store's disk under a serving
// node: /readyz must fail while the store refuses writes and pass again,
// without a restart, once the disk takes writes and the store recovered.
func TestServeReadyzFollowsStore(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var full atomic.Bool
	n, err := startNode(testConfig(t), slog.New(slog.DiscardHandler), nodeOptions{storageFS: errorfs.Wrap(vfs.Default, diskFull(&full))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.run(ctx) }()
	h := n.handler()
	readyz := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code
	}
	storagetest.WaitFor(t, "/readyz 200", func() bool { return readyz() == http.StatusOK })
	c, err := n.store.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatGroup, Creator: 1})
	if err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	msg := storage.Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: 1, Kind: storage.MsgText, Body: []byte("hi")}
	if _, err := n.store.Append(ctx, []storage.Message{msg}); !errors.Is(err, storage.ErrFailed) {
		t.Fatalf("Append on a full disk: %v, want ErrFailed", err)
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d on a full disk, want 503", code)
	}
	full.Store(false)
	storagetest.WaitFor(t, "/readyz 200 after the disk took writes again", func() bool { return readyz() == http.StatusOK })
	msg.ClientMsgID = 2
	if acks, err := n.store.Append(ctx, []storage.Message{msg}); err != nil || acks[0].Err != nil {
		t.Fatalf("Append after recovery: %v %+v", err, acks)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestServeShutdownBounded stops a node whose store waits on a WAL sync
// that never returns: run must return by node.shutdown_timeout with an
// error saying so, instead of waiting for the disk.
func TestServeShutdownBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.Node.ShutdownTimeout = duration(time.Second)
	var hang atomic.Bool
	hung, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		sync := op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo
		if hang.Load() && sync && strings.HasSuffix(op.Path, ".log") {
			if once.CompareAndSwap(false, true) {
				close(hung)
			}
			<-release
		}
		return nil
	}))
	n, err := startNode(cfg, slog.New(slog.DiscardHandler), nodeOptions{storageFS: fs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.run(ctx) }()
	c, err := n.store.CreateChat(context.Background(), storage.ChatSpec{Kind: storage.ChatGroup, Creator: 1})
	if err != nil {
		t.Fatal(err)
	}
	hang.Store(true)
	appended := make(chan error, 1)
	go func() {
		_, err := n.store.Append(context.Background(), []storage.Message{{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: 1, Kind: storage.MsgText, Body: []byte("stuck")}})
		appended <- err
	}()
	<-hung
	start := time.Now()
	cancel()
	err = <-done
	// The sync returns only after run did: any bound shows that shutdown
	// did not wait for the disk; this one leaves room for a loaded machine.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("run returned %v after the signal; node.shutdown_timeout is 1s", d)
	}
	if err == nil || !strings.Contains(err.Error(), "did not close") {
		t.Errorf("run = %v, want an error saying the store did not close", err)
	}
	close(release)
	if err := <-appended; err != nil {
		t.Logf("the stuck append: %v", err)
	}
	storagetest.WaitFor(t, "the abandoned Close to finish", func() bool {
		st, err := storage.Open(filepath.Join(cfg.Node.DataDir, storeDir), storage.Options{SweepInterval: -1})
		if err != nil {
			return false
		}
		st.Close()
		return true
	})
}

// TestServeSIGHUPDuringStartup: a SIGHUP (an operator reloading the keys
// or the registry) that comes while the node starts up does not kill it,
// as its default action would: the node starts and serves, and stops
// cleanly. Before, the process died here, and the test binary with it.
func TestServeSIGHUPDuringStartup(t *testing.T) {
	cfg := testConfig(t)
	blocked, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpLock && once.CompareAndSwap(false, true) {
			close(blocked)
			<-release
		}
		return nil
	}))
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- serveNode(ctx, cfg, nodeOptions{storageFS: fs}, &out, io.Discard) }()
	<-blocked
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the signal's default action would have run by now
	close(release)
	time.Sleep(200 * time.Millisecond)
	cancel(errors.New("test over"))
	if err := <-done; err != nil {
		t.Fatalf("serve = %v, want nil", err)
	}
}
