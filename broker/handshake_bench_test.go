package broker

import (
	"crypto/tls"
	"crypto/x509"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gonets/gonets/broker/nodecert"
)

// threadCPU returns the CPU time of the calling OS thread.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// BenchmarkHandshakeCurves runs TLS 1.3 handshakes over TCP loopback
// against the node's TCP listener config (its self-signed ECDSA P-256
// certificate) with each key-exchange group, the client offering that
// group alone (no HelloRetryRequest): full handshakes, and resumptions
// from a session ticket (which still run a key exchange). The node side
// runs on one locked OS thread, whose CPU time per handshake is reported
// as server-cpu-µs/op: the node's cost, without the client's (ns/op is
// the whole round, both sides on the same cores).
func BenchmarkHandshakeCurves(b *testing.B) {
	curves := []struct {
		name string
		id   tls.CurveID
	}{
		{"X25519MLKEM768", tls.X25519MLKEM768},
		{"X25519", tls.X25519},
		{"P256", tls.CurveP256},
		{"P384", tls.CurveP384},
		{"P521", tls.CurveP521},
		{"SecP256r1MLKEM768", tls.SecP256r1MLKEM768},
	}
	for _, c := range curves {
		for _, resume := range []bool{false, true} {
			name := c.name + "/full"
			if resume {
				name = c.name + "/resumed"
			}
			b.Run(name, func(b *testing.B) { benchHandshake(b, c.id, resume) })
		}
	}
}

func benchHandshake(b *testing.B, curve tls.CurveID, resume bool) {
	cert, _, err := nodecert.LoadOrCreate(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, CurvePreferences: []tls.CurveID{curve}}
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS13}
	l, err := ListenTCP("127.0.0.1:0", serverTLS)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	clientTLS.CurvePreferences = []tls.CurveID{curve}
	if resume {
		clientTLS.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	// The client: one handshake per round; with resume, a first one
	// fills the session cache. It reads one byte so that the node's
	// session ticket arrives before the next round.
	dial := func() error {
		c, err := tls.Dial("tcp", l.Addr().String(), clientTLS)
		if err != nil {
			return err
		}
		var one [1]byte
		c.Read(one[:])
		return c.Close()
	}
	rounds := b.N
	if resume {
		rounds++
	}
	type result struct {
		cpu     time.Duration
		resumed int
		err     error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var r result
		for i := range rounds {
			c, err := l.ln.Accept()
			if err != nil {
				r.err = err
				break
			}
			start := threadCPU(b)
			tc := tls.Server(c, l.tls)
			err = tc.Handshake()
			if err == nil {
				_, err = tc.Write([]byte{1})
			}
			if !(resume && i == 0) {
				r.cpu += threadCPU(b) - start
				if tc.ConnectionState().DidResume {
					r.resumed++
				}
			}
			c.Close()
			if err != nil {
				r.err = err
				break
			}
		}
		done <- r
	}()
	if resume {
		if err := dial(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		if err := dial(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	r := <-done
	if r.err != nil {
		b.Fatal(r.err)
	}
	if resume && r.resumed != b.N {
		b.Fatalf("%d of %d handshakes resumed", r.resumed, b.N)
	}
	b.ReportMetric(float64(r.cpu.Microseconds())/float64(b.N), "server-cpu-µs/op")
}
