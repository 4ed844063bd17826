package tools

import (
	"context"
	"crypto/tls"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"
)

func TestTLSCurvesConfig(t *testing.T) {
	f := func(names []string, want []tls.CurveID) {
		t.Helper()
		c := defaultConfig()
		c.Node.TLSCurves = names
		got, err := c.tlsCurves()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("tlsCurves(%q) = %v, %v; want %v", names, got, err, want)
		}
		if err := c.validate(); err != nil {
			t.Fatalf("validate with tls_curves %q: %v", names, err)
		}
	}
	f(nil, nil)
	f([]string{"X25519MLKEM768", "X25519"}, []tls.CurveID{tls.X25519MLKEM768, tls.X25519})
	f([]string{"p256", "CurveP384", "P521"}, []tls.CurveID{tls.CurveP256, tls.CurveP384, tls.CurveP521})
	f([]string{"SecP256r1MLKEM768", "SecP384r1MLKEM1024"}, []tls.CurveID{tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024})

	bad := func(names []string, want string) {
		t.Helper()
		c := defaultConfig()
		c.Node.TLSCurves = names
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("validate with tls_curves %q = %v, want an error containing %q", names, err, want)
		}
	}
	bad([]string{"X448"}, `node.tls_curves: unknown key-exchange group "X448"; known: X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, P256, P384, P521`)
	bad([]string{""}, `unknown key-exchange group ""`)
	bad([]string{"X25519", "x25519"}, `node.tls_curves: "x25519" is listed twice`)
}

// node.tls_curves is what both listeners accept: a client offering only
// another group is refused, over QUIC and over TCP.
func TestServeTLSCurves(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	cfg.Node.TLSCurves = []string{"P384"}
	ctx, cancel := context.WithCancel(context.Background())
	b, errc := startServe(t, ctx, cfg, io.Discard)
	client := func(curve tls.CurveID) *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"gonets/1"}, CurvePreferences: []tls.CurveID{curve}}
	}
	for _, tc := range []struct {
		curve tls.CurveID
		ok    bool
	}{{tls.CurveP384, true}, {tls.X25519, false}, {tls.X25519MLKEM768, false}} {
		c, err := tls.Dial("tcp", b["tcp"][0], client(tc.curve))
		if (err == nil) != tc.ok {
			t.Errorf("tcp with %v: %v", tc.curve, err)
		}
		if err == nil {
			if got := c.ConnectionState().CurveID; got != tc.curve {
				t.Errorf("tcp with %v: the handshake used %v", tc.curve, got)
			}
			c.Close()
		}
		qc, err := quic.DialAddr(ctx, b["quic"][0], client(tc.curve), nil)
		if (err == nil) != tc.ok {
			t.Errorf("quic with %v: %v", tc.curve, err)
		}
		if err == nil {
			if got := qc.ConnectionState().TLS.CurveID; got != tc.curve {
				t.Errorf("quic with %v: the handshake used %v", tc.curve, got)
			}
			qc.CloseWithError(0, "")
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
