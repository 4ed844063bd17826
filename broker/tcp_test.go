package broker_test

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage"
	"github.com/gonets/gonets/storage/storagetest"
)

// tcpClient speaks the protocol over TLS on TCP frame by frame, sorting
// what the node writes as a client must: responses by id, control frames
// (Error, Resync, GoingAway with id 0) apart, heartbeats (Ping, id 0)
// counted, the rest as pushes.
type tcpClient struct {
	t        testing.TB
	c        *tls.Conn
	nextID   uint64
	resps    chan *wire.Frame
	controls chan *wire.Frame
	pushes   chan *wire.Frame
	done     chan struct{} // closed when the node's side ends
	paused   atomic.Bool   // the reader stops reading
	beats    atomic.Int32  // heartbeats read (Ping, id 0)
}

// pause stops reading after the frame being read: the node's writes back
// up, as to a client that stopped reading.
func (c *tcpClient) pause() { c.paused.Store(true) }

func dialTCP(t testing.TB, n *brokertest.Node) *tcpClient {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.TCPAddr, n.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tc := &tcpClient{t: t, c: c, resps: make(chan *wire.Frame, 64), controls: make(chan *wire.Frame, 16),
		pushes: make(chan *wire.Frame, 4096), done: make(chan struct{})}
	go tc.read()
	return tc
}

// dialTCPAs connects and authenticates.
func dialTCPAs(t testing.TB, n *brokertest.Node, user uint64) *tcpClient {
	t.Helper()
	c := dialTCP(t, n)
	if r := c.do(&wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: n.Token(t, user, 1)}}}); r.GetWelcome() == nil {
		t.Fatalf("hello over TCP: %v", r)
	}
	return c
}

func (c *tcpClient) read() {
	defer close(c.done)
	r := wire.NewReader(c.c, 0)
	for {
		for c.paused.Load() {
			time.Sleep(10 * time.Millisecond)
			select {
			case <-c.t.Context().Done():
				return
			default:
			}
		}
		f := new(wire.Frame)
		if err := r.Read(f); err != nil {
			return
		}
		switch {
		case f.Id > 0:
			c.resps <- f
		case f.GetError() != nil || f.GetResync() != nil || f.GetGoingAway() != nil:
			c.controls <- f
		case f.GetPing() != nil:
			c.beats.Add(1)
		default:
			select {
			case c.pushes <- f:
			default:
				c.t.Errorf("tcp client: push buffer full")
				return
			}
		}
	}
}

func (c *tcpClient) send(f *wire.Frame) uint64 {
	c.nextID++
	f.Id = c.nextID
	b, err := wire.AppendFrame(nil, f, 64<<20)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	return f.Id
}

func (c *tcpClient) do(f *wire.Frame) *wire.Frame {
	c.t.Helper()
	id := c.send(f)
	select {
	case r := <-c.resps:
		if r.Id != id {
			c.t.Fatalf("response id %d, want %d", r.Id, id)
		}
		return r
	case f := <-c.controls:
		c.t.Fatalf("control frame %v instead of the response", f)
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no response to %T within 10 s", f.Body)
	}
	return nil
}

func (c *tcpClient) push() *wire.Frame {
	c.t.Helper()
	select {
	case f := <-c.pushes:
		return f
	case <-time.After(5 * time.Second):
		c.t.Fatal("no push within 5 s")
		return nil
	}
}

// closed reports whether the node ended the connection within 5 s.
func (c *tcpClient) closed() bool {
	select {
	case <-c.done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// A session over TLS on TCP works as over QUIC, beside QUIC sessions:
// requests, responses, pushes in order, control frames.
func TestTCPSession(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	alice := dialTCPAs(t, n, 1)
	bob := dialTCPAs(t, n, 2)
	carol := dial(t, n, n.Token(t, 3, 1)) // over QUIC
	chat := alice.do(&wire.Frame{Body: &wire.Frame_CreateChat{CreateChat: &wire.CreateChat{Kind: group, Members: []uint64{2, 3}}}}).GetChat().GetChat()
	for i := range 20 {
		r := alice.do(&wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: uint64(i + 1), Body: []byte("over tcp")}}})
		if r.GetAck().GetSeq() != uint64(i+1) {
			t.Fatalf("ack %v", r)
		}
	}
	a := carol.mustAck(chat, 1, "over quic")
	for want := uint64(1); want <= a.Seq; want++ {
		if m := bob.push().GetDeliver().GetMessage(); m.GetSeq() != want {
			t.Fatalf("bob got seq %d, want %d", m.GetSeq(), want)
		}
	}
	if m := alice.push().GetDeliver().GetMessage(); m.GetSeq() != a.Seq || m.GetSender() != 3 {
		t.Fatalf("alice got %v", m)
	}
	// A bad request answers that request only.
	if r := bob.do(&wire.Frame{Body: &wire.Frame_History{History: &wire.HistoryRequest{Chat: 999}}}); r.GetError() == nil {
		t.Fatalf("history of an unknown chat: %v", r)
	}
	go n.Stop()
	select {
	case f := <-bob.controls:
		if f.GetGoingAway() == nil {
			t.Fatalf("want GoingAway, got %v", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no GoingAway over TCP")
	}
}

// A TCP connection that never finishes TLS, or never says Hello, is
// closed at the hello deadline; a bad Hello is answered and closed.
func TestTCPPreAuth(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{HelloTimeout: 300 * time.Millisecond}})
	raw, err := net.Dial("tcp", n.TCPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil || isTimeoutErr(err) {
		t.Fatalf("a connection that never started TLS: read %v, want it closed", err)
	}
	silent := dialTCP(t, n)
	if !silent.closed() {
		t.Fatal("a connection without Hello is still open")
	}
	bad := dialTCP(t, n)
	bad.send(&wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: "forged"}}})
	select {
	case f := <-bad.controls:
		if f.GetError().GetCode() != wire.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
			t.Fatalf("bad hello: %v", f)
		}
	case r := <-bad.resps:
		if r.GetError().GetCode() != wire.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
			t.Fatalf("bad hello: %v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer to a bad hello")
	}
	if !bad.closed() {
		t.Fatal("a rejected connection is still open")
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// A TCP session that stops reading is closed after the write timeout,
// counted, while the others go on.
func TestTCPStuckSessionClosed(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{
		Broker:  broker.Options{SendRate: 1e6, WriteTimeout: 300 * time.Millisecond},
		Storage: storage.Options{MaxBodyBytes: 32 << 10},
	})
	alice := dial(t, n, n.Token(t, 1, 1))
	fast := dialTCPAs(t, n, 2)
	stuck := dialTCP(t, n)
	stuck.do(&wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: n.Token(t, 3, 1)}}})
	stuck.c.NetConn().(*net.TCPConn).SetReadBuffer(4 << 10)
	chat := alice.createChat(group, 2, 3)
	body := string(bytes.Repeat([]byte("x"), 32<<10))
	for i := range 200 { // 6.4 MiB: past every socket buffer and the outbox
		alice.mustAck(chat, uint64(i+1), body)
		if m := fast.push().GetDeliver().GetMessage(); m.GetSeq() != uint64(i+1) {
			t.Fatalf("fast reader got %v", m)
		}
		if i == 0 {
			stuck.pause()
		}
	}
	storagetest.WaitFor(t, "the stuck TCP session closed as push_timeout", func() bool {
		return metricValue(t, n.Broker(), `gonets_broker_session_closes_total{reason="push_timeout"}`) == 1
	})
}

// A TCP connection the node closes for a reason of its own tells the
// client why in a final Error frame, as a QUIC close carries its code: a
// connection without Hello in time, a session displaced by the user's
// newest.
func TestTCPCloseSaysWhy(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{HelloTimeout: 300 * time.Millisecond, MaxSessionsPerUser: 1}})
	wantError := func(c *tcpClient, code wire.ErrorCode) {
		t.Helper()
		select {
		case f := <-c.controls:
			if f.GetError().GetCode() != code {
				t.Fatalf("got %v, want Error %v", f, code)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no Error %v before the close", code)
		}
		if !c.closed() {
			t.Fatal("the connection is still open")
		}
	}
	silent := dialTCP(t, n)
	wantError(silent, wire.ErrorCode_ERROR_CODE_BAD_FRAME)
	old := dialTCPAs(t, n, 1)
	dialTCPAs(t, n, 1)
	wantError(old, wire.ErrorCode_ERROR_CODE_UNAVAILABLE)
}

// A crashed node's TCP connections end as the kernel ends a killed
// process's: the client reads no GoingAway and no Error, only the end.
func TestTCPCrash(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	c := dialTCPAs(t, n, 1)
	n.Crash(t)
	if !c.closed() {
		t.Fatal("the connection outlived the crash")
	}
	select {
	case f := <-c.controls:
		t.Fatalf("a crashed node wrote %v", f)
	default:
	}
}
