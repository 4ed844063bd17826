package client_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
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

// startProxy relays 127.0.0.1:0 to target until the test ends.
func startProxy(t *testing.T, target string) *udpProxy {
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

// set switches the mode.
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
