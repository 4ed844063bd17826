package broker_test

import (
	"slices"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage/storagetest"
)

// The node writes a heartbeat to a TCP session it has written nothing to
// for TCPHeartbeat, and none to one it writes to more often.
func TestTCPHeartbeat(t *testing.T) {
	t.Parallel()
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{TCPHeartbeat: 2 * time.Second}})
	// Nothing before Welcome: the client reads the answer to its Hello
	// first.
	alice := dialTCP(t, n)
	time.Sleep(3 * time.Second)
	if b := alice.beats.Load(); b != 0 {
		t.Fatalf("%d heartbeats before Hello", b)
	}
	alice.helloWith(n.Token(t, 1, 1), []string{wire.CapHeartbeat}, []string{wire.CapHeartbeat})

	// Written to every 200 ms (a Pong each time): no heartbeat.
	for range 15 {
		if r := alice.do(&wire.Frame{Body: &wire.Frame_Ping{Ping: &wire.Ping{Nonce: 1}}}); r.GetPong() == nil {
			t.Fatalf("ping: %v", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if b := alice.beats.Load(); b != 0 {
		t.Fatalf("%d heartbeats to a session written to every 200 ms, want none", b)
	}

	// Silent: a heartbeat after the period (counted in whole sweeps of a
	// second, so 1–2 s after the last write), and another a period later.
	quiet := time.Now()
	storagetest.WaitFor(t, "two heartbeats", func() bool { return alice.beats.Load() >= 2 })
	if d := time.Since(quiet); d < 2500*time.Millisecond {
		t.Fatalf("two heartbeats %v after the last write; the period is 2 s", d)
	}
	if v := metricValue(t, n.Broker(), "gonets_broker_tcp_heartbeats_total"); v < 2 {
		t.Fatalf("gonets_broker_tcp_heartbeats_total %v, want ≥ 2", v)
	}
	// The session still works.
	if r := alice.do(&wire.Frame{Body: &wire.Frame_Ping{Ping: &wire.Ping{Nonce: 2}}}); r.GetPong() == nil {
		t.Fatalf("ping after heartbeats: %v", r)
	}
}

// A client that does not list the capability gets none, nor does one of
// a node with heartbeats off; Welcome says so.
func TestTCPHeartbeatNotAgreed(t *testing.T) {
	t.Parallel()
	on := brokertest.Start(t, brokertest.Options{Broker: broker.Options{TCPHeartbeat: time.Second}})
	off := brokertest.Start(t, brokertest.Options{Broker: broker.Options{TCPHeartbeat: -1}})
	notAsked := dialTCP(t, on)
	notAsked.helloWith(on.Token(t, 1, 1), nil, nil)
	isOff := dialTCP(t, off)
	isOff.helloWith(off.Token(t, 1, 1), []string{wire.CapHeartbeat}, nil)
	time.Sleep(2500 * time.Millisecond)
	if b := notAsked.beats.Load(); b != 0 {
		t.Fatalf("%d heartbeats to a client that did not ask", b)
	}
	if b := isOff.beats.Load(); b != 0 {
		t.Fatalf("%d heartbeats with TCPHeartbeat off", b)
	}
}

// helloWith says Hello listing caps and checks Welcome's capabilities.
func (c *tcpClient) helloWith(token string, caps, want []string) {
	c.t.Helper()
	r := c.do(&wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: token, Capabilities: caps}}})
	if r.GetWelcome() == nil {
		c.t.Fatalf("hello: %v", r)
	}
	if got := r.GetWelcome().GetCapabilities(); !slices.Equal(got, want) {
		c.t.Fatalf("Welcome capabilities %q, want %q", got, want)
	}
}

func TestTCPHeartbeatBounds(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 999 * time.Millisecond, 6 * time.Minute} {
		if _, err := broker.New(nil, nil, broker.Options{TCPHeartbeat: d}); err == nil {
			t.Errorf("TCPHeartbeat %v accepted", d)
		}
	}
}
