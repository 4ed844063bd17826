package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/gonets/gonets/storage/storagetest"
)

// faultChildEnv names the test a re-executed test binary runs in-process.
const faultChildEnv = "GONETS_FAULT_CHILD"

// runIsolated runs the test named name in a child test binary, so that a
// panic on a store or Pebble goroutine fails that test with its stack
// instead of killing every other test of the package. It reports whether
// the caller is that child and should run the test's body itself.
func runIsolated(t *testing.T, name string) (child bool) {
	t.Helper()
	if os.Getenv(faultChildEnv) == name {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), faultChildEnv+"="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s failed in its child process (%v):\n%s", name, err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+name)) {
		t.Fatalf("%s did not run in its child process:\n%s", name, out)
	}
	return false
}

// walSyncFault fails every sync of a WAL file (*.log) while on, and of the
// file the store probes the disk with before it reopens (so that, as on a
// disk that refuses syncs, the store keeps its failed database until the
// fault ends). Tables and the MANIFEST are not written in these tests.
func walSyncFault(on *atomic.Bool) errorfs.Injector {
	return errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !on.Load() || !(strings.HasSuffix(op.Path, ".log") || strings.HasSuffix(op.Path, probeFile)) {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return errorfs.ErrInjected
		}
		return nil
	})
}

// TestSyncFailure fails WAL syncs under a running store. Every write in
// flight or later must fail with ErrFailed while the fault lasts, readers
// must go on seeing exactly what was durable, the store must recover by
// itself once syncs work again, and after the recovery (and after a
// reopen) everything acked before the fault is there, once. It runs in a
// child process: a store that panics on a sync error instead of failing
// cleanly would otherwise take the whole test binary down.
func TestSyncFailure(t *testing.T) {
	if !runIsolated(t, "TestSyncFailure") {
		return
	}
	ctx := context.Background()
	dir := t.TempDir()
	var inject atomic.Bool
	var probes atomic.Int64
	fault := errorfs.InjectorFunc(func(op errorfs.Op) error {
		err := walSyncFault(&inject).MaybeError(op)
		if err != nil && strings.HasSuffix(op.Path, probeFile) {
			probes.Add(1)
		}
		return err
	})
	s, err := Open(dir, Options{FS: errorfs.Wrap(vfs.Default, fault), SweepInterval: -1,
		RecoverMinDelay: 10 * time.Millisecond, RecoverMaxDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()

	const nchats, perChat = 4, 25
	var chats []Chat
	acked := make(map[ChatID][]Message) // acked[chat][seq-1]
	for i := range nchats {
		c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: []UserID{2, 3, 4}, Title: fmt.Sprint("g", i)})
		chats = append(chats, c)
		for j := range perChat {
			m := text(c.ID, UserID(1+j%4), uint64(1000*i+j+1), fmt.Sprintf("before %d %d", i, j))
			if a := mustAppend(t, s, m); a[0].Seq != uint64(j+1) {
				t.Fatalf("chat %d: ack %+v, want seq %d", i, a[0], j+1)
			}
			acked[c.ID] = append(acked[c.ID], m)
		}
	}
	verBefore := s.Version()

	inject.Store(true)
	const writers = 8
	failed := make([][]Message, writers)
	acks := make([][]Ack, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		for k := range 2 {
			c := chats[(w+k)%nchats]
			failed[w] = append(failed[w], text(c.ID, UserID(2+w%3), uint64(1_000_000+10*w+k), fmt.Sprintf("after %d %d", w, k)))
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			acks[w], errs[w] = s.Append(ctx, failed[w])
		})
	}
	wg.Wait()
	for w := range writers {
		if !errors.Is(errs[w], ErrFailed) {
			t.Errorf("writer %d: Append during sync failure = %+v, %v; want ErrFailed", w, acks[w], errs[w])
		}
		for i, a := range acks[w] {
			if a.Err == nil {
				t.Errorf("writer %d: message %d acked (%+v) though its sync failed", w, i, a)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// While syncs fail the store refuses every write, reports itself
	// unhealthy, and keeps serving reads from what was durable, also after
	// attempts to reopen have failed.
	checkDurable := func(when string) {
		t.Helper()
		if v := s.Version(); v != verBefore {
			t.Errorf("%s: Version = %d, want %d", when, v, verBefore)
		}
		for _, c := range chats {
			got, err := s.Chat(c.ID)
			if err != nil || got.LastSeq != perChat || got.Members != 4 {
				t.Errorf("%s: Chat(%d) = %+v, %v; want last seq %d, 4 members", when, c.ID, got, err, perChat)
			}
			checkFaultLog(t, readAll(t, s, c.ID, 1, MaxReadLimit), acked[c.ID], nil)
		}
	}
	checkDurable("after the failure")
	if _, err := s.Append(ctx, []Message{text(chats[0].ID, 1, 7_000_000, "later")}); !errors.Is(err, ErrFailed) {
		t.Errorf("Append after failure: %v, want ErrFailed", err)
	}
	if _, err := s.CreateChat(ctx, ChatSpec{Kind: ChatGroup, Creator: 1}); !errors.Is(err, ErrFailed) {
		t.Errorf("CreateChat after failure: %v, want ErrFailed", err)
	}
	if err := s.AddMember(ctx, chats[0].ID, 99, RoleMember); !errors.Is(err, ErrFailed) {
		t.Errorf("AddMember after failure: %v, want ErrFailed", err)
	}
	if s.Healthy() {
		t.Error("Healthy() = true while syncs fail")
	}
	storagetest.WaitFor(t, "two failed attempts to reopen", func() bool { return probes.Load() >= 2 })
	checkDurable("after failed reopens")
	if s.Healthy() {
		t.Error("Healthy() = true while syncs fail")
	}

	// Syncs heal: the store recovers by itself.
	inject.Store(false)
	storagetest.WaitFor(t, "the store to recover", s.Healthy)
	var all []Message
	for _, f := range failed {
		all = append(all, f...)
	}
	for _, c := range chats {
		checkFaultLog(t, readAll(t, s, c.ID, 1, MaxReadLimit), acked[c.ID], all)
	}
	if got := metricValue(t, s, "gonets_storage_recoveries_total"); got != 1 {
		t.Errorf("gonets_storage_recoveries_total = %v, want 1", got)
	}
	if got := metricValue(t, s, "gonets_storage_failures_total"); got != 1 {
		t.Errorf("gonets_storage_failures_total = %v, want 1", got)
	}
	post := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Title: "after recovery"})
	postMsg := text(post.ID, 1, 7_000_001, "after recovery")
	mustAppend(t, s, postMsg)
	checkFaultLog(t, readAll(t, s, post.ID, 1, MaxReadLimit), []Message{postMsg}, nil)
	if err := s.Close(); err != nil {
		t.Errorf("Close after recovery: %v", err)
	}
	closed = true

	// Reopened on the same files, everything acked is there. Messages whose
	// sync failed were never acked but may have reached the disk anyway (the
	// write succeeded, only its sync failed): they may appear after the acked
	// ones, once each, and a retry answers them as duplicates.
	s = openTest(t, dir, Options{})
	checkFaultLog(t, readAll(t, s, post.ID, 1, MaxReadLimit), []Message{postMsg}, nil)
	for _, c := range chats {
		recs := readAll(t, s, c.ID, 1, MaxReadLimit)
		checkFaultLog(t, recs, acked[c.ID], all)
		t.Logf("chat %d: %d unacked messages reached the disk", c.ID, len(recs)-perChat)
	}
	retry := mustAppend(t, s, all...)
	for _, c := range chats {
		recs := readAll(t, s, c.ID, 1, MaxReadLimit)
		checkFaultLog(t, recs, acked[c.ID], all)
		for i, m := range all {
			if m.Chat != c.ID {
				continue
			}
			j := slices.IndexFunc(recs, func(r Record) bool { return r.ClientMsgID == m.ClientMsgID })
			if j < 0 || recs[j].Seq != retry[i].Seq {
				t.Errorf("chat %d: retried message %d acked %+v, not found at that seq", c.ID, m.ClientMsgID, retry[i])
			}
		}
		if got := len(recs) - perChat; got != 4 {
			t.Errorf("chat %d: %d failed messages after retry, want 4", c.ID, got)
		}
	}
	if _, err := s.CreateChat(ctx, ChatSpec{Kind: ChatGroup, Creator: 1}); err != nil {
		t.Errorf("CreateChat after reopen: %v", err)
	}
}

// checkFaultLog checks that recs are dense from seq 1, start with want, and that
// whatever follows is from extra, each message at most once.
func checkFaultLog(t *testing.T, recs []Record, want, extra []Message) {
	t.Helper()
	if len(recs) < len(want) {
		t.Errorf("read %d records, want at least %d", len(recs), len(want))
		return
	}
	seen := make(map[uint64]bool)
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Errorf("record %d has seq %d: the log has a hole", i, r.Seq)
			return
		}
		if i < len(want) {
			m := want[i]
			if r.Sender != m.Sender || r.ClientMsgID != m.ClientMsgID || !bytes.Equal(r.Body, m.Body) {
				t.Errorf("seq %d = sender %d cmid %d %q, want acked sender %d cmid %d %q",
					r.Seq, r.Sender, r.ClientMsgID, r.Body, m.Sender, m.ClientMsgID, m.Body)
			}
			continue
		}
		j := slices.IndexFunc(extra, func(m Message) bool {
			return m.Chat == r.Chat && m.Sender == r.Sender && m.ClientMsgID == r.ClientMsgID
		})
		if j < 0 || !bytes.Equal(r.Body, extra[j].Body) || seen[r.ClientMsgID] {
			t.Errorf("seq %d = sender %d cmid %d %q: not an unacked message, or a repeat", r.Seq, r.Sender, r.ClientMsgID, r.Body)
		}
		seen[r.ClientMsgID] = true
	}
}

// TestOpenDamaged opens directories that do not hold a healthy store: Open
// must fail with an error, never panic, and leave foreign data alone. It
// runs in a child process, as a damaged table may be read by a Pebble
// background goroutine.
func TestOpenDamaged(t *testing.T) {
	if !runIsolated(t, "TestOpenDamaged") {
		return
	}
	t.Run("ForeignFiles", func(t *testing.T) {
		dir := t.TempDir()
		note := filepath.Join(dir, "notes.txt")
		if err := os.WriteFile(note, []byte("not a store\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := openNoPanic(t, dir, Options{}); !errors.Is(err, ErrNotStore) {
			t.Fatalf("Open(dir with a text file) = %v, want ErrNotStore", err)
		}
		if b, err := os.ReadFile(note); err != nil || string(b) != "not a store\n" {
			t.Fatalf("foreign file now %q, %v", b, err)
		}
		if names := dirNames(t, dir); !slices.Equal(names, []string{"notes.txt"}) {
			t.Fatalf("Open wrote into a foreign directory: %v", names)
		}
	})
	t.Run("RegularFile", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "store")
		if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := openNoPanic(t, file, Options{}); err == nil {
			t.Fatal("Open(regular file) succeeded")
		}
		if b, err := os.ReadFile(file); err != nil || string(b) != "x" {
			t.Fatalf("file now %q, %v", b, err)
		}
	})
	t.Run("ForeignPebble", func(t *testing.T) {
		dir := t.TempDir()
		quiet := newPebbleLogger(slog.New(slog.DiscardHandler), func(what string) { panic(what) })
		db, err := pebble.Open(dir, &pebble.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		fmv := db.FormatMajorVersion()
		for i := range 100 {
			if err := db.Set(fmt.Appendf(nil, "foreign-%03d", i), []byte("v"), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := openNoPanic(t, dir, Options{}); !errors.Is(err, ErrNotStore) {
			t.Fatalf("Open(foreign pebble database) = %v, want ErrNotStore", err)
		}
		db, err = pebble.Open(dir, &pebble.Options{Logger: quiet, ReadOnly: true})
		if err != nil {
			t.Fatalf("foreign database no longer opens: %v", err)
		}
		defer db.Close()
		if got := db.FormatMajorVersion(); got != fmv {
			t.Errorf("refused Open changed the foreign database's format version from %v to %v", fmv, got)
		}
		it, err := db.NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for it.First(); it.Valid(); it.Next() {
			if want := fmt.Sprintf("foreign-%03d", n); string(it.Key()) != want {
				t.Errorf("foreign key %d = %q, want %q", n, it.Key(), want)
			}
			n++
		}
		if err := it.Close(); err != nil || n != 100 {
			t.Fatalf("foreign database holds %d keys (%v), want 100", n, err)
		}
	})
	t.Run("OtherShards", func(t *testing.T) {
		dir := t.TempDir()
		s, err := Open(dir, Options{Shards: 16, SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
		mustAppend(t, s, text(c.ID, 1, 1, "one"))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{1, 8, 32, 256} {
			if s, err := openNoPanic(t, dir, Options{Shards: n, SweepInterval: -1}); err == nil {
				s.Close()
				t.Fatalf("reopen with %d shards of a 16-shard store succeeded", n)
			}
		}
		s = openTest(t, dir, Options{Shards: 16})
		if got := readAll(t, s, c.ID, 1, 10); len(got) != 1 || string(got[0].Body) != "one" {
			t.Fatalf("after refused reopens the store reads %+v", got)
		}
	})
	t.Run("Damaged", testOpenDamagedFiles)
}

// testOpenDamagedFiles damages copies of a cleanly closed store, one file
// kind at a time, and opens each. A store that lost its MANIFEST cannot
// know its tables and must refuse to open. Other damage may go unnoticed
// by Open (Pebble reads tables lazily, and an empty OPTIONS file loses
// nothing), but then every read must either fail or return exactly what
// was written, and nothing may panic.
func testOpenDamagedFiles(t *testing.T) {
	src := t.TempDir()
	opts := Options{MemTableBytes: 256 << 10, SweepInterval: -1}
	s, err := Open(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1})
	var written []Message
	for i := range 40 {
		var msgs []Message
		for j := range 100 {
			n := uint64(100*i + j + 1)
			msgs = append(msgs, Message{Chat: c.ID, Sender: 1, Device: 1, ClientMsgID: n, Kind: MsgText, Body: faultGarbage(200, n)})
		}
		mustAppend(t, s, msgs...)
		written = append(written, msgs...)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	has := func(prefix, suffix string) bool {
		return slices.ContainsFunc(dirNames(t, src), func(n string) bool {
			return strings.HasPrefix(n, prefix) && strings.HasSuffix(n, suffix)
		})
	}
	if !has("MANIFEST-", "") || !has("OPTIONS-", "") || !has("", ".sst") {
		t.Fatalf("clean store lacks a MANIFEST, OPTIONS or table file: %v", dirNames(t, src))
	}

	truncate := func(frac float64) func([]byte) []byte {
		return func(b []byte) []byte { return b[:int(float64(len(b))*frac)] }
	}
	garbage := func(b []byte) []byte { return faultGarbage(len(b), uint64(len(b))) }
	for _, tc := range []struct {
		name           string
		prefix, suffix string
		damage         func([]byte) []byte
		mustFail       bool
	}{
		{"ManifestEmpty", "MANIFEST-", "", truncate(0), true},
		{"ManifestHalf", "MANIFEST-", "", truncate(0.5), true},
		{"ManifestGarbage", "MANIFEST-", "", garbage, true},
		{"OptionsEmpty", "OPTIONS-", "", truncate(0), false},
		{"OptionsGarbage", "OPTIONS-", "", garbage, false},
		{"TablesHalf", "", ".sst", truncate(0.5), false},
		{"TablesGarbage", "", ".sst", garbage, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, n := range dirNames(t, src) {
				b, err := os.ReadFile(filepath.Join(src, n))
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasPrefix(n, tc.prefix) && strings.HasSuffix(n, tc.suffix) {
					b = tc.damage(b)
				}
				if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s, err := openNoPanic(t, dir, opts)
			if err != nil {
				t.Logf("Open: %v", err)
				return
			}
			defer s.Close()
			if tc.mustFail {
				t.Fatalf("Open of a store with damaged %s%s files succeeded", tc.prefix, tc.suffix)
			}
			if err := readNoPanic(t, s, c.ID, written); err != nil {
				t.Logf("Open succeeded, read failed: %v", err)
			} else {
				t.Log("Open succeeded, read everything back")
			}
		})
	}
}

// readNoPanic reads chat back and returns the read's error, failing the
// test if the read panics or returns anything but the messages written.
func readNoPanic(t *testing.T, s *Store, chat ChatID, written []Message) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("read of a damaged store panicked: %v\n%s", r, debug.Stack())
		}
	}()
	if _, err := s.Chat(chat); err != nil {
		return err
	}
	n := 0
	_, err = s.ReadRange(chat, 1, MaxReadLimit, func(r *Record) error {
		if n >= len(written) || r.Seq != uint64(n+1) || r.ClientMsgID != written[n].ClientMsgID || !bytes.Equal(r.Body, written[n].Body) {
			t.Errorf("read of a damaged store returned wrong data at record %d: seq %d cmid %d", n, r.Seq, r.ClientMsgID)
			return errors.New("wrong data")
		}
		n++
		return nil
	})
	if err == nil && n != len(written) {
		t.Errorf("read of a damaged store returned %d of %d records and no error", n, len(written))
	}
	return err
}

// openNoPanic opens a store, failing the test if Open panics.
func openNoPanic(t *testing.T, dir string, opts Options) (s *Store, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Open(%q) panicked: %v\n%s", dir, r, debug.Stack())
		}
	}()
	return Open(dir, opts)
}

// dirNames lists the regular files in dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names
}

// faultGarbage returns n pseudo-random bytes drawn from seed.
func faultGarbage(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
