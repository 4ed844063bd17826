package client

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{}.ensureDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.ReconnectMin != 100*time.Millisecond || o.ReconnectMax != 10*time.Second || o.KeepAlive != 25*time.Second ||
		o.IdleTimeout != 60*time.Second || o.EventBuffer != 64 || o.Name != DefaultName || o.State.Held == nil {
		t.Fatalf("defaults: %+v", o)
	}
	cfg, err := o.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS13 || len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != ALPN || cfg.InsecureSkipVerify {
		t.Fatalf("tls: %+v", cfg)
	}
	if o, _ := (Options{EventBuffer: -1}).ensureDefaults(); o.EventBuffer != 0 {
		t.Fatalf("EventBuffer -1: got %d, want unbuffered", o.EventBuffer)
	}
}

func TestOptionsInvalid(t *testing.T) {
	f := func(o Options, want string) {
		t.Helper()
		_, err := o.ensureDefaults()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%+v: error %v, want it to mention %q", o, err, want)
		}
	}
	f(Options{Fingerprint: "ab", Insecure: true}, "exclusive")
	f(Options{KeepAlive: time.Minute}, "below IdleTimeout")
	f(Options{ReconnectMin: time.Second, ReconnectMax: time.Millisecond}, "positive range")
	f(Options{DialTimeout: -1}, "positive")
	f(Options{Via: 7}, "unknown transport")
	f(Options{TCPAddr: "nowhere"}, "not host:port")
	f(Options{PushBuffer: -1}, "PushBuffer")
	f(Options{Refresh: "r"}, "Refresh without OnTokens")
	f(Options{OnTokens: func(Tokens) {}}, "OnTokens without Refresh")
	if _, err := (&Options{Fingerprint: "xyz"}).tlsConfig(); err == nil {
		t.Fatal("a bad fingerprint was accepted")
	}
}

func TestOptionsStateCopied(t *testing.T) {
	held := map[uint64]uint64{1: 5}
	o, _ := Options{State: SyncState{Since: 3, Held: held}}.ensureDefaults()
	o.State.Held[1] = 9
	if held[1] != 5 {
		t.Fatal("the client writes to the app's map")
	}
}

// Clients draw their keep-alive period up to a fifth below KeepAlive, so
// that clients started together do not ping together.
func TestKeepAliveJitter(t *testing.T) {
	o, err := Options{}.ensureDefaults()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[time.Duration]bool{}
	for range 50 {
		p := o.quicConfig(o.keepAlivePeriod()).KeepAlivePeriod
		if p > o.KeepAlive || p < o.KeepAlive*4/5 {
			t.Fatalf("keep-alive %v outside [%v, %v]", p, o.KeepAlive*4/5, o.KeepAlive)
		}
		seen[p] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 clients drew only %d keep-alive periods", len(seen))
	}
}
