package callsfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/brokertest"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// TestBrokerMediaErrors: each refusal of the SFU reaches the broker as the
// broker's sentinel of its kind, keeps the SFU's own sentinel and message,
// and says who and what it was about.
func TestBrokerMediaErrors(t *testing.T) {
	p := broker.CallParticipant{Call: 9, User: 5, Device: 2}
	f := func(sfuErr, want error) {
		t.Helper()
		err := mediaErr("publish", p, fmt.Errorf("callsfu: detail: %w", sfuErr))
		if want != nil && !errors.Is(err, want) {
			t.Errorf("%v: not %v", err, want)
		}
		for _, other := range []error{broker.ErrBadSDP, broker.ErrTooManyPublishers, broker.ErrUnknownCall, broker.ErrBadRequest, broker.ErrShutdown} {
			if other != want && errors.Is(err, other) {
				t.Errorf("%v is %v too", err, other)
			}
		}
		if !errors.Is(err, sfuErr) {
			t.Errorf("%v lost the SFU's %v", err, sfuErr)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "callsfu: publish 5.2 in call 9: callsfu: detail: ") || strings.Contains(msg, "broker:") {
			t.Errorf("message %q", msg)
		}
	}
	f(ErrBadSDP, broker.ErrBadSDP)
	f(ErrTooManyTracks, broker.ErrBadSDP)
	f(ErrTooManyPublishers, broker.ErrTooManyPublishers)
	f(ErrUnknownCall, broker.ErrUnknownCall)
	f(ErrLeft, broker.ErrUnknownCall)
	f(ErrUnknownTrack, broker.ErrBadRequest)
	f(ErrBadCandidate, broker.ErrBadRequest)
	f(ErrBadRequest, broker.ErrBadRequest)
	f(ErrClosed, broker.ErrShutdown)
	f(errors.New("dtls: handshake"), nil) // the node's fault: no client code
}

func TestBrokerMediaQuality(t *testing.T) {
	for q, want := range map[broker.CallQuality]Quality{
		broker.CallQualityLow: QualityLow, broker.CallQualityMedium: QualityMedium,
		broker.CallQualityHigh: QualityHigh, broker.CallQualityOff: QualityOff,
	} {
		if got, err := qualityOf(q); got != want || err != nil {
			t.Errorf("qualityOf(%d) = %d, %v; want %d", q, got, err, want)
		}
	}
	for _, q := range []broker.CallQuality{0, 5} {
		if _, err := qualityOf(q); !errors.Is(err, ErrBadRequest) {
			t.Errorf("qualityOf(%d) = %v, want ErrBadRequest", q, err)
		}
	}
}

// TestBrokerMediaTracksFor: a mute by the client's track id finds that
// track of the right kind; one by kind finds every audio track, the first
// video track in offer order for the camera and the later ones for screen
// shares, a lone video track for either.
func TestBrokerMediaTracksFor(t *testing.T) {
	self := Peer{User: 1, Device: 2}
	mp := &mediaParticipant{own: make(map[string]Track)}
	add := func(mid, name string, kind Kind) {
		mp.setOwn(Track{ID: self.String() + "." + mid, Name: name, Peer: self, Kind: kind}, true)
	}
	f := func(kind broker.CallTrack, name string, want ...string) {
		t.Helper()
		ids, err := mp.tracksFor(kind, name)
		if len(want) == 0 {
			if !errors.Is(err, ErrUnknownTrack) && !errors.Is(err, ErrBadRequest) {
				t.Errorf("tracksFor(%d, %q) = %q, %v; want a refusal", kind, name, ids, err)
			}
			return
		}
		for i := range want {
			want[i] = self.String() + "." + want[i]
		}
		if err != nil || !slices.Equal(ids, want) {
			t.Errorf("tracksFor(%d, %q) = %q, %v; want %q", kind, name, ids, err, want)
		}
	}
	f(broker.CallTrackAudio, "") // nothing published yet
	add("0", "mic", KindAudio)
	add("2", "screen-7f3a", KindVideo)
	f(broker.CallTrackAudio, "", "0")
	f(broker.CallTrackVideo, "", "2") // a lone video track is either
	f(broker.CallTrackScreen, "", "2")
	add("1", "cam-91c2", KindVideo)
	add("10", "screen-2", KindVideo) // mid 10 comes after mid 2
	add("3", "mic-2", KindAudio)
	f(broker.CallTrackAudio, "", "0", "3")
	f(broker.CallTrackVideo, "", "1")
	f(broker.CallTrackScreen, "", "2", "10")
	f(broker.CallTrackVideo, "screen-2", "10") // named: whatever its order
	f(broker.CallTrackScreen, "cam-91c2", "1")
	f(broker.CallTrackAudio, "mic-2", "3")
	f(broker.CallTrackAudio, "cam-91c2") // not an audio track
	f(broker.CallTrackVideo, "absent")
	f(0, "")
	f(4, "mic")
	mp.setOwn(Track{ID: self.String() + ".0", Peer: self}, false)
	f(broker.CallTrackAudio, "mic")
}

// eventLog collects the broker events of one participant.
type eventLog struct {
	mu     sync.Mutex
	events []broker.CallEvent
}

func (l *eventLog) add(e broker.CallEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) all() []broker.CallEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// TestBrokerMediaEvents: the SFU's events the broker wants come out as
// broker events, a publisher's own tracks are kept, the others' are not,
// and a removal is passed on with its reason and forgets the participant.
func TestBrokerMediaEvents(t *testing.T) {
	m := NewBrokerMedia(nil)
	key := broker.CallParticipant{Call: 7, User: 1, Device: 2}
	var log eventLog
	mp := &mediaParticipant{key: key, events: log.add, own: make(map[string]Track)}
	m.keep(mp, &Participant{})
	on := mp.onEvent(m)
	self, other := Peer{User: 1, Device: 2}, Peer{User: 3, Device: 1}
	on(Event{Kind: EventOffer, Target: TargetSubscriber, SDP: "v=0 offer"})
	on(Event{Kind: EventCandidate, Target: TargetSubscriber, Candidate: Candidate{Candidate: "candidate:1", SDPMid: "0", SDPMLineIndex: 1}})
	on(Event{Kind: EventSpeakers, Speakers: []Peer{other, self}})
	on(Event{Kind: EventSpeakers}) // nobody speaks: the broker has no such event
	on(Event{Kind: EventJoined, Peer: other})
	on(Event{Kind: EventTrackPublished, Peer: self, Track: Track{ID: "1.2.0", Name: "mic", Peer: self, Kind: KindAudio}})
	on(Event{Kind: EventTrackPublished, Peer: other, Track: Track{ID: "3.1.0", Name: "mic", Peer: other, Kind: KindAudio}})
	on(Event{Kind: EventTrackMuted, Peer: other, Track: Track{ID: "3.1.0", Peer: other, Kind: KindAudio, Muted: true}})
	if ids, err := mp.tracksFor(broker.CallTrackAudio, ""); err != nil || !slices.Equal(ids, []string{"1.2.0"}) {
		t.Fatalf("own tracks %q, %v", ids, err)
	}
	on(Event{Kind: EventTrackRemoved, Peer: self, Track: Track{ID: "1.2.0", Peer: self, Kind: KindAudio}})
	if ids, err := mp.tracksFor(broker.CallTrackAudio, ""); err == nil {
		t.Fatalf("own tracks after removal %q", ids)
	}
	on(Event{Kind: EventRemoved, Reason: ReasonICEFailed})
	want := []broker.CallEvent{
		{Kind: broker.CallEventOffer, SDP: "v=0 offer"},
		{Kind: broker.CallEventCandidate, PC: broker.CallPCSubscribe, Candidate: broker.ICECandidate{Candidate: "candidate:1", SDPMid: "0", SDPMLineIndex: 1}},
		{Kind: broker.CallEventSpeaker, Speaker: broker.CallParticipant{Call: 7, User: 3, Device: 1}},
		{Kind: broker.CallEventRemoved, Reason: broker.CallRemovedICEFailed, Message: "connectivity failed"},
	}
	if got := log.all(); !slices.Equal(got, want) {
		t.Fatalf("events\n%+v\nwant\n%+v", got, want)
	}
	if _, _, err := m.participant("publish", key); !errors.Is(err, broker.ErrUnknownCall) {
		t.Fatalf("a removed participant: %v", err)
	}

	for r, want := range map[Reason]broker.CallRemoveReason{
		ReasonSilent: broker.CallRemovedSilent, ReasonICEFailed: broker.CallRemovedICEFailed,
		ReasonReplaced: broker.CallRemovedMedia, ReasonSlowEvents: broker.CallRemovedMedia, ReasonCallEnded: broker.CallRemovedMedia,
	} {
		if got, msg := removeReason(r); got != want || msg == "" {
			t.Errorf("removeReason(%v) = %d %q, want %d", r, got, msg, want)
		}
	}
}

// TestBrokerMediaRefusals drives a real SFU through the adapter: a
// participant not joined, or gone, is an unknown call; bad input is the
// client's error; a second participant joins the running room.
func TestBrokerMediaRefusals(t *testing.T) {
	s := newTestSFU(t, Options{Logger: slog.New(slog.DiscardHandler)})
	m := NewBrokerMedia(s)
	ctx := context.Background()
	a := broker.CallParticipant{Call: 11, User: 1, Device: 1}
	b := broker.CallParticipant{Call: 11, User: 2, Device: 1}
	is := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s = %v, want %v", what, err, want)
		}
	}
	unknown := func(p broker.CallParticipant) {
		t.Helper()
		_, err := m.Publish(ctx, p, "v=0")
		is("publish", err, broker.ErrUnknownCall)
		is("answer", m.Answer(ctx, p, "v=0"), broker.ErrUnknownCall)
		is("candidate", m.Candidate(ctx, p, broker.CallPCPublish, broker.ICECandidate{Candidate: "candidate:1"}), broker.ErrUnknownCall)
		is("mute", m.Mute(ctx, p, broker.CallTrackAudio, "", true), broker.ErrUnknownCall)
		is("layer", m.RequestLayer(ctx, p, "2.1.0", broker.CallQualityLow), broker.ErrUnknownCall)
		is("leave", m.Leave(ctx, p), broker.ErrUnknownCall)
	}
	unknown(a)
	is("end", m.End(ctx, a.Call), broker.ErrUnknownCall)

	var aLog, bLog eventLog
	if err := m.Join(ctx, a, true, aLog.add); err != nil {
		t.Fatal(err)
	}
	if err := m.Join(ctx, b, true, bLog.add); err != nil {
		t.Fatalf("second join, the room running: %v", err)
	}
	_, err := m.Publish(ctx, a, "not sdp")
	is("bad offer", err, broker.ErrBadSDP)
	is("unasked answer", m.Answer(ctx, a, "v=0"), broker.ErrBadSDP)
	is("candidate of no PeerConnection", m.Candidate(ctx, a, 3, broker.ICECandidate{Candidate: "candidate:1"}), broker.ErrBadRequest)
	is("mute of nothing published", m.Mute(ctx, a, broker.CallTrackAudio, "", true), broker.ErrBadRequest)
	is("mute of a bad kind", m.Mute(ctx, a, 9, "", true), broker.ErrBadRequest)
	is("layer of an unknown track", m.RequestLayer(ctx, a, "2.1.0", broker.CallQualityLow), broker.ErrBadRequest)
	is("layer of a bad quality", m.RequestLayer(ctx, a, "2.1.0", 0), broker.ErrBadRequest)
	if err := m.Candidate(ctx, a, broker.CallPCSubscribe, broker.ICECandidate{}); err != nil {
		t.Fatalf("end of candidates: %v", err)
	}

	if err := m.Leave(ctx, a); err != nil {
		t.Fatal(err)
	}
	unknown(a)
	if got := aLog.all(); slices.ContainsFunc(got, func(e broker.CallEvent) bool { return e.Kind == broker.CallEventRemoved }) {
		t.Fatalf("a leave was told as a removal: %+v", got)
	}
	if err := m.End(ctx, b.Call); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the end told to b", func() bool {
		return slices.Contains(bLog.all(), broker.CallEvent{Kind: broker.CallEventRemoved, Reason: broker.CallRemovedMedia, Message: ReasonCallEnded.String()})
	})
	unknown(b)
	// The call's room ended with it; a join starts it again.
	if err := m.Join(ctx, a, false, aLog.add); err != nil {
		t.Fatalf("join after the end: %v", err)
	}
}

// TestBrokerMediaJoinEndingRoom: a join that finds the call's room ending
// (Start saw it running, Join finds it ended) waits for the room to go and
// joins the call's new one; given up by its context, it fails.
func TestBrokerMediaJoinEndingRoom(t *testing.T) {
	s := newTestSFU(t, Options{Logger: slog.New(slog.DiscardHandler)})
	m := NewBrokerMedia(s)
	const call = 21
	if err := s.Start(call); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	r := s.rooms[call]
	s.mu.Unlock()
	r.mu.Lock()
	r.ended = true // as its last participant's departure leaves it, not yet forgotten
	r.mu.Unlock()
	p := broker.CallParticipant{Call: call, User: 1, Device: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := m.Join(ctx, p, false, func(broker.CallEvent) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join into a room that stays ending = %v, want the context's deadline", err)
	}
	forgotten := time.AfterFunc(20*time.Millisecond, func() {
		s.mu.Lock()
		delete(s.rooms, call)
		s.mu.Unlock()
	})
	defer forgotten.Stop()
	if err := m.Join(context.Background(), p, false, func(broker.CallEvent) {}); err != nil {
		t.Fatalf("join once the ending room is gone: %v", err)
	}
	s.mu.Lock()
	fresh := s.rooms[call]
	s.mu.Unlock()
	if fresh == nil || fresh == r {
		t.Fatal("the join did not start the call's room anew")
	}
}

// TestBrokerMediaRejoin: a device that joins again (a new session, a new
// join id) replaces its earlier participant in the SFU, which hears a
// removal; a late Leave of the earlier join, whenever it comes, leaves the
// new one in the call.
func TestBrokerMediaRejoin(t *testing.T) {
	s := newTestSFU(t, Options{Logger: slog.New(slog.DiscardHandler)})
	m := NewBrokerMedia(s)
	ctx := context.Background()
	other := broker.CallParticipant{Call: 41, User: 2, Device: 1, Join: 1}
	if err := m.Join(ctx, other, false, func(broker.CallEvent) {}); err != nil {
		t.Fatal(err)
	}
	alive := func(p broker.CallParticipant) bool {
		_, part, err := m.participant("check", p)
		if err != nil {
			return false
		}
		part.mu.Lock()
		defer part.mu.Unlock()
		return !part.left
	}
	join := func(id uint64) (broker.CallParticipant, *eventLog) {
		t.Helper()
		p := broker.CallParticipant{Call: 41, User: 1, Device: 1, Join: id}
		var log eventLog
		if err := m.Join(ctx, p, false, log.add); err != nil {
			t.Fatal(err)
		}
		return p, &log
	}
	// The late Leave comes after the SFU's removal of the earlier join.
	first, firstLog := join(2)
	second, _ := join(3)
	waitFor(t, "the first join told it was replaced", func() bool {
		return slices.Contains(firstLog.all(), broker.CallEvent{Kind: broker.CallEventRemoved, Reason: broker.CallRemovedMedia, Message: ReasonReplaced.String()})
	})
	if err := m.Leave(ctx, first); !errors.Is(err, broker.ErrUnknownCall) {
		t.Fatalf("late leave of a replaced join = %v, want ErrUnknownCall", err)
	}
	if !alive(second) {
		t.Fatal("a late leave of the first join took the second out")
	}
	// The late Leave comes at once, perhaps before the removal is told.
	third, _ := join(4)
	if err := m.Leave(ctx, second); err != nil && !errors.Is(err, broker.ErrUnknownCall) {
		t.Fatalf("late leave of a replaced join = %v", err)
	}
	if !alive(third) || !alive(other) {
		t.Fatal("a late leave of the second join took someone else out")
	}
}

// TestBrokerMediaConcurrent: one participant's methods called at once, a
// Leave among them, each either works or is refused as the client's or as
// an unknown call, never anything else (run it with -race).
func TestBrokerMediaConcurrent(t *testing.T) {
	s := newTestSFU(t, Options{Logger: slog.New(slog.DiscardHandler)})
	m := NewBrokerMedia(s)
	ctx := context.Background()
	for round := range 5 {
		p := broker.CallParticipant{Call: broker.CallID(31 + round), User: 1, Device: 1}
		if err := m.Join(ctx, p, true, func(broker.CallEvent) {}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 8 {
			wg.Go(func() {
				switch i % 4 {
				case 0:
					errs <- m.Mute(ctx, p, broker.CallTrackAudio, "", true)
				case 1:
					errs <- m.RequestLayer(ctx, p, "2.1.0", broker.CallQualityHigh)
				case 2:
					errs <- m.Candidate(ctx, p, broker.CallPCPublish, broker.ICECandidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host", SDPMid: "0"})
				case 3:
					errs <- m.Leave(ctx, p)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil && !errors.Is(err, broker.ErrBadRequest) && !errors.Is(err, broker.ErrUnknownCall) {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if err := m.Leave(ctx, p); !errors.Is(err, broker.ErrUnknownCall) {
			t.Fatalf("round %d: leave after leave = %v", round, err)
		}
	}
}

// sdkPeer is one device in a call through the Go SDK: its PeerConnections
// are pion's, its signalling the SDK's call methods and events.
type sdkPeer struct {
	t    *testing.T
	name string
	c    *client.Client
	call atomic.Uint64
	pub  *webrtc.PeerConnection
	sub  *webrtc.PeerConnection // owned by the pump goroutine

	mu      sync.Mutex
	tracks  map[string]*atomic.Int64 // packets received, by kind ("audio", "video")
	streams []string                 // the stream IDs of the tracks received
	ids     map[string]string        // the IDs of the tracks received, by kind

	other chan client.Event // every event but the media signalling
	stop  chan struct{}
	wg    sync.WaitGroup
}

// dialPeer connects user's device 1 to n and starts its event pump.
func dialPeer(t *testing.T, n *brokertest.Node, name string, user uint64) *sdkPeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, n.Addr, n.Token(t, user, 1), client.Options{
		Fingerprint: n.Fingerprint, TCPAddr: n.TCPAddr, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &sdkPeer{t: t, name: name, c: c, tracks: map[string]*atomic.Int64{
		"audio": new(atomic.Int64), "video": new(atomic.Int64),
	}, ids: make(map[string]string), other: make(chan client.Event, 64), stop: make(chan struct{})}
	p.wg.Add(1)
	go p.pump()
	t.Cleanup(p.close)
	return p
}

// ctx returns a request context.
func (p *sdkPeer) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	p.t.Cleanup(cancel)
	return ctx
}

// pump answers the SFU's subscriber offers, adds its candidates, and hands
// every other event to p.other.
func (p *sdkPeer) pump() {
	defer p.wg.Done()
	for {
		var ev client.Event
		select {
		case <-p.stop:
			return
		case e, ok := <-p.c.Events():
			if !ok {
				return
			}
			ev = e
		}
		switch ev.Kind {
		case client.EventCallOffer:
			// A context canceled is the test ending: its request contexts
			// are canceled by cleanups that run before the peer's close.
			if err := p.answer(ev.Call.SDP); err != nil && !errors.Is(err, context.Canceled) && !p.closing() {
				p.t.Errorf("%s: answer the SFU's offer: %v", p.name, err)
			}
		case client.EventCallCandidate:
			cand := ev.Call.Candidate
			mid, index := cand.SDPMid, cand.SDPMLineIndex
			if err := p.sub.AddICECandidate(webrtc.ICECandidateInit{Candidate: cand.Candidate, SDPMid: &mid, SDPMLineIndex: &index}); err != nil && !p.closing() {
				p.t.Errorf("%s: the SFU's candidate: %v", p.name, err)
			}
		default:
			select {
			case p.other <- ev:
			case <-p.stop:
				return
			}
		}
	}
}

// trickle sends one of the client's candidates to the SFU.
func (p *sdkPeer) trickle(pc wire.CallPc, cand *webrtc.ICECandidate) {
	if cand == nil {
		return
	}
	init := cand.ToJSON()
	c := client.ICECandidate{Candidate: init.Candidate}
	if init.SDPMid != nil {
		c.SDPMid = *init.SDPMid
	}
	if init.SDPMLineIndex != nil {
		c.SDPMLineIndex = *init.SDPMLineIndex
	}
	if err := p.c.AddCandidate(p.ctx(), p.call.Load(), pc, c); err != nil {
		select {
		case <-p.stop:
		default:
			p.t.Errorf("%s: trickle: %v", p.name, err)
		}
	}
}

// answer applies an offer of the SFU's to the subscribing PeerConnection
// (created on the first) and sends the answer.
func (p *sdkPeer) answer(offer string) error {
	if p.sub == nil {
		pc, err := newTestAPI(p.t, peerOptions{}, TargetSubscriber).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return err
		}
		p.sub = pc
		pc.OnTrack(p.onTrack)
		pc.OnICECandidate(func(c *webrtc.ICECandidate) { p.trickle(wire.CallPc_CALL_PC_SUBSCRIBE, c) })
	}
	if err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return err
	}
	answer, err := p.sub.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := p.sub.SetLocalDescription(answer); err != nil {
		return err
	}
	return p.c.AnswerSubscriber(p.ctx(), p.call.Load(), answer.SDP)
}

// onTrack counts the packets of a track the SFU forwards.
func (p *sdkPeer) onTrack(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	p.mu.Lock()
	p.streams = append(p.streams, remote.StreamID())
	p.ids[remote.Kind().String()] = remote.ID()
	n := p.tracks[remote.Kind().String()]
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			if _, _, err := remote.ReadRTP(); err != nil {
				return
			}
			n.Add(1)
		}
	}()
}

// received returns the packets received of kind.
func (p *sdkPeer) received(kind string) int64 { return p.tracks[kind].Load() }

// publish offers an Opus and a VP8 track (client ids "mic" and "camera")
// through the SDK and sends on them every 10 ms.
func (p *sdkPeer) publish(tag byte) {
	t := p.t
	pc, err := newTestAPI(t, peerOptions{}, TargetPublisher).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p.pub = pc
	pc.OnICECandidate(func(c *webrtc.ICECandidate) { p.trickle(wire.CallPc_CALL_PC_PUBLISH, c) })
	var tracks []*webrtc.TrackLocalStaticRTP
	for _, c := range []struct{ mime, id string }{{webrtc.MimeTypeOpus, "mic"}, {webrtc.MimeTypeVP8, "camera"}} {
		l, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: c.mime}, c.id, p.name)
		if err != nil {
			t.Fatal(err)
		}
		sender, err := pc.AddTrack(l)
		if err != nil {
			t.Fatal(err)
		}
		p.wg.Add(1)
		go func() { // pion's interceptors need the RTCP read
			defer p.wg.Done()
			for {
				if _, _, err := sender.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		tracks = append(tracks, l)
	}
	offer, err := pc.CreateOffer(nil)
	if err == nil {
		err = pc.SetLocalDescription(offer)
	}
	if err != nil {
		t.Fatal(err)
	}
	answer, err := p.c.PublishOffer(p.ctx(), p.call.Load(), offer.SDP)
	if err != nil {
		t.Fatalf("%s: publish: %v", p.name, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	p.wg.Add(1)
	go p.send(tag, tracks[0], tracks[1])
}

// send writes an Opus frame and a VP8 keyframe start every 10 ms.
func (p *sdkPeer) send(tag byte, audio, video *webrtc.TrackLocalStaticRTP) {
	defer p.wg.Done()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for seq, ts := uint16(1), uint32(0); ; seq, ts = seq+1, ts+960 {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		h := rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: true}
		_ = audio.WriteRTP(&rtp.Packet{Header: h, Payload: []byte{tag, 0, 0, 0}})
		_ = video.WriteRTP(&rtp.Packet{Header: h, Payload: []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, tag, 0, 0, 0, 0}})
	}
}

// next returns the next event of kind, skipping others.
func (p *sdkPeer) next(kind client.EventKind) client.Event {
	p.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-p.other:
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			p.t.Fatalf("%s: no %v event in time", p.name, kind)
		}
	}
}

// close stops sending and closes the client and its PeerConnections.
// closing reports whether close has begun: a request that fails then
// failed because the client is being closed under it.
func (p *sdkPeer) closing() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

func (p *sdkPeer) close() {
	select {
	case <-p.stop:
		return
	default:
		close(p.stop)
	}
	p.c.Close()
	for _, pc := range []*webrtc.PeerConnection{p.pub, p.sub} {
		if pc != nil {
			_ = pc.GracefulClose()
		}
	}
	p.wg.Wait()
}

// TestBrokerMediaEndToEnd runs a call through a real node: two SDK clients
// start and accept it over the broker's signalling, each with a pion
// publisher and subscriber PeerConnection on the SFU behind the adapter;
// Opus and VP8 arrive both ways, a mute by kind stops the audio the other
// gets and an unmute resumes it, a layer request turns the other's video
// off and on again, and a hang-up ends the SFU's room and
// leaves the call's record in the chat.
func TestBrokerMediaEndToEnd(t *testing.T) {
	s := newTestSFU(t, Options{Logger: slog.New(slog.DiscardHandler)})
	m := NewBrokerMedia(s)
	n := brokertest.Start(t, brokertest.Options{Broker: broker.Options{Calls: m}})
	alice, bob := dialPeer(t, n, "alice", 1), dialPeer(t, n, "bob", 2)
	alice.next(client.EventConnected)
	bob.next(client.EventConnected)
	chat, err := alice.c.CreateChat(alice.ctx(), wire.ChatKind_CHAT_KIND_DIRECT, []uint64{2}, "")
	if err != nil {
		t.Fatal(err)
	}

	info, err := alice.c.StartCall(alice.ctx(), chat.Chat, true)
	if err != nil {
		t.Fatal(err)
	}
	alice.call.Store(info.Call)
	alice.publish('A')
	ring := bob.next(client.EventCallRing).Call
	if ring.Call != info.Call {
		t.Fatalf("bob rung for call %d, want %d", ring.Call, info.Call)
	}
	bob.call.Store(ring.Call)
	if _, err := bob.c.AcceptCall(bob.ctx(), ring.Call); err != nil {
		t.Fatal(err)
	}
	bob.publish('B')

	flowing := func(p *sdkPeer, n int64) bool { return p.received("audio") >= n && p.received("video") >= n }
	waitFor(t, "media both ways", func() bool { return flowing(alice, 20) && flowing(bob, 20) })
	alice.mu.Lock()
	aStreams := slices.Clone(alice.streams)
	alice.mu.Unlock()
	if !slices.Equal(aStreams, []string{"2.1", "2.1"}) {
		t.Fatalf("alice receives streams %q, want bob's (2.1) audio and video", aStreams)
	}

	// A mute by kind finds alice's audio track from the client's side.
	if err := alice.c.MuteCall(alice.ctx(), info.Call, wire.CallTrack_CALL_TRACK_AUDIO, "", true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // packets in flight arrive
	audio, video := bob.received("audio"), bob.received("video")
	waitFor(t, "bob's video going on", func() bool { return bob.received("video") >= video+20 })
	if got := bob.received("audio"); got != audio {
		t.Fatalf("bob got %d audio packets of alice's while she was muted", got-audio)
	}
	if err := alice.c.MuteCall(alice.ctx(), info.Call, wire.CallTrack_CALL_TRACK_AUDIO, "mic", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob's audio resumed", func() bool { return bob.received("audio") >= audio+20 })

	// A layer request names the track as the subscriber offer does.
	bob.mu.Lock()
	aliceVideo := bob.ids["video"]
	bob.mu.Unlock()
	if err := bob.c.RequestLayer(bob.ctx(), info.Call, aliceVideo, wire.CallQuality_CALL_QUALITY_OFF); err != nil {
		t.Fatalf("layer off of %q: %v", aliceVideo, err)
	}
	time.Sleep(100 * time.Millisecond)
	audio, video = bob.received("audio"), bob.received("video")
	waitFor(t, "bob's audio going on", func() bool { return bob.received("audio") >= audio+20 })
	if got := bob.received("video"); got != video {
		t.Fatalf("bob got %d video packets of alice's with her video off", got-video)
	}
	if err := bob.c.RequestLayer(bob.ctx(), info.Call, aliceVideo, wire.CallQuality_CALL_QUALITY_HIGH); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob's video resumed", func() bool { return bob.received("video") >= video+20 })
	err = bob.c.RequestLayer(bob.ctx(), info.Call, "9.9.9", wire.CallQuality_CALL_QUALITY_LOW)
	if !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("layer of an unknown track = %v, want BAD_REQUEST", err)
	}

	if err := alice.c.HangUp(alice.ctx(), info.Call); err != nil {
		t.Fatal(err)
	}
	rec, err := client.CallRecordOf(bob.next(client.EventMessage).Message)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Call != info.Call || !slices.Equal(rec.Joined, []uint64{1, 2}) || rec.Missed || rec.Reason != wire.CallEndReason_CALL_END_REASON_HUNG_UP {
		t.Fatalf("call record %+v", rec)
	}
	waitFor(t, "the SFU's room gone", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.rooms) == 0
	})
	waitFor(t, "the adapter's participants gone", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.parts) == 0
	})
}
