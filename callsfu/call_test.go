package callsfu

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// newTestSFU starts an SFU on an ephemeral loopback port, closed at the end
// of the test, after which no goroutine of the test may be left.
func newTestSFU(t *testing.T, o Options) *SFU {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if o.ListenAddr == "" {
		o.ListenAddr = "127.0.0.1:0"
	}
	s, err := New(o)
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

// TestOneToOneCall: two participants each publish audio and video and each
// receives the other's two tracks, on SSRCs of the SFU's own.
func TestOneToOneCall(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	alice := joinPeer(t, s, 1, Peer{1, 1}, 'a', peerOptions{})

	bob := joinPeer(t, s, 1, Peer{2, 1}, 'b', peerOptions{})

	for _, c := range []*testPeer{alice, bob} {
		if err := c.publish(); err != nil {
			t.Fatalf("%s publish: %v", c.name, err)
		}
	}
	waitFor(t, "both tracks announced both ways", func() bool {
		return len(alice.publishedBy(bob.part.Peer())) == 2 && len(bob.publishedBy(alice.part.Peer())) == 2
	})
	check := func(sub, pub *testPeer) {
		t.Helper()
		ids := sub.publishedBy(pub.part.Peer())
		waitFor(t, sub.name+" receiving "+pub.name, func() bool { return sub.flowing(20, ids...) })
		sent := map[uint32]bool{}
		for _, st := range pub.sending {
			for _, e := range st.sender.GetParameters().Encodings {
				sent[uint32(e.SSRC)] = true
			}
		}
		for _, id := range ids {
			rt := sub.track(id)
			if sent[rt.ssrc] {
				t.Errorf("%s got %s on the publisher's SSRC %d", sub.name, id, rt.ssrc)
			}
			if n := rt.badSSRC.Load(); n > 0 {
				t.Errorf("%s got %d packets of %s off its SSRC %d", sub.name, n, id, rt.ssrc)
			}
			if tag := byte(rt.lastTag.Load() >> 8); tag != pub.tag {
				t.Errorf("%s got %s tagged %q, want %q", sub.name, id, tag, pub.tag)
			}
		}
	}
	check(alice, bob)
	check(bob, alice)
}

// testWriter sends the SFU's logs to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// startCall starts call on s and joins n test clients to it, each tagged
// 'a', 'b', … and publishing audio and video.
func startCall(t *testing.T, s *SFU, call uint64, n int) []*testPeer {
	t.Helper()
	if err := s.Start(call); err != nil {
		t.Fatal(err)
	}
	peers := make([]*testPeer, n)
	for i := range peers {
		peers[i] = joinPeer(t, s, call, Peer{User: uint64(i + 1), Device: 1}, byte('a'+i), peerOptions{})
		if err := peers[i].publish(); err != nil {
			t.Fatalf("%s publish: %v", peers[i].name, err)
		}
	}
	return peers
}

// waitReceiving waits until sub gets packets of both of pub's tracks, tagged
// as pub's.
func waitReceiving(t *testing.T, sub, pub *testPeer) {
	t.Helper()
	waitFor(t, sub.name+" receiving "+pub.name, func() bool {
		ids := sub.publishedBy(pub.part.Peer())
		if len(ids) != 2 || !sub.flowing(10, ids...) {
			return false
		}
		for _, id := range ids {
			if byte(sub.track(id).lastTag.Load()>>8) != pub.tag {
				return false
			}
		}
		return true
	})
}

// TestThreePartyCall: each of three participants receives the other two's
// audio and video, and nothing of its own.
func TestThreePartyCall(t *testing.T) {
	s := newTestSFU(t, Options{})
	peers := startCall(t, s, 7, 3)
	for _, sub := range peers {
		for _, pub := range peers {
			if sub != pub {
				waitReceiving(t, sub, pub)
			}
		}
		own := sub.publishedBy(sub.part.Peer())
		if len(own) != 2 {
			t.Errorf("%s was told of %d tracks of its own, want 2", sub.name, len(own))
		}
		for _, id := range own {
			if sub.track(id) != nil {
				t.Errorf("%s was sent its own track %s", sub.name, id)
			}
		}
	}
}

// TestLeave: a participant that leaves is gone for the others (EventLeft,
// its tracks removed), and the call ends, with every goroutine, when the
// last one leaves.
func TestLeave(t *testing.T) {
	ended := make(chan EndReason, 1)
	s := newTestSFU(t, Options{CallEnded: func(call uint64, why EndReason) { ended <- why }})
	peers := startCall(t, s, 3, 2)
	alice, bob := peers[0], peers[1]
	waitReceiving(t, bob, alice)
	aliceTracks := bob.publishedBy(alice.part.Peer())

	alice.part.Leave()
	waitFor(t, "bob told alice left", func() bool {
		return bob.sawEvent(func(e Event) bool { return e.Kind == EventLeft && e.Peer == alice.part.Peer() })
	})
	for _, id := range aliceTracks {
		waitFor(t, "bob told "+id+" is removed", func() bool {
			return bob.sawEvent(func(e Event) bool { return e.Kind == EventTrackRemoved && e.Track.ID == id })
		})
	}
	if _, err := alice.part.Publish("v=0\r\n"); !errors.Is(err, ErrLeft) && !errors.Is(err, ErrBadSDP) {
		t.Errorf("publish after leave: %v, want a refusal", err)
	}
	select {
	case why := <-ended:
		t.Fatalf("call ended (%s) with bob still in it", why)
	default:
	}

	bob.part.Leave()
	select {
	case why := <-ended:
		if why != EndEmpty {
			t.Errorf("call ended with %s, want empty", why)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("call did not end when the last participant left")
	}
	if _, err := s.Join(3, Peer{9, 9}, func(Event) {}); !errors.Is(err, ErrUnknownCall) {
		t.Errorf("join of an ended call: %v, want ErrUnknownCall", err)
	}
	if err := s.Start(3); err != nil {
		t.Errorf("start of the ended call again: %v", err)
	}
}

// TestICEFailureRemoves: a participant whose network vanishes is removed
// when ICE fails (ReasonICEFailed), and the others are told it left.
func TestICEFailureRemoves(t *testing.T) {
	s := newTestSFU(t, Options{ICEDisconnectedTimeout: 500 * time.Millisecond, ICEFailedTimeout: 500 * time.Millisecond,
		SilenceTimeout: time.Minute})
	if err := s.Start(4); err != nil {
		t.Fatal(err)
	}
	var cut atomic.Bool
	alice := joinPeer(t, s, 4, Peer{1, 1}, 'a', peerOptions{cut: &cut})
	bob := joinPeer(t, s, 4, Peer{2, 1}, 'b', peerOptions{})
	for _, c := range []*testPeer{alice, bob} {
		if err := c.publish(); err != nil {
			t.Fatal(err)
		}
	}
	waitReceiving(t, bob, alice)
	waitReceiving(t, alice, bob)

	cut.Store(true)
	waitFor(t, "alice removed for ICE failure", func() bool {
		return alice.sawEvent(func(e Event) bool { return e.Kind == EventRemoved && e.Reason == ReasonICEFailed })
	})
	waitFor(t, "bob told alice left", func() bool {
		return bob.sawEvent(func(e Event) bool { return e.Kind == EventLeft && e.Peer == alice.part.Peer() })
	})
	if err := alice.part.AddCandidate(TargetPublisher, Candidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"}); !errors.Is(err, ErrLeft) {
		t.Errorf("candidate after removal: %v, want ErrLeft", err)
	}
}

// TestSilentRemoved: a participant that publishes but never sends a packet
// is removed after SilenceTimeout.
func TestSilentRemoved(t *testing.T) {
	s := newTestSFU(t, Options{SilenceTimeout: 400 * time.Millisecond})
	if err := s.Start(5); err != nil {
		t.Fatal(err)
	}
	bob := joinPeer(t, s, 5, Peer{2, 1}, 'b', peerOptions{})
	mute := joinPeer(t, s, 5, Peer{1, 1}, 'a', peerOptions{})
	if err := mute.addTracks(nil); err != nil {
		t.Fatal(err)
	}
	offer, err := mute.pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mute.part.Publish(offer.SDP); err != nil { // and never connects
		t.Fatal(err)
	}
	waitFor(t, "the silent publisher removed", func() bool {
		return mute.sawEvent(func(e Event) bool { return e.Kind == EventRemoved && e.Reason == ReasonSilent })
	})
	time.Sleep(2 * 400 * time.Millisecond)
	if bob.sawEvent(func(e Event) bool { return e.Kind == EventRemoved }) {
		t.Error("bob, who neither publishes nor is sent anything, was removed")
	}
}

// TestEndRemovesEveryone: End hangs up: every participant is removed with
// ReasonCallEnded.
func TestEndRemovesEveryone(t *testing.T) {
	s := newTestSFU(t, Options{})
	peers := startCall(t, s, 6, 2)
	waitReceiving(t, peers[1], peers[0])
	if err := s.End(6); err != nil {
		t.Fatal(err)
	}
	for _, c := range peers {
		waitFor(t, c.name+" removed", func() bool {
			return c.sawEvent(func(e Event) bool { return e.Kind == EventRemoved && e.Reason == ReasonCallEnded })
		})
	}
	if err := s.End(6); !errors.Is(err, ErrUnknownCall) {
		t.Errorf("second End: %v, want ErrUnknownCall", err)
	}
}

// TestTooManyPublishers: a publisher beyond MaxPublishers is refused, and
// the refusal changes nothing: the refused participant has no publisher
// PeerConnection, still receives the publisher, and can publish once the
// slot frees.
func TestTooManyPublishers(t *testing.T) {
	s := newTestSFU(t, Options{MaxPublishers: 1})
	if err := s.Start(8); err != nil {
		t.Fatal(err)
	}
	alice := joinPeer(t, s, 8, Peer{1, 1}, 'a', peerOptions{})
	bob := joinPeer(t, s, 8, Peer{2, 1}, 'b', peerOptions{})
	carol := joinPeer(t, s, 8, Peer{3, 1}, 'c', peerOptions{})
	if err := alice.publish(); err != nil {
		t.Fatal(err)
	}
	err := bob.publish()
	if !errors.Is(err, ErrTooManyPublishers) || CodeOf(err) != CodeTooManyPublishers {
		t.Fatalf("second publisher: %v, want ErrTooManyPublishers", err)
	}
	bob.part.mu.Lock()
	hasPub := bob.part.pub != nil
	bob.part.mu.Unlock()
	if hasPub {
		t.Error("the refused publisher got a publisher PeerConnection")
	}
	waitReceiving(t, bob, alice)
	waitReceiving(t, carol, alice)
	if ids := carol.publishedBy(bob.part.Peer()); len(ids) != 0 {
		t.Errorf("carol was offered the refused publisher's tracks %v", ids)
	}

	alice.part.Leave()
	bob.close() // the refused attempt's client side
	bob2 := joinPeer(t, s, 8, Peer{2, 1}, 'B', peerOptions{})
	if err := bob2.publish(); err != nil {
		t.Fatalf("publish once the slot is free: %v", err)
	}
	waitReceiving(t, carol, bob2)
}

// TestBadSDPRefused: offers and answers that are not SDP, or that pion
// cannot apply, are refused with ErrBadSDP and change nothing.
func TestBadSDPRefused(t *testing.T) {
	s := newTestSFU(t, Options{MaxPublishers: 1})
	if err := s.Start(9); err != nil {
		t.Fatal(err)
	}
	c := joinPeer(t, s, 9, Peer{1, 1}, 'a', peerOptions{})
	noICE := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n"
	for _, offer := range []string{"", "hello", "v=0\r\n", noICE} {
		_, err := c.part.Publish(offer)
		if !errors.Is(err, ErrBadSDP) || CodeOf(err) != CodeBadSDP {
			t.Errorf("offer %q: %v, want ErrBadSDP", offer, err)
		}
	}
	if err := c.part.Answer("v=0"); !errors.Is(err, ErrBadSDP) {
		t.Errorf("answer with no offer out: %v, want ErrBadSDP", err)
	}
	c.part.mu.Lock()
	hasPub := c.part.pub != nil
	c.part.mu.Unlock()
	if hasPub {
		t.Error("a refused offer left a publisher PeerConnection")
	}
	// The refused offers took no publisher slot: the only one is free.
	if err := c.publish(); err != nil {
		t.Fatalf("a good offer after the bad ones: %v", err)
	}
}

// TestSimulcastLayerRequest: a publisher sends three rid layers; the
// subscriber gets the one its request and bandwidth estimate allow, switches
// when it asks for another, and gets nothing of the track while it asks for
// none.
func TestSimulcastLayerRequest(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(10); err != nil {
		t.Fatal(err)
	}
	alice := joinPeer(t, s, 10, Peer{1, 1}, 'a', peerOptions{})
	bob := joinPeer(t, s, 10, Peer{2, 1}, 'b', peerOptions{})
	if err := alice.publish("q", "h", "f"); err != nil {
		t.Fatal(err)
	}
	var video Track
	waitFor(t, "alice's video announced", func() bool {
		return bob.sawEvent(func(e Event) bool {
			if e.Kind == EventTrackPublished && e.Track.Kind == KindVideo {
				video = e.Track
				return true
			}
			return false
		})
	})
	if video.Layers != 3 {
		t.Fatalf("video announced with %d layers, want 3", video.Layers)
	}
	onLayer := func(layer int) func() bool {
		return func() bool {
			rt := bob.track(video.ID)
			return rt != nil && rt.lastTag.Load() == int32('a')<<8|int32(layer)
		}
	}
	if err := bob.part.RequestLayer(video.ID, QualityLow); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob on the low layer", onLayer(0))
	if err := bob.part.RequestLayer(video.ID, QualityMedium); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob on the medium layer", onLayer(1))

	if err := bob.part.RequestLayer(video.ID, QualityOff); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // packets in flight
	before := bob.track(video.ID).packets.Load()
	time.Sleep(300 * time.Millisecond)
	if got := bob.track(video.ID).packets.Load() - before; got != 0 {
		t.Errorf("%d packets of a track requested off", got)
	}
	if err := bob.part.RequestLayer("1.1.nope", QualityLow); !errors.Is(err, ErrUnknownTrack) {
		t.Errorf("request of an unknown track: %v, want ErrUnknownTrack", err)
	}
}

// TestMute: a muted track stops reaching the others, who are told, and
// flows again when unmuted.
func TestMute(t *testing.T) {
	s := newTestSFU(t, Options{})
	peers := startCall(t, s, 11, 2)
	alice, bob := peers[0], peers[1]
	waitReceiving(t, bob, alice)
	var audio string
	for _, id := range bob.publishedBy(alice.part.Peer()) {
		if bob.track(id).kind == webrtc.RTPCodecTypeAudio {
			audio = id
		}
	}
	if err := alice.part.SetMuted(audio, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob told alice muted", func() bool {
		return bob.sawEvent(func(e Event) bool { return e.Kind == EventTrackMuted && e.Track.ID == audio && e.Track.Muted })
	})
	time.Sleep(100 * time.Millisecond)
	before := bob.track(audio).packets.Load()
	time.Sleep(300 * time.Millisecond)
	if got := bob.track(audio).packets.Load() - before; got != 0 {
		t.Errorf("%d packets of a muted track", got)
	}
	if err := alice.part.SetMuted(audio, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice's audio again", func() bool { return bob.track(audio).packets.Load() > before+10 })
	if err := bob.part.SetMuted(audio, true); !errors.Is(err, ErrUnknownTrack) {
		t.Errorf("muting another's track: %v, want ErrUnknownTrack", err)
	}
}

// TestICETCP: a client that can only use TCP reaches the SFU over ICE-TCP
// on the media port number.
func TestICETCP(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(12); err != nil {
		t.Fatal(err)
	}
	alice := joinPeer(t, s, 12, Peer{1, 1}, 'a', peerOptions{tcp: true})
	bob := joinPeer(t, s, 12, Peer{2, 1}, 'b', peerOptions{tcp: true})
	for _, c := range []*testPeer{alice, bob} {
		if err := c.publish(); err != nil {
			t.Fatal(err)
		}
	}
	waitReceiving(t, bob, alice)
	waitReceiving(t, alice, bob)
	pair, err := alice.pub.GetSenders()[0].Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("no selected candidate pair: %v", err)
	}
	if pair.Remote.Protocol != webrtc.ICEProtocolTCP || pair.Remote.Port != uint16(s.Addr().Port) {
		t.Errorf("selected pair to %s %s:%d, want tcp to the media port %d",
			pair.Remote.Protocol, pair.Remote.Address, pair.Remote.Port, s.Addr().Port)
	}
}

// TestActiveSpeaker: everyone is told who speaks, from the audio level
// header extension of the speaker's packets.
func TestActiveSpeaker(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(13); err != nil {
		t.Fatal(err)
	}
	alice := joinPeer(t, s, 13, Peer{1, 1}, 'a', peerOptions{})
	bob := joinPeer(t, s, 13, Peer{2, 1}, 'b', peerOptions{})
	alice.level = 20 // -20 dBov: speech
	for _, c := range []*testPeer{alice, bob} {
		if err := c.publish(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*testPeer{alice, bob} {
		waitFor(t, c.name+" told alice speaks", func() bool {
			return c.sawEvent(func(e Event) bool {
				return e.Kind == EventSpeakers && len(e.Speakers) == 1 && e.Speakers[0] == alice.part.Peer()
			})
		})
	}
	if bob.sawEvent(func(e Event) bool { return e.Kind == EventSpeakers && slices.Contains(e.Speakers, bob.part.Peer()) }) {
		t.Error("silent bob reported speaking")
	}
}

// TestTooManyTracks: an offer with more media sections than MaxTracks is
// refused and creates nothing.
func TestTooManyTracks(t *testing.T) {
	s := newTestSFU(t, Options{MaxTracks: 1})
	if err := s.Start(14); err != nil {
		t.Fatal(err)
	}
	c := joinPeer(t, s, 14, Peer{1, 1}, 'a', peerOptions{})
	err := c.publish() // audio and video
	if !errors.Is(err, ErrTooManyTracks) || CodeOf(err) != CodeTooManyTracks {
		t.Fatalf("two tracks with MaxTracks 1: %v, want ErrTooManyTracks", err)
	}
	c.part.mu.Lock()
	defer c.part.mu.Unlock()
	if c.part.pub != nil || c.part.publishing {
		t.Error("a refused offer left a publisher PeerConnection or slot")
	}
}

// TestNACKRecovery: with one RTP packet in 20 lost on the publisher's uplink
// and one in 20 on the subscriber's downlink, NACKs recover them both ways:
// the SFU's NACKs to the publisher, and its resends from the ring to the
// subscriber, leave the subscriber's video without gaps.
func TestNACKRecovery(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(15); err != nil {
		t.Fatal(err)
	}
	lossy := peerOptions{dropEvery: 20}
	alice := joinPeer(t, s, 15, Peer{1, 1}, 'a', lossy)
	bob := joinPeer(t, s, 15, Peer{2, 1}, 'b', lossy)
	if err := alice.publish(); err != nil {
		t.Fatal(err)
	}
	var video string
	waitFor(t, "alice's video announced", func() bool {
		return bob.sawEvent(func(e Event) bool {
			video = e.Track.ID
			return e.Kind == EventTrackPublished && e.Track.Kind == KindVideo
		})
	})
	const window, settle = 200, 30 // packets checked, and the newest left to their NACK round
	waitFor(t, "enough video", func() bool {
		rt := bob.track(video)
		return rt != nil && rt.received() > window+settle+50
	})
	rt := bob.track(video)
	if lost := rt.missing(settle, window); lost > 2 {
		t.Errorf("%d of %d video packets never arrived (10%% were dropped on the way)", lost, window)
	}
	if n := s.m.nacks.Get(); n == 0 {
		t.Error("no NACK from the subscriber counted")
	}
}

// TestKeyframeRequestReachesPublisher: a subscriber's PLI reaches the
// publisher as a PLI on its video SSRC.
func TestKeyframeRequestReachesPublisher(t *testing.T) {
	s := newTestSFU(t, Options{})
	peers := startCall(t, s, 16, 2)
	alice, bob := peers[0], peers[1]
	waitReceiving(t, bob, alice)
	plis := &alice.sending[1].plis
	time.Sleep(pliInterval) // past the throttle of the subscription's own request
	before := plis.Load()
	var ssrc uint32
	for _, id := range bob.publishedBy(alice.part.Peer()) {
		if rt := bob.track(id); rt.kind == webrtc.RTPCodecTypeVideo {
			ssrc = rt.ssrc
		}
	}
	for range 5 {
		if err := bob.sub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "alice asked for a keyframe", func() bool { return plis.Load() > before })
	time.Sleep(200 * time.Millisecond)
	if n := plis.Load() - before; n > 1 {
		t.Errorf("%d PLIs reached the publisher within a second, want 1", n)
	}
}

// TestScreenShare: a participant starts sharing its screen (a second video
// track, offered in a renegotiation) and stops; the other receives it and is
// told when it goes.
func TestScreenShare(t *testing.T) {
	s := newTestSFU(t, Options{})
	peers := startCall(t, s, 17, 2)
	alice, bob := peers[0], peers[1]
	waitReceiving(t, bob, alice)
	screen, err := alice.addScreen()
	if err != nil {
		t.Fatal(err)
	}
	var shared Track
	waitFor(t, "bob told of alice's screen", func() bool {
		return bob.sawEvent(func(e Event) bool {
			shared = e.Track
			return e.Kind == EventTrackPublished && e.Track.Name == "screen"
		})
	})
	if shared.Kind != KindVideo || shared.Peer != alice.part.Peer() {
		t.Errorf("screen announced as %+v", shared)
	}
	waitFor(t, "bob receiving alice's screen", func() bool { return bob.flowing(20, shared.ID) })
	if err := alice.stopTrack(screen); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob told the screen share stopped", func() bool {
		return bob.sawEvent(func(e Event) bool { return e.Kind == EventTrackRemoved && e.Track.ID == shared.ID })
	})
	for _, id := range bob.publishedBy(alice.part.Peer()) {
		if id != shared.ID {
			before := bob.track(id).packets.Load()
			waitFor(t, "alice's other tracks still flowing", func() bool { return bob.track(id).packets.Load() > before+10 })
		}
	}
}

// TestClientClosedRemoves: a client that closes a PeerConnection without
// leaving is removed at once (DTLS close_notify), not after the silence.
func TestClientClosedRemoves(t *testing.T) {
	s := newTestSFU(t, Options{SilenceTimeout: time.Minute})
	peers := startCall(t, s, 18, 2)
	alice, bob := peers[0], peers[1]
	waitReceiving(t, bob, alice)
	if err := alice.pub.GracefulClose(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice removed", func() bool {
		return alice.sawEvent(func(e Event) bool { return e.Kind == EventRemoved && e.Reason == ReasonClientClosed })
	})
	waitFor(t, "bob told alice left", func() bool {
		return bob.sawEvent(func(e Event) bool { return e.Kind == EventLeft && e.Peer == alice.part.Peer() })
	})
}

// TestLayerFollowsBandwidth: when a subscriber's downlink starts losing
// packets, its bandwidth estimate (GCC, from its transport-wide CC feedback)
// falls, and the SFU moves it to a lower simulcast layer on its own.
func TestLayerFollowsBandwidth(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(19); err != nil {
		t.Fatal(err)
	}
	alice := joinPeer(t, s, 19, Peer{1, 1}, 'a', peerOptions{})
	bob := joinPeer(t, s, 19, Peer{2, 1}, 'b', peerOptions{dropEvery: 4}) // a quarter lost
	if err := alice.publish("q", "h", "f"); err != nil {
		t.Fatal(err)
	}
	var video string
	waitFor(t, "alice's video announced", func() bool {
		return bob.sawEvent(func(e Event) bool {
			video = e.Track.ID
			return e.Kind == EventTrackPublished && e.Track.Kind == KindVideo
		})
	})
	// The estimate starts at 1 Mbit/s: room for the medium layer.
	waitFor(t, "bob on the medium layer", func() bool {
		rt := bob.track(video)
		return rt != nil && rt.layers.Load()&(1<<1) != 0
	})
	waitFor(t, "bob moved to the low layer", func() bool {
		rt := bob.track(video)
		return rt.lastTag.Load()&0xff == 0 && bob.part.estimate.Load() < 540_000
	})
}

// TestRestartICE: a subscriber whose network changed gets an offer with new
// ICE credentials and, once it answers, its media again.
func TestRestartICE(t *testing.T) {
	s := newTestSFU(t, Options{})
	peers := startCall(t, s, 20, 2)
	alice, bob := peers[0], peers[1]
	waitReceiving(t, bob, alice)
	offers := func() []string {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		var sdps []string
		for _, e := range bob.events {
			if e.Kind == EventOffer {
				sdps = append(sdps, e.SDP)
			}
		}
		return sdps
	}
	before := len(offers())
	if err := bob.part.RestartICE(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restart offer", func() bool { return len(offers()) > before })
	sdps := offers()
	if a, b := iceUfrag(sdps[before-1]), iceUfrag(sdps[before]); a == b {
		t.Errorf("restart offer kept the ICE username fragment %q", a)
	}
	ids := bob.publishedBy(alice.part.Peer())
	n := bob.track(ids[0]).packets.Load()
	waitFor(t, "media after the restart", func() bool { return bob.track(ids[0]).packets.Load() > n+20 })
}

// iceUfrag returns an SDP's first ICE username fragment.
func iceUfrag(sdp string) string {
	for _, l := range strings.Split(sdp, "\r\n") {
		if u, ok := strings.CutPrefix(l, "a=ice-ufrag:"); ok {
			return u
		}
	}
	return ""
}
