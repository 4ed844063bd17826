package broker_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
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
