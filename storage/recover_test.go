package storage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/gonets/gonets/storage/storagetest"
)

// metricValue returns the value of the series name in s's metrics set.
func metricValue(t *testing.T, s *Store, name string) float64 {
	t.Helper()
	return setValue(t, s.Metrics(), name)
}

// setValue returns the value of the series name in set.
func setValue(t *testing.T, set *metrics.Set, name string) float64 {
	t.Helper()
	var b strings.Builder
	set.WritePrometheus(&b)
	for line := range strings.Lines(b.String()) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s in\n%s", name, b.String())
	return 0
}

// logCount is a slog handler that counts records from Info up by message.
type logCount struct {
	mu sync.Mutex
	n  map[string]int
}

func newLogCount() *logCount { return &logCount{n: make(map[string]int)} }

func (c *logCount) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (c *logCount) WithAttrs([]slog.Attr) slog.Handler           { return c }
func (c *logCount) WithGroup(string) slog.Handler                { return c }

func (c *logCount) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	c.n[r.Message]++
	c.mu.Unlock()
	return nil
}

func (c *logCount) get(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[msg]
}

func (c *logCount) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.n {
		n += v
	}
	return n
}

// diskFull makes writes to files whose names end in one of suffixes fail
// with ENOSPC, as a full disk does, while on. Creating files fails too,
// unless the suffix is a WAL's: a WAL that cannot be created in a
// rotation ends the process (TestFatalWALRotation).
func diskFull(on *atomic.Bool, suffixes ...string) errorfs.Injector {
	return errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !on.Load() {
			return nil
		}
		switch op.Kind {
		case errorfs.OpCreate, errorfs.OpReuseForWrite:
			if strings.HasSuffix(op.Path, ".log") {
				return nil
			}
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFilePreallocate,
			errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		default:
			return nil
		}
		for _, suf := range suffixes {
			if strings.HasSuffix(op.Path, suf) {
				return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
			}
		}
		return nil
	})
}

// TestRecoverDiskFull fills the disk under a running store, once where the
// WAL is written and once where memtables are flushed into tables. Writes
// must fail at once with ErrFailed and the store report itself unhealthy;
// reads go on from what was durable; Pebble's retries of the failed flush
// must neither spin nor flood the log; and once space returns the store
// must recover by itself, with every acked message there once, in order,
// also after a reopen.
func TestRecoverDiskFull(t *testing.T) {
	t.Run("WAL", func(t *testing.T) { testRecoverDiskFull(t, Options{}, ".log") })
	t.Run("Flush", func(t *testing.T) { testRecoverDiskFull(t, Options{MemTableBytes: 256 << 10}, ".sst") })
}

func testRecoverDiskFull(t *testing.T, opts Options, suffix string) {
	ctx := context.Background()
	dir := t.TempDir()
	var full atomic.Bool
	logs := newLogCount()
	opts.FS = errorfs.Wrap(vfs.Default, diskFull(&full, suffix, probeFile))
	opts.Logger = slog.New(logs)
	opts.SweepInterval = -1
	opts.RecoverMinDelay, opts.RecoverMaxDelay = 10*time.Millisecond, 100*time.Millisecond
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}})
	body := strings.Repeat("m", 1000)
	var acked []Message
	cmid := uint64(0)
	next := func() Message {
		cmid++
		return text(c.ID, UserID(1+cmid%2), cmid, fmt.Sprint(cmid, body))
	}
	for range 50 {
		m := next()
		mustAppend(t, s, m)
		acked = append(acked, m)
	}

	full.Store(true)
	var failed Message
	for {
		m := next()
		_, err := s.Append(ctx, []Message{m})
		if errors.Is(err, ErrFailed) {
			failed = m
			break
		}
		if err != nil {
			t.Fatalf("Append on a full disk: %v, want nil or ErrFailed", err)
		}
		acked = append(acked, m)
		if cmid > 5000 {
			t.Fatal("5,000 appends on a full disk succeeded")
		}
	}
	t.Logf("%d messages acked, then the store failed", len(acked))
	start := time.Now()
	if _, err := s.Append(ctx, []Message{next()}); !errors.Is(err, ErrFailed) {
		t.Errorf("Append on a failed store: %v, want ErrFailed", err)
	}
	if d := time.Since(start); d > 5*time.Second { // at once, not after a recovery; room for a loaded machine
		t.Errorf("Append on a failed store took %v", d)
	}
	if s.Healthy() {
		t.Error("Healthy() = true on a full disk")
	}
	// Let recovery attempts and Pebble's flush retries fail for a while.
	bg0 := metricValue(t, s, "gonets_storage_background_errors_total")
	time.Sleep(time.Second)
	checkFaultLog(t, readAll(t, s, c.ID, 1, MaxReadLimit), acked, nil)
	if s.Healthy() {
		t.Error("Healthy() = true on a full disk")
	}
	if n := metricValue(t, s, "gonets_storage_background_errors_total") - bg0; n > 20 {
		t.Errorf("%v background errors in a second: Pebble's retries spin", n)
	}
	if n := logs.get("pebble: background error"); n > logBurst {
		t.Errorf("%d background error lines logged, want at most %d", n, logBurst)
	}
	if n := logs.total(); n > 20 {
		t.Errorf("%d lines logged in a second of a full disk: %v", n, logs.n)
	}

	full.Store(false)
	storagetest.WaitFor(t, "the store to recover", s.Healthy)
	checkFaultLog(t, readAll(t, s, c.ID, 1, MaxReadLimit), acked, []Message{failed})
	m := next()
	mustAppend(t, s, m)
	recs := readAll(t, s, c.ID, 1, MaxReadLimit)
	if last := recs[len(recs)-1]; last.ClientMsgID != m.ClientMsgID {
		t.Errorf("after recovery the last record is %d, want %d", last.ClientMsgID, m.ClientMsgID)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after recovery: %v", err)
	}
	s = openTest(t, dir, Options{})
	again := readAll(t, s, c.ID, 1, MaxReadLimit)
	if len(again) != len(recs) {
		t.Fatalf("after reopen %d records, before %d", len(again), len(recs))
	}
	for i := range recs {
		if again[i].Seq != recs[i].Seq || again[i].ClientMsgID != recs[i].ClientMsgID || string(again[i].Body) != string(recs[i].Body) {
			t.Errorf("after reopen record %d = seq %d cmid %d, before seq %d cmid %d", i, again[i].Seq, again[i].ClientMsgID, recs[i].Seq, recs[i].ClientMsgID)
		}
	}
}

// TestCloseWhileFailed closes a store whose disk is still full: Close
// must return promptly, and a reopen once space is back has everything
// acked.
func TestCloseWhileFailed(t *testing.T) {
	dir := t.TempDir()
	var full atomic.Bool
	s, err := Open(dir, Options{FS: errorfs.Wrap(vfs.Default, diskFull(&full, ".log", probeFile)), SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	acked := []Message{text(c.ID, 1, 1, "one")}
	mustAppend(t, s, acked...)
	full.Store(true)
	if _, err := s.Append(context.Background(), []Message{text(c.ID, 1, 2, "two")}); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append on a full disk: %v, want ErrFailed", err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second { // promptly, not once the disk takes writes; room for a loaded machine
		t.Errorf("Close of a failed store took %v", d)
	}
	if _, err := s.Chat(c.ID); !errors.Is(err, ErrClosed) {
		t.Errorf("Chat after Close: %v, want ErrClosed", err)
	}
	s = openTest(t, dir, Options{})
	checkFaultLog(t, readAll(t, s, c.ID, 1, MaxReadLimit), acked, []Message{text(c.ID, 1, 2, "two")})
}

// TestOpenDiskFull opens a store, new and existing (with a WAL to replay),
// on a disk that refuses every write: Open must fail at once with
// ErrNoSpace, log at most a handful of lines, and leave the store intact.
// (Without the check, Pebble's Open retried the replay's flush forever,
// logging each failure.)
func TestOpenDiskFull(t *testing.T) {
	all := []string{""} // every file
	var full atomic.Bool
	full.Store(true)
	open := func(t *testing.T, dir string) {
		t.Helper()
		logs := newLogCount()
		start := time.Now()
		s, err := Open(dir, Options{FS: errorfs.Wrap(vfs.Default, diskFull(&full, all...)), Logger: slog.New(logs), SweepInterval: -1})
		if err == nil {
			s.Close()
			t.Fatal("Open on a full disk succeeded")
		}
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), dir) {
			t.Errorf("Open on a full disk: %v; want ErrNoSpace naming the directory", err)
		}
		if d := time.Since(start); d > 5*time.Second { // at once, not retrying forever; room for a loaded machine
			t.Errorf("Open on a full disk took %v", d)
		}
		if n := logs.total(); n > 3 {
			t.Errorf("Open on a full disk logged %d lines: %v", n, logs.n)
		}
	}
	t.Run("New", func(t *testing.T) { open(t, filepath.Join(t.TempDir(), "store")) })
	t.Run("Existing", func(t *testing.T) {
		dir := t.TempDir()
		s := openTest(t, dir, Options{})
		c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
		var acked []Message
		for i := range 100 {
			m := text(c.ID, 1, uint64(i+1), strings.Repeat("x", 500))
			mustAppend(t, s, m)
			acked = append(acked, m)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		open(t, dir)
		s = openTest(t, dir, Options{})
		checkFaultLog(t, readAll(t, s, c.ID, 1, MaxReadLimit), acked, nil)
	})
}

// lockChildEnv names the directory a re-executed test binary holds a store
// open in, for TestOpenLocked.
const lockChildEnv = "GONETS_LOCK_CHILD"

// TestOpenLocked opens a store another Store of this process, or another
// process, holds: Open must fail with ErrLocked naming the directory.
func TestOpenLocked(t *testing.T) {
	if dir := os.Getenv(lockChildEnv); dir != "" {
		s, err := Open(dir, Options{SweepInterval: -1})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin) // hold it until the parent lets go
		s.Close()
		os.Exit(0)
	}
	check := func(t *testing.T, dir string) {
		t.Helper()
		s, err := Open(dir, Options{SweepInterval: -1})
		if err == nil {
			s.Close()
			t.Fatal("second Open succeeded")
		}
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
			t.Errorf("second Open: %v, want ErrLocked naming %s", err, dir)
		}
	}
	t.Run("SameProcess", func(t *testing.T) {
		dir := t.TempDir()
		openTest(t, dir, Options{})
		check(t, dir)
	})
	t.Run("OtherProcess", func(t *testing.T) {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestOpenLocked$")
		cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer stdin.Close()
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if line != "locked\n" {
			t.Fatalf("child: %q", line)
		}
		check(t, dir)
	})
}

func TestLogLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLogLimiter(func() time.Time { return now })
	for i := range logBurst {
		if ok, n := l.allow("a"); !ok || n != 0 {
			t.Fatalf("line %d: allow = %v, %d; want true, 0", i, ok, n)
		}
	}
	for range 10 {
		if ok, _ := l.allow("a"); ok {
			t.Fatal("line past the burst let through")
		}
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another key is limited by the first")
	}
	now = now.Add(logInterval)
	if ok, n := l.allow("a"); !ok || n != 10 {
		t.Fatalf("after the interval allow = %v, %d; want true, 10 suppressed", ok, n)
	}
	if ok, n := l.allow("a"); !ok || n != 0 {
		t.Fatalf("next line allow = %v, %d; want true, 0", ok, n)
	}
}

// TestOpenFlushFails opens a store whose WAL must be replayed on a disk
// that takes the probe but not the table the replay is flushed into (it
// filled between the check and the flush): Open waits, retrying the
// flush at most a few times a second with a handful of log lines, and
// completes with everything there once the disk takes writes.
func TestOpenFlushFails(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	var acked []Message
	for i := range 50 {
		m := text(c.ID, 1, uint64(i+1), strings.Repeat("y", 1000))
		mustAppend(t, s, m)
		acked = append(acked, m)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	full.Store(true)
	logs := newLogCount()
	set := metrics.NewSet()
	type result struct {
		s   *Store
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := Open(dir, Options{FS: errorfs.Wrap(vfs.Default, diskFull(&full, ".sst")), Logger: slog.New(logs), Metrics: set, SweepInterval: -1})
		done <- result{s, err}
	}()
	time.Sleep(2 * time.Second)
	select {
	case r := <-done:
		t.Fatalf("Open with failing flushes returned %v", r.err)
	default:
	}
	switch n := setValue(t, set, "gonets_storage_background_errors_total"); {
	case n == 0:
		t.Error("no background errors counted")
	case n > 15:
		t.Errorf("%v flush retries in 2 s: Pebble's retry loop spins", n)
	default:
		t.Logf("%v flush retries in 2 s", n)
	}
	if n := logs.total(); n > logBurst+2 {
		t.Errorf("%d lines logged: %v", n, logs.n)
	}
	full.Store(false)
	r := <-done
	if r.err != nil {
		t.Fatalf("Open once the disk took writes: %v", r.err)
	}
	defer r.s.Close()
	if !r.s.Healthy() {
		t.Error("store unhealthy after an Open that waited for its flush")
	}
	checkFaultLog(t, readAll(t, r.s, c.ID, 1, MaxReadLimit), acked, nil)
}

// TestRecoverWithReaders fails and recovers a store ten times while
// readers run: every read must succeed or fail with ErrFailed (while the
// database is reopened), what they see must never go back, and (under
// -race) the reopen must not write what readers read without a view,
// such as the shard count.
func TestRecoverWithReaders(t *testing.T) {
	var full atomic.Bool
	s, err := Open(t.TempDir(), Options{FS: errorfs.Wrap(vfs.Default, diskFull(&full, ".log", probeFile)), SweepInterval: -1,
		Logger: slog.New(slog.DiscardHandler), RecoverMinDelay: time.Millisecond, RecoverMaxDelay: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	check := func(what string, err error) {
		if err != nil && !errors.Is(err, ErrFailed) {
			t.Errorf("%s during recovery: %v", what, err)
		}
	}
	for range 2 {
		wg.Go(func() {
			var lastSeq, ver uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				if s.ShardOf(c.ID) >= s.Shards() {
					t.Errorf("ShardOf(%d) = %d of %d shards", c.ID, s.ShardOf(c.ID), s.Shards())
				}
				if v := s.Version(); v < ver {
					t.Errorf("Version went back from %d to %d", ver, v)
				} else {
					ver = v
				}
				got, err := s.Chat(c.ID)
				check("Chat", err)
				if err == nil {
					if got.LastSeq < lastSeq {
						t.Errorf("LastSeq went back from %d to %d", lastSeq, got.LastSeq)
					}
					lastSeq = got.LastSeq
				}
				_, err = s.ReadRange(c.ID, 1, 10, func(*Record) error { return nil })
				check("ReadRange", err)
				_, err = s.Dialogs(2, 0, DialogCursor{}, 10)
				check("Dialogs", err)
				_, err = s.UserChats(2, 0, 10)
				check("UserChats", err)
			}
		})
	}
	cmid := uint64(0)
	for range 10 {
		for range 3 {
			cmid++
			mustAppend(t, s, text(c.ID, 1, cmid, "before"))
		}
		full.Store(true)
		cmid++
		if _, err := s.Append(ctx, []Message{text(c.ID, 1, cmid, "fails")}); !errors.Is(err, ErrFailed) {
			t.Errorf("Append on a full disk: %v, want ErrFailed", err)
		}
		full.Store(false)
		storagetest.WaitFor(t, "the store to recover", s.Healthy)
	}
	close(stop)
	wg.Wait()
}

// TestReadAtReopenEnd reads at the instant a reopen ends: the reader
// found no view (the old database was closed) and, by the time it looks
// at the failure, the reopen has published its view and cleared the
// failure. It must read from the new view, not fail with ErrClosed.
func TestReadAtReopenEnd(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	v := s.view.Swap(nil) // what a reader sees before the new view is out
	published := time.AfterFunc(10*time.Millisecond, func() { s.view.Store(v) })
	defer func() {
		if published.Stop() {
			s.view.Store(v) // for Close, which waits for the view's release
		}
	}()
	if got, err := s.Chat(c.ID); err != nil || got.ID != c.ID {
		t.Fatalf("Chat with the view about to be published: %+v, %v", got, err)
	}
}
