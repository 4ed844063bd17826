package tools

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/storage/storagetest"
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
		var err error
		defer func() { // runs when WaitFor fails the test, too
			if err != nil {
				t.Error(err)
			}
		}()
		storagetest.WaitFor(t, "the client's goroutines to end", func() bool {
			err = goleak.Find(ignore)
			return err == nil
		})
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
	return []string{"--server", n.Addr, "--tcp-server", n.TCPAddr, "--token", tok, "--fingerprint", n.Fingerprint}
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
	f(2, `transport "udp" is not auto, quic or tcp`, "send", "--transport", "udp", "--chat", "1", "hi")
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

func TestNoNode(t *testing.T) {
	checkClientLeaks(t)
	// A loopback port nothing listens on: QUIC over UDP hears nothing back.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	// Over TCP the port is refused (or, were it taken meanwhile, would
	// not speak TLS): either way nothing answers.
	for _, tc := range []struct {
		cmd, rest []string
		over      string
	}{
		{[]string{"chat", "create"}, []string{"--kind", "group", "--member", "2"}, "neither QUIC over UDP nor TLS over TCP"},
		{[]string{"send"}, []string{"--chat", "1", "hello"}, "neither QUIC over UDP nor TLS over TCP"},
		{[]string{"tail"}, nil, "neither QUIC over UDP nor TLS over TCP"},
		{[]string{"send"}, []string{"--transport", "quic", "--chat", "1", "hello"}, "QUIC over UDP"},
		{[]string{"tail"}, []string{"--transport", "tcp"}, "TLS over TCP"},
	} {
		args := append(append(tc.cmd, "--server", addr, "--token", "T"), tc.rest...)
		t.Run(strings.Join(args[:len(tc.cmd)], "_")+"_"+tc.over, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			code, out, errOut := run(args...)
			if code != 1 || out != "" || !strings.Contains(errOut, "nothing answered at "+addr+" ("+tc.over+") within 2.5s") || !strings.Contains(errOut, "gonets serve") {
				t.Fatalf("gonets %q with no node: exit %d, stdout %q, stderr %q", args, code, out, errOut)
			}
			// The bound is --dial-timeout; this only catches a wait for
			// the old 10 s, generously.
			if d := time.Since(start); d > 8*time.Second {
				t.Fatalf("gonets %q took %v to give up", args, d)
			}
		})
	}
}

// writeCA writes to dir a CA certificate (ca.pem) and a node certificate
// it signed for localhost and 127.0.0.1 (node.crt, node.key).
func writeCA(t *testing.T, dir string) (caPath, certPath, keyPath string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Gonets Test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})) }
	return writeFile(t, dir, "ca.pem", pemOf("CERTIFICATE", caDER)),
		writeFile(t, dir, "node.crt", pemOf("CERTIFICATE", der)),
		writeFile(t, dir, "node.key", pemOf("PRIVATE KEY", kder))
}

func TestClientCA(t *testing.T) {
	checkClientLeaks(t)
	certs := t.TempDir()
	caPath, certPath, keyPath := writeCA(t, certs)
	cfg := testConfig(t)
	cfg.TLS.Cert, cfg.TLS.Key = certPath, keyPath
	ctx, cancel := context.WithCancel(context.Background())
	b, errc := startServe(t, ctx, cfg, io.Discard)
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	_, port, _ := net.SplitHostPort(b["quic"][0])
	code, tok, errOut := run("token", "--user", "1", "--device", "1", "--data", cfg.Node.DataDir)
	if code != 0 {
		t.Fatalf("token: exit %d: %s", code, errOut)
	}
	tok = strings.TrimSpace(tok)

	// A stale self-signed certificate where the client would pin one: in
	// ./gonets-data, and in a --data directory.
	stale := t.TempDir()
	if _, _, err := nodecert.LoadOrCreate(filepath.Join(stale, defaultDataDir), nil); err != nil {
		t.Fatal(err)
	}
	t.Chdir(stale)

	f := func(wantCode int, want []string, args ...string) {
		t.Helper()
		args = append([]string{"chat", "create", "--kind", "group", "--member", "2", "--token", tok}, args...)
		code, _, errOut := run(args...)
		if code != wantCode {
			t.Fatalf("gonets %q: exit %d, stderr %q; want %d", args, code, errOut, wantCode)
		}
		for _, w := range want {
			if !strings.Contains(errOut, w) {
				t.Fatalf("gonets %q: stderr %q, want %q in it", args, errOut, w)
			}
		}
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		server := net.JoinHostPort(host, port)
		// --ca reaches the node, whatever ./gonets-data or --data holds.
		f(0, nil, "--server", server, "--ca", caPath)
		f(0, nil, "--server", server, "--ca", caPath, "--data", defaultDataDir)
		// Without it the stale pin does not match and no system root
		// signed the node's certificate: the message says both and what
		// to pass.
		stalePath := filepath.Join(defaultDataDir, nodecert.CertFile)
		f(1, []string{"gonets chat: the node's certificate (SHA-256 ", "is not the one in " + stalePath + " (stale?)", "unknown authority", "--ca FILE"}, "--server", server)
		f(1, []string{"is not the one in " + stalePath}, "--server", server, "--data", defaultDataDir)
	}
	// A CA that did not sign it.
	otherCA, _, _ := writeCA(t, t.TempDir())
	f(1, []string{"not trusted", "is " + otherCA + " the CA that signed it?"}, "--server", "127.0.0.1:"+port, "--ca", otherCA)
	f(1, []string{"--ca ", "no PEM certificate"}, "--server", "127.0.0.1:"+port, "--ca", keyPath)
}

func TestCertVerifier(t *testing.T) {
	dir := t.TempDir()
	caPath, certPath, _ := writeCA(t, dir)
	roots, err := caPool(caPath)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(path string) *x509.Certificate {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	signed := leaf(certPath)
	selfPath, _, selfFP := writeCert(t, t.TempDir()) // for chat.example.org
	self := leaf(selfPath)
	for _, tc := range []struct {
		name string
		v    certVerifier
		cert *x509.Certificate
		want string // "" accepts
	}{
		{"chain to --ca", certVerifier{host: "127.0.0.1", roots: roots}, signed, ""},
		{"chain, by name", certVerifier{host: "localhost", roots: roots}, signed, ""},
		{"chain, other name", certVerifier{host: "chat.example.org", roots: roots, ca: caPath}, signed, "not chat.example.org; pass --server with a host name"},
		{"chain beside a stale pin", certVerifier{host: "127.0.0.1", roots: roots, pin: selfFP, pinFrom: "gonets-data/node-tls.crt"}, signed, ""},
		{"pinned, whatever its names", certVerifier{host: "127.0.0.1", pin: selfFP, pinFrom: "d/node-tls.crt"}, self, ""},
		{"stale pin, no root", certVerifier{host: "127.0.0.1", pin: selfFP, pinFrom: "d/node-tls.crt"}, signed, "is not the one in d/node-tls.crt (stale?)"},
		{"no pin, no root", certVerifier{host: "chat.example.org"}, self, "--fingerprint HEX"},
		{"no certificate", certVerifier{host: "127.0.0.1", roots: roots}, nil, "sent no certificate"},
	} {
		var cs tls.ConnectionState
		if tc.cert != nil {
			cs.PeerCertificates = []*x509.Certificate{tc.cert}
		}
		err := tc.v.verify(cs)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: verify = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// A profile supplies the node's address and how to trust it where no
// flag does; a trust flag given replaces all of the profile's.
func TestApplyConn(t *testing.T) {
	saved := nodeConn{Server: "node:1", TCPServer: "node:2", Fingerprint: "ab", Data: "/srv/gonets-data"}
	f := func(args []string, want clientFlags) {
		t.Helper()
		fs := newFlagSet("test", "", io.Discard, io.Discard)
		cf := addClientFlags(fs)
		if _, ok := fs.parse(args); !ok {
			t.Fatalf("parse %q", args)
		}
		cf.applyConn(saved)
		got := [...]any{cf.server, cf.tcpServer, cf.fingerprint, cf.ca, cf.insecure, cf.data, cf.dataGiven()}
		exp := [...]any{want.server, want.tcpServer, want.fingerprint, want.ca, want.insecure, want.data, want.dataSet}
		if got != exp {
			t.Fatalf("flags %q: %v, want %v", args, got, exp)
		}
	}
	f(nil, clientFlags{server: "node:1", tcpServer: "node:2", fingerprint: "ab", data: "/srv/gonets-data", dataSet: true})
	f([]string{"--server", "other:1"}, clientFlags{server: "other:1", fingerprint: "ab", data: "/srv/gonets-data", dataSet: true})
	f([]string{"--tcp-server", "other:2"}, clientFlags{server: "node:1", tcpServer: "other:2", fingerprint: "ab", data: "/srv/gonets-data", dataSet: true})
	f([]string{"--insecure"}, clientFlags{server: "node:1", tcpServer: "node:2", insecure: true, data: defaultDataDir})
	f([]string{"--ca", "ca.pem"}, clientFlags{server: "node:1", tcpServer: "node:2", ca: "ca.pem", data: defaultDataDir})
	f([]string{"--data", "d"}, clientFlags{server: "node:1", tcpServer: "node:2", data: "d", dataSet: true})
}
