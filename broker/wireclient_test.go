package broker_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/wire"
)

// wireClient speaks the protocol frame by frame, so that the broker's
// tests do not depend on the SDK and can send what the SDK never would.
type wireClient struct {
	t      testing.TB
	conn   *quic.Conn
	st     *quic.Stream
	r      *wire.Reader
	nextID uint64
	pushes chan *wire.Frame // pushes, read from the push stream when reading
	// controls gets the control frames (Resync, GoingAway) that come on
	// the response stream with id 0.
	controls chan *wire.Frame
	resps    chan *wire.Frame // responses, once readResponses runs
	rmu      sync.Mutex       // serialises request/response pairs
}

// dialRaw connects without a hello.
func dialRaw(t testing.TB, n *brokertest.Node) *wireClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, n.Addr, n.ClientTLS(), &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &wireClient{t: t, conn: conn, st: st, r: wire.NewReader(st, 0), pushes: make(chan *wire.Frame, 4096), controls: make(chan *wire.Frame, 16)}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return c
}

// dial connects and authenticates with tok, reading pushes into c.pushes
// unless lazy is set.
func dial(t testing.TB, n *brokertest.Node, tok string) *wireClient {
	t.Helper()
	c := dialRaw(t, n)
	resp := c.do(&wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: tok, Client: "test"}}})
	if resp.GetWelcome() == nil {
		t.Fatalf("hello: got %v", resp)
	}
	c.readPushes()
	c.readResponses()
	return c
}

// readResponses reads the response stream in the background, so that
// control frames arrive while no request waits.
func (c *wireClient) readResponses() {
	c.resps = make(chan *wire.Frame, 16)
	go func() {
		defer close(c.resps)
		for {
			f, err := c.readStream()
			if err != nil {
				return
			}
			c.resps <- f
		}
	}()
}

// readPushes reads the push stream in the background.
func (c *wireClient) readPushes() {
	go func() {
		st, err := c.conn.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		r := wire.NewReader(st, 0)
		for {
			f := new(wire.Frame)
			if err := r.Read(f); err != nil {
				return
			}
			select {
			case c.pushes <- f:
			default:
				c.t.Errorf("test client: push buffer full")
				return
			}
		}
	}()
}

// send writes one frame with a fresh id and returns the id.
func (c *wireClient) send(f *wire.Frame) uint64 {
	c.nextID++
	f.Id = c.nextID
	b, err := wire.AppendFrame(nil, f, 64<<20)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.st.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	return f.Id
}

// do sends a request and returns its response.
func (c *wireClient) do(f *wire.Frame) *wire.Frame {
	c.t.Helper()
	c.rmu.Lock()
	defer c.rmu.Unlock()
	id := c.send(f)
	resp, err := c.read()
	if err != nil {
		c.t.Fatalf("read response to %T: %v", f.Body, err)
	}
	if resp.Id != id {
		c.t.Fatalf("response id %d, want %d", resp.Id, id)
	}
	return resp
}

// read reads the next response frame.
func (c *wireClient) read() (*wire.Frame, error) {
	if c.resps == nil {
		return c.readStream()
	}
	select {
	case f, ok := <-c.resps:
		if !ok {
			return nil, io.EOF
		}
		return f, nil
	case <-time.After(10 * time.Second):
		return nil, errors.New("no response within 10s")
	}
}

// readStream reads the response stream up to its next response, handing
// control frames to c.controls on the way.
func (c *wireClient) readStream() (*wire.Frame, error) {
	for {
		f := new(wire.Frame)
		if err := c.r.Read(f); err != nil {
			return f, err
		}
		if f.Id == 0 && (f.GetResync() != nil || f.GetGoingAway() != nil) {
			select {
			case c.controls <- f:
			default:
				c.t.Errorf("test client: control buffer full")
			}
			continue
		}
		return f, nil
	}
}

// control waits for the next control frame.
func (c *wireClient) control() *wire.Frame {
	c.t.Helper()
	select {
	case f := <-c.controls:
		return f
	case <-time.After(5 * time.Second):
		c.t.Fatal("no control frame within 5s")
		return nil
	}
}

// push waits for the next push.
func (c *wireClient) push() *wire.Frame {
	c.t.Helper()
	select {
	case f := <-c.pushes:
		return f
	case <-time.After(5 * time.Second):
		c.t.Fatal("no push within 5s")
		return nil
	}
}

// noPush checks that no push is waiting after a short while.
func (c *wireClient) noPush() {
	c.t.Helper()
	select {
	case f := <-c.pushes:
		c.t.Fatalf("unexpected push %v", f)
	case <-time.After(100 * time.Millisecond):
	}
}

// closed reports whether the server closed the connection, waiting up to
// 5 s for it.
func (c *wireClient) closed() bool {
	select {
	case <-c.conn.Context().Done():
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// errCode returns the code of an Error response, or fails.
func errCode(t testing.TB, f *wire.Frame) wire.ErrorCode {
	t.Helper()
	e := f.GetError()
	if e == nil {
		t.Fatalf("want an error, got %v", f)
	}
	return e.Code
}

// mustAck sends text to chat and returns the ack.
func (c *wireClient) mustAck(chat, cmid uint64, text string) *wire.Ack {
	c.t.Helper()
	resp := c.do(&wire.Frame{Body: &wire.Frame_Send{Send: &wire.Send{Chat: chat, ClientMsgId: cmid, Body: []byte(text)}}})
	a := resp.GetAck()
	if a == nil {
		c.t.Fatalf("send to chat %d: %v", chat, resp)
	}
	return a
}

// createChat creates a chat and returns its id.
func (c *wireClient) createChat(kind wire.ChatKind, members ...uint64) uint64 {
	c.t.Helper()
	resp := c.do(&wire.Frame{Body: &wire.Frame_CreateChat{CreateChat: &wire.CreateChat{Kind: kind, Members: members, Title: "t"}}})
	info := resp.GetChat()
	if info == nil {
		c.t.Fatalf("create chat: %v", resp)
	}
	return info.Chat
}

// isClosedErr reports whether err is the end of a closed connection.
func isClosedErr(err error) bool {
	var ae *quic.ApplicationError
	var se *quic.StreamError
	return errors.Is(err, io.EOF) || errors.As(err, &ae) || errors.As(err, &se)
}
