//go:build unix

package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The crash child's environment: the store, the file of chat ids, the file
// it records acks in, and the round, which keeps client message ids fresh.
const (
	crashDirEnv   = "GONETS_CRASH_DIR"
	crashChatsEnv = "GONETS_CRASH_CHATS"
	crashAcksEnv  = "GONETS_CRASH_ACKS"
	crashRoundEnv = "GONETS_CRASH_ROUND"
)

const (
	crashChats     = 50
	crashAppenders = 16
	crashRounds    = 24
)

// crashOptions are the store options of parent and child: a small memtable,
// so that kills also land in flushes, WAL rotations and MANIFEST writes.
func crashOptions() Options {
	return Options{MemTableBytes: 64 << 10, CacheBytes: 8 << 20, SweepInterval: -1}
}

// crashCMID is the client message id of an appender's n-th message in a
// round; senders are appenders, so (sender, cmid) is unique across rounds.
func crashCMID(round, n int) uint64 { return uint64(round+1)<<32 | uint64(n) }

// crashBody is the body of a message, derived from its ids so that the
// parent can check every record, acked or not.
func crashBody(sender UserID, cmid uint64) []byte {
	b := fmt.Appendf(nil, "crash %d/%d ", sender, cmid)
	return append(b, strings.Repeat("x", int(cmid%7)*60)...)
}

// crashAck is a line of the ack file: chat, seq, sender, client msg id.
type crashAck struct {
	chat   ChatID
	seq    uint64
	sender UserID
	cmid   uint64
}

// crashMsg identifies a message in the parent's view of a chat.
type crashMsg struct {
	sender UserID
	cmid   uint64
}

// TestCrashKill9 kills a child process appending to a store with SIGKILL at
// random moments, over and over on the same directory. After every kill the
// reopened store must hold every acked message at its acked seq, every
// chat's log must be dense from 1 to its last seq, hold each message once
// and keep what it held after the previous kill, and a resent acked
// message must be answered as a duplicate.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes; skipped in -short mode")
	}
	dir, work := t.TempDir(), t.TempDir()
	s, err := Open(dir, crashOptions())
	if err != nil {
		t.Fatal(err)
	}
	var chats []ChatID
	var ids strings.Builder
	members := make([]UserID, crashAppenders)
	for i := range members {
		members[i] = UserID(i + 1)
	}
	for range crashChats {
		c := mustChat(t, s, ChatSpec{Kind: ChatGroup, Creator: 1, Members: members[1:]})
		chats = append(chats, c.ID)
		fmt.Fprintln(&ids, c.ID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	chatsFile := filepath.Join(work, "chats")
	if err := os.WriteFile(chatsFile, []byte(ids.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	acked := make(map[ChatID]map[uint64]crashMsg)
	logs := make(map[ChatID][]crashMsg) // each chat's log after the last kill
	total := 0
	for round := range crashRounds {
		// Every sixth round is killed while the child starts up: in Open,
		// while Pebble replays and flushes the WAL of the previous kill.
		early := round%6 == 5
		var delay time.Duration
		if early {
			delay = time.Duration(rng.IntN(150)) * time.Millisecond
		} else {
			delay = time.Duration(50+rng.IntN(350)) * time.Millisecond
		}
		acksFile := filepath.Join(work, fmt.Sprintf("acks-%d", round))
		runCrashChild(t, round, dir, chatsFile, acksFile, delay, !early)
		acks, err := readCrashAcks(acksFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range acks {
			m := crashMsg{a.sender, a.cmid}
			if acked[a.chat] == nil {
				acked[a.chat] = make(map[uint64]crashMsg)
			}
			if old, ok := acked[a.chat][a.seq]; ok && old != m {
				t.Fatalf("round %d: chat %d seq %d acked to %+v and, earlier, to %+v", round, a.chat, a.seq, m, old)
			}
			acked[a.chat][a.seq] = m
		}
		total += len(acks)
		t.Logf("round %d: killed after %v, %d acks", round, delay, len(acks))
		checkCrashStore(t, round, dir, chats, acked, logs, acks)
		if t.Failed() {
			t.FailNow()
		}
	}
	if total == 0 {
		t.Fatal("no child ever acked a message")
	}
	t.Logf("%d acks in %d rounds; the store has %d files", total, crashRounds, len(dirNames(t, dir)))
}

// runCrashChild starts the child for round and kills it delay after its
// first ack, or after it starts if waitAck is false. The child must not
// end on its own nor trip the race detector.
func runCrashChild(t *testing.T, round int, dir, chats, acks string, delay time.Duration, waitAck bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashChatsEnv+"="+chats, crashAcksEnv+"="+acks,
		crashRoundEnv+"="+strconv.Itoa(round))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fail := func(format string, args ...any) {
		t.Helper()
		cmd.Process.Kill()
		err := <-exited
		t.Fatalf("round %d: %s (child: %v); child output:\n%s", round, fmt.Sprintf(format, args...), err, out.Bytes())
	}
	if waitAck {
		deadline := time.Now().Add(time.Minute)
		for {
			if fi, err := os.Stat(acks); err == nil && fi.Size() > 0 {
				break
			}
			if time.Now().After(deadline) {
				fail("no ack within a minute")
			}
			select {
			case err := <-exited:
				exited <- err
				fail("child exited before its first ack")
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	select {
	case err := <-exited:
		exited <- err
		fail("child exited before it was killed")
	case <-time.After(delay):
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("round %d: kill: %v", round, err)
	}
	err := <-exited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Exited() {
		t.Fatalf("round %d: child ended with %v, not by the kill; output:\n%s", round, err, out.Bytes())
	}
	if bytes.Contains(out.Bytes(), []byte("DATA RACE")) {
		t.Fatalf("round %d: the race detector fired in the child:\n%s", round, out.Bytes())
	}
}

// readCrashAcks parses an ack file. A last line without its newline is an
// ack whose record the kill cut short: it is dropped.
func readCrashAcks(path string) ([]crashAck, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	lines = lines[:len(lines)-1] // "" after the last newline, or a torn line
	acks := make([]crashAck, 0, len(lines))
	for _, l := range lines {
		var a crashAck
		if _, err := fmt.Sscanf(l, "%d %d %d %d", &a.chat, &a.seq, &a.sender, &a.cmid); err != nil {
			return nil, fmt.Errorf("ack file %s: line %q: %v", path, l, err)
		}
		acks = append(acks, a)
	}
	return acks, nil
}

// checkCrashStore opens the store after a kill and checks it against
// everything acked so far and against each chat's log after the previous
// kill, which it then replaces.
func checkCrashStore(t *testing.T, round int, dir string, chats []ChatID, acked map[ChatID]map[uint64]crashMsg,
	logs map[ChatID][]crashMsg, acks []crashAck) {
	t.Helper()
	s, err := Open(dir, crashOptions())
	if err != nil {
		t.Fatalf("round %d: reopen: %v", round, err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("round %d: Close: %v", round, err)
		}
	}()
	everywhere := make(map[crashMsg]ChatID)
	for _, id := range chats {
		c, err := s.Chat(id)
		if err != nil {
			t.Fatalf("round %d: Chat(%d): %v", round, id, err)
		}
		var log []crashMsg
		for from := uint64(1); from <= c.LastSeq; from += MaxReadLimit {
			_, err := s.ReadRange(id, from, MaxReadLimit, func(r *Record) error {
				if r.Seq != uint64(len(log)+1) {
					return fmt.Errorf("seq %d after %d: the log has a hole", r.Seq, len(log))
				}
				m := crashMsg{r.Sender, r.ClientMsgID}
				switch {
				case r.Kind != MsgText || r.Device != 1:
					return fmt.Errorf("seq %d is kind %v from device %d", r.Seq, r.Kind, r.Device)
				case !bytes.Equal(r.Body, crashBody(r.Sender, r.ClientMsgID)):
					return fmt.Errorf("seq %d (sender %d cmid %d) has body %q", r.Seq, r.Sender, r.ClientMsgID, r.Body)
				}
				if other, ok := everywhere[m]; ok {
					return fmt.Errorf("seq %d: sender %d cmid %d appears twice (also in chat %d)", r.Seq, m.sender, m.cmid, other)
				}
				everywhere[m] = id
				log = append(log, m)
				return nil
			})
			if err != nil {
				t.Fatalf("round %d: chat %d: %v", round, id, err)
			}
		}
		if uint64(len(log)) != c.LastSeq {
			t.Fatalf("round %d: chat %d: read %d records, last seq %d", round, id, len(log), c.LastSeq)
		}
		prev := logs[id]
		if len(log) < len(prev) {
			t.Fatalf("round %d: chat %d: log shrank from %d to %d records", round, id, len(prev), len(log))
		}
		for i, m := range prev {
			if log[i] != m {
				t.Fatalf("round %d: chat %d: seq %d was %+v after the previous kill, is %+v", round, id, i+1, m, log[i])
			}
		}
		for seq, m := range acked[id] {
			if seq > c.LastSeq || log[seq-1] != m {
				got := crashMsg{}
				if seq <= c.LastSeq {
					got = log[seq-1]
				}
				t.Fatalf("round %d: chat %d: acked seq %d (%+v) lost: last seq %d, holds %+v", round, id, seq, m, c.LastSeq, got)
			}
		}
		logs[id] = log
	}

	// Resending acked messages after the restart is answered from the
	// persisted dedupe table with the original seq.
	for i := 0; i < len(acks) && i < 32; i += max(1, len(acks)/32) {
		a := acks[i]
		got, err := s.Append(context.Background(), []Message{crashMessage(a.chat, a.sender, a.cmid)})
		if err != nil || got[0].Err != nil || !got[0].Duplicate || got[0].Seq != a.seq {
			t.Fatalf("round %d: resent ack %+v: %+v, %v; want a duplicate of seq %d", round, a, got, err, a.seq)
		}
	}
	for _, id := range chats {
		if c, err := s.Chat(id); err != nil || c.LastSeq != uint64(len(logs[id])) {
			t.Fatalf("round %d: chat %d after resends: %+v, %v; want last seq %d", round, id, c, err, len(logs[id]))
		}
	}
}

func crashMessage(chat ChatID, sender UserID, cmid uint64) Message {
	return Message{Chat: chat, Sender: sender, Device: 1, ClientMsgID: cmid, Kind: MsgText, Body: crashBody(sender, cmid)}
}

// TestCrashChild is the child of TestCrashKill9; it does nothing unless
// started by it. Its appenders append until the process is killed and
// record each ack with one write to an O_APPEND file, after the ack: a
// recorded ack was really received, and a kill between the two only loses
// the record.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrashKill9")
	}
	round, err := strconv.Atoi(os.Getenv(crashRoundEnv))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(os.Getenv(crashChatsEnv))
	if err != nil {
		t.Fatal(err)
	}
	var chats []ChatID
	for _, f := range strings.Fields(string(b)) {
		id, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		chats = append(chats, ChatID(id))
	}
	f, err := os.OpenFile(os.Getenv(crashAcksEnv), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := Open(dir, crashOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Stop on our own after a while, should the parent never kill us.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for a := range crashAppenders {
		sender := UserID(a + 1)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(round), uint64(a)))
			var line []byte
			for n := 1; ctx.Err() == nil; {
				msgs := make([]Message, 1+rng.IntN(3))
				for i := range msgs {
					msgs[i] = crashMessage(chats[rng.IntN(len(chats))], sender, crashCMID(round, n))
					n++
				}
				acks, err := s.Append(ctx, msgs)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("appender %d: %v", a, err)
					}
					return
				}
				line = line[:0]
				for i, ack := range acks {
					if ack.Err != nil || ack.Duplicate {
						t.Errorf("appender %d: ack %+v for a new message", a, ack)
						return
					}
					line = fmt.Appendf(line, "%d %d %d %d\n", msgs[i].Chat, ack.Seq, sender, msgs[i].ClientMsgID)
				}
				if _, err := f.Write(line); err != nil {
					t.Errorf("appender %d: write ack: %v", a, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
