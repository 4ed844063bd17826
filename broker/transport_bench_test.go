package broker_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/nodecert"
)

// The benchmarks here measure the transport under the broker, without the
// broker: what one small packet costs on this machine through the kernel's
// loopback alone, and through quic-go. They set the floor under the bench
// scenarios' figures (BENCHMARKS.md, "What limits these"). Each reports
// cpu-us/op (user + system CPU of the whole test process, both ends
// included, per operation) and packets/op (UDP datagrams sent on the
// machine per operation, from /proc/net/snmp: run them on a quiet
// machine).

// cpuMeter reads this process's CPU time and the machine's UDP datagrams.
type cpuMeter struct {
	cpu     time.Duration
	packets int64
}

func readMeter(tb testing.TB) cpuMeter {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return cpuMeter{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), packets: udpOut()}
}

// udpOut returns the machine's UDP OutDatagrams, or -1 where unknown.
func udpOut() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "OutDatagrams" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return -1
}

// report adds cpu-us/op and packets/op since m0 for n operations.
func (m0 cpuMeter) report(b *testing.B, n int) {
	m1 := readMeter(b)
	b.ReportMetric(float64(m1.cpu-m0.cpu)/float64(time.Microsecond)/float64(n), "cpu-us/op")
	if m0.packets >= 0 && m1.packets >= 0 {
		b.ReportMetric(float64(m1.packets-m0.packets)/float64(n), "packets/op")
	}
}

// BenchmarkLoopbackUDP: one 256-byte datagram to an echoing socket and
// back (two packets an op), plain syscalls.
func BenchmarkLoopbackUDP(b *testing.B) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			srv.WriteToUDP(buf[:n], from)
		}
	}()
	cl, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	msg, buf := make([]byte, 256), make([]byte, 2048)
	m0 := readMeter(b)
	b.ResetTimer()
	for range b.N {
		if _, err := cl.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := cl.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	m0.report(b, b.N)
}

// quicPair is a quic-go listener and its TLS settings, as the node sets
// them (broker.QUICConfig, ALPN gonets/1).
type quicPair struct {
	ln     *quic.Listener
	client *tls.Config
}

func newQUICPair(b *testing.B) *quicPair {
	cert, _, err := nodecert.LoadOrCreate(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{broker.ALPN}, MinVersion: tls.VersionTLS13}, broker.QUICConfig())
	if err != nil {
		b.Fatal(err)
	}
	pin, err := nodecert.PinnedConfig(nodecert.Fingerprint(cert.Certificate[0]), nil)
	if err != nil {
		b.Fatal(err)
	}
	pin.NextProtos = []string{broker.ALPN}
	b.Cleanup(func() { ln.Close() })
	return &quicPair{ln: ln, client: pin}
}

func (p *quicPair) dial(b *testing.B, tr *quic.Transport) *quic.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, p.ln.Addr(), p.client, &quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkQUICRoundTrip: a 256-byte message on a stream to an echoing
// server and back, one connection, as a request and its response are.
func BenchmarkQUICRoundTrip(b *testing.B) {
	p := newQUICPair(b)
	go func() {
		c, err := p.ln.Accept(context.Background())
		if err != nil {
			return
		}
		st, err := c.AcceptStream(context.Background())
		if err != nil {
			return
		}
		io.Copy(st, st)
	}()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	c := p.dial(b, tr)
	defer c.CloseWithError(0, "")
	st, err := c.OpenStreamSync(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	msg, buf := make([]byte, 256), make([]byte, 256)
	m0 := readMeter(b)
	b.ResetTimer()
	for range b.N {
		if _, err := st.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(st, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	m0.report(b, b.N)
}

// BenchmarkQUICFanout: one 256-byte message written to each of 100
// connections' streams (as a group post's deliveries are), then read by
// each client; an op is one delivery.
func BenchmarkQUICFanout(b *testing.B) {
	const conns = 100
	p := newQUICPair(b)
	accepted := make(chan *quic.Stream, conns)
	go func() {
		for {
			c, err := p.ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				st, err := c.AcceptStream(context.Background())
				if err == nil {
					accepted <- st
				}
			}()
		}
	}()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	client := make([]*quic.Stream, conns)
	for i := range client {
		c := p.dial(b, tr)
		defer c.CloseWithError(0, "")
		st, err := c.OpenStreamSync(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		st.Write([]byte{0}) // the server sees a stream once it has data
		client[i] = st
	}
	server := make([]*quic.Stream, conns)
	for i := range server {
		server[i] = <-accepted
		var one [1]byte
		io.ReadFull(server[i], one[:])
	}
	rounds := max(1, b.N/conns)
	var wg sync.WaitGroup
	for _, st := range client {
		wg.Go(func() {
			buf := make([]byte, 256)
			for range rounds {
				if _, err := io.ReadFull(st, buf); err != nil {
					return
				}
			}
		})
	}
	msg := make([]byte, 256)
	m0 := readMeter(b)
	b.ResetTimer()
	for range rounds {
		for _, st := range server {
			if _, err := st.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
	}
	wg.Wait()
	b.StopTimer()
	m0.report(b, rounds*conns)
	b.ReportMetric(float64(rounds*conns)/b.Elapsed().Seconds(), "deliveries/s")
}
