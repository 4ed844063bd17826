package broker_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/storage/storagetest"
)

// pipeConn carries a session over in-memory pipes, as a TCP or
// WebTransport carrier would over its own streams.
type pipeConn struct {
	reqR  *io.PipeReader
	respW net.Conn
	pushW net.Conn
	once  sync.Once
}

func (c *pipeConn) Read(p []byte) (int, error)         { return c.reqR.Read(p) }
func (c *pipeConn) Write(p []byte) (int, error)        { return c.respW.Write(p) }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return c.respW.SetWriteDeadline(t) }
func (c *pipeConn) OpenPush() (broker.Stream, error)   { return c.pushW, nil }
func (c *pipeConn) Close(wire.ErrorCode, string) error {
	c.once.Do(func() {
		c.reqR.Close()
		c.respW.Close()
		c.pushW.Close()
	})
	return nil
}

// TestSessionOverAnyTransport serves sessions over plain pipes: the
// broker needs streams, not QUIC.
func TestSessionOverAnyTransport(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	type end struct {
		req   *io.PipeWriter
		resp  *wire.Reader
		push  *wire.Reader
		conn  *pipeConn
		nextI uint64
	}
	open := func(user uint64) *end {
		reqR, reqW := io.Pipe()
		respR, respW := net.Pipe()
		pushR, pushW := net.Pipe()
		c := &pipeConn{reqR: reqR, respW: respW, pushW: pushW}
		go n.Broker().Serve(context.Background(), c)
		t.Cleanup(func() { c.Close(0, "") })
		return &end{req: reqW, resp: wire.NewReader(respR, 0), push: wire.NewReader(pushR, 0), conn: c}
	}
	do := func(e *end, f *wire.Frame) *wire.Frame {
		t.Helper()
		e.nextI++
		f.Id = e.nextI
		b, _ := wire.AppendFrame(nil, f, 0)
		if _, err := e.req.Write(b); err != nil {
			t.Fatal(err)
		}
		var r wire.Frame
		if err := e.resp.Read(&r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	alice, bob := open(1), open(2)
	for i, e := range []*end{alice, bob} {
		if do(e, &wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: n.Token(t, uint64(i+1), 1)}}}).GetWelcome() == nil {
			t.Fatal("no welcome")
		}
	}
	chat := do(alice, &wire.Frame{Body: &wire.Frame_CreateChat{CreateChat: &wire.CreateChat{Kind: direct, Members: []uint64{2}}}}).GetChat().GetChat()
	ack := do(alice, &wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: 1, Body: []byte("over pipes")}}}).GetAck()
	var f wire.Frame
	if err := bob.push.Read(&f); err != nil {
		t.Fatal(err)
	}
	if m := f.GetDeliver().GetMessage(); m.GetSeq() != ack.GetSeq() || string(m.GetBody()) != "over pipes" {
		t.Fatalf("bob got %v", &f)
	}
}

// streamConn carries a session on one stream each way, as TLS over TCP
// does: responses and pushes go out interleaved on the one stream. The
// first response write (the Welcome) waits for release, and pushed is
// signalled when a push is written.
type streamConn struct {
	reqR     *io.PipeReader
	welcome  chan struct{} // closed when the first response write starts
	release  chan struct{} // the first response write goes on once closed
	pushed   chan struct{} // capacity 1
	first    sync.Once
	mu       sync.Mutex // guards out
	out      bytes.Buffer
	closeOne sync.Once
}

func (c *streamConn) Read(p []byte) (int, error)       { return c.reqR.Read(p) }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }
func (c *streamConn) OpenPush() (broker.Stream, error) { return (*streamPush)(c), nil }

func (c *streamConn) Write(p []byte) (int, error) {
	c.first.Do(func() {
		close(c.welcome)
		<-c.release
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *streamConn) Close(wire.ErrorCode, string) error {
	c.closeOne.Do(func() { c.reqR.Close() })
	return nil
}

// frames decodes what was written so far.
func (c *streamConn) frames(t *testing.T) []*wire.Frame {
	c.mu.Lock()
	r := wire.NewReader(bytes.NewReader(bytes.Clone(c.out.Bytes())), 0)
	c.mu.Unlock()
	var fs []*wire.Frame
	for {
		f := new(wire.Frame)
		if err := r.Read(f); err != nil {
			return fs
		}
		fs = append(fs, f)
	}
}

type streamPush streamConn

func (p *streamPush) SetWriteDeadline(time.Time) error { return nil }
func (p *streamPush) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case p.pushed <- struct{}{}:
	default:
	}
	return p.out.Write(b)
}

// On a transport that carries responses and pushes on one stream (TLS
// over TCP), the Welcome is the first frame a client reads, even when a
// push for the new session is due while the Welcome is being written: the
// client's handshake reads one frame, and anything else is a protocol
// error to it.
func TestWelcomeBeforePushes(t *testing.T) {
	n := brokertest.Start(t, brokertest.Options{})
	alice := dial(t, n, n.Token(t, 1, 1))
	chat := alice.createChat(direct, 2)
	reqR, reqW := io.Pipe()
	c := &streamConn{reqR: reqR, welcome: make(chan struct{}), release: make(chan struct{}), pushed: make(chan struct{}, 1)}
	go n.Broker().Serve(context.Background(), c)
	t.Cleanup(func() { c.Close(0, "") })
	hello, _ := wire.AppendFrame(nil, &wire.Frame{Id: 1, Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: n.Token(t, 2, 1)}}}, 0)
	go reqW.Write(hello)
	select {
	case <-c.welcome: // bob's session is registered; its Welcome waits
	case <-time.After(10 * time.Second):
		t.Fatal("no Welcome written")
	}
	alice.mustAck(chat, 1, "while bob's Welcome is written")
	select {
	case <-c.pushed:
	case <-time.After(300 * time.Millisecond):
	}
	close(c.release)
	storagetest.WaitFor(t, "the Welcome and the push", func() bool { return len(c.frames(t)) >= 2 })
	fs := c.frames(t)
	if fs[0].GetWelcome() == nil {
		t.Fatalf("first frame on the stream: %v, want Welcome", fs[0])
	}
	if m := fs[1].GetDeliver().GetMessage(); m.GetSeq() != 1 {
		t.Fatalf("second frame: %v, want the Deliver of seq 1", fs[1])
	}
}
