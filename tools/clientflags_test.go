package tools

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/broker/brokertest"
)

// syncBuffer is a bytes.Buffer safe for a command's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// checkClientLeaks fails the test if goroutines it started outlive it.
// Call it before starting the node: the node stops first. A QUIC
// transport ends a moment after its last connection, so it polls.
func checkClientLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			err := goleak.Find(ignore)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Error(err)
				return
			}
		}
	})
}

// run runs the gonets command line and returns its exit code and output.
func run(args ...string) (code int, stdout, stderr string) {
	var out, errw syncBuffer
	code = Main(args, &out, &errw)
	return code, out.String(), errw.String()
}

// clientArgs are the flags that reach node n with token tok.
func clientArgs(n *brokertest.Node, tok string) []string {
	return []string{"--server", n.Addr, "--token", tok, "--fingerprint", n.Fingerprint}
}

func TestClientFlags(t *testing.T) {
	checkClientLeaks(t)
	n := brokertest.Start(t, brokertest.Options{})
	tok := n.Token(t, 1, 1)
	f := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, _, errOut := run(args...)
		if code != wantCode || !strings.Contains(errOut, wantErr) {
			t.Fatalf("gonets %q: exit %d, stderr %q; want %d and %q", args, code, errOut, wantCode, wantErr)
		}
	}
	create := []string{"chat", "create", "--kind", "group", "--member", "2"}
	// No token.
	t.Setenv(tokenEnv, "")
	f(2, "pass --token or set GONETS_TOKEN", append(create, "--server", n.Addr, "--insecure")...)
	// The token from the environment, the certificate from the data dir.
	t.Setenv(tokenEnv, tok)
	f(0, "", append(create, "--server", n.Addr, "--data", n.Dir)...)
	f(0, "", append(create, "--server", n.Addr, "--insecure")...)
	// No certificate to pin.
	f(1, "pass --fingerprint HEX", append(create, "--server", n.Addr, "--data", t.TempDir())...)
	// The wrong one.
	f(1, "gonets chat: ", append(create, "--server", n.Addr, "--fingerprint", strings.Repeat("ab", 32))...)
	f(1, "not 64 hex digits", append(create, "--server", n.Addr, "--fingerprint", "abc")...)
	f(2, "exclusive", append(create, "--server", n.Addr, "--fingerprint", n.Fingerprint, "--insecure")...)
	// A rejected token.
	f(1, "gonets chat: gonets: UNAUTHENTICATED", append(create, clientArgs(n, n.ForgedToken(t, 1, 1))...)...)
	// A refused request.
	f(1, "gonets send: gonets: UNKNOWN_CHAT", append([]string{"send", "--chat", "99"}, append(clientArgs(n, tok), "hi")...)...)
	// Usage errors.
	f(2, "usage: gonets chat create", "chat")
	f(2, "usage: gonets chat create", "chat", "create", "--kind", "triangle", "--member", "2")
	f(2, "usage: gonets chat create", "chat", "create", "--kind", "group")
	f(2, "not a positive integer", "chat", "create", "--kind", "group", "--member", "x")
	f(2, "usage: gonets send", "send", "--chat", "1")
	f(2, "usage: gonets send", "send", "hello")
	f(2, "usage: gonets tail", "tail", "--all", "--since", "3")
	f(2, "usage: gonets tail", "tail", "extra")
}

func TestLocalFingerprint(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	fp, err := localFingerprint(n.Dir)
	if err != nil || fp != n.Fingerprint {
		t.Fatalf("localFingerprint = %q, %v; want %q", fp, err, n.Fingerprint)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "node-tls.crt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := localFingerprint(dir); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("junk certificate: %v", err)
	}
}

func TestUserList(t *testing.T) {
	var l userList
	for _, v := range []string{"3", "5"} {
		if err := l.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(l.String()); got != "3,5" {
		t.Fatalf("String() = %q", got)
	}
	if l.Set("0") == nil || l.Set("-1") == nil {
		t.Fatal("user 0 or -1 accepted")
	}
}
