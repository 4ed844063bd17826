package callsfu

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// udpPair returns a mediaConn and a plain socket it sends to, both on
// loopback of network ("udp4" or "udp6"), closed at the test's end.
func udpPair(t testing.TB, network, ip string) (*mediaConn, *net.UDPConn) {
	t.Helper()
	a, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	b, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	b.SetReadBuffer(4 << 20)
	t.Cleanup(func() { a.Close(); b.Close() })
	return newMediaConn(a), b
}

// queued returns how many datagrams c holds back.
func queued(c *mediaConn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// readDatagrams reads n datagrams from r and returns them in order.
func readDatagrams(t *testing.T, r *net.UDPConn, n int) [][]byte {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(5 * time.Second)) // a safety net, not a timing
	var got [][]byte
	buf := make([]byte, 2048)
	for range n {
		k, _, err := r.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), n, err)
		}
		got = append(got, bytes.Clone(buf[:k]))
	}
	return got
}

func TestMediaConnBatchesAFanOut(t *testing.T) {
	for _, tc := range []struct{ network, ip string }{{"udp4", "127.0.0.1"}, {"udp6", "::1"}} {
		t.Run(tc.network, func(t *testing.T) {
			c, r := udpPair(t, tc.network, tc.ip)
			to := r.LocalAddr().(*net.UDPAddr).AddrPort()

			// Not held: the write goes out at once.
			if n, err := c.WriteToAddrPort([]byte("direct"), to); err != nil || n != 6 {
				t.Fatalf("direct write: %d, %v", n, err)
			}
			if q := queued(c); q != 0 {
				t.Fatalf("%d queued after a write with no fan-out", q)
			}
			if got := readDatagrams(t, r, 1); string(got[0]) != "direct" {
				t.Fatalf("got %q", got[0])
			}

			// Held: more than a batch queues (one full batch is sent on
			// the way), and the release sends the rest, in order.
			const total = sendBatchMax + 5
			c.hold()
			for i := range total {
				msg := fmt.Appendf(nil, "packet %d", i)
				if n, err := c.WriteToAddrPort(msg, to); err != nil || n != len(msg) {
					t.Fatalf("queued write %d: %d, %v", i, n, err)
				}
			}
			if q := queued(c); q != total-sendBatchMax {
				t.Fatalf("%d queued while held, want %d", q, total-sendBatchMax)
			}
			c.release()
			if q := queued(c); q != 0 {
				t.Fatalf("%d still queued after the release", q)
			}
			for i, got := range readDatagrams(t, r, total) {
				if want := fmt.Sprintf("packet %d", i); string(got) != want {
					t.Fatalf("datagram %d is %q, want %q", i, got, want)
				}
			}
			if e := c.sendErrors.Load(); e != 0 {
				t.Fatalf("%d send errors", e)
			}
		})
	}
}

// A 4-in-6 destination (as a dual-stack socket reports an IPv4 peer) goes
// to the IPv4 address.
func TestMediaConnMappedAddress(t *testing.T) {
	c, r := udpPair(t, "udp4", "127.0.0.1")
	to := r.LocalAddr().(*net.UDPAddr).AddrPort()
	mapped := netip.AddrPortFrom(netip.AddrFrom16(to.Addr().As16()), to.Port())
	c.hold()
	if _, err := c.WriteToAddrPort([]byte("mapped"), mapped); err != nil {
		t.Fatal(err)
	}
	c.release()
	if got := readDatagrams(t, r, 1); string(got[0]) != "mapped" {
		t.Fatalf("got %q", got[0])
	}
}

// Writers on other goroutines, while readers hold and release the socket
// over and over, lose nothing and leave nothing queued.
func TestMediaConnConcurrentWriters(t *testing.T) {
	c, r := udpPair(t, "udp4", "127.0.0.1")
	to := r.LocalAddr().(*net.UDPAddr).AddrPort()
	const holders, writers, each = 2, 2, 300
	var wg sync.WaitGroup
	for range holders {
		wg.Go(func() {
			for range each {
				c.hold()
				c.WriteToAddrPort([]byte("fan-out"), to)
				c.release()
			}
		})
	}
	for range writers {
		wg.Go(func() {
			for range each {
				c.WriteToAddrPort([]byte("other"), to)
			}
		})
	}
	got := make(chan int)
	go func() {
		n := 0
		buf := make([]byte, 64)
		r.SetReadDeadline(time.Now().Add(10 * time.Second)) // a safety net
		for n < (holders+writers)*each {
			if _, _, err := r.ReadFromUDPAddrPort(buf); err != nil {
				break
			}
			n++
		}
		got <- n
	}()
	wg.Wait()
	if q := queued(c); q != 0 {
		t.Fatalf("%d datagrams left queued with no fan-out running", q)
	}
	if n := <-got; n != (holders+writers)*each {
		t.Fatalf("received %d datagrams of %d", n, (holders+writers)*each)
	}
}

// BenchmarkMediaConnFanOut sends one packet's copies to 3 subscribers (a
// call of 4), as sendto each (direct) or one sendmmsg (batched), over
// loopback.
func BenchmarkMediaConnFanOut(b *testing.B) {
	for _, batched := range []bool{false, true} {
		b.Run(map[bool]string{false: "direct", true: "batched"}[batched], func(b *testing.B) {
			c, r := udpPair(b, "udp4", "127.0.0.1")
			to := r.LocalAddr().(*net.UDPAddr).AddrPort()
			done := make(chan struct{})
			go func() { // drain, so that the receiver's buffer never fills
				defer close(done)
				buf := make([]byte, 2048)
				for {
					if _, _, err := r.ReadFromUDPAddrPort(buf); err != nil {
						return
					}
				}
			}()
			pkt := make([]byte, 1200)
			b.ReportAllocs()
			b.SetBytes(3 * int64(len(pkt)))
			for b.Loop() {
				if batched {
					c.hold()
				}
				for range 3 {
					c.WriteToAddrPort(pkt, to)
				}
				if batched {
					c.release()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(3*b.N), "ns/datagram")
			r.Close()
			<-done
		})
	}
}

// Datagrams queued on the socket are read in order, with their senders,
// more than one recvmmsg's worth; one too large for a slot is skipped; a
// read past its deadline times out, as the ICE mux expects.
func TestMediaConnReadsABatch(t *testing.T) {
	for _, tc := range []struct{ network, ip string }{{"udp4", "127.0.0.1"}, {"udp6", "::1"}} {
		t.Run(tc.network, func(t *testing.T) {
			c, s := udpPair(t, tc.network, tc.ip)
			c.SetReadBuffer(4 << 20)
			to := c.LocalAddr().(*net.UDPAddr).AddrPort()
			from := s.LocalAddr().(*net.UDPAddr).AddrPort()
			const total = 3*recvBatchMax + 1
			for i := range total {
				if i == 5 {
					if _, err := s.WriteToUDPAddrPort(make([]byte, recvSlotSize+1), to); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := s.WriteToUDPAddrPort(fmt.Appendf(nil, "packet %d", i), to); err != nil {
					t.Fatal(err)
				}
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second)) // a safety net
			buf := make([]byte, recvSlotSize)
			for i := range total {
				n, addr, err := c.ReadFromAddrPort(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if want := fmt.Sprintf("packet %d", i); string(buf[:n]) != want || addr != from {
					t.Fatalf("datagram %d is %q from %v, want %q from %v", i, buf[:n], addr, want, from)
				}
			}
			c.SetReadDeadline(time.Now().Add(-time.Second))
			if _, _, err := c.ReadFromAddrPort(buf); !os.IsTimeout(err) {
				t.Fatalf("read past the deadline: %v, want a timeout", err)
			}
		})
	}
}
