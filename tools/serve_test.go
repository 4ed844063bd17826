package tools

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// testConfig is the default config with the data in a temporary directory
// and every listener on a free port (loopback, but for the media port,
// which the SFU binds on every interface), so that tests never collide
// on the default ports, nor with a node running on this host.
func testConfig(t *testing.T) config {
	t.Helper()
	c := defaultConfig()
	c.Node.DataDir = filepath.Join(t.TempDir(), "data")
	c.Node.QUICAddr = "127.0.0.1:0"
	c.Node.HTTPAddr = "127.0.0.1:0"
	c.Node.PublicAddr = "127.0.0.1:0"
	c.Calls.UDPPort = 0
	c.Node.ShutdownTimeout = duration(5 * time.Second)
	c.Node.LogLevel = slog.LevelWarn
	return c
}

func TestParseServe(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "gonets.toml", `
[node]
data_dir = "from-file"
quic_addr = "127.0.0.1:9443"
http_addr = "127.0.0.1:9080"
name = "file-name"
log_level = "warn"

[storage]
shards = 16
`)
	f := func(args []string, change func(*config), wantCheck bool) {
		t.Helper()
		var errw bytes.Buffer
		c, check, err := parseServe(args, io.Discard, &errw)
		if err != nil {
			t.Fatalf("parseServe(%q): %v (stderr %q)", args, err, errw.String())
		}
		want := defaultConfig()
		change(&want)
		if check != wantCheck || !reflect.DeepEqual(c, want) {
			t.Fatalf("parseServe(%q) =\n%+v, %v\nwant\n%+v, %v", args, c, check, want, wantCheck)
		}
	}
	f(nil, func(*config) {}, false)
	f([]string{"--check-config"}, func(*config) {}, true)
	fromFile := func(c *config) {
		c.Node.DataDir = filepath.Join(dir, "from-file")
		c.Node.QUICAddr = "127.0.0.1:9443"
		c.Node.HTTPAddr = "127.0.0.1:9080"
		c.Node.Name = "file-name"
		c.Node.LogLevel = slog.LevelWarn
		c.Storage.Shards = 16
	}
	f([]string{"--config", path}, fromFile, false)
	// Flags override the file, whichever order they come in; flags not
	// given leave the file's values alone.
	f([]string{"--data", "flag-data", "--config", path, "--http", "127.0.0.1:1", "--log-level", "error", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, func(c *config) {
		fromFile(c)
		c.Node.DataDir = "flag-data"
		c.Node.HTTPAddr = "127.0.0.1:1"
		c.Node.LogLevel = slog.LevelError
		c.TLS.Cert, c.TLS.Key = "c.pem", "k.pem"
	}, false)
	// A flag set to its default still overrides the file.
	f([]string{"--config", path, "--quic", ":7443", "--name", ""}, func(c *config) {
		fromFile(c)
		c.Node.QUICAddr = ":7443"
		c.Node.Name = ""
	}, false)

	bad := func(args []string, want error, wantMsg string) {
		t.Helper()
		var errw bytes.Buffer
		_, _, err := parseServe(args, io.Discard, &errw)
		if !errors.Is(err, want) && (err == nil || !strings.Contains(err.Error(), wantMsg)) {
			t.Fatalf("parseServe(%q) = %v, want %v / %q", args, err, want, wantMsg)
		}
		if wantMsg != "" && !strings.Contains(errw.String()+err.Error(), wantMsg) {
			t.Fatalf("parseServe(%q) said %q / %v, want %q", args, errw.String(), err, wantMsg)
		}
	}
	bad([]string{"--bogus"}, errUsage, "flag provided but not defined: -bogus")
	bad([]string{"extra"}, errUsage, `unexpected argument "extra"`)
	bad([]string{"--log-level", "loud"}, errUsage, "invalid value")
	bad([]string{"--tls-cert", "c.pem"}, nil, "tls.cert and tls.key must be set together")
	bad([]string{"--config", filepath.Join(dir, "absent.toml")}, nil, "absent.toml")
	bad([]string{"--quic", ""}, nil, "node.quic_addr is empty")
}

// writeCert writes a self-signed certificate and its key to dir, as an
// operator's real certificate would be, and returns the paths and the
// certificate's fingerprint.
func writeCert(t *testing.T, dir string) (certPath, keyPath, fp string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "chat.example.org"},
		DNSNames:     []string{"chat.example.org"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath = writeFile(t, dir, "tls.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyPath = writeFile(t, dir, "tls.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	return certPath, keyPath, nodecert.Fingerprint(der)
}

// writePublicKey writes pub as a PEM "PUBLIC KEY" file in dir.
func writePublicKey(t *testing.T, dir, name string, pub ed25519.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
}

func TestServeCheckConfig(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// The media port is a free one unless a case's own --config, which
	// overrides this one, says otherwise: 7444 may be another node's.
	freeMedia := writeFile(t, dir, "media.toml", "[node]\npublic_addr = \"127.0.0.1:0\"\n[calls]\nudp_port = 0\n")
	f := func(wantCode int, want string, args ...string) {
		t.Helper()
		var out, errw bytes.Buffer
		code := Main(append([]string{"serve", "--check-config", "--data", data, "--config", freeMedia}, args...), &out, &errw)
		if code != wantCode || !strings.Contains(out.String()+errw.String(), want) {
			t.Fatalf("serve --check-config %q = %d, %q %q; want %d and %q", args, code, out.String(), errw.String(), wantCode, want)
		}
	}
	// Nothing is created and no port stays bound: addresses in use pass,
	// with a warning (the node to be restarted holds them).
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	f(0, "config ok\n", "--quic", udp.LocalAddr().String(), "--http", tcp.Addr().String())
	f(0, "gonets serve: warning: node.quic_addr "+udp.LocalAddr().String()+": address in use (UDP)", "--quic", udp.LocalAddr().String(), "--http", tcp.Addr().String())
	f(1, `node.quic_addr ":99999": port "99999" is not a number from 0 to 65535`, "--quic", ":99999")
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("--check-config touched the data dir: %v", err)
	}

	certPath, keyPath, _ := writeCert(t, dir)
	_, idp, _ := ed25519.GenerateKey(rand.Reader)
	writePublicKey(t, dir, "idp.pub", idp.Public().(ed25519.PublicKey))
	good := writeFile(t, dir, "good.toml", `
[tls]
cert = "tls.crt"
key = "tls.key"
[auth]
public_keys = ["idp.pub"]
[storage]
max_body_bytes = "128KiB"
max_batch_bytes = "4MiB"
[broker]
send_rate = 10.0
[calls]
udp_port = 0
`)
	f(0, "config ok", "--config", good)
	f(0, "config ok", "--tls-cert", certPath, "--tls-key", keyPath)

	file := func(name, body string) string { return writeFile(t, dir, name, body) }
	f(1, `unknown key "storage.max_bodies"`, "--config", file("unknown.toml", "[storage]\nmax_bodies = 1\n"))
	f(1, "storage: MaxBatchBytes 1024 below MaxBodyBytes 65536", "--config", file("batch.toml", "[storage]\nmax_batch_bytes = \"1KiB\"\n"))
	f(1, "storage: Shards 100000 out of range", "--config", file("shards.toml", "[storage]\nshards = 100000\n"))
	f(1, "broker: SendRate -1 must be positive", "--config", file("rate.toml", "[broker]\nsend_rate = -1.0\n"))
	f(1, "broker: MaxFrameBytes 100 outside", "--config", file("frame.toml", "[broker]\nmax_frame_bytes = 100\n"))
	f(1, "broker: CoalesceWindow 1s above 50ms", "--config", file("window.toml", "[broker]\npush_coalesce_window = \"1s\"\n"))
	f(1, "tls: open", "--tls-cert", filepath.Join(dir, "absent.crt"), "--tls-key", keyPath)
	f(1, "tls: ", "--tls-cert", keyPath, "--tls-key", keyPath)
	f(1, "auth.public_keys", "--config", file("keys.toml", "[auth]\npublic_keys = [\"tls.crt\"]\n"))
	f(2, "usage: gonets serve", "--bogus")

	// The data dir's key and certificate are checked when they exist.
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, data, token.KeyFile, "not a key")
	f(1, "not a PEM private key")
	os.Remove(filepath.Join(data, token.KeyFile))
	writeFile(t, data, nodecert.CertFile, "not a certificate")
	f(1, "nodecert: load")
}

func TestNewVerifier(t *testing.T) {
	dir := t.TempDir()
	nodeKey, err := token.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, idp, _ := ed25519.GenerateKey(rand.Reader)
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	c := defaultConfig()
	c.Auth.PublicKeys = []string{writePublicKey(t, dir, "idp.pub", idp.Public().(ed25519.PublicKey))}
	v, err := newVerifier(c, []ed25519.PublicKey{nodeKey.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	f := func(key ed25519.PrivateKey, want error) {
		t.Helper()
		tok, err := token.NewSigner(key).Sign(token.Claims{User: 1, Device: 2, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); !errors.Is(err, want) {
			t.Fatalf("Verify = %v, want %v", err, want)
		}
	}
	f(nodeKey, nil)
	f(idp, nil)
	f(stranger, token.ErrForged)
}

// TestPublicKeyFromOpenSSL checks the documented way to hand one node's
// token key to another: openssl's public key output loads.
func TestPublicKeyFromOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	dir := t.TempDir()
	key, err := token.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "node.pub")
	if out, err := exec.Command(openssl, "pkey", "-in", filepath.Join(dir, token.KeyFile), "-pubout", "-out", pub).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v: %s", err, out)
	}
	keys, err := loadPublicKeys([]string{pub})
	if err != nil || len(keys) != 1 || !keys[0].Equal(key.Public()) {
		t.Fatalf("loadPublicKeys(openssl output) = %x, %v", keys, err)
	}
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of a
// logger.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// banner is what serve printed on start, by the first word of each line.
type banner map[string][]string

// readBanner reads serve's start-up lines up to the last one ("try").
func readBanner(r *bufio.Reader) (banner, error) {
	b := banner{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return b, err
		}
		if f := strings.Fields(line); len(f) > 1 {
			b[f[0]] = f[1:]
			if f[0] == "try" {
				return b, nil
			}
		}
	}
}

// startServe runs serve in a goroutine until ctx is done, and returns its
// banner and a channel that delivers serve's result.
func startServe(t *testing.T, ctx context.Context, cfg config, stderr io.Writer) (banner, <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := serve(ctx, cfg, pw, stderr)
		pw.CloseWithError(err)
		errc <- err
	}()
	b, err := readBanner(bufio.NewReader(pr))
	if err != nil {
		t.Fatalf("serve: %v", <-errc)
	}
	go io.Copy(io.Discard, pr)
	return b, errc
}

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestServe(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	cfg.Node.LogLevel = slog.LevelInfo
	var stderr lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	b, errc := startServe(t, ctx, cfg, &stderr)

	base := "http://" + b["http"][0]
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, name := range []string{"gonets_node_ready 1", "gonets_storage_appends_total", "gonets_broker_sessions", "gonets_calls_rooms 0", "go_goroutines", "process_"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s:\n%s", name, body)
		}
	}

	// The banner names a dialable QUIC address and the certificate that
	// clients pin: the one kept in the data dir.
	quicAddr := b["quic"][0]
	if _, err := net.ResolveUDPAddr("udp", quicAddr); err != nil || strings.HasSuffix(quicAddr, ":0") {
		t.Fatalf("banner quic %q: %v", quicAddr, err)
	}
	// The media line names the SFU's port: a free one, as asked.
	if media := b["media"]; len(media) == 0 || strings.HasSuffix(media[0], ":0") || !strings.Contains(strings.Join(media, " "), "ICE-TCP") {
		t.Fatalf("banner media %q", media)
	}
	fp := b["tls"][0]
	if want := certFingerprint(t, filepath.Join(cfg.Node.DataDir, nodecert.CertFile)); fp != want {
		t.Fatalf("banner fingerprint %s, the certificate's is %s", fp, want)
	}
	if !strings.Contains(strings.Join(b["try"], " "), "--fingerprint "+fp) {
		t.Fatalf("banner hint %q", b["try"])
	}
	abs, _ := filepath.Abs(cfg.Node.DataDir)
	if b["data"][0] != abs {
		t.Fatalf("banner data %q, want %q", b["data"], abs)
	}
	// The TLS-over-TCP fallback listens too, by default on the QUIC
	// address's host (here with a free port of its own), and speaks the
	// protocol: a Hello with a bad token is answered.
	tc, err := tls.Dial("tcp", b["tcp"][0], &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"gonets/1"}})
	if err != nil {
		t.Fatalf("banner tcp %q: %v", b["tcp"], err)
	}
	hello, _ := wire.AppendFrame(nil, &wire.Frame{Id: 1, Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: "x"}}}, 0)
	tc.Write(hello)
	var f wire.Frame
	if err := wire.NewReader(tc, 0).Read(&f); err != nil || f.GetError().GetCode() != wire.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
		t.Fatalf("hello over TCP: %v %v", err, &f)
	}
	tc.Close()

	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if !strings.Contains(stderr.String(), "msg=stopped") {
		t.Fatalf("log lacks the stop: %s", stderr.String())
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("the HTTP server still answers")
	}
	st, err := storage.Open(filepath.Join(cfg.Node.DataDir, storeDir), storage.Options{})
	if err != nil {
		t.Fatalf("reopen the store: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart keeps the certificate, so that pinned clients still connect.
	ctx, cancel = context.WithCancel(context.Background())
	b, errc = startServe(t, ctx, cfg, &stderr)
	if b["tls"][0] != fp || strings.Contains(strings.Join(b["tls"], " "), "created now") {
		t.Fatalf("restart: tls %q, want %s kept", b["tls"], fp)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("serve: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// certFingerprint returns the fingerprint of the PEM certificate at path.
func certFingerprint(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	return nodecert.Fingerprint(blk.Bytes)
}

func TestServeConfiguredCert(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	var fp string
	cfg.TLS.Cert, cfg.TLS.Key, fp = writeCert(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	b, errc := startServe(t, ctx, cfg, io.Discard)
	if b["tls"][0] != fp || !strings.Contains(strings.Join(b["tls"], " "), cfg.TLS.Cert) {
		t.Fatalf("banner tls %q, want %s from %s", b["tls"], fp, cfg.TLS.Cert)
	}
	if _, err := os.Stat(filepath.Join(cfg.Node.DataDir, nodecert.CertFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a self-signed certificate was created beside a configured one: %v", err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestReadyz(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n, err := startNode(testConfig(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := n.handler()
	f := func(want int) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != want {
			t.Fatalf("/readyz = %d, want %d", rec.Code, want)
		}
	}
	f(http.StatusServiceUnavailable) // bound, but the accept loop is not running
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.run(ctx) }()
	for !n.serving.Load() {
		runtime.Gosched()
	}
	f(http.StatusOK)
	n.stopping.Store(true)
	f(http.StatusServiceUnavailable)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f(http.StatusServiceUnavailable)
}

func TestServeStartFails(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t)
	cfg.Node.HTTPAddr = busy.Addr().String()
	err = serve(context.Background(), cfg, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "http: listen tcp") {
		t.Fatalf("serve on a busy HTTP port = %v", err)
	}
	// Everything opened before the failure was closed again.
	st, err := storage.Open(filepath.Join(cfg.Node.DataDir, storeDir), storage.Options{})
	if err != nil {
		t.Fatalf("reopen the store: %v", err)
	}
	st.Close()

	cfg = testConfig(t)
	writeFile(t, filepath.Dir(cfg.Node.DataDir), "data", "a file, not a directory")
	if err := serve(context.Background(), cfg, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "data dir") {
		t.Fatalf("serve with a file as data dir = %v", err)
	}
}

// TestServeMediaPortInUse: a media port another process holds fails serve
// with a message that names calls.udp_port, and closes what serve opened;
// a node with calls off binds no media port and says so.
func TestServeMediaPortInUse(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.LocalAddr().(*net.UDPAddr).Port
	cfg := testConfig(t)
	cfg.Calls.UDPPort = port
	err = serve(context.Background(), cfg, io.Discard, io.Discard)
	want := fmt.Sprintf("calls.udp_port %d is in use (UDP, or TCP for ICE-TCP): stop what holds it, or give the media another port", port)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("serve on a busy media port = %v, want %q", err, want)
	}
	st, err := storage.Open(filepath.Join(cfg.Node.DataDir, storeDir), storage.Options{})
	if err != nil {
		t.Fatalf("reopen the store: %v", err)
	}
	st.Close()

	cfg.Calls.Enabled = false // the busy port is not wanted now
	ctx, cancel := context.WithCancel(context.Background())
	b, errc := startServe(t, ctx, cfg, io.Discard)
	if got := strings.Join(b["media"], " "); !strings.HasPrefix(got, "off") {
		t.Errorf("banner media %q with calls off", got)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestServeSIGTERM runs the real binary and stops it with SIGTERM.
func TestServeSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gonets")
	// Build with this test binary's -race setting, so that the packages
	// come from the build cache the test itself filled.
	args := []string{"build", "-o", bin}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	if out, err := exec.Command("go", append(args, "github.com/gonets/gonets")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The media port too is a free one: 7444 may be another node's.
	conf := writeFile(t, dir, "gonets.toml", "[node]\npublic_addr = \"127.0.0.1:0\"\n[calls]\nudp_port = 0\n")
	cmd := exec.Command(bin, "serve", "--config", conf, "--data", filepath.Join(dir, "data"), "--quic", "127.0.0.1:0", "--http", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	b, err := readBanner(bufio.NewReader(stdout))
	if err != nil {
		t.Fatalf("reading the banner: %v\n%s", err, stderr.String())
	}
	if code, _ := get(t, "http://"+b["http"][0]+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d", code)
	}
	http.DefaultClient.CloseIdleConnections()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after SIGTERM\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "signal terminated") || !strings.Contains(stderr.String(), "msg=stopped") {
		t.Fatalf("log:\n%s", stderr.String())
	}
}

// TestServeClients connects real clients over QUIC, pinning the printed
// fingerprint: a token from the node's own key and one from a key in
// auth.public_keys are accepted, a stranger's is not, and a shutdown with
// sessions connected still ends cleanly.
func TestServeClients(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	keys := t.TempDir()
	_, idp, _ := ed25519.GenerateKey(rand.Reader)
	cfg.Auth.PublicKeys = []string{writePublicKey(t, keys, "idp.pub", idp.Public().(ed25519.PublicKey))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, errc := startServe(t, ctx, cfg, io.Discard)
	nodeKey, err := token.LoadOrCreateKey(cfg.Node.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(key ed25519.PrivateKey, user uint64) (*client.Client, error) {
		t.Helper()
		tok, err := token.NewSigner(key).Sign(token.Claims{User: user, Device: 1, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		return client.Dial(dctx, b["quic"][0], tok, client.Options{Fingerprint: b["tls"][0], NoReconnect: true, SendOnly: true, Logger: slog.New(slog.DiscardHandler)})
	}
	a, err := dial(nodeKey, 1)
	if err != nil {
		t.Fatalf("token from the node's key: %v", err)
	}
	defer a.Close()
	c, err := dial(idp, 2)
	if err != nil {
		t.Fatalf("token from a configured key: %v", err)
	}
	defer c.Close()
	if a.User() != 1 || c.User() != 2 {
		t.Fatalf("users %d, %d", a.User(), c.User())
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := dial(stranger, 3); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("token from an unknown key: %v", err)
	}
	if code, body := get(t, "http://"+b["http"][0]+"/metrics"); code != http.StatusOK || !strings.Contains(body, "gonets_broker_sessions 2") {
		t.Fatalf("/metrics = %d, want 2 sessions:\n%s", code, body)
	}
	http.DefaultClient.CloseIdleConnections()

	start := time.Now()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if d := time.Since(start); d > time.Duration(cfg.Node.ShutdownTimeout) {
		t.Fatalf("shutdown with sessions took %v", d)
	}
}

func TestWatchSignals(t *testing.T) {
	defer goleak.VerifyNone(t)
	sigs := make(chan os.Signal, 2)
	ctx, cancel := context.WithCancelCause(context.Background())
	exited := make(chan int, 1)
	done := make(chan struct{})
	var stderr lockedBuffer
	var wg sync.WaitGroup
	wg.Go(func() { watchSignals(sigs, done, cancel, func(code int) { exited <- code }, &stderr) })

	sigs <- syscall.SIGTERM
	<-ctx.Done()
	if cause := context.Cause(ctx); cause == nil || cause.Error() != "signal terminated" {
		t.Fatalf("cause %v", cause)
	}
	select {
	case code := <-exited:
		t.Fatalf("exit(%d) after one signal", code)
	default:
	}
	sigs <- syscall.SIGINT
	if code := <-exited; code != 1 {
		t.Fatalf("exit(%d) after the second signal, want 1", code)
	}
	if !strings.Contains(stderr.String(), "second signal (interrupt): exiting now") {
		t.Fatalf("stderr %q", stderr.String())
	}
	close(done)
	wg.Wait()

	// A node that stops by itself ends the watcher.
	done = make(chan struct{})
	wg.Go(func() { watchSignals(sigs, done, cancel, func(int) { t.Error("exit without a signal") }, &stderr) })
	close(done)
	wg.Wait()
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		n := &node{cfg: defaultConfig()}
		n.cfg.Node.Pprof = on
		rec := httptest.NewRecorder()
		n.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		if got := rec.Code == http.StatusOK; got != on {
			t.Errorf("pprof %v: /debug/pprof/ answered %d", on, rec.Code)
		}
	}
}
