package tools

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/callsfu"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// streamNode is a node started from its parts (startNode, run) on loopback
// ports, with an HTTPS client that pins its certificate.
type streamNode struct {
	t      *testing.T
	n      *node
	client *http.Client
	base   string // https://host:port of the public listener
	signer *token.Signer
	cancel context.CancelFunc
	done   chan error
}

// startStreamNode starts a node with cfg and serves it until the test
// ends.
func startStreamNode(t *testing.T, cfg config) *streamNode {
	t.Helper()
	n, err := startNode(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &streamNode{t: t, n: n, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- n.run(ctx) }()
	key, err := token.LoadOrCreateKey(cfg.Node.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	s.signer = token.NewSigner(key)
	pinned, err := nodecert.PinnedConfig(n.fingerprint, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.client = &http.Client{Transport: &http.Transport{TLSClientConfig: pinned, ForceAttemptHTTP2: true}, Timeout: 20 * time.Second}
	if n.publicLn != nil {
		s.base = "https://" + n.publicLn.Addr().String()
	}
	return s
}

// stop shuts the node down and checks that it stopped cleanly.
func (s *streamNode) stop() {
	s.t.Helper()
	s.client.CloseIdleConnections()
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Fatalf("run: %v", err)
	}
}

// token mints a session token for user's device 1.
func (s *streamNode) token(user uint64) string {
	s.t.Helper()
	tok, err := s.signer.Sign(token.Claims{User: user, Device: 1, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// post sends an SDP offer and returns the status, the body, and the
// refusal's code if it is one.
func (s *streamNode) post(path, tok, offer string) (status int, body, code string) {
	s.t.Helper()
	req, err := http.NewRequest("POST", s.base+path, strings.NewReader(offer))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	var e struct{ Code string }
	if resp.Header.Get("Content-Type") == "application/json" {
		_ = json.Unmarshal(b, &e)
	}
	return resp.StatusCode, string(b), e.Code
}

// newStreamPeer returns a pion PeerConnection that gathers loopback UDP
// candidates only, closed when the test ends.
func newStreamPeer(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.SDESMidURI}, kind); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.GracefulClose() })
	return pc
}

// offerOf returns pc's offer with every candidate in it.
func offerOf(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc.LocalDescription().SDP
}

// answer applies a 201's SDP answer to pc.
func answer(t *testing.T, pc *webrtc.PeerConnection, sdp string) {
	t.Helper()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond until it holds or 15 s have passed.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServeStreams runs a live stream through a node's public listener: a
// channel's admin publishes Opus with WHIP and a subscriber plays it with
// WHEP and receives its RTP; a bad token, a subscriber's publish, a
// non-member's play, a group chat and a channel not live are refused with
// their codes.
func TestServeStreams(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := startStreamNode(t, testConfig(t))
	defer s.stop()
	ctx := context.Background()
	const owner, admin, subscriber, stranger = 1, 2, 3, 4
	ch, err := s.n.store.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatChannel, Creator: owner})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.n.store.AddMember(ctx, ch.ID, admin, storage.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := s.n.store.AddMember(ctx, ch.ID, subscriber, storage.RoleSubscriber); err != nil {
		t.Fatal(err)
	}
	group, err := s.n.store.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatGroup, Creator: admin})
	if err != nil {
		t.Fatal(err)
	}
	id := func(c storage.Chat) string { return strconv.FormatUint(uint64(c.ID), 10) }

	encoder := newStreamPeer(t)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "encoder")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := encoder.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	pubOffer := offerOf(t, encoder)

	refused := func(what, path, tok, offer string, wantStatus int, wantCode string) {
		t.Helper()
		if status, body, code := s.post(path, tok, offer); status != wantStatus || code != wantCode {
			t.Errorf("%s: %d %s, want %d %s", what, status, body, wantStatus, wantCode)
		}
	}
	refused("a bad token", "/whip/"+id(ch), "not-a-token", pubOffer, http.StatusUnauthorized, "unauthorized")
	refused("no token", "/whip/"+id(ch), "", pubOffer, http.StatusUnauthorized, "unauthorized")
	refused("a subscriber's publish", "/whip/"+id(ch), s.token(subscriber), pubOffer, http.StatusForbidden, "forbidden")
	refused("a stranger's publish", "/whip/"+id(ch), s.token(stranger), pubOffer, http.StatusForbidden, "forbidden")
	refused("a group's stream", "/whip/"+id(group), s.token(admin), pubOffer, http.StatusNotFound, "unknown_call")
	refused("no such chat", "/whip/12345", s.token(admin), pubOffer, http.StatusNotFound, "unknown_call")
	refused("a call id that is not a chat's", "/whip/live", s.token(admin), pubOffer, http.StatusNotFound, "unknown_call")
	player := newStreamPeer(t)
	if _, err := player.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	var received atomic.Int64
	var reading sync.WaitGroup
	player.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		reading.Go(func() {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				received.Add(1)
			}
		})
	})
	playOffer := offerOf(t, player)
	refused("a stranger's play", "/whep/"+id(ch), s.token(stranger), playOffer, http.StatusForbidden, "forbidden")
	refused("play before the stream", "/whep/"+id(ch), s.token(subscriber), playOffer, http.StatusNotFound, "unknown_call")
	if err := s.n.sfu.End(streamCallBit | uint64(ch.ID)); !errors.Is(err, callsfu.ErrUnknownCall) {
		t.Fatalf("a refusal started the stream's call: End = %v", err)
	}

	status, body, _ := s.post("/whip/"+id(ch), s.token(admin), pubOffer)
	if status != http.StatusCreated {
		t.Fatalf("WHIP publish as the channel's admin: %d %s", status, body)
	}
	answer(t, encoder, body)
	stopSend := make(chan struct{})
	var sending sync.WaitGroup
	sending.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(0); ; seq++ {
			select {
			case <-stopSend:
				return
			case <-tick.C:
			}
			p := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 480, Marker: true},
				Payload: []byte{0xfc, 0xff, 0xfe}}
			_ = track.WriteRTP(p)
		}
	})
	defer func() {
		close(stopSend)
		sending.Wait()
	}()

	waitUntil(t, "the encoder's track in the call", func() bool {
		status, body, code := s.post("/whep/"+id(ch), s.token(subscriber), playOffer)
		switch {
		case status == http.StatusCreated:
			answer(t, player, body)
			return true
		case code != "not_live":
			t.Fatalf("WHEP play as a subscriber: %d %s", status, body)
		}
		return false
	})
	waitUntil(t, "the player to receive 20 packets", func() bool { return received.Load() >= 20 })
	_ = player.GracefulClose()
	_ = encoder.GracefulClose()
	reading.Wait()
}

// TestPublicListener checks the public listener around WHIP: HTTPS with
// the node's certificate (the client pins it) over HTTP/2, a JSON 404
// off the APIs' paths and for WHIP with calls off, its banner line, and
// none at all when node.public_addr is off.
func TestPublicListener(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	get := func(s *streamNode, path string) (*http.Response, string) {
		t.Helper()
		resp, err := s.client.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	banner := func(n *node) string {
		var b strings.Builder
		n.printBanner(&b)
		return b.String()
	}

	s := startStreamNode(t, testConfig(t))
	resp, body := get(s, "/bot/x")
	// With bots on, the root is the Bot API's: MAX's 404.
	if resp.StatusCode != http.StatusNotFound || resp.ProtoMajor != 2 || !strings.Contains(body, `"code":"not.found"`) {
		t.Errorf("GET /bot/x: %d %s %s", resp.StatusCode, resp.Proto, body)
	}
	if b := banner(s.n); !strings.Contains(b, "  https "+s.n.publicLn.Addr().String()+"  (public: WHIP /whip/{channel}, WHEP /whep/{channel}, demo /calls/demo, media /media/, Bot API /)\n") {
		t.Errorf("banner:\n%s", b)
	}
	s.stop()
	if _, err := s.client.Get(s.base + "/"); err == nil {
		t.Error("the public listener still answers after the node stopped")
	}

	cfg := testConfig(t)
	cfg.Calls.Enabled = false
	cfg.Bots.Enabled, cfg.Media.Enabled = false, false
	s = startStreamNode(t, cfg)
	if resp, body := get(s, "/whip/1"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"code":"not_found"`) {
		t.Errorf("GET /whip/1 with calls off: %d %s", resp.StatusCode, body)
	}
	if b := banner(s.n); !strings.Contains(b, "(public: no WHIP, WHEP: calls are off)\n") {
		t.Errorf("banner:\n%s", b)
	}
	s.stop()

	cfg = testConfig(t)
	cfg.Node.PublicAddr = "off"
	s = startStreamNode(t, cfg)
	if s.n.publicLn != nil || s.n.public != nil {
		t.Error("node.public_addr off, yet a public listener")
	}
	if b := banner(s.n); !strings.Contains(b, "  https off  (") {
		t.Errorf("banner:\n%s", b)
	}
	s.stop()
}

func TestStreamCall(t *testing.T) {
	f := func(call string, want uint64, wantOK bool) {
		t.Helper()
		sfuCall, chat, ok := streamCall(call)
		if ok != wantOK || ok && (chat != want || sfuCall != want|1<<63) {
			t.Errorf("streamCall(%q) = %d, %d, %v; want chat %d, %v", call, sfuCall, chat, ok, want, wantOK)
		}
	}
	f("1", 1, true)
	f("4611686018427387904", 1<<62, true)   // above every chat id today
	f("9223372036854775807", 1<<63-1, true) // the largest chat id
	f("9223372036854775808", 0, false)      // 2^63: no chat's
	f("18446744073709551615", 0, false)     // 2^64-1
	f("18446744073709551616", 0, false)     // past uint64
	f("0", 0, false)
	f("01", 0, false)
	f("+1", 0, false)
	f("-1", 0, false)
	f("live", 0, false)
	f("", 0, false)
}

// TestServePublicPortInUse: a node whose public port is taken does not
// start, says which key to change, and closes what it opened (the store
// opens again, no goroutine is left).
func TestServePublicPortInUse(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t)
	cfg.Node.PublicAddr = busy.Addr().String()
	err = serve(context.Background(), cfg, io.Discard, io.Discard)
	want := "node.public_addr " + cfg.Node.PublicAddr + " is in use (TCP): stop what holds it, or give the public listener another port"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("serve on a busy public port = %v, want %q", err, want)
	}
	st, err := storage.Open(filepath.Join(cfg.Node.DataDir, storeDir), storage.Options{})
	if err != nil {
		t.Fatalf("reopen the store: %v", err)
	}
	st.Close()
}

// An account device that is ended loses its WHIP and WHEP sessions at
// once, and its access token, still unexpired, opens no new one.
func TestServeStreamsEndedDevice(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := startStreamNode(t, testConfig(t))
	defer s.stop()
	ctx := context.Background()
	acc := s.n.ident.accounts
	res, err := acc.Login(ctx, "+79000000001", identity.DeviceInfo{Name: "obs", Platform: "linux"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.n.store.CreateChat(ctx, storage.ChatSpec{Kind: storage.ChatChannel, Creator: res.User})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.signer.Sign(token.Claims{User: uint64(res.User), Device: uint64(res.Device), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	_, stop := publishLive(t, s, ch.ID, tok)
	defer stop()
	seq := func() uint64 {
		c, err := s.n.store.Chat(ch.ID)
		if err != nil {
			t.Fatal(err)
		}
		return c.LastSeq
	}
	waitUntil(t, "the live_started note", func() bool { return seq() == 1 })
	if err := acc.EndDevice(res.User, res.Device); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the live_ended note of the ended device's stream", func() bool { return seq() == 2 })
	if status, body, code := s.post("/whip/"+strconv.FormatUint(uint64(ch.ID), 10), tok, "v=0"); status != http.StatusUnauthorized || code != "unauthorized" {
		t.Fatalf("an ended device's publish: %d %s", status, body)
	}
}
