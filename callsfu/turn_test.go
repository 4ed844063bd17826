package callsfu

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// testClock is a settable clock for credentials.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newTestTURN starts a TURN server on an ephemeral loopback port that
// relays to peerPort on 127.0.0.1, closed at the end of the test, after
// which no goroutine of the test may be left.
func newTestTURN(t *testing.T, o TURNOptions) *TURN {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if o.ListenAddr == "" {
		o.ListenAddr = "127.0.0.1:0"
	}
	if o.RelayIP == "" {
		o.RelayIP = "127.0.0.1"
	}
	if o.MinPort == 0 {
		o.MinPort, o.MaxPort = 20000, 29999
	}
	s, err := NewTURN(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// turnClient is a pion TURN client of s over UDP with cred.
func turnClient(t *testing.T, s *TURN, cred webrtc.ICEServer) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	password, _ := cred.Credential.(string)
	c, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: s.Addr().String(),
		Conn:           conn,
		Username:       cred.Username,
		Password:       password,
		Realm:          "gonets",
		RTO:            50 * time.Millisecond,
		LoggerFactory:  pionLogs{slog.New(slog.DiscardHandler)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		conn.Close()
	})
	return c
}

// counter returns a metric's value in set.
func counter(set *metrics.Set, name string) float64 {
	var b bytes.Buffer
	set.WritePrometheus(&b)
	for line := range strings.Lines(b.String()) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return -1
}

// udpPeer is a UDP socket on loopback: the SFU's media port, or another.
func udpPeer(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTURNCall: two clients that may use relayed candidates only (as a
// browser with iceTransportPolicy "relay"), one reaching the TURN server
// over UDP and one over TCP, join a call through it and get each other's
// audio and video; the allocations are counted, and gone after the call.
func TestTURNCall(t *testing.T) {
	s := newTestSFU(t, Options{DisableTCP: true})
	set := metrics.NewSet()
	tr := newTestTURN(t, TURNOptions{PeerPort: s.Addr().Port, Metrics: set})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	relayVia := func(user uint64, transport string) peerOptions {
		srv := tr.Credentials(user)
		srv.URLs = filterURLs(srv.URLs, "?transport="+transport)
		return peerOptions{config: webrtc.Configuration{
			ICEServers:         []webrtc.ICEServer{srv},
			ICETransportPolicy: webrtc.ICETransportPolicyRelay,
		}}
	}
	alice := joinPeer(t, s, 1, Peer{1, 1}, 'a', relayVia(1, "udp"))
	bob := joinPeer(t, s, 1, Peer{2, 1}, 'b', relayVia(2, "tcp"))
	for _, c := range []*testPeer{alice, bob} {
		if err := c.publish(); err != nil {
			t.Fatalf("%s publish: %v", c.name, err)
		}
	}
	waitReceiving(t, bob, alice)
	waitReceiving(t, alice, bob)
	for _, c := range []*testPeer{alice, bob} {
		for _, dtls := range []*webrtc.DTLSTransport{c.pub.GetSenders()[0].Transport(), c.sub.GetReceivers()[0].Transport()} {
			pair, err := dtls.ICETransport().GetSelectedCandidatePair()
			if err != nil || pair == nil {
				t.Fatalf("%s: no selected candidate pair: %v", c.name, err)
			}
			if pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Remote.Port != uint16(s.Addr().Port) {
				t.Errorf("%s: selected pair %s %s:%d -> %s:%d, want relay to the media port %d", c.name,
					pair.Local.Typ, pair.Local.Address, pair.Local.Port, pair.Remote.Address, pair.Remote.Port, s.Addr().Port)
			}
		}
	}
	if n := counter(set, "gonets_calls_turn_allocations"); n != 4 {
		t.Errorf("allocations live: %v, want 4 (two PeerConnections of each client)", n)
	}
	if n := counter(set, "gonets_calls_turn_allocations_total"); n != 4 {
		t.Errorf("allocations total: %v, want 4", n)
	}
	alice.close()
	bob.close()
	waitFor(t, "allocations released", func() bool { return counter(set, "gonets_calls_turn_allocations") == 0 })
}

// filterURLs returns the strings of ss that contain sub.
func filterURLs(ss []string, sub string) []string {
	var out []string
	for _, s := range ss {
		if strings.Contains(s, sub) {
			out = append(out, s)
		}
	}
	return out
}

// TestTURNCredentials: a fresh credential allocates; an expired one, a
// forged password, a credential of another secret and a username not of
// the "<expiry>:<user>" form are refused, each counted by reason.
func TestTURNCredentials(t *testing.T) {
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	set := metrics.NewSet()
	peer := udpPeer(t)
	tr := newTestTURN(t, TURNOptions{PeerPort: peer.LocalAddr().(*net.UDPAddr).Port, Metrics: set, Now: clock.Now, CredentialTTL: time.Hour})

	good := tr.Credentials(7)
	if want := "1800003600:7"; good.Username != want {
		t.Fatalf("username %q, want %q", good.Username, want)
	}
	if len(good.URLs) != 2 || good.URLs[0] != "turn:"+tr.Addr().String()+"?transport=udp" || good.URLs[1] != "turn:"+tr.Addr().String()+"?transport=tcp" {
		t.Fatalf("urls %q", good.URLs)
	}
	relay, err := turnClient(t, tr, good).Allocate()
	if err != nil {
		t.Fatalf("fresh credential: %v", err)
	}
	defer relay.Close()

	forged := good
	forged.Credential = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
	other := newTestTURN(t, TURNOptions{PeerPort: 9, Now: clock.Now}).Credentials(7) // another node's secret
	other.URLs = good.URLs
	malformed := good
	malformed.Username = "7"
	for _, c := range []struct {
		name   string
		cred   webrtc.ICEServer
		later  time.Duration // the clock moves on by this first
		metric string
	}{
		{"forged", forged, 0, `gonets_calls_turn_auth_failures_total{reason="bad_credential"}`},
		{"another secret", other, 0, `gonets_calls_turn_auth_failures_total{reason="bad_credential"}`},
		{"malformed", malformed, 0, `gonets_calls_turn_auth_failures_total{reason="malformed"}`},
		{"expired", good, time.Hour + time.Second, `gonets_calls_turn_auth_failures_total{reason="expired"}`},
	} {
		clock.advance(c.later)
		before := counter(set, c.metric)
		relay, err := turnClient(t, tr, c.cred).Allocate()
		if err == nil {
			relay.Close()
			t.Errorf("%s credential allocated", c.name)
		}
		if after := counter(set, c.metric); after <= before {
			t.Errorf("%s: %s %v, was %v", c.name, c.metric, after, before)
		}
	}
	if n := counter(set, "gonets_calls_turn_allocations_total"); n != 1 {
		t.Errorf("allocations total %v, want 1", n)
	}
}

// TestTURNRelaysToSFUOnly: the relay carries a client's packets to the
// SFU's media port, and nothing to another port of the same host nor to
// another host; permissions for another host are refused.
func TestTURNRelaysToSFUOnly(t *testing.T) {
	sfu, other := udpPeer(t), udpPeer(t)
	tr := newTestTURN(t, TURNOptions{PeerPort: sfu.LocalAddr().(*net.UDPAddr).Port})
	c := turnClient(t, tr, tr.Credentials(1))
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}); err == nil {
		t.Error("permission for 192.0.2.1, not an address of the SFU's, granted")
	}
	// The forbidden send goes first: on loopback a datagram is in its
	// socket's queue before the sendto that sent it returns, so once the
	// SFU has its packet the other would be there too.
	if _, err := relay.WriteTo([]byte("not for you"), other.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := relay.WriteTo([]byte("media"), sfu.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	sfu.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := sfu.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "media" {
		t.Fatalf("the SFU got %q, %v", buf[:n], err)
	}
	if port := from.(*net.UDPAddr).Port; port < 20000 || port > 29999 {
		t.Errorf("relayed from port %d, outside the relay range", port)
	}
	other.SetReadDeadline(time.Now())
	if n, _, err := other.ReadFrom(buf); err == nil {
		t.Errorf("another port got %q through the relay", buf[:n])
	}

	// Back the other way: what another port sends to the relay is dropped,
	// the SFU's reaches the client (in order on loopback, so the first the
	// client reads would be the other's if it had passed).
	if _, err := other.WriteTo([]byte("intruder"), relay.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := sfu.WriteTo([]byte("answer"), relay.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	relay.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err = relay.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "answer" || from.String() != sfu.LocalAddr().String() {
		t.Errorf("the client got %q from %v, %v; want the SFU's answer", buf[:n], from, err)
	}
}

// TestTURNQuotas: a user gets at most MaxUserAllocations and all users
// MaxAllocations; a released allocation makes room again.
func TestTURNQuotas(t *testing.T) {
	set := metrics.NewSet()
	tr := newTestTURN(t, TURNOptions{PeerPort: 9, MaxUserAllocations: 1, MaxAllocations: 2, Metrics: set})
	first, err := turnClient(t, tr, tr.Credentials(1)).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	if relay, err := turnClient(t, tr, tr.Credentials(1)).Allocate(); err == nil {
		relay.Close()
		t.Fatal("a second allocation of user 1 past MaxUserAllocations 1")
	}
	second, err := turnClient(t, tr, tr.Credentials(2)).Allocate()
	if err != nil {
		t.Fatalf("user 2: %v", err)
	}
	defer second.Close()
	if relay, err := turnClient(t, tr, tr.Credentials(3)).Allocate(); err == nil {
		relay.Close()
		t.Fatal("a third allocation past MaxAllocations 2")
	}
	if n := counter(set, "gonets_calls_turn_allocations_refused_total"); n != 2 {
		t.Errorf("refused %v, want 2", n)
	}
	first.Close() // deallocates: a Refresh of lifetime 0
	waitFor(t, "user 1's allocation released", func() bool { return counter(set, "gonets_calls_turn_allocations") == 1 })
	third, err := turnClient(t, tr, tr.Credentials(3)).Allocate()
	if err != nil {
		t.Fatalf("user 3 after a release: %v", err)
	}
	third.Close()
}

// TestTURNCloseReleases: Close ends the allocations of clients over UDP
// and TCP and frees the TURN port and the relay ports; no goroutine is
// left (newTestTURN's check).
func TestTURNCloseReleases(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // last: after the clients' cleanups
	set := metrics.NewSet()
	tr, err := NewTURN(TURNOptions{ListenAddr: "127.0.0.1:0", RelayIP: "127.0.0.1", MinPort: 20000, MaxPort: 29999, PeerPort: 9, Metrics: set,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := turnClient(t, tr, tr.Credentials(1)).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	// A client over TCP holds its connection open.
	tcp, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tcpConn := turn.NewSTUNConn(tcp)
	tc, err := turn.NewClient(&turn.ClientConfig{TURNServerAddr: tr.Addr().String(), Conn: tcpConn,
		Username: tr.Credentials(2).Username, Password: tr.Credentials(2).Credential.(string), Realm: "gonets",
		LoggerFactory: pionLogs{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Listen(); err != nil {
		t.Fatal(err)
	}
	tcpRelay, err := tc.Allocate()
	if err != nil {
		t.Fatalf("over TCP: %v", err)
	}
	defer tcpRelay.Close()
	if n := counter(set, "gonets_calls_turn_allocations"); n != 2 {
		t.Fatalf("allocations %v, want 2", n)
	}
	addr := tr.Addr().String()
	relayAddr := relay.LocalAddr().String()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if n := counter(set, "gonets_calls_turn_allocations"); n != 0 {
		t.Errorf("allocations after Close %v, want 0", n)
	}
	for _, a := range []string{addr, relayAddr} {
		u, err := net.ListenPacket("udp4", a)
		if err != nil {
			t.Errorf("UDP %s still bound after Close: %v", a, err)
			continue
		}
		u.Close()
	}
	if ln, err := net.Listen("tcp4", addr); err != nil {
		t.Errorf("TCP %s still bound after Close: %v", addr, err)
	} else {
		ln.Close()
	}
}

// TestTURNOptionsRefused: options that cannot work are refused.
func TestTURNOptionsRefused(t *testing.T) {
	for _, o := range []TURNOptions{
		{PeerPort: 9},                     // no relay address
		{RelayIP: "0.0.0.0", PeerPort: 9}, // not unicast
		{RelayIP: "127.0.0.1"},            // no peer port
		{RelayIP: "127.0.0.1", PeerPort: 9, MinPort: 3000, MaxPort: 2000},
		{RelayIP: "127.0.0.1", PeerPort: 9, PeerIPs: []string{"sfu"}},
		{RelayIP: "127.0.0.1", PeerPort: 9, ListenAddr: "3478"},
	} {
		if tr, err := NewTURN(o); err == nil {
			tr.Close()
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestTURNTCPLimits: TURN-over-TCP connections past MaxConns are closed
// as they arrive, and an RFC 6062 TCP relay is refused while a UDP one
// over the same connection is not.
func TestTURNTCPLimits(t *testing.T) {
	tr := newTestTURN(t, TURNOptions{PeerPort: 9, MaxConns: 1})
	first, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	cred := tr.Credentials(1)
	c, err := turn.NewClient(&turn.ClientConfig{TURNServerAddr: tr.Addr().String(), Conn: turn.NewSTUNConn(first),
		Username: cred.Username, Password: cred.Credential.(string), Realm: "gonets",
		LoggerFactory: pionLogs{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AllocateTCP(); err == nil {
		t.Error("a TCP relay (RFC 6062) allocated")
	}
	relay, err := c.Allocate() // the first connection was taken, and works
	if err != nil {
		t.Fatalf("a UDP relay over TCP: %v", err)
	}
	defer relay.Close()

	second, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := second.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("a connection past MaxConns 1: read %d, %v; want it closed", n, err)
	}
}

// TestTURNTCPEvictsSilent: past MaxConns a newcomer takes the place of the
// oldest connection that authenticated nothing, so that silent
// connections (from one address or many) cannot keep an honest client
// out; one that authenticated keeps its place.
func TestTURNTCPEvictsSilent(t *testing.T) {
	tr := newTestTURN(t, TURNOptions{PeerPort: 9, MaxConns: 1})
	silent, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitFor(t, "the silent connection counted", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.conns) == 1
	})
	honest, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer honest.Close()
	cred := tr.Credentials(1)
	c, err := turn.NewClient(&turn.ClientConfig{TURNServerAddr: tr.Addr().String(), Conn: turn.NewSTUNConn(honest),
		Username: cred.Username, Password: cred.Credential.(string), Realm: "gonets",
		LoggerFactory: pionLogs{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("the honest client past MaxConns 1 of silent connections: %v", err)
	}
	defer relay.Close()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("the silent connection: read %d, %v; want it closed for the newcomer", n, err)
	}

	late, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	late.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := late.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("a newcomer past an authenticated connection: read %d, %v; want it closed", n, err)
	}
	if _, err := relay.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err != nil {
		t.Errorf("the authenticated client's relay after a newcomer: %v", err)
	}
}

// TestTURNAllocationOutlivesCredential: a call longer than
// CredentialTTL keeps its relay: the allocation's own requests
// (permissions, refreshes) are taken with the credential that made it
// after it expired, while a new allocation with it is refused.
func TestTURNAllocationOutlivesCredential(t *testing.T) {
	clock := &testClock{now: time.Unix(1_800_000_000, 0)}
	sfu := udpPeer(t)
	tr := newTestTURN(t, TURNOptions{PeerPort: sfu.LocalAddr().(*net.UDPAddr).Port, Now: clock.Now, CredentialTTL: time.Hour})
	cred := tr.Credentials(7)
	c := turnClient(t, tr, cred)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	clock.advance(2 * time.Hour)
	if err := c.CreatePermission(sfu.LocalAddr()); err != nil {
		t.Fatalf("a permission of the allocation an hour past its credential: %v", err)
	}
	if relay, err := turnClient(t, tr, cred).Allocate(); err == nil {
		relay.Close()
		t.Error("a new allocation with an expired credential")
	}
}
