package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// tcpTLS returns a node certificate's server and client TLS configs.
func tcpTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	cert, _, err := nodecert.LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{Certificates: []tls.Certificate{cert}},
		&tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS13}
}

// failingListener fails its first accepts as a process out of file
// descriptors does, then accepts.
type failingListener struct {
	net.Listener
	fails int
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Running out of file descriptors (a connection flood, or many honest
// sessions) fails accepts for a while; the TCP listener goes on accepting
// once there are descriptors again, rather than stop, which would stop the
// node.
func TestServeTCPSurvivesAcceptErrors(t *testing.T) {
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := New(st, &token.Verifier{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, clientTLS := tcpTLS(t)
	l, err := ListenTCP("127.0.0.1:0", serverTLS)
	if err != nil {
		t.Fatal(err)
	}
	l.ln = &failingListener{Listener: l.ln, fails: 3}
	served := make(chan error, 1)
	go func() { served <- b.ServeTCP(l) }()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), clientTLS)
	select {
	case err := <-served:
		t.Fatalf("ServeTCP returned %v after a failed accept", err)
	default:
	}
	if err != nil {
		t.Fatalf("TLS over TCP after failed accepts: %v", err)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("ServeTCP after Shutdown: %v", err)
	}
}

// Closing a TCP connection with a code takes the linger at most, even
// when the client reads nothing: TLS's close_notify, which waits for room
// in the socket's buffer, gives itself 5 s.
func TestTCPCloseBounded(t *testing.T) {
	serverTLS, clientTLS := tcpTLS(t)
	serverTLS = serverTLS.Clone()
	serverTLS.NextProtos = []string{ALPN}
	sRaw, cRaw := net.Pipe() // unbuffered: a write waits for the reader
	defer cRaw.Close()
	tc := tls.Server(sRaw, serverTLS)
	hs := make(chan error, 1)
	go func() { hs <- tls.Client(cRaw, clientTLS).Handshake() }()
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	c := &tcpConn{c: tc, raw: sRaw, cancel: func() {}, timeout: time.Second}
	start := time.Now()
	c.Close(wire.ErrorCode_ERROR_CODE_UNAVAILABLE, "bye") // the client reads nothing
	if took := time.Since(start); took > 4*closeLinger {
		t.Fatalf("Close took %v, want about %v", took, closeLinger)
	}
}
