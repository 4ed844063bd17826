package callsfu

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pion/webrtc/v4"
)

// streamEvents records a participant's events.
type streamEvents struct {
	mu     sync.Mutex // guards events
	events []Event
}

// add is the participant's events function.
func (l *streamEvents) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// kinds returns the kinds of the events recorded.
func (l *streamEvents) kinds() []EventKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var kinds []EventKind
	for _, e := range l.events {
		kinds = append(kinds, e.Kind)
	}
	return kinds
}

// TestStreamRoles: in a call with a member, an encoder (JoinPublisher) and
// a player (Play), the member receives the encoder's tracks while the
// encoder is offered nothing; the player plays the first track of each kind
// by ID, is announced to nobody and hears only its removal, which comes
// (ReasonStreamEnded) when the tracks it plays end; neither may do what its
// role has no connection for.
func TestStreamRoles(t *testing.T) {
	s := newTestSFU(t, Options{MaxStreamPublishers: 2})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	member := joinPeer(t, s, 1, Peer{1, 1}, 1, peerOptions{})
	if err := member.publish(); err != nil {
		t.Fatal(err)
	}

	enc := newClient(t, "encoder", 2)
	if err := enc.addTracks(nil); err != nil {
		t.Fatal(err)
	}
	enc.pub.OnICECandidate(func(*webrtc.ICECandidate) {})
	var encEvents, playerEvents streamEvents
	encoder, answer, err := s.JoinPublisher(1, Peer{2, 1}, gatheredOffer(t, enc.pub), encEvents.add)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	enc.startSending()
	waitFor(t, "the member receiving the encoder", func() bool {
		ids := member.publishedBy(Peer{2, 1})
		return len(ids) == 2 && member.flowing(10, ids...)
	})

	pl := newClient(t, "player", 0)
	if pl.sub, err = newTestAPI(t, peerOptions{}, TargetSubscriber).NewPeerConnection(webrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	pl.sub.OnTrack(pl.onTrack)
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pl.sub.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	player, answer, err := s.Play(1, Peer{3, 1}, gatheredOffer(t, pl.sub), playerEvents.add)
	if err != nil {
		t.Fatal(err)
	}
	if err := pl.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the player playing the member's tracks", func() bool { return pl.flowing(10, "1.1.0", "1.1.1") })
	if ids := pl.publishedTrackIDs(); !slices.Equal(ids, []string{"1.1.0", "1.1.1"}) {
		t.Errorf("the player receives %v, want the first audio and video by ID", ids)
	}

	for _, k := range encEvents.kinds() {
		if k == EventOffer || k == EventCandidate {
			t.Errorf("the encoder was sent an event of kind %d", k)
		}
	}
	if member.sawEvent(func(e Event) bool { return e.Peer == Peer{3, 1} }) {
		t.Error("the member heard of the player")
	}
	if !member.sawEvent(func(e Event) bool { return e.Kind == EventJoined && e.Peer == Peer{2, 1} }) {
		t.Error("the member did not hear the encoder join")
	}
	if _, err := player.Publish(answer); CodeOf(err) != CodeBadRequest {
		t.Errorf("a player's Publish: %v", err)
	}
	if err := encoder.RestartICE(); CodeOf(err) != CodeBadRequest {
		t.Errorf("an encoder's RestartICE: %v", err)
	}
	cand := Candidate{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", SDPMid: "0"}
	if err := encoder.AddCandidate(TargetSubscriber, cand); CodeOf(err) != CodeBadCandidate {
		t.Errorf("a subscriber candidate of the encoder: %v", err)
	}

	member.part.Leave()
	waitFor(t, "the player's removal", func() bool { return len(playerEvents.kinds()) > 0 })
	playerEvents.mu.Lock()
	got := playerEvents.events
	playerEvents.mu.Unlock()
	if len(got) != 1 || got[0].Kind != EventRemoved || got[0].Reason != ReasonStreamEnded {
		t.Errorf("the player heard %+v, want its removal for the stream's end only", got)
	}
	encoder.room.mu.Lock()
	stays := encoder.room.participants[seat{peer: Peer{2, 1}}] == encoder
	encoder.room.mu.Unlock()
	if !stays {
		t.Error("the encoder left with the member")
	}
}

// TestJoinPublisherCodecRefused: an encoder offering video in a codec the
// SFU does not forward (VP9) is refused with ErrBadSDP
// naming the codecs, instead of publishing its audio alone, and the call is
// as it was.
func TestJoinPublisherCodecRefused(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(opusCodec, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	vp9 := webrtc.RTPCodecParameters{PayloadType: 98, RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0",
	}}
	if err := m.RegisterCodec(vp9, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, c := range []webrtc.RTPCodecCapability{opusCodec.RTPCodecCapability, vp9.RTPCodecCapability} {
		l, err := webrtc.NewTrackLocalStaticRTP(c, "t", "s")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTrack(l); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.JoinPublisher(1, Peer{1, 1}, offer.SDP, nil)
	if CodeOf(err) != CodeBadSDP || !strings.Contains(err.Error(), "video/VP8") || !strings.Contains(err.Error(), "video/H264") {
		t.Fatalf("a VP9 encoder: %v, want ErrBadSDP naming VP8 and H.264", err)
	}
	r, err := s.room(1)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.participants) != 0 || len(r.publishers) != 0 || r.joined {
		t.Errorf("the refusal changed the call: %d participants, %d publishers, joined %v",
			len(r.participants), len(r.publishers), r.joined)
	}
}

// TestPlayWaitsForEveryOfferedTrack: a player is refused ErrNotLive while
// an encoder that joined moments ago has sent media on only some of the
// sections it offered (its video came, its audio not yet): admitted then,
// the player could never get the audio (WHEP has no renegotiation). Once
// every offered track is up, it plays them all.
func TestPlayWaitsForEveryOfferedTrack(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	enc := newClient(t, "encoder", 2)
	if err := enc.addTracks(nil); err != nil {
		t.Fatal(err)
	}
	enc.pub.OnICECandidate(func(*webrtc.ICECandidate) {})
	enc.mu.Lock()
	all := slices.Clone(enc.sending)
	var video []*sentTrack
	for _, st := range all {
		if st.kind == webrtc.RTPCodecTypeVideo {
			video = append(video, st)
		}
	}
	enc.sending = video
	enc.mu.Unlock()
	encoder, answer, err := s.JoinPublisher(1, Peer{2, 1}, gatheredOffer(t, enc.pub), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	enc.startSending()
	waitFor(t, "the encoder's video published", func() bool {
		encoder.room.mu.Lock()
		defer encoder.room.mu.Unlock()
		return len(encoder.room.tracks) == 1
	})
	play := func() (*testPeer, error) {
		pl := newClient(t, "player", 0)
		var err error
		if pl.sub, err = newTestAPI(t, peerOptions{}, TargetSubscriber).NewPeerConnection(webrtc.Configuration{}); err != nil {
			t.Fatal(err)
		}
		pl.sub.OnTrack(pl.onTrack)
		for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if _, err := pl.sub.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				t.Fatal(err)
			}
		}
		_, answer, err := s.Play(1, Peer{3, 1}, gatheredOffer(t, pl.sub), nil)
		if err != nil {
			return nil, err
		}
		return pl, pl.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
	}
	if _, err := play(); !errors.Is(err, ErrNotLive) {
		t.Fatalf("play with the encoder's audio not yet up: %v, want ErrNotLive", err)
	}
	enc.mu.Lock()
	enc.sending = all
	enc.mu.Unlock()
	waitFor(t, "the encoder's audio published", func() bool {
		encoder.room.mu.Lock()
		defer encoder.room.mu.Unlock()
		return len(encoder.room.tracks) == 2
	})
	pl, err := play()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the player receiving audio and video", func() bool { return len(pl.publishedTrackIDs()) == 2 })
}
