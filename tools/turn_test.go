package tools

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/storage"
)

// startCallAs dials s's node as user's device 1 and starts a call in a
// group chat of that user's, returning its CallInfo.
func startCallAs(t *testing.T, s *streamNode, user uint64) client.CallInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	chat, err := s.n.store.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatGroup, Creator: storage.UserID(user)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, s.n.quicLn.Addr().String(), s.token(user),
		client.Options{Fingerprint: s.n.fingerprint, NoReconnect: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	info, err := c.StartCall(ctx, uint64(chat.ID), false)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// whipLinks publishes an audio offer to channel ch as user, who must be
// its admin, and returns the answer's Link headers.
func whipLinks(t *testing.T, s *streamNode, ch storage.ChatID, user uint64) []string {
	t.Helper()
	pc := newStreamPeer(t)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", s.base+"/whip/"+strconv.FormatUint(uint64(ch), 10), strings.NewReader(offerOf(t, pc)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+s.token(user))
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP publish: %d", resp.StatusCode)
	}
	return resp.Header.Values("Link")
}

// newChannel creates a channel whose owner is user.
func newChannel(t *testing.T, s *streamNode, user uint64) storage.ChatID {
	t.Helper()
	ch, err := s.n.store.CreateChat(context.Background(), storage.ChatSpec{Kind: storage.ChatChannel, Creator: storage.UserID(user)})
	if err != nil {
		t.Fatal(err)
	}
	return ch.ID
}

// TestServeTURN: with calls.turn a node runs its TURN server on its own
// port, hands out credentials for the user in every CallInfo and in the
// Link headers of WHIP answers, and those credentials allocate a relay;
// its metrics are served, and all of it ends with the node.
func TestServeTURN(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // last: after the clients' cleanups
	cfg := testConfig(t)
	cfg.Calls.TURN, cfg.Calls.TURNPort = true, 0
	cfg.Calls.TURNRelayMinPort, cfg.Calls.TURNRelayMaxPort = 30000, 39999
	s := startStreamNode(t, cfg)
	defer s.stop()
	if s.n.turn == nil {
		t.Fatal("no TURN server with calls.turn = true")
	}
	addr := s.n.turn.Addr().String()

	info := startCallAs(t, s, 5)
	if len(info.ICEServers) != 1 {
		t.Fatalf("CallInfo ice servers: %+v", info.ICEServers)
	}
	srv := info.ICEServers[0]
	if want := []string{"turn:" + addr + "?transport=udp", "turn:" + addr + "?transport=tcp"}; strings.Join(srv.URLs, " ") != strings.Join(want, " ") {
		t.Errorf("urls %q, want %q", srv.URLs, want)
	}
	exp, user, _ := strings.Cut(srv.Username, ":")
	if e, err := strconv.ParseInt(exp, 10, 64); err != nil || user != "5" || time.Until(time.Unix(e, 0)) < 59*time.Minute {
		t.Errorf("username %q: want an hour from now, user 5", srv.Username)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc, err := turn.NewClient(&turn.ClientConfig{TURNServerAddr: addr, Conn: conn, Username: srv.Username, Password: srv.Credential,
		Realm: "gonets", RTO: 50 * time.Millisecond, LoggerFactory: nil})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := tc.Allocate()
	if err != nil {
		t.Fatalf("the CallInfo's credential: %v", err)
	}
	if port := relay.LocalAddr().(*net.UDPAddr).Port; port < 30000 || port > 39999 {
		t.Errorf("relay port %d outside calls.turn_relay_min_port and max", port)
	}
	relay.Close()

	links := whipLinks(t, s, newChannel(t, s, 6), 6)
	if len(links) != 2 || !strings.HasPrefix(links[0], "<turn:"+addr+"?transport=udp>; rel=\"ice-server\"; username=\"") ||
		!strings.Contains(links[0], ":6\"; credential=\"") {
		t.Errorf("WHIP answer's Link headers: %q", links)
	}
	if code, body := get(t, "http://"+s.n.httpLn.Addr().String()+"/metrics"); code != http.StatusOK ||
		!strings.Contains(body, "gonets_calls_turn_allocations_total 1") {
		t.Errorf("/metrics = %d, want one TURN allocation made", code)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestServeTURNOff: by default no TURN server runs, and neither CallInfo
// nor WHIP answers carry ICE servers.
func TestServeTURNOff(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // last: after the clients' cleanups
	s := startStreamNode(t, testConfig(t))
	defer s.stop()
	if s.n.turn != nil {
		t.Fatal("a TURN server with calls.turn off")
	}
	if info := startCallAs(t, s, 5); len(info.ICEServers) != 0 {
		t.Errorf("CallInfo ice servers: %+v", info.ICEServers)
	}
	if links := whipLinks(t, s, newChannel(t, s, 6), 6); len(links) != 0 {
		t.Errorf("WHIP answer's Link headers: %q", links)
	}
	if _, body := get(t, "http://"+s.n.httpLn.Addr().String()+"/metrics"); strings.Contains(body, "gonets_calls_turn_") {
		t.Error("TURN metrics served with calls.turn off")
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestTURNConfig: the TURN keys are checked, and map onto the server's
// options.
func TestTURNConfig(t *testing.T) {
	refused := func(what, want string, change func(*config)) {
		t.Helper()
		c := defaultConfig()
		c.Calls.TURN = true
		c.Calls.PublicIPs = []string{"203.0.113.7", "203.0.113.8"}
		change(&c)
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", what, err, want)
		}
	}
	refused("no public address", "calls.turn needs the node's public address", func(c *config) { c.Calls.PublicIPs = nil })
	refused("the media port", "calls.turn_port 7444 is calls.udp_port's port too", func(c *config) { c.Calls.TURNPort = 7444 })
	refused("the QUIC port", "calls.turn_port 7443 is node.quic_addr's port too", func(c *config) { c.Calls.TURNPort = 7443 })
	refused("a range upside down", "calls.turn_relay_min_port 5000 is above", func(c *config) { c.Calls.TURNRelayMinPort, c.Calls.TURNRelayMaxPort = 5000, 4000 })
	refused("half a range", "set together", func(c *config) { c.Calls.TURNRelayMinPort = 5000 })
	refused("a port past 65535", "calls.turn_port 70000", func(c *config) { c.Calls.TURNPort = 70000 })

	c := defaultConfig()
	c.Calls.TURN = true
	c.Node.QUICAddr = "192.0.2.5:7443"
	if err := c.validate(); err != nil {
		t.Fatalf("node.quic_addr on an IP: %v", err)
	}
	if o := c.turnOptions(); o.RelayIP != "192.0.2.5" || o.ListenAddr != "192.0.2.5:3478" || o.Secret != nil {
		t.Errorf("options %+v", o)
	}
	c.Calls.PublicIPs = []string{"203.0.113.7", "203.0.113.8"}
	c.Calls.TURNSecret = "s3cret"
	if o := c.turnOptions(); o.RelayIP != "203.0.113.7" || len(o.PeerIPs) != 2 || string(o.Secret) != "s3cret" {
		t.Errorf("options %+v", o)
	}
}
