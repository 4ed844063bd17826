//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
)

// crashRounds is how many times TestNodeCrash kills the node. Run the long
// version from the repository root with
//
//	go test -run TestNodeCrash -crash.rounds=50 -v .
var crashRounds = flag.Int("crash.rounds", 3, "kills of the node in TestNodeCrash")

// crashConfig is the node's config file in the crash test: a small
// memtable, so that kills also land in flushes and WAL rotations, a send
// rate no sender reaches, so that nothing is refused, and calls and the
// public HTTPS listener off, so that the node binds no media port nor
// public port (7444 and 7445 may be another node's).
const crashConfig = `
[node]
public_addr = "off"
[storage]
memtable_bytes = "256KiB"
[broker]
send_rate = 1000000.0
[calls]
enabled = false
`

// crashChat is a chat of the crash test and the users who send into it.
type crashChat struct {
	id      uint64
	members []uint64
}

// TestNodeCrash runs gonets serve (main, in this test binary started
// again as a child; see TestMain) under load from SDK clients and
// kills it with SIGKILL, then restarts it on the same data directory and
// ports, -crash.rounds times. Every user sends into each of its chats one
// message at a time, each with its own client message id, and waits for
// the Ack before the next; a send in flight at a kill is repeated with the
// same id until it is acked. Checked:
//
//   - what history showed just before a kill is there, unchanged, after
//     the restart: nothing visible was lost;
//   - at the end each chat's log is dense from seq 1, holds every acked
//     message exactly once at its acked seq with its body, holds nothing
//     that was not sent, and each sender's messages in the order sent;
//   - a resend of an acked message returns the original Ack, Duplicate
//     set, and appends nothing.
//
// Every fifth round (the third, the eighth, ...) also kills the restarted
// node within 100 ms of its start, before it serves, to land kills in the
// store's recovery.
func TestNodeCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes; skipped in -short mode")
	}
	if *crashRounds < 1 {
		t.Fatalf("-crash.rounds %d: want at least 1", *crashRounds)
	}
	// Checked last, after the cleanups that stop the nodes.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	begin := time.Now()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	data := filepath.Join(work, "data")
	cfg := filepath.Join(work, "gonets.toml")
	if err := os.WriteFile(cfg, []byte(crashConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*crashRounds)*30*time.Second+time.Minute)
	defer cancel()
	httpc := &http.Client{Timeout: time.Second, Transport: &http.Transport{}}
	defer httpc.CloseIdleConnections()

	n := startCrashNode(t, bin, cfg, data, "127.0.0.1:0", "127.0.0.1:0")
	n.waitReady(t, ctx, httpc)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d; node on quic %s, http %s", seed, n.quic, n.http)

	clients := dialCrashClients(t, ctx, data, n.quic, 6)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	chats := createCrashChats(t, ctx, clients)
	var (
		stop    atomic.Bool
		kills   atomic.Int64
		senders []*crashSender
		wg      sync.WaitGroup
		failed  = make(chan error, 64)
	)
	for i, ch := range chats {
		for _, u := range ch.members {
			s := &crashSender{user: u, chat: ch.id, idx: i, c: clients[u], errs: map[string]int{}}
			senders = append(senders, s)
			wg.Go(func() {
				if err := s.run(ctx, &stop, &kills); err != nil {
					failed <- fmt.Errorf("user %d in chat %d: %w", s.user, s.chat, err)
				}
			})
		}
	}
	stopSenders := func() {
		stop.Store(true)
		wg.Wait()
		close(failed)
		for err := range failed {
			t.Error(err)
		}
	}
	defer func() {
		if !stop.Load() {
			cancel()
			stopSenders()
		}
	}()

	verified := make(map[uint64][]client.Message) // each chat's log, checked to survive a kill
	var recovery time.Duration
	for round := range *crashRounds {
		waitProgress(t, ctx, senders, failed)
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		seen := readPending(t, ctx, chats, clients, verified)
		n.kill(t)
		kills.Add(1) // after the kill, so that no send acked before it counts as crossing it
		killed := time.Now()
		if round%5 == 2 {
			early := startCrashNode(t, bin, cfg, data, n.quic, n.http)
			time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
			early.kill(t)
		}
		n = startCrashNode(t, bin, cfg, data, n.quic, n.http)
		n.waitReady(t, ctx, httpc)
		checkPending(t, ctx, round, chats, clients, verified, seen)
		waitProgress(t, ctx, senders, failed)
		recovery += time.Since(killed)
		if t.Failed() {
			t.FailNow()
		}
	}
	stopSenders()
	if t.Failed() {
		t.FailNow()
	}
	acked := checkCrashLogs(t, ctx, chats, clients, senders, verified)
	checkResends(t, ctx, rng, chats, clients, senders)
	for _, c := range clients {
		c.Close()
	}
	n.terminate(t)

	var st crashStats
	for _, s := range senders {
		st.add(s)
	}
	t.Logf("%d rounds in %v: %d messages acked; %d crossed a kill and were repeated with their ids (%d answered as duplicates, "+
		"%d appended after the restart); %d duplicate acks in all; %d sends retried by the test; %v mean from kill to every sender acked again; errors %v",
		*crashRounds, time.Since(begin).Round(time.Millisecond), acked, st.spanned, st.spannedDups, st.spanned-st.spannedDups,
		st.dups, st.retries, (recovery / time.Duration(*crashRounds)).Round(time.Millisecond), st.errs)
}

// nodeEnv, set in a child's environment, makes the test binary run main
// with the child's arguments instead of the tests: the child is the gonets
// binary, built with the tests' flags (-race included), at no extra build.
const nodeEnv = "GONETS_TEST_NODE"

func TestMain(m *testing.M) {
	if os.Getenv(nodeEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// crashNode is a running gonets serve child process.
type crashNode struct {
	cmd    *exec.Cmd
	stderr *crashBuffer
	quic   string // the QUIC address, from the banner
	http   string // the HTTP address, from the banner
	tls    string // the certificate's fingerprint, from the banner
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
}

// startCrashNode starts gonets serve on the data dir and addresses and
// returns once it printed its banner, or at once if the banner is not
// needed (quicAddr and httpAddr name fixed ports).
func startCrashNode(t *testing.T, bin, cfg, data, quicAddr, httpAddr string) *crashNode {
	t.Helper()
	n := &crashNode{stderr: &crashBuffer{}, exited: make(chan struct{})}
	n.cmd = exec.Command(bin, "serve", "--config", cfg, "--data", data, "--quic", quicAddr, "--http", httpAddr, "--log-level", "warn")
	n.cmd.Env = append(os.Environ(), nodeEnv+"=1")
	n.cmd.Stderr = n.stderr
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	banner := make(chan map[string]string, 1)
	go func() {
		b := map[string]string{}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 1 {
				b[f[0]] = f[1]
				if f[0] == "try" {
					banner <- b
				}
			}
		}
		n.err = n.cmd.Wait() // after the last read of stdout
		close(n.exited)
	}()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.exited
	})
	n.quic, n.http = quicAddr, httpAddr
	if strings.HasSuffix(quicAddr, ":0") || strings.HasSuffix(httpAddr, ":0") {
		select {
		case b := <-banner:
			n.quic, n.http, n.tls = b["quic"], b["http"], b["tls"]
		case <-n.exited:
			t.Fatalf("gonets serve exited before its banner: %v\n%s", n.err, n.stderr)
		case <-time.After(time.Minute):
			t.Fatalf("no banner from gonets serve within a minute\n%s", n.stderr)
		}
	}
	return n
}

// waitReady waits until the node's /readyz answers 200.
func (n *crashNode) waitReady(t *testing.T, ctx context.Context, httpc *http.Client) {
	t.Helper()
	for {
		resp, err := httpc.Get("http://" + n.http + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-n.exited:
			t.Fatalf("gonets serve exited before it was ready: %v\n%s", n.err, n.stderr)
		case <-ctx.Done():
			t.Fatalf("gonets serve not ready: %v (last: %v)\n%s", ctx.Err(), err, n.stderr)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// kill kills the node with SIGKILL and waits for it; it must not have
// exited before.
func (n *crashNode) kill(t *testing.T) {
	t.Helper()
	select {
	case <-n.exited:
		t.Fatalf("gonets serve exited before the kill: %v\n%s", n.err, n.stderr)
	default:
	}
	if err := n.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-n.exited
	var ee *exec.ExitError
	if !errors.As(n.err, &ee) || ee.Exited() {
		t.Fatalf("gonets serve ended with %v, not by the kill\n%s", n.err, n.stderr)
	}
	n.checkLog(t)
}

// checkLog fails the test if the race detector fired in the node.
func (n *crashNode) checkLog(t *testing.T) {
	t.Helper()
	if log := n.stderr.String(); strings.Contains(log, "DATA RACE") {
		t.Fatalf("the race detector fired in gonets serve:\n%s", log)
	}
}

// terminate stops the node with SIGTERM; it must exit cleanly.
func (n *crashNode) terminate(t *testing.T) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.exited:
		if n.err != nil {
			t.Fatalf("gonets serve after SIGTERM: %v\n%s", n.err, n.stderr)
		}
		n.checkLog(t)
	case <-time.After(15 * time.Second):
		t.Fatalf("gonets serve still running 15s after SIGTERM\n%s", n.stderr)
	}
}

// crashBuffer is a bytes.Buffer safe for a child's writes and the test's
// reads.
type crashBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (c *crashBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.Write(p)
}

func (c *crashBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// dialCrashClients connects users 1..users, one device each, with tokens
// from the node's key and its certificate pinned, both read from the data
// dir. The clients notice a dead connection within half a second (the node
// sends no stateless reset after a restart) and reconnect within 250 ms.
func dialCrashClients(t *testing.T, ctx context.Context, data, addr string, users int) map[uint64]*client.Client {
	t.Helper()
	key, err := token.LoadKey(filepath.Join(data, token.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pemCert, err := os.ReadFile(filepath.Join(data, nodecert.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemCert)
	if blk == nil {
		t.Fatalf("%s: no PEM", nodecert.CertFile)
	}
	opts := client.Options{
		Fingerprint:  nodecert.Fingerprint(blk.Bytes),
		SendOnly:     true,
		DialTimeout:  2 * time.Second,
		KeepAlive:    100 * time.Millisecond,
		IdleTimeout:  500 * time.Millisecond,
		ReconnectMin: 20 * time.Millisecond,
		ReconnectMax: 250 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
	}
	clients := make(map[uint64]*client.Client)
	for u := uint64(1); u <= uint64(users); u++ {
		tok, err := token.NewSigner(key).Sign(token.Claims{User: u, Device: 1, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, addr, tok, opts)
		if err != nil {
			t.Fatalf("dial user %d: %v", u, err)
		}
		clients[u] = c
	}
	return clients
}

// createCrashChats creates a direct chat of users 1 and 2, one of users 3
// and 4, and a group of all.
func createCrashChats(t *testing.T, ctx context.Context, clients map[uint64]*client.Client) []crashChat {
	t.Helper()
	create := func(owner uint64, kind wire.ChatKind, others []uint64) crashChat {
		t.Helper()
		info, err := clients[owner].CreateChat(ctx, kind, others, "")
		if err != nil {
			t.Fatalf("create chat: %v", err)
		}
		return crashChat{id: info.Chat, members: append([]uint64{owner}, others...)}
	}
	var all []uint64
	for u := range uint64(len(clients)) {
		all = append(all, u+1)
	}
	return []crashChat{
		create(1, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{2}),
		create(3, wire.ChatKind_CHAT_KIND_DIRECT, []uint64{4}),
		create(1, wire.ChatKind_CHAT_KIND_GROUP, all[1:]),
	}
}

// crashCMID is the client message id of a sender's n-th message (from 1)
// in the idx-th chat.
func crashCMID(idx int, n uint64) uint64 { return uint64(idx+1)<<32 | n }

// crashBody is the body of a message, derived from its ids so that every
// record can be checked.
func crashBody(sender, cmid uint64) []byte {
	b := fmt.Appendf(nil, "crash %d/%d ", sender, cmid)
	return append(b, strings.Repeat("x", int(cmid%11)*23)...)
}

// crashSender is one user sending into one chat, one message at a time.
type crashSender struct {
	user  uint64
	chat  uint64
	idx   int
	c     *client.Client
	count atomic.Uint64 // messages acked

	// Owned by run while it runs.
	acks        []uint64 // the seq of the n-th message at [n-1]
	spanned     int      // sends that crossed a kill: in flight at it, or begun while the node was down
	spannedDups int      // of those, answered as duplicates
	dups        int      // acks with Duplicate set
	retries     int      // sends the test repeated after an error
	errs        map[string]int
}

// run sends until stop is set, each message until it is acked: the SDK
// repeats a send in flight when its connection breaks; any other error
// makes run send it again after a pause, with the same id.
func (s *crashSender) run(ctx context.Context, stop *atomic.Bool, kills *atomic.Int64) error {
	for n := uint64(1); !stop.Load(); n++ {
		cmid := crashCMID(s.idx, n)
		body := crashBody(s.user, cmid)
		before := kills.Load()
		var ack client.Ack
		for {
			var err error
			ack, err = s.c.SendMsg(ctx, client.SendOptions{Chat: s.chat, ClientMsgID: cmid, Body: body})
			if err == nil {
				break
			}
			if ctx.Err() != nil || s.c.Err() != nil || errors.Is(err, client.ErrUnauthenticated) {
				return fmt.Errorf("message %d: %w", n, err)
			}
			s.retries++
			s.errs[err.Error()]++
			time.Sleep(10 * time.Millisecond)
		}
		if ack.Chat != s.chat || ack.Seq == 0 {
			return fmt.Errorf("message %d: ack %+v", n, ack)
		}
		s.acks = append(s.acks, ack.Seq)
		if ack.Duplicate {
			s.dups++
		}
		if kills.Load() != before {
			s.spanned++
			if ack.Duplicate {
				s.spannedDups++
			}
		}
		s.count.Add(1)
	}
	return nil
}

// waitProgress waits until every sender has had one more message acked.
func waitProgress(t *testing.T, ctx context.Context, senders []*crashSender, failed chan error) {
	t.Helper()
	start := make([]uint64, len(senders))
	for i, s := range senders {
		start[i] = s.count.Load()
	}
	for i, s := range senders {
		for s.count.Load() == start[i] {
			select {
			case err := <-failed:
				t.Fatal(err)
			case <-ctx.Done():
				t.Fatalf("user %d in chat %d: no ack: %v", s.user, s.chat, ctx.Err())
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
}

// readChat reads chat from seq from on: up to seq to, or to its last
// seq when to is 0. The records must be dense.
func readChat(ctx context.Context, c *client.Client, chat, from, to uint64) ([]client.Message, error) {
	var out []client.Message
	for {
		p, err := c.History(ctx, chat, from, 1000)
		if err != nil {
			return nil, fmt.Errorf("history of chat %d from %d: %w", chat, from, err)
		}
		if to == 0 {
			to = p.LastSeq
		}
		for _, m := range p.Messages {
			if m.Seq > to {
				return out, nil
			}
			if m.Seq != from {
				return nil, fmt.Errorf("chat %d: seq %d where %d was due: the log has a hole", chat, m.Seq, from)
			}
			out = append(out, m)
			from++
		}
		if from > to {
			return out, nil
		}
		if len(p.Messages) == 0 {
			return nil, fmt.Errorf("chat %d: history ends at %d, before seq %d (last seq %d)", chat, from-1, to, p.LastSeq)
		}
	}
}

// reader returns a client of a member of ch.
func reader(ch crashChat, clients map[uint64]*client.Client) *client.Client {
	return clients[ch.members[0]]
}

// readPending reads what each chat appended past its verified log.
func readPending(t *testing.T, ctx context.Context, chats []crashChat, clients map[uint64]*client.Client,
	verified map[uint64][]client.Message) map[uint64][]client.Message {
	t.Helper()
	seen := make(map[uint64][]client.Message)
	for _, ch := range chats {
		ms, err := readChat(ctx, reader(ch, clients), ch.id, uint64(len(verified[ch.id])+1), 0)
		if err != nil {
			t.Fatal(err)
		}
		seen[ch.id] = ms
	}
	return seen
}

// checkPending checks that what readPending saw before a kill is still
// there after the restart, and adds it to the verified logs.
func checkPending(t *testing.T, ctx context.Context, round int, chats []crashChat, clients map[uint64]*client.Client,
	verified, seen map[uint64][]client.Message) {
	t.Helper()
	for _, ch := range chats {
		want := seen[ch.id]
		if len(want) == 0 {
			continue
		}
		from := want[0].Seq
		got, err := readChat(ctx, reader(ch, clients), ch.id, from, want[len(want)-1].Seq)
		if err != nil {
			t.Fatalf("round %d: after the restart: %v", round, err)
		}
		for i, m := range want {
			if !sameRecord(got[i], m) {
				t.Fatalf("round %d: chat %d seq %d was %s before the kill, is %s after it", round, ch.id, m.Seq, recordString(m), recordString(got[i]))
			}
		}
		verified[ch.id] = append(verified[ch.id], want...)
	}
}

func sameRecord(a, b client.Message) bool {
	return a.Seq == b.Seq && a.Sender == b.Sender && a.Device == b.Device && a.ClientMsgID == b.ClientMsgID &&
		a.Kind == b.Kind && bytes.Equal(a.Body, b.Body)
}

func recordString(m client.Message) string {
	return fmt.Sprintf("{seq %d sender %d device %d cmid %#x kind %v body %q}", m.Seq, m.Sender, m.Device, m.ClientMsgID, m.Kind, m.Body)
}

// checkCrashLogs reads every chat whole and checks it against the acks
// and the logs verified after the kills; it returns the number of acks.
func checkCrashLogs(t *testing.T, ctx context.Context, chats []crashChat, clients map[uint64]*client.Client,
	senders []*crashSender, verified map[uint64][]client.Message) int {
	t.Helper()
	total := 0
	for i, ch := range chats {
		log, err := readChat(ctx, reader(ch, clients), ch.id, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		acks := make(map[uint64][]uint64) // sender -> seq of its n-th message
		for _, s := range senders {
			if s.chat == ch.id {
				acks[s.user] = s.acks
				total += len(s.acks)
			}
		}
		next := make(map[uint64]uint64) // sender -> n due next, from 0
		for _, m := range log {
			n := next[m.Sender]
			sent, member := acks[m.Sender]
			switch {
			case !member:
				t.Fatalf("chat %d: %s from a user who sends nothing there", ch.id, recordString(m))
			case m.Kind != wire.MsgKind_MSG_KIND_TEXT || m.Device != 1 || m.Deleted:
				t.Fatalf("chat %d: %s is not a plain text", ch.id, recordString(m))
			case n >= uint64(len(sent)):
				t.Fatalf("chat %d: %s: sender %d had %d messages acked, this is one more", ch.id, recordString(m), m.Sender, len(sent))
			case m.ClientMsgID != crashCMID(i, n+1):
				t.Fatalf("chat %d: %s: sender %d's message %d due (cmid %#x): lost, duplicated or out of order",
					ch.id, recordString(m), m.Sender, n+1, crashCMID(i, n+1))
			case sent[n] != m.Seq:
				t.Fatalf("chat %d: %s was acked at seq %d", ch.id, recordString(m), sent[n])
			case !bytes.Equal(m.Body, crashBody(m.Sender, m.ClientMsgID)):
				t.Fatalf("chat %d: %s: wrong body", ch.id, recordString(m))
			}
			next[m.Sender] = n + 1
		}
		for u, sent := range acks {
			if next[u] != uint64(len(sent)) {
				t.Fatalf("chat %d: sender %d had %d messages acked, the log holds %d", ch.id, u, len(sent), next[u])
			}
		}
		v := verified[ch.id]
		if len(v) > len(log) {
			t.Fatalf("chat %d: %d records verified after the kills, %d at the end", ch.id, len(v), len(log))
		}
		for j, m := range v {
			if !sameRecord(log[j], m) {
				t.Fatalf("chat %d: seq %d was %s after a kill, is %s at the end", ch.id, m.Seq, recordString(m), recordString(log[j]))
			}
		}
	}
	return total
}

// checkResends resends acked messages with their ids and bodies: each
// must return its original Ack as a duplicate, and no chat may grow.
func checkResends(t *testing.T, ctx context.Context, rng *rand.Rand, chats []crashChat, clients map[uint64]*client.Client,
	senders []*crashSender) {
	t.Helper()
	last := func(ch crashChat) uint64 {
		p, err := reader(ch, clients).Latest(ctx, ch.id, 1)
		if err != nil {
			t.Fatal(err)
		}
		return p.LastSeq
	}
	before := make([]uint64, len(chats))
	for i, ch := range chats {
		before[i] = last(ch)
	}
	for _, s := range senders {
		for range min(len(s.acks), 4) {
			n := uint64(1 + rng.IntN(len(s.acks)))
			cmid := crashCMID(s.idx, n)
			ack, err := s.c.SendMsg(ctx, client.SendOptions{Chat: s.chat, ClientMsgID: cmid, Body: crashBody(s.user, cmid)})
			if err != nil || !ack.Duplicate || ack.Seq != s.acks[n-1] {
				t.Fatalf("user %d resent message %d of chat %d: %+v, %v; want a duplicate of seq %d", s.user, n, s.chat, ack, err, s.acks[n-1])
			}
		}
	}
	for i, ch := range chats {
		if got := last(ch); got != before[i] {
			t.Fatalf("chat %d: last seq %d after the resends, %d before", ch.id, got, before[i])
		}
	}
}

// crashStats sums the senders' counts.
type crashStats struct {
	spanned, spannedDups, dups, retries int
	errs                                map[string]int
}

func (st *crashStats) add(s *crashSender) {
	st.spanned += s.spanned
	st.spannedDups += s.spannedDups
	st.dups += s.dups
	st.retries += s.retries
	if st.errs == nil {
		st.errs = map[string]int{}
	}
	for e, k := range s.errs {
		st.errs[e] += k
	}
}
