package callsfu

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

func TestOptionsRefused(t *testing.T) {
	f := func(o Options, want string) {
		t.Helper()
		if _, err := o.withDefaults(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want an error with %q", o, err, want)
		}
	}
	f(Options{ListenAddr: "7444"}, "listen address")
	f(Options{NAT1To1IPs: []string{"example.com"}}, "not an IP")
	f(Options{RelayServers: []webrtc.ICEServer{{URLs: []string{"stun:stun.example.com"}}}}, "turn")
	f(Options{RelayServers: []webrtc.ICEServer{{URLs: []string{"turn:turn.example.com"}}}}, "over TCP")
}

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.ListenAddr != ":7444" || o.SilenceTimeout != 10*time.Second || o.MaxPublishers != 16 ||
		o.LayerBitrates != [3]int{150_000, 500_000, 1_500_000} || o.Logger == nil || o.Metrics == nil {
		t.Errorf("defaults: %+v", o)
	}
}

func TestCodeOf(t *testing.T) {
	f := func(err error, want Code) {
		t.Helper()
		if got := CodeOf(err); got != want {
			t.Errorf("CodeOf(%v) = %d, want %d", err, got, want)
		}
	}
	f(fmt.Errorf("callsfu: publish: %w: no ICE", ErrBadSDP), CodeBadSDP)
	f(fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", ErrTooManyPublishers)), CodeTooManyPublishers)
	f(errors.New("socket"), CodeInternal)
	f(nil, CodeInternal)
}

func TestParseOffer(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	audio := func(dir string) string {
		return "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n" + dir
	}
	const video = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=rid:f send\r\na=rid:q send\r\na=rid:x recv\r\n"
	f := func(sdp string, sends bool, mids []string, rids map[string][]string) {
		t.Helper()
		o, err := parseOffer(head + sdp)
		if err != nil {
			t.Fatalf("%q: %v", sdp, err)
		}
		var got []string
		for mid := range o.sending {
			got = append(got, mid)
		}
		slices.Sort(got)
		if o.sends != sends || !slices.Equal(got, mids) || fmt.Sprint(o.rids) != fmt.Sprint(rids) {
			t.Errorf("%q: sends %v mids %v rids %v, want %v %v %v", sdp, o.sends, got, o.rids, sends, mids, rids)
		}
	}
	f(audio("a=sendrecv\r\n"), true, []string{"0"}, map[string][]string{})
	f(audio(""), true, []string{"0"}, map[string][]string{})
	f(audio("a=recvonly\r\n"), false, nil, map[string][]string{})
	f(audio("a=inactive\r\n")+video, true, []string{"1"}, map[string][]string{"1": {"f", "q"}})

	for _, bad := range []string{"", "hello", head, head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"} {
		if _, err := parseOffer(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestOrderLayers(t *testing.T) {
	f := func(in, want []string) {
		t.Helper()
		if got := orderLayers(in); !slices.Equal(got, want) {
			t.Errorf("orderLayers(%v) = %v, want %v", in, got, want)
		}
	}
	f([]string{"f", "h", "q"}, []string{"q", "h", "f"})
	f([]string{"high", "low"}, []string{"low", "high"})
	f([]string{"2", "0", "1"}, []string{"0", "1", "2"})
	f([]string{"b", "a", "c"}, []string{"b", "a", "c"}) // unknown names: the offer's order
	f([]string{"a", "b", "c", "d"}, []string{"a", "b", "c"})
	f(nil, nil)
}

// TestCallRefusals: the typed errors of starting, joining and ending calls,
// and of everything after Close.
func TestCallRefusals(t *testing.T) {
	s := newTestSFU(t, Options{})
	if _, err := s.Join(1, Peer{1, 1}, func(Event) {}); !errors.Is(err, ErrUnknownCall) {
		t.Errorf("join before start: %v, want ErrUnknownCall", err)
	}
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(1); !errors.Is(err, ErrCallExists) {
		t.Errorf("second start: %v, want ErrCallExists", err)
	}
	if err := s.End(2); !errors.Is(err, ErrUnknownCall) {
		t.Errorf("end of an unknown call: %v, want ErrUnknownCall", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(3); !errors.Is(err, ErrClosed) {
		t.Errorf("start after close: %v, want ErrClosed", err)
	}
	if _, err := s.Join(1, Peer{1, 1}, func(Event) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("join after close: %v, want ErrClosed", err)
	}
}

// TestMediaPortShared: ICE-TCP listens on the UDP media port's number.
func TestMediaPortShared(t *testing.T) {
	s := newTestSFU(t, Options{})
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Addr().Port)))
	if err != nil {
		t.Fatalf("no ICE-TCP on the media port: %v", err)
	}
	c.Close()

	s2 := newTestSFU(t, Options{DisableTCP: true})
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s2.Addr().Port))); err == nil {
		c.Close()
		t.Error("ICE-TCP listening with DisableTCP")
	}
}

// TestAbandonedCallEnds: a call nobody joins ends after EmptyTimeout.
func TestAbandonedCallEnds(t *testing.T) {
	ended := make(chan EndReason, 1)
	s := newTestSFU(t, Options{EmptyTimeout: 200 * time.Millisecond, CallEnded: func(_ uint64, why EndReason) { ended <- why }})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	select {
	case why := <-ended:
		if why != EndEmpty {
			t.Errorf("ended %s, want empty", why)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an abandoned call did not end")
	}
	if _, err := s.Join(1, Peer{1, 1}, func(Event) {}); !errors.Is(err, ErrUnknownCall) {
		t.Errorf("join of the abandoned call: %v, want ErrUnknownCall", err)
	}
}

// TestNAT1To1: with public addresses configured, the SFU's candidates carry
// them instead of the local address.
func TestNAT1To1(t *testing.T) {
	s := newTestSFU(t, Options{NAT1To1IPs: []string{"203.0.113.7"}})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	c := joinPeer(t, s, 1, Peer{1, 1}, 'a', peerOptions{})
	if err := c.addTracks(nil); err != nil {
		t.Fatal(err)
	}
	offer, err := c.pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := c.part.Publish(offer.SDP)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(answer, " 203.0.113.7 ") || strings.Contains(answer, " 127.0.0.1 ") {
		t.Errorf("answer's candidates:\n%s", candidateLines(answer))
	}
}

// candidateLines returns the a=candidate lines of an SDP.
func candidateLines(sdp string) string {
	var b strings.Builder
	for _, l := range strings.Split(sdp, "\r\n") {
		if strings.HasPrefix(l, "a=candidate") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestCloseRemovesEveryone: closing the SFU removes every participant of
// every call with ReasonClosed and reports each call's end; newTestSFU's
// cleanup then finds no goroutine left.
func TestCloseRemovesEveryone(t *testing.T) {
	ended := make(chan uint64, 2)
	s := newTestSFU(t, Options{CallEnded: func(call uint64, why EndReason) {
		if why == EndClosed {
			ended <- call
		}
	}})
	a := startCall(t, s, 1, 2)
	b := startCall(t, s, 2, 1)
	waitReceiving(t, a[0], a[1])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range append(a, b...) {
		waitFor(t, c.name+" removed", func() bool {
			return c.sawEvent(func(e Event) bool { return e.Kind == EventRemoved && e.Reason == ReasonClosed })
		})
	}
	got := []uint64{<-ended, <-ended}
	slices.Sort(got)
	if !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("calls ended %v, want [1 2]", got)
	}
}

// TestReplacedPeer: the same peer joining again replaces its participant.
func TestReplacedPeer(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	old := joinPeer(t, s, 1, Peer{1, 1}, 'a', peerOptions{})
	other := joinPeer(t, s, 1, Peer{2, 1}, 'b', peerOptions{})
	joinPeer(t, s, 1, Peer{1, 1}, 'A', peerOptions{})
	waitFor(t, "the old participant removed", func() bool {
		return old.sawEvent(func(e Event) bool { return e.Kind == EventRemoved && e.Reason == ReasonReplaced })
	})
	// Events come in order: once other hears of a later join, it would have
	// heard of a departure before it.
	joinPeer(t, s, 1, Peer{3, 1}, 'c', peerOptions{})
	waitFor(t, "other told of the third peer", func() bool {
		return other.sawEvent(func(e Event) bool { return e.Kind == EventJoined && e.Peer == Peer{3, 1} })
	})
	if other.sawEvent(func(e Event) bool { return e.Kind == EventLeft }) {
		t.Error("a reconnect was reported as leaving")
	}
}

// TestMetrics: a call's forwarded packets and participants are counted.
func TestMetrics(t *testing.T) {
	s := newTestSFU(t, Options{})
	peers := startCall(t, s, 1, 2)
	waitReceiving(t, peers[0], peers[1])
	value := func(name string) float64 {
		var b bytes.Buffer
		s.Metrics().WritePrometheus(&b)
		for _, l := range strings.Split(b.String(), "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s = %q", name, v)
				}
				return n
			}
		}
		t.Fatalf("no %s in\n%s", name, b.String())
		return 0
	}
	f := func(name string, atLeast float64) {
		t.Helper()
		waitFor(t, name+" counted", func() bool { return value(name) >= atLeast }) // the sweeper adds packets
	}
	f("gonets_calls_rooms", 1)
	f("gonets_calls_participants", 2)
	f("gonets_calls_forwarded_packets_total", 20)
	if n := value("gonets_calls_participants"); n != 2 {
		t.Errorf("gonets_calls_participants = %v, want 2", n)
	}
	peers[0].part.Leave()
	if n := value("gonets_calls_participants"); n != 1 {
		t.Errorf("gonets_calls_participants = %v after a leave, want 1", n)
	}
}

// TestLayerFit: the subscribed simulcast video is fitted into the bandwidth
// estimate, lowest layers first, never above a track's requested quality.
func TestLayerFit(t *testing.T) {
	opts, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	p := &Participant{sfu: &SFU{opts: opts}, subs: make(map[string]*subscription)}
	add := func(id string, kind Kind, layers int) *subscription {
		tr := &publishedTrack{info: Track{ID: id, Kind: kind, Layers: layers}}
		s := &subscription{track: tr, local: &trackLocal{track: tr, maxLayer: layers - 1}, requested: QualityHigh}
		p.subs[id] = s
		return s
	}
	mic := add("1.1.0", KindAudio, 1)
	camA := add("1.1.1", KindVideo, 3)
	camB := add("2.1.1", KindVideo, 3)
	f := func(estimate int, wantA, wantB int) {
		t.Helper()
		p.estimate.Store(int64(estimate))
		p.allocateLocked()
		if camA.local.maxLayer != wantA || camB.local.maxLayer != wantB || mic.local.maxLayer != 0 {
			t.Errorf("at %d bit/s: layers %d and %d, want %d and %d",
				estimate, camA.local.maxLayer, camB.local.maxLayer, wantA, wantB)
		}
	}
	f(3_200_000, 2, 2)
	f(1_000_000, 1, 0) // 40k audio, 2x150k, one raise of 350k fits, not two
	f(1_400_000, 1, 1)
	f(100_000, 0, 0) // the lowest layers even when nothing fits
	camB.requested = QualityLow
	f(3_200_000, 2, 0)
	camA.requested = QualityOff
	f(3_200_000, 2, 0) // A keeps its layer, muted
	if !camA.local.muted || camB.local.muted {
		t.Errorf("muted: A %v B %v, want A only", camA.local.muted, camB.local.muted)
	}
}

// TestQueuedConnNeverBlocks: writes to an ICE-TCP connection whose peer
// reads nothing return at once, dropping what the queue cannot hold, and the
// stalled connection is closed after its write timeout.
func TestQueuedConnNeverBlocks(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String()) // reads nothing
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := peer.(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	m := &sfuMetrics{tcpDropped: set.NewCounter("dropped"), tcpStalled: set.NewCounter("stalled")}
	q := newQueuedConn(c, m, 300*time.Millisecond)
	defer q.Close()

	pkt := make([]byte, 1200)
	start := time.Now()
	for range 20_000 { // 24 MB: far beyond the socket buffers and the queue
		if _, err := q.Write(pkt); err != nil {
			break
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("20,000 writes to a stalled connection took %v", d)
	}
	if m.tcpDropped.Get() == 0 {
		t.Error("nothing dropped")
	}
	waitFor(t, "the stalled connection closed", func() bool {
		_, err := q.Write(pkt)
		return errors.Is(err, net.ErrClosed)
	})
	if m.tcpStalled.Get() != 1 {
		t.Errorf("stalled connections counted: %d, want 1", m.tcpStalled.Get())
	}
}

// TestRelayCandidates: with a TURN server configured (over TCP) the SFU
// offers relay candidates beside its host ones, and no server-reflexive
// ones.
func TestRelayCandidates(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const realm, user, pass = "gonets", "sfu", "secret"
	key := turn.GenerateAuthKey(user, realm, pass)
	server, err := turn.NewServer(turn.ServerConfig{
		Realm: realm,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			return ra.Username, key, ra.Username == user
		},
		ListenerConfigs: []turn.ListenerConfig{{
			Listener:              ln,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSFU(t, Options{RelayServers: []webrtc.ICEServer{{
		URLs:     []string{"turn:" + ln.Addr().String() + "?transport=tcp"},
		Username: user, Credential: pass,
	}}})
	t.Cleanup(func() { server.Close() }) // after the SFU's close: cleanups run last first
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	c := joinPeer(t, s, 1, Peer{1, 1}, 'a', peerOptions{})
	if err := c.addTracks(nil); err != nil {
		t.Fatal(err)
	}
	offer, err := c.pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := c.part.Publish(offer.SDP)
	if err != nil {
		t.Fatal(err)
	}
	cands := candidateLines(answer)
	if !strings.Contains(cands, "typ relay") || !strings.Contains(cands, "typ host") || strings.Contains(cands, "typ srflx") {
		t.Errorf("answer's candidates:\n%s", cands)
	}
}
