package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/nodecert"
)

// A node that lost its state (crashed) and listens again with the same
// reset secret tells a client of its previous life at once that its
// connection is gone, instead of leaving it to its idle timeout.
func TestStatelessResetAfterRestart(t *testing.T) {
	cert, _, err := nodecert.LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}}
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{ALPN}}
	secret := []byte("the node's long-lived key")

	for _, tc := range []struct {
		name      string
		secret    []byte
		wantReset bool
	}{{"same secret", secret, true}, {"other secret", []byte("another"), false}} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ListenQUIC("127.0.0.1:0", serverTLS, ListenOptions{ResetSecret: secret})
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := quic.DialAddr(ctx, addr, clientTLS, &quic.Config{MaxIdleTimeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseWithError(0, "")
			if _, err := l.ln.Accept(ctx); err != nil {
				t.Fatal(err)
			}
			l.conn.Close() // a crash: the socket goes, nobody says goodbye
			l2, err := ListenQUIC(addr, serverTLS, ListenOptions{ResetSecret: tc.secret})
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			defer l.Close()
			st, err := c.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Write on, as a client with something to say would: a busy
			// loopback may drop a datagram, and a reset answers only
			// packets of more than 42 bytes.
			wait := 10 * time.Second
			if !tc.wantReset {
				wait = time.Second
			}
			deadline := time.After(wait)
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				st.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
				st.Write(make([]byte, 200))
				select {
				case <-c.Context().Done():
					var reset *quic.StatelessResetError
					if !tc.wantReset || !errors.As(context.Cause(c.Context()), &reset) {
						t.Fatalf("connection ended with %v; want a stateless reset: %v", context.Cause(c.Context()), tc.wantReset)
					}
					return
				case <-deadline:
					if tc.wantReset {
						t.Fatalf("the client did not learn of the restart within %v", wait)
					}
					return
				case <-tick.C:
				}
			}
		})
	}
}
