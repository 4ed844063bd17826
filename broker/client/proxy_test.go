package client_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
)

// Proxy modes: what a udpProxy forwards.
const (
	forwardAll  = iota
	dropReplies // the node's packets to the client are lost
	dropAll     // the network is down
)

// udpProxy relays UDP datagrams between clients and a node, and can lose
// them on demand: a cut network without closing anything, so that both
// sides find out only by their QUIC timeouts.
type udpProxy struct {
	Addr   string
	ln     *net.UDPConn
	target *net.UDPAddr
	mode   atomic.Int32
	wg     sync.WaitGroup

	mu    sync.Mutex // guards the following
	peers map[string]*net.UDPConn
}

// proxy relays a client's connections to a node and loses what they
// carry on demand.
type proxy interface {
	// addr is the address to dial instead of the node's.
	addr() string
	// set switches the mode: forwardAll, dropReplies or dropAll.
	set(mode int32)
}

// startProxy relays connections over via to node n until the test ends.
func startProxy(t *testing.T, n *brokertest.Node, via client.Transport) proxy {
	t.Helper()
	if via == client.TransportTCP {
		return startTCPProxy(t, n.TCPAddr)
	}
	return startUDPProxy(t, n.Addr)
}

// startUDPProxy relays 127.0.0.1:0 to target until the test ends.
func startUDPProxy(t *testing.T, target string) *udpProxy {
	t.Helper()
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{Addr: ln.LocalAddr().String(), ln: ln, target: ta, peers: map[string]*net.UDPConn{}}
	p.wg.Go(p.fromClients)
	t.Cleanup(p.close)
	return p
}

func (p *udpProxy) addr() string { return p.Addr }

func (p *udpProxy) set(mode int32) { p.mode.Store(mode) }

// fromClients relays client datagrams, each client through its own socket.
func (p *udpProxy) fromClients() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if p.mode.Load() == dropAll {
			continue
		}
		p.mu.Lock()
		up := p.peers[from.String()]
		if up == nil && p.peers != nil {
			up, err = net.DialUDP("udp", nil, p.target)
			if err != nil {
				p.mu.Unlock()
				continue
			}
			p.peers[from.String()] = up
			p.wg.Go(func() { p.fromNode(up, from) })
		}
		p.mu.Unlock()
		if up != nil {
			up.Write(buf[:n])
		}
	}
}

// fromNode relays the node's datagrams back to one client.
func (p *udpProxy) fromNode(up *net.UDPConn, client *net.UDPAddr) {
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		if p.mode.Load() == forwardAll {
			p.ln.WriteToUDP(buf[:n], client)
		}
	}
}

// close stops relaying and waits for the relays.
func (p *udpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, up := range p.peers {
		up.Close()
	}
	p.peers = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// tcpProxy relays TCP connections between clients and a node. What it
// loses it cannot take back (TLS records would not decode), so a
// direction of a connection that lost bytes loses all the rest: the
// connection is black-holed, open but dead, until a side gives up on it.
type tcpProxy struct {
	Addr   string
	ln     net.Listener
	target string
	mode   atomic.Int32
	wg     sync.WaitGroup

	mu    sync.Mutex // guards the following
	conns map[net.Conn]bool
}

// startTCPProxy relays 127.0.0.1:0 to target until the test ends.
func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{Addr: ln.Addr().String(), ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.Addr }

func (p *tcpProxy) set(mode int32) { p.mode.Store(mode) }

// accept relays each client connection through a connection of its own
// to the node.
func (p *tcpProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.conns == nil {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		p.wg.Go(func() { p.relay(up, c, dropAll) })
		p.wg.Go(func() { p.relay(c, up, dropReplies) })
	}
}

// relay copies src to dst while the mode is below lose; from the first
// byte lost on, it discards. When src ends it closes both.
func (p *tcpProxy) relay(dst, src net.Conn, lose int32) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	lost := false
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		lost = lost || p.mode.Load() >= lose
		if !lost {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
}

// close stops relaying and waits for the relays.
func (p *tcpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
