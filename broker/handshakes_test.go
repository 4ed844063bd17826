package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"

	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
	"github.com/gonets/gonets/storage/storagetest"
)

// handshakeNode is a node whose TLS handshakes can be held inside their
// slot: its certificate is picked (after the slot is taken, before the
// signature) only once release is called.
type handshakeNode struct {
	b                *Broker
	quicAddr, tcpAdd string
	client           *tls.Config

	cur, peak atomic.Int64 // handshakes held in the ClientHello callback, inside their slot
	hold      chan struct{}
	once      sync.Once
}

func startHandshakeNode(t *testing.T, opts Options) *handshakeNode {
	t.Helper()
	return startHandshakeNodeCurves(t, opts, nil)
}

// startHandshakeNodeCurves starts a handshakeNode whose listeners accept
// only the key-exchange groups curves (nil: Go's default).
func startHandshakeNodeCurves(t *testing.T, opts Options, curves []tls.CurveID) *handshakeNode {
	t.Helper()
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts.Metrics = metrics.NewSet()
	b, err := New(st, &token.Verifier{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, clientTLS := tcpTLS(t)
	n := &handshakeNode{b: b, client: clientTLS, hold: make(chan struct{})}
	cert := serverTLS.Certificates[0]
	// The node's ClientHello callback runs inside the slot, before the
	// key exchange (quic.go, tcp.go): a handshake held there holds its
	// slot.
	serverTLS = &tls.Config{CurvePreferences: curves, Certificates: []tls.Certificate{cert}, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := n.cur.Add(1)
		for p := n.peak.Load(); c > p && !n.peak.CompareAndSwap(p, c); p = n.peak.Load() {
		}
		<-n.hold
		n.cur.Add(-1)
		return nil, nil
	}}
	ql, err := ListenQUIC("127.0.0.1:0", serverTLS, ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tl, err := ListenTCP("127.0.0.1:0", serverTLS)
	if err != nil {
		ql.Close()
		t.Fatal(err)
	}
	n.quicAddr, n.tcpAdd = ql.Addr().String(), tl.Addr().String()
	served := make(chan error, 2)
	go func() { served <- b.ServeQUIC(ql) }()
	go func() { served <- b.ServeTCP(tl) }()
	// A ClientHello that comes before ServeQUIC has given the listener
	// its gate is not bounded.
	storagetest.WaitFor(t, "the QUIC listener served", func() bool { return ql.gate.Load() != nil })
	t.Cleanup(func() {
		n.release()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Shutdown(ctx)
		for range 2 {
			if err := <-served; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return n
}

// release lets every held handshake, and every later one, go on.
func (n *handshakeNode) release() { n.once.Do(func() { close(n.hold) }) }

// dial runs one handshake over transport to its end.
func (n *handshakeNode) dial(ctx context.Context, transport string) error {
	if transport == "quic" {
		c, err := quic.DialAddr(ctx, n.quicAddr, n.client, &quic.Config{HandshakeIdleTimeout: time.Minute})
		if err != nil {
			return err
		}
		return c.CloseWithError(0, "")
	}
	d := &tls.Dialer{Config: n.client}
	c, err := d.DialContext(ctx, "tcp", n.tcpAdd)
	if err != nil {
		return err
	}
	return c.Close()
}

func (n *handshakeNode) counts() (running, waiting int) { return n.b.admit.handshakes.counts() }

var transports = []string{"quic", "tcp"}

// checkLeaks checks, once the test and its cleanups (the node's shutdown)
// are done, that no goroutine it started is left.
func checkLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// No more than MaxHandshakes handshakes are computed at once, over QUIC
// or TCP; the others wait, and each goes on as a slot frees.
func TestHandshakesBounded(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			checkLeaks(t)
			n := startHandshakeNode(t, Options{MaxHandshakes: 2, HandshakeWait: time.Minute, HandshakeHold: time.Minute})
			const dials = 6
			errs := make(chan error, dials)
			for range dials {
				go func() { errs <- n.dial(context.Background(), transport) }()
			}
			storagetest.WaitFor(t, "2 handshakes in progress and 4 waiting", func() bool {
				r, w := n.counts()
				return r == 2 && w == 4 && n.cur.Load() == 2
			})
			n.release()
			for range dials {
				if err := <-errs; err != nil {
					t.Errorf("dial: %v", err)
				}
			}
			if p := n.peak.Load(); p != 2 {
				t.Errorf("%d handshakes at once, want 2", p)
			}
			storagetest.WaitFor(t, "every slot free", func() bool { r, w := n.counts(); return r == 0 && w == 0 })
			g := n.b.admit.handshakes
			if r := g.refusedWait.Get() + g.refusedFull.Get(); r != 0 {
				t.Errorf("%d handshakes refused", r)
			}
		})
	}
}

// A handshake that waits past HandshakeWait is refused, promptly and
// counted, and the client is told so; the one holding the slot goes on.
func TestHandshakeWaitRefused(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			checkLeaks(t)
			n := startHandshakeNode(t, Options{MaxHandshakes: 1, HandshakeWait: 200 * time.Millisecond, HandshakeHold: time.Minute})
			first := make(chan error, 1)
			go func() { first <- n.dial(context.Background(), transport) }()
			storagetest.WaitFor(t, "the first handshake in progress", func() bool { return n.cur.Load() == 1 })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := n.dial(ctx, transport)
			if err == nil || ctx.Err() != nil {
				t.Fatalf("second dial: %v, want a refusal before the dial's own timeout", err)
			}
			t.Logf("refused: %v", err)
			if transport == "quic" {
				var te *quic.TransportError
				if !errors.As(err, &te) || te.ErrorCode != quic.TransportErrorCode(0x100+80) {
					t.Errorf("refused with %v, want CRYPTO_ERROR 0x150 (internal_error)", err)
				}
			}
			g := n.b.admit.handshakes
			if r := g.refusedWait.Get(); r != 1 {
				t.Errorf("refused{reason=wait} = %d, want 1", r)
			}
			if _, w := n.counts(); w != 0 {
				t.Errorf("%d waiting after the refusal", w)
			}
			n.release()
			if err := <-first; err != nil {
				t.Errorf("first dial: %v", err)
			}
		})
	}
}

// A TCP client that gives up while its handshake waits frees its place at
// once, uncounted as a refusal; the next handshake takes the slot.
// (Over QUIC a waiting connection's goroutine is blocked in the TLS
// callback and reads nothing: it waits out HandshakeWait.)
func TestHandshakeWaiterLeaves(t *testing.T) {
	checkLeaks(t)
	n := startHandshakeNode(t, Options{MaxHandshakes: 1, HandshakeWait: time.Minute, HandshakeHold: time.Minute})
	first := make(chan error, 1)
	go func() { first <- n.dial(context.Background(), "tcp") }()
	storagetest.WaitFor(t, "the first handshake in progress", func() bool { return n.cur.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- n.dial(ctx, "tcp") }()
	storagetest.WaitFor(t, "the second handshake waiting", func() bool { _, w := n.counts(); return w == 1 })
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled dial: %v", err)
	}
	storagetest.WaitFor(t, "the cancelled handshake's place freed", func() bool { _, w := n.counts(); return w == 0 })
	third := make(chan error, 1)
	go func() { third <- n.dial(context.Background(), "tcp") }()
	storagetest.WaitFor(t, "the third handshake waiting", func() bool { _, w := n.counts(); return w == 1 })
	n.release()
	for _, ch := range []chan error{first, third} {
		if err := <-ch; err != nil {
			t.Errorf("dial: %v", err)
		}
	}
	g := n.b.admit.handshakes
	if r := g.refusedWait.Get() + g.refusedFull.Get(); r != 0 {
		t.Errorf("%d handshakes refused", r)
	}
}

// A TCP client that connects and sends nothing holds no slot: the slot is
// taken once the ClientHello is in.
func TestHandshakeSilentClientHoldsNoSlot(t *testing.T) {
	n := startHandshakeNode(t, Options{MaxHandshakes: 1, HandshakeWait: time.Minute})
	n.release()
	silent, err := net.Dial("tcp", n.tcpAdd)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.dial(ctx, "tcp"); err != nil {
		t.Fatalf("dial beside a silent connection: %v", err)
	}
	if err := n.dial(ctx, "quic"); err != nil {
		t.Fatalf("dial beside a silent connection: %v", err)
	}
}

// The gate alone, in virtual time: first come first served, a refusal
// past the wait, the oldest waiter refused when too many wait, and a
// waiter that leaves (its context done, or the node stopping) frees its
// place, or passes on a slot handed to it as it left.
func TestHandshakeGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newHandshakeGate(1, 2, time.Second, time.Minute, metrics.NewSet())
		ctx := context.Background()
		h, err := g.acquire(ctx, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var order []int
		var mu sync.Mutex
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Go(func() {
				var h *hsHold
				h, errs[i] = g.acquire(ctx, nil, nil)
				if errs[i] == nil {
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
					g.release(h)
				}
			})
			synctest.Wait() // queued in this order
		}
		// The third waiter pushed the first out.
		if !errors.Is(errs[0], errHandshakeFull) || g.refusedFull.Get() != 1 {
			t.Fatalf("first waiter: %v (queue_full %d), want refused", errs[0], g.refusedFull.Get())
		}
		time.Sleep(999 * time.Millisecond)
		g.release(h)
		wg.Wait()
		if len(order) != 2 || order[0] != 1 || order[1] != 2 {
			t.Errorf("served %v, want [1 2]", order)
		}
		if r, w := g.counts(); r != 0 || w != 0 {
			t.Errorf("%d running, %d waiting after all left", r, w)
		}

		// Past the wait: refused and counted.
		h, _ = g.acquire(ctx, nil, nil)
		if _, err := g.acquire(ctx, nil, nil); !errors.Is(err, errHandshakeWait) || g.refusedWait.Get() != 1 {
			t.Errorf("waiter past the wait: %v (wait %d)", err, g.refusedWait.Get())
		}
		// A waiter that leaves frees its place, uncounted.
		cctx, cancel := context.WithCancel(ctx)
		quit := make(chan struct{})
		left := make(chan error, 2)
		go func() { _, err := g.acquire(cctx, nil, nil); left <- err }()
		go func() { _, err := g.acquire(ctx, quit, nil); left <- err }()
		synctest.Wait()
		cancel()
		close(quit)
		for range 2 {
			if err := <-left; !errors.Is(err, context.Canceled) && !errors.Is(err, ErrShutdown) {
				t.Errorf("waiter that left: %v", err)
			}
		}
		if _, w := g.counts(); w != 0 || g.refusedWait.Get() != 1 {
			t.Errorf("%d waiting, wait %d after two left", w, g.refusedWait.Get())
		}
		g.release(h)
		if r, _ := g.counts(); r != 0 {
			t.Errorf("%d running after the last release", r)
		}
	})
}

// A TCP handshake waiting for a slot whose connection the node closes
// (the admission bounds evicting it, say) leaves the queue at once,
// rather than wait out HandshakeWait and then compute a handshake for a
// closed socket.
func TestHandshakeWaiterClosed(t *testing.T) {
	g := newHandshakeGate(1, 8, time.Minute, time.Minute, metrics.NewSet())
	if _, err := g.acquire(context.Background(), nil, nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	h := &handshakeConn{Conn: server, slot: hsSlot{g: g}}
	waited := make(chan error, 1)
	go func() { waited <- h.slot.acquire(context.Background(), nil, h.watch) }()
	storagetest.WaitFor(t, "the handshake waiting", func() bool { _, w := g.counts(); return w == 1 })
	server.Close() // as admission's evict does
	select {
	case err := <-waited:
		if !errors.Is(err, errClientGone) {
			t.Fatalf("waiter on a closed connection: %v, want errClientGone", err)
		}
	case <-time.After(storagetest.WaitLimit):
		t.Fatal("the waiter on a closed connection still waits")
	}
	if r, w := g.counts(); r != 1 || w != 0 {
		t.Errorf("%d running, %d waiting; want the one slot held, none waiting", r, w)
	}
}

// A QUIC client made to get a HelloRetryRequest (it sends no key share
// for the one group the node accepts) and then silent holds its slot
// while the node waits for its second ClientHello, which never comes.
// Such handshakes hold no slot past HandshakeHold while others wait: an
// honest handshake beside them, over either transport, is served within
// its HandshakeWait rather than refused, and the slots taken back are
// counted.
func TestHandshakeSilentAfterRetry(t *testing.T) {
	checkLeaks(t)
	n := startHandshakeNodeCurves(t, Options{MaxHandshakes: 1}, []tls.CurveID{tls.CurveP256})
	n.release()
	const silent = 2
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range silent {
		r := newMuteRelay(t, n.quicAddr)
		tc := n.client.Clone()
		tc.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256} // a share for X25519 only
		wg.Go(func() {
			c, err := quic.DialAddr(ctx, r.addr(), tc, &quic.Config{HandshakeIdleTimeout: time.Minute})
			if err == nil {
				c.CloseWithError(0, "")
				t.Error("a handshake through a mute relay completed")
			}
		})
		if i == 0 {
			storagetest.WaitFor(t, "a HelloRetryRequest to the first silent client", r.answered.Load)
		}
		storagetest.WaitFor(t, "the silent handshakes holding the slot or waiting", func() bool {
			r, w := n.counts()
			return r == 1 && w == i
		})
	}
	for _, transport := range transports {
		start := time.Now()
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := n.dial(dctx, transport)
		dcancel()
		if err != nil {
			t.Errorf("%s dial beside %d silent handshakes: %v after %v", transport, silent, err, time.Since(start))
		} else if d := time.Since(start); d > time.Second {
			t.Errorf("%s dial beside %d silent handshakes took %v, want within HandshakeWait", transport, silent, d)
		}
	}
	g := n.b.admit.handshakes
	if r := g.refusedWait.Get() + g.refusedFull.Get(); r != 0 {
		t.Errorf("%d handshakes refused", r)
	}
	if r := g.reclaimed.Get(); r < silent {
		t.Errorf("%d slots reclaimed, want at least %d", r, silent)
	}
}

// muteRelay is a UDP relay in front of a QUIC listener that forwards a
// client's packets until the node first answers, then drops everything:
// to the node, a client that stops mid-handshake.
type muteRelay struct {
	client, node *net.UDPConn
	answered     atomic.Bool
}

func newMuteRelay(t *testing.T, nodeAddr string) *muteRelay {
	t.Helper()
	client, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	na, err := net.ResolveUDPAddr("udp", nodeAddr)
	if err != nil {
		t.Fatal(err)
	}
	node, err := net.DialUDP("udp", nil, na)
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	r := &muteRelay{client: client, node: node}
	var wg sync.WaitGroup
	wg.Go(func() {
		b := make([]byte, 2048)
		for {
			n, _, err := client.ReadFromUDP(b)
			if err != nil {
				return
			}
			if !r.answered.Load() {
				node.Write(b[:n])
			}
		}
	})
	wg.Go(func() {
		b := make([]byte, 2048)
		for {
			if _, err := node.Read(b); err != nil {
				return
			}
			r.answered.Store(true)
		}
	})
	t.Cleanup(func() {
		client.Close()
		node.Close()
		wg.Wait()
	})
	return r
}

func (r *muteRelay) addr() string { return r.client.LocalAddr().String() }

// The gate, in virtual time: a slot held past hold is taken back only
// when a handshake waits, and at once handed to it; the holder's late
// release gives nothing back twice.
func TestHandshakeGateReclaims(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newHandshakeGate(2, 8, time.Second, 250*time.Millisecond, metrics.NewSet())
		ctx := context.Background()
		start := time.Now()
		h1, _ := g.acquire(ctx, nil, nil)
		time.Sleep(100 * time.Millisecond)
		h2, _ := g.acquire(ctx, nil, nil)
		h3, err := g.acquire(ctx, nil, nil) // waits for h1 to go stale
		if err != nil || time.Since(start) != 250*time.Millisecond {
			t.Fatalf("waiter: %v after %v, want a slot after 250ms", err, time.Since(start))
		}
		g.release(h1) // reclaimed: does nothing
		if r, w := g.counts(); r != 2 || w != 0 || g.reclaimed.Get() != 1 {
			t.Fatalf("%d running, %d waiting, %d reclaimed; want 2, 0, 1", r, w, g.reclaimed.Get())
		}
		// With none waiting, a slot held past hold stays held...
		time.Sleep(time.Second)
		if r, _ := g.counts(); r != 2 || g.reclaimed.Get() != 1 {
			t.Fatalf("%d running, %d reclaimed with none waiting; want 2, 1", r, g.reclaimed.Get())
		}
		// ...until a handshake comes, which takes it without waiting.
		before := time.Now()
		h4, err := g.acquire(ctx, nil, nil)
		if err != nil || time.Since(before) != 0 || g.reclaimed.Get() != 2 {
			t.Fatalf("acquire beside stale slots: %v after %v, %d reclaimed", err, time.Since(before), g.reclaimed.Get())
		}
		for _, h := range []*hsHold{h2, h3, h4} {
			g.release(h)
		}
		if r, w := g.counts(); r != 0 || w != 0 {
			t.Errorf("%d running, %d waiting after every release", r, w)
		}
	})
}

// Over QUIC a handshake gives its slot back once its key exchange is
// done (when crypto/tls asks for the certificate, or decrypts a ticket):
// a handshake held after that holds no slot, and a resumption through
// the node's per-connection configuration still resumes.
func TestQUICSlotReleasedAfterKeyExchange(t *testing.T) {
	checkLeaks(t)
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := New(st, &token.Verifier{}, Options{Metrics: metrics.NewSet(), MaxHandshakes: 1, HandshakeWait: 5 * time.Second, HandshakeHold: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, clientTLS := tcpTLS(t)
	cert := serverTLS.Certificates[0]
	inCert := make(chan struct{}, 8)
	hold := make(chan struct{})
	var first atomic.Bool
	serverTLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if first.CompareAndSwap(false, true) {
			inCert <- struct{}{}
			<-hold
		}
		return &cert, nil
	}}
	ql, err := ListenQUIC("127.0.0.1:0", serverTLS, ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- b.ServeQUIC(ql) }()
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(func() {
		release()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	storagetest.WaitFor(t, "the QUIC listener served", func() bool { return ql.gate.Load() != nil })
	addr := ql.Addr().String()
	clientTLS.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	dial := func(ctx context.Context) (*quic.Conn, error) {
		return quic.DialAddr(ctx, addr, clientTLS, &quic.Config{HandshakeIdleTimeout: 10 * time.Second})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	held := make(chan error, 1)
	go func() {
		c, err := dial(ctx)
		if err == nil {
			c.CloseWithError(0, "")
		}
		held <- err
	}()
	select {
	case <-inCert:
	case <-ctx.Done():
		t.Fatal("the first handshake never asked for its certificate")
	}
	// The first handshake is held past its key exchange: the one slot is
	// free for the next, which completes.
	c, err := dial(ctx)
	if err != nil {
		t.Fatalf("a dial beside a handshake held after its key exchange: %v", err)
	}
	// Read the session ticket the node sends after the handshake.
	storagetest.WaitFor(t, "a session ticket", func() bool {
		_, ok := clientTLS.ClientSessionCache.Get("localhost")
		return ok
	})
	c.CloseWithError(0, "")
	release()
	if err := <-held; err != nil {
		t.Fatalf("the held dial: %v", err)
	}
	c, err = dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	if !c.ConnectionState().TLS.DidResume {
		t.Fatal("a dial with a ticket did not resume")
	}
	storagetest.WaitFor(t, "every slot free", func() bool { r, w := b.admit.handshakes.counts(); return r == 0 && w == 0 })
}

// serveQUICWith serves a node over QUIC with serverTLS and returns its
// address, once ServeQUIC has given the listener its gate (so that each
// handshake runs on the per-connection configuration).
func serveQUICWith(t *testing.T, serverTLS *tls.Config) string {
	t.Helper()
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := New(st, &token.Verifier{}, Options{Metrics: metrics.NewSet()})
	if err != nil {
		t.Fatal(err)
	}
	ql, err := ListenQUIC("127.0.0.1:0", serverTLS, ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- b.ServeQUIC(ql) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	storagetest.WaitFor(t, "the QUIC listener served", func() bool { return ql.gate.Load() != nil })
	return ql.Addr().String()
}

// A configuration returned by the listener's own GetConfigForClient with
// session ticket keys of its own encrypts the node's tickets with them,
// as crypto/tls does: a client resumes with such a ticket.
func TestQUICResumesWithConfigForClientTicketKeys(t *testing.T) {
	checkLeaks(t)
	serverTLS, clientTLS := tcpTLS(t)
	own := serverTLS.Clone()
	own.NextProtos = []string{ALPN}
	own.SetSessionTicketKeys([][32]byte{{1, 2, 3}})
	serverTLS.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return own, nil }
	addr := serveQUICWith(t, serverTLS)
	clientTLS.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, addr, clientTLS, nil)
	if err != nil {
		t.Fatal(err)
	}
	storagetest.WaitFor(t, "a session ticket", func() bool {
		_, ok := clientTLS.ClientSessionCache.Get("localhost")
		return ok
	})
	c.CloseWithError(0, "")
	c, err = quic.DialAddr(ctx, addr, clientTLS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	if !c.ConnectionState().TLS.DidResume {
		t.Fatal("a dial with a ticket the node's own configuration issued did not resume")
	}
}

// Without GetCertificate the node's certificate is chosen as crypto/tls
// chooses it, NameToCertificate first.
func TestQUICCertificateChosenAsCryptoTLS(t *testing.T) {
	checkLeaks(t)
	serverTLS, clientTLS := tcpTLS(t)
	other, _ := tcpTLS(t)
	cert := other.Certificates[0]
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	clientTLS.RootCAs.AddCert(leaf)
	serverTLS.Certificates = append(serverTLS.Certificates, cert)
	//lint:ignore SA1019 the deprecated field crypto/tls still honours
	serverTLS.NameToCertificate = map[string]*tls.Certificate{"localhost": &cert}
	addr := serveQUICWith(t, serverTLS)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, addr, clientTLS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	if got := c.ConnectionState().TLS.PeerCertificates[0]; !got.Equal(leaf) {
		t.Fatal("the node presented its first certificate, not NameToCertificate's")
	}
}
