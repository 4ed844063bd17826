package tools

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage/storagetest"
)

// tailRun is a gonets tail running in the background.
type tailRun struct {
	out, err syncBuffer
	code     chan int
}

// startTail runs gonets tail with args and waits until it is connected.
func startTail(t *testing.T, args ...string) *tailRun {
	t.Helper()
	r := &tailRun{code: make(chan int, 1)}
	go func() { r.code <- Main(append([]string{"tail"}, args...), &r.out, &r.err) }()
	r.waitStderr(t, "gonets tail: connected to ")
	return r
}

// waitStderr waits until tail's stderr contains s.
func (r *tailRun) waitStderr(t *testing.T, s string) {
	t.Helper()
	storagetest.WaitFor(t, fmt.Sprintf("%q on tail's stderr", s), func() bool {
		if strings.Contains(r.err.String(), s) {
			return true
		}
		select {
		case code := <-r.code:
			t.Fatalf("tail exited %d waiting for %q: %s", code, s, r.err.String())
		default:
		}
		return false
	})
}

// exit waits for tail to exit and returns its code.
func (r *tailRun) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.code:
		return code
	case <-time.After(15 * time.Second):
		t.Fatalf("tail did not exit; stdout %q, stderr %q", r.out.String(), r.err.String())
	}
	return -1
}

// lines decodes tail's output.
func (r *tailRun) lines(t *testing.T) []messageLine {
	t.Helper()
	var out []messageLine
	sc := bufio.NewScanner(strings.NewReader(r.out.String()))
	for sc.Scan() {
		var l messageLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("tail printed %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// checkLines fails unless ls are chat's seqs from, from+1, ... with
// texts "m<seq>".
func checkLines(t *testing.T, ls []messageLine, chat, from uint64, n int) {
	t.Helper()
	if len(ls) != n {
		t.Fatalf("tail printed %d messages, want %d: %+v", len(ls), n, ls)
	}
	for i, l := range ls {
		seq := from + uint64(i)
		if l.Chat != chat || l.Seq != seq || l.Text != fmt.Sprintf("m%d", seq) || l.Kind != "text" || l.Sender == 0 || l.Device == 0 {
			t.Fatalf("line %d: %+v; want chat %d seq %d text m%d", i, l, chat, seq, seq)
		}
		if _, err := time.Parse(time.RFC3339Nano, l.Time); err != nil {
			t.Fatalf("line %d time: %v", i, err)
		}
	}
}

func TestTailAll(t *testing.T) {
	checkClientLeaks(t)
	n := brokertest.Start(t, brokertest.Options{})
	alice, bob := n.Token(t, 1, 1), n.Token(t, 2, 1)
	chat := createChat(t, n, alice, "--kind", "direct", "--member", "2")
	send(t, n, alice, chat, "m1")
	send(t, n, alice, chat, "m2")
	r := startTail(t, append(clientArgs(n, bob), "--all", "--count", "2")...)
	if code := r.exit(t); code != 0 {
		t.Fatalf("tail: exit %d: %s", code, r.err.String())
	}
	ls := r.lines(t)
	checkLines(t, ls, chat, 1, 2)
	if ls[0].Sender != 1 || ls[0].Device != 1 {
		t.Fatalf("sender: %+v", ls[0])
	}
}

func TestTailFollowsAcrossRestart(t *testing.T) {
	checkClientLeaks(t)
	n := brokertest.Start(t, brokertest.Options{})
	alice, bob := n.Token(t, 1, 1), n.Token(t, 2, 1)
	chat := createChat(t, n, alice, "--kind", "direct", "--member", "2")
	send(t, n, alice, chat, "m1") // before tail: not printed

	r := startTail(t, append(clientArgs(n, bob), "--count", "4")...)
	send(t, n, alice, chat, "m2")
	// The node restarts; tail comes back a second later and first prints
	// what it missed.
	n.Restart(t)
	send(t, n, alice, chat, "m3")
	send(t, n, alice, chat, "m4")
	send(t, n, alice, chat, "m5")
	if code := r.exit(t); code != 0 {
		t.Fatalf("tail: exit %d: %s", code, r.err.String())
	}
	checkLines(t, r.lines(t), chat, 2, 4)
	if !strings.Contains(r.err.String(), "gonets tail: disconnected") {
		t.Fatalf("tail's stderr %q does not mention the disconnection", r.err.String())
	}
}

func TestTailStopsOnSignal(t *testing.T) {
	checkClientLeaks(t)
	n := brokertest.Start(t, brokertest.Options{})
	r := startTail(t, clientArgs(n, n.Token(t, 2, 1))...)
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := r.exit(t); code != 0 {
		t.Fatalf("tail after SIGINT: exit %d: %s", code, r.err.String())
	}
}

// The client commands take --transport: each works over QUIC and over
// TCP, and auto falls back to TCP when nothing answers over UDP.
func TestClientTransports(t *testing.T) {
	checkClientLeaks(t)
	f := func(n *brokertest.Node, transport, want string) {
		t.Helper()
		alice, bob := n.Token(t, 1, 1), n.Token(t, 2, 1)
		with := func(tok string, args ...string) []string {
			return append(append(clientArgs(n, tok), "--transport", transport), args...)
		}
		code, out, errOut := run(append([]string{"chat", "create"}, with(alice, "--kind", "direct", "--member", "2")...)...)
		if code != 0 {
			t.Fatalf("chat create --transport %s: exit %d: %s", transport, code, errOut)
		}
		chat := strings.TrimSpace(out)
		if code, _, errOut := run(append([]string{"send"}, with(alice, "--chat", chat, "m1")...)...); code != 0 {
			t.Fatalf("send --transport %s: exit %d: %s", transport, code, errOut)
		}
		r := startTail(t, with(bob, "--all", "--count", "1")...)
		if code := r.exit(t); code != 0 {
			t.Fatalf("tail --transport %s: exit %d: %s", transport, code, r.err.String())
		}
		if ls := r.lines(t); len(ls) != 1 || ls[0].Text != "m1" || !strings.Contains(r.err.String(), " over "+want+" as user 2") {
			t.Fatalf("tail --transport %s: %+v, stderr %q; want m1, connected over %s", transport, ls, r.err.String(), want)
		}
	}
	n := brokertest.Start(t, brokertest.Options{})
	f(n, "quic", "quic")
	f(brokertest.Start(t, brokertest.Options{}), "tcp", "tcp")
	f(brokertest.Start(t, brokertest.Options{NoQUIC: true}), "auto", "tcp")
}

// A service message's body is printed decoded, as protobuf JSON.
func TestTailServiceLine(t *testing.T) {
	body, err := proto.Marshal(&wire.Service{Event: &wire.Service_NewLogin{NewLogin: &wire.NewLogin{Device: 2, DeviceName: "laptop", Platform: "cli"}}})
	if err != nil {
		t.Fatal(err)
	}
	l := newMessageLine(client.Message{Chat: 1, Seq: 1, Kind: wire.MsgKind_MSG_KIND_SERVICE, Body: body})
	if l.Text != "" || l.Body != nil || !strings.Contains(string(l.Service), `"newLogin"`) || !strings.Contains(string(l.Service), `"deviceName":"laptop"`) {
		t.Fatalf("service line %+v (%s)", l, l.Service)
	}
	// A body that is no Service stays as it came.
	l = newMessageLine(client.Message{Kind: wire.MsgKind_MSG_KIND_SERVICE, Body: []byte{0xff, 0xff}})
	if l.Service != nil || l.Body == nil {
		t.Fatalf("undecodable service line %+v", l)
	}
}

func TestTailMediaSave(t *testing.T) {
	checkClientLeaks(t)
	n, _ := startMediaNode(t)
	alice, bob := n.Token(t, 1, 1), n.Token(t, 2, 1)
	chat := createChat(t, n, alice, "--kind", "direct", "--member", "2")
	pic, doc := testPNG(t, 64, 48), []byte("report body")
	send(t, n, alice, chat, "--file", tempFile(t, "p.png", pic), "--file", tempFile(t, "r.txt", doc), "--", "see", "these")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "r.txt"), []byte("something else"), 0o600) // kept
	r := startTail(t, append(clientArgs(n, bob), "--all", "--count", "1", "--save", dir)...)
	if code := r.exit(t); code != 0 {
		t.Fatalf("tail: exit %d: %s", code, r.err.String())
	}
	ls := r.lines(t)
	if len(ls) != 1 || ls[0].Kind != "media" || ls[0].Text != "see these" || len(ls[0].Attachments) != 2 {
		t.Fatalf("lines %+v", ls)
	}
	p, d := ls[0].Attachments[0], ls[0].Attachments[1]
	if p.Type != "photo" || p.Width != 64 || p.Height != 48 || p.Size != int64(len(pic)) || p.SHA256 != sha256Hex(pic) || p.MIME != "image/png" {
		t.Fatalf("photo %+v", p)
	}
	if d.Name != "r.txt" || d.Size != int64(len(doc)) {
		t.Fatalf("file %+v", d)
	}
	for _, c := range []struct {
		a    attachmentLine
		path string
		data []byte
	}{{p, filepath.Join(dir, "p.png"), pic}, {d, filepath.Join(dir, "r-"+d.SHA256[:12]+".txt"), doc}} {
		got, err := os.ReadFile(c.path)
		if c.a.Saved != c.path || err != nil || !bytes.Equal(got, c.data) {
			t.Fatalf("saved %q (want %q): %v", c.a.Saved, c.path, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "r.txt")); string(b) != "something else" {
		t.Fatal("--save overwrote another file")
	}
	code, _, errOut := run(append(append([]string{"tail"}, clientArgs(n, bob)...), "--save", filepath.Join(dir, "nodir"))...)
	if code != 2 || !strings.Contains(errOut, "not a directory") {
		t.Fatalf("--save to a missing directory: exit %d, %s", code, errOut)
	}
}

func TestSafeFileName(t *testing.T) {
	for in, want := range map[string]string{
		"a.txt": "a.txt", "../../etc/passwd": "passwd", `C:\x\y.doc`: "y.doc", "..hidden": "hidden",
		"": "", ".": "", "a\x00b": "a_b", "dir/": "dir",
	} {
		if got := safeFileName(in); got != want {
			t.Errorf("safeFileName(%q) = %q, want %q", in, got, want)
		}
	}
}
