package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
)

// The login scenario's clients: pre-authentication connections speaking
// wire frames, and the reader of the node's SMS outbox.

// preauthDialer dials the scenario's pre-authentication connections,
// over QUIC from counting UDP sockets, or over TLS on TCP from source
// addresses picked in turn, and counts their packets.
type preauthDialer struct {
	t       *target
	base    *tls.Config
	retries atomic.Int64 // dials tried again
	// Over QUIC:
	addr  *net.UDPAddr
	socks []*socket
	trs   []*quic.Transport
	next  atomic.Uint64
	// Over TCP:
	tcp *tcpCounter
}

func newPreauthDialer(t *target, concurrency int) (*preauthDialer, error) {
	d := &preauthDialer{t: t, base: t.tls.Clone()}
	d.base.NextProtos = []string{"gonets/1"}
	d.base.MinVersion = tls.VersionTLS13
	d.base.ServerName = "localhost"
	if t.via == client.TransportTCP {
		d.tcp = newTCPCounter()
		return d, nil
	}
	var err error
	if d.addr, err = net.ResolveUDPAddr("udp", t.addr); err != nil {
		return nil, err
	}
	// A socket for each 256 connections in flight.
	for range (concurrency + 255) / 256 {
		s, err := listenSocket()
		if err != nil {
			d.close()
			return nil, err
		}
		d.socks, d.trs = append(d.socks, s), append(d.trs, s.transport())
	}
	return d, nil
}

// via names the transport.
func (d *preauthDialer) via() string {
	if d.tcp != nil {
		return "TLS 1.3 on TCP"
	}
	return fmt.Sprintf("QUIC (%d UDP sockets)", len(d.socks))
}

// tlsConfig returns a user's own TLS config: its session cache holds
// its one ticket, as a phone's would.
func (d *preauthDialer) tlsConfig() *tls.Config {
	c := d.base.Clone()
	c.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	return c
}

// count returns the packets exchanged with the node so far.
func (d *preauthDialer) count(context.Context) (datagrams, error) {
	if d.tcp != nil {
		s, r := d.tcp.counts()
		return datagrams{Sent: s, Received: r}, nil
	}
	return countSockets(d.socks), nil
}

func (d *preauthDialer) close() {
	for _, tr := range d.trs {
		tr.Close()
	}
	for _, s := range d.socks {
		s.Close()
	}
}

// open dials the node with tc and sends first, the connection's first
// pre-authentication request, setting ot's handshake, its round trip
// (ot.reqs[0]) and whether TLS resumed. A connection the node refused
// (a failed handshake: its handshake bounds, under load; or, over QUIC,
// CONNECTION_REFUSED: quic-go's queue of connections not yet accepted
// was full, so the broker never saw it) is dialled again after a
// backoff, as a client would: its request was not served.
func (d *preauthDialer) open(ctx context.Context, tc *tls.Config, first *wire.Frame, ot *opTimes) (*preauthConn, *wire.Frame, error) {
	var err error
	for n := range dialAttempts {
		if n > 0 {
			d.retries.Add(1)
			select {
			case <-time.After(time.Duration(n) * 50 * time.Millisecond):
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		start := time.Now()
		var c *preauthConn
		if c, err = d.dial(ctx, tc); err != nil {
			continue
		}
		ot.handshake, ot.resumed = time.Since(start), c.resumed
		t0 := time.Now()
		var resp *wire.Frame
		if resp, err = c.do(first); err == nil {
			ot.reqs[0], ot.n = time.Since(t0), 1
			return c, resp, nil
		}
		c.close()
		if te := (*quic.TransportError)(nil); !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("dial: %w", err)
}

// dial opens a connection to the node with tc, ready for
// pre-authentication requests.
func (d *preauthDialer) dial(ctx context.Context, tc *tls.Config) (*preauthConn, error) {
	ctx, cancel := context.WithTimeout(ctx, preauthTimeout)
	defer cancel()
	if d.tcp != nil {
		nc, err := d.tcp.dial(ctx, d.t.tcpAddr)
		if err != nil {
			return nil, err
		}
		c := tls.Client(nc, tc)
		if err := c.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		return &preauthConn{tcp: c, rw: c, r: wire.NewReader(c, 0), resumed: c.ConnectionState().DidResume,
			deadline: c.SetDeadline}, nil
	}
	tr := d.trs[d.next.Add(1)%uint64(len(d.trs))]
	qc, err := tr.Dial(ctx, d.addr, tc, &quic.Config{MaxIdleTimeout: preauthTimeout})
	if err != nil {
		return nil, err
	}
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		qc.CloseWithError(0, "")
		return nil, err
	}
	return &preauthConn{quic: qc, rw: st, r: wire.NewReader(st, 0), resumed: qc.ConnectionState().TLS.DidResume,
		deadline: st.SetDeadline}, nil
}

// preauthConn is one connection that sends pre-authentication requests
// (at most 8: the node's cap) and closes without a Hello.
type preauthConn struct {
	quic     *quic.Conn // over QUIC
	tcp      *tls.Conn  // over TCP
	rw       io.ReadWriter
	r        *wire.Reader
	deadline func(time.Time) error
	buf      []byte
	id       uint64
	resumed  bool
}

// do sends f and returns its answer; an Error frame is returned as an
// error.
func (c *preauthConn) do(f *wire.Frame) (*wire.Frame, error) {
	c.id++
	f.Id = c.id
	var err error
	if c.buf, err = wire.AppendFrame(c.buf[:0], f, 0); err != nil {
		return nil, err
	}
	c.deadline(time.Now().Add(preauthTimeout))
	if _, err := c.rw.Write(c.buf); err != nil {
		return nil, err
	}
	resp := &wire.Frame{}
	if err := c.r.Read(resp); err != nil {
		return nil, err
	}
	if e := resp.GetError(); e != nil {
		return nil, fmt.Errorf("%v: %s", e.Code, e.Message)
	}
	if resp.Id != f.Id {
		return nil, fmt.Errorf("answer to request %d, want %d", resp.Id, f.Id)
	}
	return resp, nil
}

// close ends the connection as a client done with it does.
func (c *preauthConn) close() {
	c.r.Release()
	if c.tcp != nil {
		c.tcp.Close()
		return
	}
	c.quic.CloseWithError(0, "")
}

// outbox tails the node's SMS outbox (the file adapter's, one JSON line
// {"to","text","at"} a message), reading what was appended since it last
// looked: never the whole file again. It starts at the file's end, so a
// running node's earlier codes are skipped.
type outbox struct {
	path string

	mu      sync.Mutex // guards the following
	f       *os.File   // nil until the file exists
	partial []byte     // a line not yet complete
	chunk   []byte
	texts   map[string]string // the last message to each number not yet taken
}

func openOutbox(path string) (*outbox, error) {
	o := &outbox{path: path, chunk: make([]byte, 64<<10), texts: make(map[string]string)}
	if err := o.openLocked(); err != nil {
		return nil, err
	}
	if o.f != nil {
		if _, err := o.f.Seek(0, io.SeekEnd); err != nil {
			o.f.Close()
			return nil, fmt.Errorf("bench: sms outbox: %w", err)
		}
	}
	return o, nil
}

// openLocked opens the file once it exists.
func (o *outbox) openLocked() error {
	f, err := os.Open(o.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bench: sms outbox: %w", err)
	}
	o.f = f
	return nil
}

func (o *outbox) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f != nil {
		o.f.Close()
		o.f = nil
	}
}

// code returns the code of digits digits in the last message to phone
// not yet taken, waiting up to 10 s for it to be appended.
func (o *outbox) code(ctx context.Context, phone string, digits int) (string, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		o.mu.Lock()
		text, ok := o.texts[phone]
		if !ok {
			if err := o.readLocked(); err != nil {
				o.mu.Unlock()
				return "", err
			}
			text, ok = o.texts[phone]
		}
		if ok {
			delete(o.texts, phone)
		}
		o.mu.Unlock()
		if ok {
			if c := codeIn(text, digits); c != "" {
				return c, nil
			}
			return "", fmt.Errorf("bench: sms to %s has no %d-digit code: %q", phone, digits, text)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("bench: no sms to %s in %s after 10 s", phone, o.path)
		}
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// readLocked reads what was appended since the last read.
func (o *outbox) readLocked() error {
	if o.f == nil {
		if err := o.openLocked(); err != nil || o.f == nil {
			return err
		}
	}
	for {
		n, err := o.f.Read(o.chunk)
		if n > 0 {
			o.partial = append(o.partial, o.chunk[:n]...)
		}
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			return fmt.Errorf("bench: sms outbox: %w", err)
		}
	}
	lines := o.partial
	for {
		i := bytes.IndexByte(lines, '\n')
		if i < 0 {
			break
		}
		var l identity.OutboxLine
		if err := json.Unmarshal(lines[:i], &l); err == nil && l.To != "" {
			o.texts[l.To] = l.Text
		}
		lines = lines[i+1:]
	}
	o.partial = append(o.partial[:0], lines...)
	return nil
}

// codeIn returns the first run of exactly digits digits in text, or "".
func codeIn(text string, digits int) string {
	for i := 0; i < len(text); {
		if text[i] < '0' || text[i] > '9' {
			i++
			continue
		}
		j := i
		for j < len(text) && text[j] >= '0' && text[j] <= '9' {
			j++
		}
		if j-i == digits {
			return text[i:j]
		}
		i = j
	}
	return ""
}
