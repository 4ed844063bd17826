package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/nodecert"
)

// blackhole is a UDP socket that reads and never answers, as a network
// that drops UDP looks to a QUIC client; it counts the datagrams.
type blackhole struct {
	pc   net.PacketConn
	seen atomic.Int64
	done chan struct{}
}

// listenBlackhole binds addr's UDP port, or fails the test.
func listenBlackhole(t *testing.T, addr string) *blackhole {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{pc: pc, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			b.seen.Add(1)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-b.done
	})
	return b
}

// A client on a network where nothing answers over UDP is connected over
// TCP within 500 ms: it dials TCP 250 ms after QUIC, not after QUIC's
// timeout.
func TestFallbackToTCP(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{NoQUIC: true})
	hole := listenBlackhole(t, n.Addr) // the node's port, over UDP
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	start := time.Now()
	c, err := client.Dial(ctx, n.Addr, n.Token(t, 1, 1), client.Options{Fingerprint: n.Fingerprint, Logger: quiet, DialTimeout: 5 * time.Second})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Transport() != client.TransportTCP || took > 500*time.Millisecond || took < 250*time.Millisecond || hole.seen.Load() == 0 {
		t.Fatalf("connected over %v after %v (%d datagrams to UDP); want TCP within [250, 500] ms after trying QUIC",
			c.Transport(), took, hole.seen.Load())
	}
	if ev := waitFor(t, c, client.EventConnected); ev.Transport != client.TransportTCP {
		t.Fatalf("EventConnected over %v", ev.Transport)
	}
	if s := c.SyncState(); s.Transport != client.TransportTCP {
		t.Fatalf("SyncState().Transport = %v, want tcp", s.Transport)
	}
}

// With both transports working, auto mode connects over QUIC.
func TestAutoPrefersQUIC(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	// QUIC has all the time it needs to win: TCP starts only if it fails.
	c := dial(t, n, "", 1, 1, client.WithFallbackDelay(client.Options{}, waitLimit))
	if ev := waitFor(t, c, client.EventConnected); c.Transport() != client.TransportQUIC || ev.Transport != client.TransportQUIC {
		t.Fatalf("connected over %v (event: %v), want quic", c.Transport(), ev.Transport)
	}
	if s := c.SyncState(); s.Transport != client.TransportQUIC {
		t.Fatalf("SyncState().Transport = %v, want quic", s.Transport)
	}
}

// Auto mode tries first the transport that worked last: within a Client
// across reconnections, and across restarts through SyncState.
func TestAutoRemembers(t *testing.T) {
	t.Run("reconnect", func(t *testing.T) {
		n := brokertest.Start(t, brokertest.Options{NoQUIC: true})
		hole := listenBlackhole(t, n.Addr)
		// QUIC, tried first, gets a second to itself before TCP starts.
		c := dial(t, n, "", 1, 1, client.WithFallbackDelay(client.Options{DialTimeout: 5 * time.Second}, time.Second))
		waitFor(t, c, client.EventConnected)
		before := hole.seen.Load()
		if c.Transport() != client.TransportTCP || before == 0 {
			t.Fatalf("connected over %v after %d datagrams to UDP; want tcp after trying quic", c.Transport(), before)
		}
		n.Restart(t)
		waitFor(t, c, client.EventDisconnected)
		ev := waitFor(t, c, client.EventConnected)
		// TCP went first and won within its second: QUIC was never
		// tried.
		if ev.Transport != client.TransportTCP || hole.seen.Load() != before {
			t.Fatalf("reconnected over %v after %d datagrams to UDP; want tcp, none", ev.Transport, hole.seen.Load()-before)
		}
	})
	t.Run("state", func(t *testing.T) {
		n := brokertest.Start(t, brokertest.Options{})
		for _, last := range []client.Transport{client.TransportTCP, client.TransportQUIC} {
			// Both work, and the first tried has all the time it needs.
			o := client.WithFallbackDelay(client.Options{State: client.SyncState{Transport: last}, SendOnly: true}, waitLimit)
			c := dial(t, n, "", 1, 1, o)
			if c.Transport() != last {
				t.Fatalf("saved state says %v: connected over %v", last, c.Transport())
			}
			c.Close()
		}
	})
}

// Over either transport, a client whose app has stopped reading still
// gets its responses at once, while the node's pushes back up.
func TestResponsesPassPushes(t *testing.T) {
	eachTransport(t, func(t *testing.T, via client.Transport) {
		n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{SendRate: 10000}})
		alice := dial(t, n, "", 1, 1, client.Options{Via: via, EventBuffer: -1, PushBuffer: 4 << 10})
		bob := dial(t, n, "", 2, 1, client.Options{Via: via, SendOnly: true})
		chat := directChat(t, alice, bob)
		for i := range 200 {
			if _, err := bob.Send(ctxT(t), chat, fmt.Appendf(nil, "m%d %0100d", i+1, 0)); err != nil {
				t.Fatal(err)
			}
		}
		// Alice reads no event; her requests are answered.
		for range 20 {
			if _, err := alice.Latest(ctxT(t), chat, 1); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := alice.Ping(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		// And once she reads, every message comes, in order, once.
		ms := messages(t, alice, 200)
		for i, m := range ms {
			if m.Seq != uint64(i+1) {
				t.Fatalf("message %d has seq %d", i, m.Seq)
			}
		}
	})
}

// listenSilentQUIC accepts QUIC connections (ALPN gonets/1) on addr's UDP
// port and their request streams, and answers nothing on them: a network
// that lets a QUIC handshake through and then drops the flow looks so.
func listenSilentQUIC(t *testing.T, addr string) {
	t.Helper()
	cert, _, err := nodecert.LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr(addr, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{broker.ALPN}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				st, err := c.AcceptStream(context.Background())
				if err == nil {
					io.Copy(io.Discard, st) // the Hello, never answered
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
}

// A QUIC connection that is established but never answers Hello leaves
// the rest of the dial to TCP: it does not take the whole DialTimeout,
// which left TCP none, on every reconnection.
func TestFallbackWhenHelloUnanswered(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{NoQUIC: true})
	listenSilentQUIC(t, n.Addr) // the node's port, over UDP
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := client.Dial(ctx, n.Addr, n.Token(t, 1, 1), client.Options{Insecure: true, Logger: quiet, DialTimeout: 4 * time.Second})
	if err != nil {
		t.Fatalf("dial with QUIC silent after its handshake: %v", err)
	}
	defer c.Close()
	if c.Transport() != client.TransportTCP {
		t.Fatalf("connected over %v, want tcp", c.Transport())
	}
}

// Options.DialTCP opens the connections TLS runs over: the client uses
// what it returns (here a connection that counts its bytes), and a hook
// that fails fails the dial with its error.
func TestDialTCPHook(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	var dials, written atomic.Int64
	o := client.Options{Via: client.TransportTCP, DialTCP: func(ctx context.Context, addr string) (net.Conn, error) {
		if addr != n.TCPAddr {
			return nil, fmt.Errorf("dialled %s, want %s", addr, n.TCPAddr)
		}
		dials.Add(1)
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, written: &written}, nil
	}}
	alice := dial(t, n, "", 1, 1, o)
	bob := dial(t, n, "", 2, 1, client.Options{})
	chat := directChat(t, alice, bob)
	before := written.Load()
	if _, err := alice.Send(ctxT(t), chat, []byte("through the hook")); err != nil {
		t.Fatal(err)
	}
	if got := messages(t, bob, 1); string(got[0].Body) != "through the hook" {
		t.Fatalf("bob got %q", got[0].Body)
	}
	if dials.Load() != 1 || written.Load() <= before {
		t.Fatalf("hook dials %d, bytes written through it %d then %d", dials.Load(), before, written.Load())
	}

	refused := errors.New("no route through the proxy")
	o.DialTCP = func(context.Context, string) (net.Conn, error) { return nil, refused }
	o.NoReconnect = true
	o.TCPAddr = n.TCPAddr
	o.Fingerprint = n.Fingerprint
	o.Logger = quiet
	if _, err := client.Dial(ctxT(t), n.Addr, n.Token(t, 3, 1), o); !errors.Is(err, refused) {
		t.Fatalf("dial through a failing hook: %v, want %v", err, refused)
	}
	// A hook that returns neither fails the dial rather than the client.
	o.DialTCP = func(context.Context, string) (net.Conn, error) { return nil, nil }
	if _, err := client.Dial(ctxT(t), n.Addr, n.Token(t, 3, 1), o); err == nil || !strings.Contains(err.Error(), "neither a connection nor an error") {
		t.Fatalf("dial through a hook returning nil, nil: %v", err)
	}
}

// countingConn counts the bytes written through it.
type countingConn struct {
	net.Conn
	written *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}
