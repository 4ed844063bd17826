package broker_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
)

// idleChildEnv makes the test binary a node serving the idle-session
// measurement (TestIdleNodeChild).
const idleChildEnv = "GONETS_IDLE_NODE_DIR"

// TestIdleNodeChild is the node side of the idle measurement, run as a
// child process so that its heap holds the server alone. It prints its
// address, then answers "stats" on stdin with heap, goroutines and
// sessions.
func TestIdleNodeChild(t *testing.T) {
	dir := os.Getenv(idleChildEnv)
	if dir == "" {
		t.Skip("the node side of TestIdleSessionCost")
	}
	if os.Getenv("GONETS_IDLE_PROFILE") != "" {
		runtime.MemProfileRate = 1 // exact attribution, for the profile
	}
	if path := os.Getenv("GONETS_IDLE_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	n := brokertest.Start(t, brokertest.Options{Dir: dir})
	fmt.Printf("tcpaddr %s\n", n.TCPAddr)
	fmt.Printf("addr %s\n", n.Addr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if path, ok := strings.CutPrefix(in.Text(), "cpustart "); ok {
			if f, err := os.Create(path); err == nil {
				pprof.StartCPUProfile(f)
				defer f.Close()
			}
			fmt.Println("started")
			continue
		}
		if in.Text() == "cpustop" {
			pprof.StopCPUProfile()
			fmt.Println("stopped")
			continue
		}
		if path, ok := strings.CutPrefix(in.Text(), "profile "); ok {
			runtime.GC()
			f, err := os.Create(path)
			if err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
			fmt.Println("profiled")
			continue
		}
		if in.Text() != "stats" {
			return
		}
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		buf := make([]byte, 64<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		ours := 0
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "gonets/gonets/broker.") {
				ours++
			}
		}
		fmt.Printf("stats %d %d %d %d\n", ms.HeapInuse, runtime.NumGoroutine(), ours, n.Broker().Sessions())
	}
}

// idleStats is one reading of the child node.
type idleStats struct{ heap, goroutines, ours, sessions int }

// idleNode is the parent's handle on the child node.
type idleNode struct {
	cmd     *exec.Cmd
	in      *bufio.Writer
	out     *bufio.Scanner
	addr    string
	tcpAddr string
	key     ed25519.PrivateKey
	tls     *tls.Config
}

func startIdleNode(tb testing.TB) *idleNode { return startIdleNodeIn(tb, tb.TempDir()) }

// startIdleNodeIn starts the child node on the data directory dir, which
// may hold a store already (in brokertest.StoreDir).
func startIdleNodeIn(tb testing.TB, dir string) *idleNode {
	tb.Helper()
	key, err := token.LoadOrCreateKey(dir)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _, err := nodecert.LoadOrCreate(dir, nil)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleNodeChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), idleChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	n := &idleNode{cmd: cmd, in: bufio.NewWriter(stdin), out: bufio.NewScanner(stdout), key: key,
		tls: &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{broker.ALPN}, MinVersion: tls.VersionTLS13}}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	for n.out.Scan() {
		if a, ok := strings.CutPrefix(n.out.Text(), "tcpaddr "); ok {
			n.tcpAddr = a
			continue
		}
		if a, ok := strings.CutPrefix(n.out.Text(), "addr "); ok {
			n.addr = a
			return n
		}
	}
	tb.Fatal("the node child printed no address")
	return nil
}

// command sends the child a line and waits for its one-line answer.
func (n *idleNode) command(tb testing.TB, line string) {
	tb.Helper()
	fmt.Fprintln(n.in, line)
	n.in.Flush()
	if !n.out.Scan() {
		tb.Fatal("the node child stopped answering")
	}
}

func (n *idleNode) stats(tb testing.TB) idleStats {
	tb.Helper()
	fmt.Fprintln(n.in, "stats")
	n.in.Flush()
	for n.out.Scan() {
		var s idleStats
		if c, _ := fmt.Sscanf(n.out.Text(), "stats %d %d %d %d", &s.heap, &s.goroutines, &s.ours, &s.sessions); c == 4 {
			return s
		}
	}
	tb.Fatal("the node child stopped answering")
	return idleStats{}
}

// connectIdle opens count authenticated sessions over one UDP socket and
// returns them, to be closed by the caller.
func (n *idleNode) connectIdle(tb testing.TB, tr *quic.Transport, count int) []*quic.Conn {
	return n.connectIdleFrom(tb, tr, 1, count)
}

// connectIdleFrom is connectIdle for users first, first+1, ...
func (n *idleNode) connectIdleFrom(tb testing.TB, tr *quic.Transport, first, count int) []*quic.Conn {
	tb.Helper()
	addr, err := net.ResolveUDPAddr("udp", n.addr)
	if err != nil {
		tb.Fatal(err)
	}
	signer := token.NewSigner(n.key)
	conns := make([]*quic.Conn, 0, count)
	for i := range count {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// As the SDK keeps sessions alive: every 25 s, spread by up to a
		// fifth so that sessions dialled together do not ping together.
		keepAlive := 25*time.Second - time.Duration(rand.Int64N(int64(5*time.Second)))
		c, err := tr.Dial(ctx, addr, n.tls, &quic.Config{MaxIdleTimeout: time.Minute, KeepAlivePeriod: keepAlive})
		if err != nil {
			cancel()
			tb.Fatal(err)
		}
		st, err := c.OpenStreamSync(ctx)
		cancel()
		if err != nil {
			tb.Fatal(err)
		}
		tok, _ := signer.Sign(token.Claims{User: uint64(first + i), Device: 1, Expires: time.Now().Add(time.Hour)})
		b, _ := wire.AppendFrame(nil, &wire.Frame{Id: 1, Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: tok}}}, 0)
		st.Write(b)
		var f wire.Frame
		if err := wire.NewReader(st, 0).Read(&f); err != nil || f.GetWelcome() == nil {
			tb.Fatalf("session %d: hello: %v %v", i, err, &f)
		}
		conns = append(conns, c)
	}
	return conns
}

// measureIdle connects count sessions and returns the node's heap bytes and
// goroutines per session.
func measureIdle(tb testing.TB, count int) (heapPer float64, goroutinesPer, oursPer float64) {
	n := startIdleNode(tb)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	before := n.stats(tb)
	conns := n.connectIdle(tb, tr, count)
	after := n.stats(tb)
	if path := os.Getenv("GONETS_IDLE_PROFILE"); path != "" {
		fmt.Fprintln(n.in, "profile "+path)
		n.in.Flush()
		n.out.Scan()
	}
	for _, c := range conns {
		c.CloseWithError(0, "")
	}
	if after.sessions-before.sessions != count {
		tb.Fatalf("node holds %d sessions, want %d", after.sessions-before.sessions, count)
	}
	per := func(a, b int) float64 { return float64(a-b) / float64(count) }
	return per(after.heap, before.heap), per(after.goroutines, before.goroutines), per(after.ours, before.ours)
}

// TestIdleSessionCost checks what an idle authenticated session costs the
// node: one goroutine of ours (its reader), and a bounded heap.
func TestIdleSessionCost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node process")
	}
	heap, gs, ours := measureIdle(t, 300)
	t.Logf("per idle session: %.0f heap bytes, %.2f goroutines (%.2f ours)", heap, gs, ours)
	if ours > 1.01 {
		t.Errorf("%.2f goroutines of ours per idle session, want at most 1", ours)
	}
	if heap > 128<<10 { // quic-go and TLS hold most of it: see BENCHMARKS.md
		t.Errorf("%.0f heap bytes per idle session", heap)
	}
}

// BenchmarkIdleSession reports the node's heap per idle authenticated
// session with 5,000 of them (-benchtime is ignored).
func BenchmarkIdleSession(b *testing.B) {
	heap, gs, ours := measureIdle(b, 5000)
	b.ReportMetric(heap, "heap-B/session")
	b.ReportMetric(gs, "goroutines/session")
	b.ReportMetric(ours, "our-goroutines/session")
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%.0f B", heap)
	b.Log(buf.String())
}

// BenchmarkIdleCPU reports the node's CPU over a quiet window (30 s: more
// than a keep-alive period) while it holds idle authenticated sessions
// (GONETS_IDLE_SESSIONS, default 10,000), in percent of one core per
// 1,000 sessions. -benchtime is ignored.
func BenchmarkIdleCPU(b *testing.B) {
	count := envInt(b, "GONETS_IDLE_SESSIONS", 10_000)
	n := startIdleNode(b)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	udp.SetReadBuffer(8 << 20)
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	conns := n.connectIdle(b, tr, count)
	time.Sleep(5 * time.Second) // the handshakes' aftermath settles
	const window = 30 * time.Second
	prof := os.Getenv("GONETS_IDLE_WINDOW_PROFILE") // a CPU profile of the window
	if prof != "" {
		n.command(b, "cpustart "+prof)
	}
	cpu0 := procCPU(b, n.cmd.Process.Pid)
	time.Sleep(window)
	used := procCPU(b, n.cmd.Process.Pid) - cpu0
	if prof != "" {
		n.command(b, "cpustop")
	}
	for _, c := range conns {
		c.CloseWithError(0, "")
	}
	pct := 100 * used.Seconds() / window.Seconds()
	b.ReportMetric(pct, "%core")
	b.ReportMetric(pct*1000/float64(count), "%core/1k-sessions")
	b.Logf("%d idle sessions: node %.2f%% of a core (%.3f%% per 1,000)", count, pct, pct*1000/float64(count))
}

// procCPU returns a process's user plus system CPU time.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name, which may hold spaces: state is 3rd.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// connectIdleTCP opens count authenticated sessions over TLS on TCP, as
// users first, first+1, ..., and returns them, to be closed by the caller.
func (n *idleNode) connectIdleTCP(tb testing.TB, first, count int) []*tls.Conn {
	tb.Helper()
	signer := token.NewSigner(n.key)
	conns := make([]*tls.Conn, 0, count)
	for i := range count {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", n.tcpAddr, n.tls)
		if err != nil {
			tb.Fatal(err)
		}
		tok, _ := signer.Sign(token.Claims{User: uint64(first + i), Device: 1, Expires: time.Now().Add(time.Hour)})
		b, _ := wire.AppendFrame(nil, &wire.Frame{Id: 1, Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: tok}}}, 0)
		c.Write(b)
		var f wire.Frame
		if err := wire.NewReader(c, 0).Read(&f); err != nil || f.GetWelcome() == nil {
			tb.Fatalf("session %d: hello: %v %v", i, err, &f)
		}
		conns = append(conns, c)
	}
	return conns
}

// BenchmarkIdleSessionTCP reports the node's heap per idle authenticated
// session over TLS on TCP, with 5,000 of them, and the node's CPU over a
// quiet 30 s window (TCP keep-alives are the kernel's). -benchtime is
// ignored.
func BenchmarkIdleSessionTCP(b *testing.B) {
	count := envInt(b, "GONETS_IDLE_SESSIONS", 5000)
	n := startIdleNode(b)
	before := n.stats(b)
	conns := n.connectIdleTCP(b, 1, count)
	after := n.stats(b)
	if after.sessions-before.sessions != count {
		b.Fatalf("node holds %d sessions, want %d", after.sessions-before.sessions, count)
	}
	const window = 30 * time.Second
	cpu0 := procCPU(b, n.cmd.Process.Pid)
	time.Sleep(window)
	used := procCPU(b, n.cmd.Process.Pid) - cpu0
	for _, c := range conns {
		c.Close()
	}
	heap := float64(after.heap-before.heap) / float64(count)
	pct := 100 * used.Seconds() / window.Seconds()
	b.ReportMetric(heap, "heap-B/session")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(count), "goroutines/session")
	b.ReportMetric(pct*1000/float64(count), "%core/1k-sessions")
	b.Logf("%d idle TCP sessions: %.0f heap bytes each, node %.2f%% of a core", count, heap, pct)
}
