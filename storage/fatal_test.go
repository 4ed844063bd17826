package storage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// fatalChildEnv holds "mode:dir" for the child process of
// TestFatalWALRotation.
const fatalChildEnv = "GONETS_FATAL_CHILD"

// TestFatalWALRotation fails the WAL rotation that a full memtable starts,
// in a child process appending to a store with a small memtable: creating
// the next WAL fails, or the sync that finishes the previous one does. Pebble cannot go
// on from either (it panics with its mutex released: "fatal error: sync:
// unlock of unlocked mutex"). The child must exit 1 with the store's one
// fatal line and no panic or runtime error, and the parent, reopening the
// store, must find every message the child saw acked, in order, once.
func TestFatalWALRotation(t *testing.T) {
	if env := os.Getenv(fatalChildEnv); env != "" {
		mode, dir, _ := strings.Cut(env, ":")
		fatalChild(mode, dir)
		return
	}
	for _, mode := range []string{"create", "finish"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestFatalWALRotation$", "-test.count=1")
			cmd.Env = append(os.Environ(), fatalChildEnv+"="+mode+":"+dir)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != fatalExitCode {
				t.Fatalf("child: %v, want exit status %d\nstdout:\n%s\nstderr:\n%s", err, fatalExitCode, tail(stdout.String()), stderr.String())
			}
			out := stderr.String()
			if strings.Count(out, "storage: fatal: ") != 1 || !strings.Contains(out, "acknowledged data is safe in the WAL; restart") {
				t.Errorf("child's stderr lacks the one fatal line:\n%s", out)
			}
			for _, bad := range []string{"panic:", "fatal error:", "goroutine "} {
				if strings.Contains(out, bad) {
					t.Errorf("child's stderr has %q:\n%s", bad, out)
				}
			}
			t.Logf("child: %s", strings.TrimSpace(out))

			var chat ChatID
			var acked []Message
			sc := bufio.NewScanner(&stdout)
			for sc.Scan() {
				var seq, cmid uint64
				if _, err := fmt.Sscanf(sc.Text(), "chat %d", &chat); err == nil {
					continue
				}
				if _, err := fmt.Sscanf(sc.Text(), "ack %d %d", &seq, &cmid); err != nil {
					t.Fatalf("child's stdout: %q", sc.Text())
				}
				if seq != uint64(len(acked)+1) {
					t.Fatalf("child acked cmid %d at seq %d after %d acks", cmid, seq, len(acked))
				}
				acked = append(acked, fatalMessage(chat, cmid))
			}
			if len(acked) < 100 {
				t.Fatalf("the child acked only %d messages", len(acked))
			}
			s := openTest(t, dir, Options{})
			recs := readAll(t, s, chat, 1, MaxReadLimit)
			next := fatalMessage(chat, uint64(len(acked)+1)) // in flight when the child stopped
			checkFaultLog(t, recs, acked, []Message{next})
			t.Logf("%d messages acked before the fatal error, %d records after reopen", len(acked), len(recs))
		})
	}
}

// fatalMessage is the child's message with client id cmid.
func fatalMessage(chat ChatID, cmid uint64) Message {
	return text(chat, 1, cmid, fmt.Sprintf("%d %s", cmid, strings.Repeat("w", 900)))
}

// fatalChild appends to a store in dir with a 64 KiB memtable, printing
// each ack, and after 100 acks fails WAL creation (mode create) or the
// sync of the previous WAL in a rotation (mode finish). It should never
// return.
func fatalChild(mode, dir string) {
	var on atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !on.Load() || !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpCreate, errorfs.OpReuseForWrite:
			if mode == "create" {
				return errorfs.ErrInjected
			}
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			// Only the sync that closes the previous WAL in a rotation.
			if mode == "finish" && strings.Contains(string(debug.Stack()), "rotateWAL") {
				return errorfs.ErrInjected
			}
		}
		return nil
	})
	s, err := Open(dir, Options{FS: errorfs.Wrap(vfs.Default, inj), MemTableBytes: 64 << 10, SweepInterval: -1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		os.Exit(3)
	}
	c, err := s.CreateChat(context.Background(), ChatSpec{Kind: ChatGroup, Creator: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: create chat:", err)
		os.Exit(3)
	}
	fmt.Fprintf(os.Stdout, "chat %d\n", c.ID)
	deadline := time.Now().Add(30 * time.Second)
	for cmid := uint64(1); time.Now().Before(deadline); cmid++ {
		if cmid == 101 {
			on.Store(true)
		}
		acks, err := s.Append(context.Background(), []Message{fatalMessage(c.ID, cmid)})
		if err != nil || acks[0].Err != nil {
			fmt.Fprintln(os.Stderr, "child: append:", err, acks)
			os.Exit(3)
		}
		fmt.Fprintf(os.Stdout, "ack %d %d\n", acks[0].Seq, cmid)
	}
	fmt.Fprintln(os.Stderr, "child: no fatal error in 30 s")
	os.Exit(3)
}

// tail returns the last lines of s.
func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// TestWALPreallocateFails runs a store whose WAL preallocation fails, as
// it does on a file system without fallocate (EOPNOTSUPP) or on a disk
// with less free space than a preallocation block (110% of a memtable)
// but room for the writes. Pebble ignores the failure and the WAL is
// fine, so memtable rotations must go on: the store must neither end
// the process nor fail.
func TestWALPreallocateFails(t *testing.T) {
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFilePreallocate && strings.HasSuffix(op.Path, ".log") {
			return &os.PathError{Op: "fallocate", Path: op.Path, Err: syscall.EOPNOTSUPP}
		}
		return nil
	})
	// A fatal error wedges the store (Exit must not return): leave it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var exited atomic.Bool
	s, err := Open(t.TempDir(), Options{FS: errorfs.Wrap(vfs.Default, inj), MemTableBytes: 64 << 10, SweepInterval: -1,
		Logger: slog.New(slog.DiscardHandler), Exit: func(int) { exited.Store(true); cancel(); select {} }})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateChat(ctx, ChatSpec{Kind: ChatGroup, Creator: 1})
	if err != nil {
		t.Fatal(err)
	}
	var acked []Message
	for cmid := uint64(1); cmid <= 500; cmid++ { // ~450 KiB: several rotations of a 64 KiB memtable
		m := fatalMessage(c.ID, cmid)
		acks, err := s.Append(ctx, []Message{m})
		if exited.Load() {
			t.Fatalf("the store ended the process after %d acks", len(acked))
		}
		if err != nil || acks[0].Err != nil {
			t.Fatalf("Append %d: %v %+v", cmid, err, acks)
		}
		acked = append(acked, m)
	}
	if !s.Healthy() {
		t.Error("store unhealthy after failed preallocations")
	}
	checkFaultLog(t, readAll(t, s, c.ID, 1, MaxReadLimit), acked, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
