package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/identity/token"
)

// target is the node under load: one the bench started, or a running one.
type target struct {
	addr    string // QUIC, host:port
	tcpAddr string // TLS over TCP
	// via is the transport the generator's sessions use: QUIC or TCP,
	// never both (client.TransportAuto means QUIC here).
	via    client.Transport
	tls    *tls.Config
	signer *token.Signer
	name   string // result.Result.Target

	// What a worker process needs to reach the node (connectNode):
	keyFile     string // the token key, absolute
	fingerprint string // the certificate's, or "" with insecure
	insecure    bool

	// publicURL is the node's public HTTPS listener (WHIP, WHEP),
	// "https://host:port", or "" without one.
	publicURL string

	// Set for a node the bench started:
	cmd     *exec.Cmd
	dir     string
	httpURL string
	exited  chan error
	stderr  *tailBuffer

	stopOnce sync.Once
	stopErr  error
}

// nodeConfig is the config of a node the bench starts: limits meant for
// users are lifted so that the load, not a limit, is what is measured.
const nodeConfig = `# written by gonets bench
[node]
log_level = "warn"
# No public HTTPS listener unless the scenario needs one (stream), which
# then gets a free port of 127.0.0.1 (--public): nodes started side by
# side clashed on the default port.
public_addr = "off"

[broker]
send_rate = 1000000.0
send_burst = 1000000

[storage]
max_chats_per_user = 100000

[identity]
# The login scenario's logins all come from 127.0.0.1 and its numbers
# share ranges of 10,000 (+7 900 000-00-00 on): the limits per address,
# per range and per number are raised so that the node's work, not a
# limit, is what is measured.
limit_number = "1000000/1s"
limit_address = "1000000/1s"
limit_prefix = "1000000/1s"

[calls]
# A free port of the SFU's choosing, so that nodes started side by side,
# or beside a running one, do not clash on the media port.
udp_port = 0
`

// startNode starts `gonets serve` from binary in a fresh data directory,
// on free ports of 127.0.0.1, pinned to cpus when set, and waits until it
// is ready. With public, its public HTTPS listener (WHIP, WHEP) listens
// on a free port of 127.0.0.1 too; without, it is off.
func startNode(ctx context.Context, binary, cpus string, public bool) (*target, error) {
	return startNodeIn(ctx, "", binary, cpus, public)
}

// startNodeIn is startNode with the data directory made under parent
// (default: the system's temporary directory), so that a scenario can
// put the node's data on the disk it measures (upload's --data).
func startNodeIn(ctx context.Context, parent, binary, cpus string, public bool) (*target, error) {
	dir, err := os.MkdirTemp(parent, "gonets-bench-")
	if err != nil {
		return nil, err
	}
	t := &target{via: client.TransportQUIC, dir: dir, name: "gonets", exited: make(chan error, 1), stderr: &tailBuffer{max: 8 << 10}}
	fail := func(err error) (*target, error) {
		t.stop()
		return nil, err
	}
	key, err := token.LoadOrCreateKey(dir)
	if err != nil {
		return fail(err)
	}
	cert, _, err := nodecert.LoadOrCreate(dir, nil)
	if err != nil {
		return fail(err)
	}
	t.keyFile, t.fingerprint = filepath.Join(dir, token.KeyFile), nodecert.Fingerprint(cert.Certificate[0])
	if t.tls, err = nodecert.PinnedConfig(t.fingerprint, nil); err != nil {
		return fail(err)
	}
	t.signer = token.NewSigner(key)
	// The node also listens for TLS over TCP on its QUIC port's number.
	quicPort, err := freePort("udp+tcp")
	if err != nil {
		return fail(err)
	}
	httpPort, err := freePort("tcp")
	for err == nil && httpPort == quicPort {
		httpPort, err = freePort("tcp")
	}
	if err != nil {
		return fail(err)
	}
	var publicPort int
	if public {
		publicPort, err = freePort("tcp")
		for err == nil && (publicPort == quicPort || publicPort == httpPort) {
			publicPort, err = freePort("tcp")
		}
		if err != nil {
			return fail(err)
		}
	}
	conf := filepath.Join(dir, "bench.toml")
	if err := os.WriteFile(conf, []byte(nodeConfig), 0o600); err != nil {
		return fail(err)
	}
	t.addr = "127.0.0.1:" + strconv.Itoa(quicPort)
	t.tcpAddr = t.addr
	t.httpURL = "http://127.0.0.1:" + strconv.Itoa(httpPort)
	args := []string{"serve", "--config", conf, "--data", dir,
		"--quic", t.addr, "--http", "127.0.0.1:" + strconv.Itoa(httpPort), "--pprof"}
	if public {
		args = append(args, "--public", "127.0.0.1:"+strconv.Itoa(publicPort))
		t.publicURL = "https://127.0.0.1:" + strconv.Itoa(publicPort)
	}
	t.cmd = exec.Command(binary, args...)
	t.cmd.Stdout = io.Discard
	t.cmd.Stderr = t.stderr
	if err := t.cmd.Start(); err != nil {
		return fail(fmt.Errorf("bench: start node: %w", err))
	}
	go func() { t.exited <- t.cmd.Wait() }()
	pid := strconv.Itoa(t.cmd.Process.Pid)
	if cpus != "" {
		if err := pin(pid, cpus); err != nil {
			return fail(err)
		}
	}
	if err := t.waitReady(ctx, 30*time.Second); err != nil {
		return fail(err)
	}
	if cpus != "" {
		if err := pin(pid, cpus); err != nil { // threads started meanwhile
			return fail(err)
		}
	}
	return t, nil
}

// connectNode targets a running node at addr, minting tokens with the
// node's key from keyFile (its data directory's node-token.key).
func connectNode(addr, keyFile, fingerprint string, insecure bool) (*target, error) {
	if keyFile == "" {
		return nil, errors.New("bench: --server needs --key FILE, the node's token key (node-token.key in its data directory)")
	}
	key, err := token.LoadKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("bench: --key: %w", err)
	}
	abs, err := filepath.Abs(keyFile)
	if err != nil {
		return nil, fmt.Errorf("bench: --key: %w", err)
	}
	t := &target{addr: addr, tcpAddr: addr, via: client.TransportQUIC, signer: token.NewSigner(key), name: "gonets@" + addr, keyFile: abs, fingerprint: fingerprint, insecure: insecure}
	switch {
	case fingerprint != "":
		if t.tls, err = nodecert.PinnedConfig(fingerprint, nil); err != nil {
			return nil, err
		}
	case insecure:
		t.tls = &tls.Config{InsecureSkipVerify: true}
	default:
		return nil, errors.New("bench: --server needs --fingerprint HEX (printed by gonets serve) or --insecure")
	}
	return t, nil
}

// pid returns the node process's id for /proc, or "" for a remote node.
func (t *target) pid() string {
	if t.cmd == nil || t.cmd.Process == nil {
		return ""
	}
	return strconv.Itoa(t.cmd.Process.Pid)
}

// token mints a session token for user on device.
func (t *target) token(user, device uint64) string {
	tok, err := t.signer.Sign(token.Claims{User: user, Device: device, Expires: time.Now().Add(24 * time.Hour)})
	if err != nil {
		panic(err) // signing with a valid key cannot fail
	}
	return tok
}

// profile fetches a CPU profile of the node over d into path.
func (t *target) profile(ctx context.Context, d time.Duration, path string) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.httpURL+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: node profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// waitReady polls /readyz until it answers 200.
func (t *target) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.httpURL+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-t.exited:
			t.exited <- err
			return fmt.Errorf("bench: the node exited before it was ready (%v): %s", err, t.stderr)
		case <-ctx.Done():
			return fmt.Errorf("bench: the node was not ready in %v: %s", limit, t.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop stops a node the bench started (SIGTERM, then SIGKILL after 15 s)
// and removes its data. Later calls return the first one's error.
func (t *target) stop() error {
	t.stopOnce.Do(func() { t.stopErr = t.stopNode() })
	return t.stopErr
}

func (t *target) stopNode() error {
	var err error
	if t.cmd != nil && t.cmd.Process != nil {
		t.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-t.exited:
		case <-time.After(15 * time.Second):
			t.cmd.Process.Kill()
			err = <-t.exited
		}
		if err != nil {
			err = fmt.Errorf("bench: node exit: %w: %s", err, t.stderr)
		}
	}
	if t.dir != "" {
		os.RemoveAll(t.dir)
	}
	return err
}

// freePort returns a port of 127.0.0.1 that was free a moment ago, for
// network "udp", "tcp", or "udp+tcp" (free for both).
func freePort(network string) (int, error) {
	if network == "udp+tcp" {
		for range 100 {
			port, err := freePort("udp")
			if err != nil {
				return 0, err
			}
			if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				l.Close()
				return port, nil
			}
		}
		return 0, errors.New("bench: no port of 127.0.0.1 free for both UDP and TCP")
	}
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int

	mu sync.Mutex // guards the following
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
