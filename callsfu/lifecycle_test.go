package callsfu

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// TestPlayBesidePublish: a device that publishes a stream with WHIP may
// play it with WHEP as the same peer: the player does not replace the
// encoder. A second player of that peer replaces the first player only, and
// a second publish of it replaces the first publish.
func TestPlayBesidePublish(t *testing.T) {
	w := newWHIPTest(t)
	encoder, session := w.publishWHIP("admin", 1)
	waitFor(t, "the encoder's two tracks", func() bool { return strings.Contains(w.state(), "tracks [1.1.0 1.1.1]") })

	first := w.playWHEP("admin", false)
	waitFor(t, "the encoder's own player playing", func() bool { return first.playing(10, encoder) })
	if got, want := w.state(), "peers [1.1 1.1 (player)] publishers 1 tracks [1.1.0 1.1.1], 2 sessions"; got != want {
		t.Fatalf("after the encoder's play: %s, want %s", got, want)
	}

	second := w.playWHEP("admin", false)
	waitFor(t, "the second player playing", func() bool { return second.playing(10, encoder) })
	if r := w.do("DELETE", first.session, "", "", ""); r.status != http.StatusNotFound {
		t.Errorf("DELETE of the replaced player's session: %d %s", r.status, r.body)
	}
	if got, want := w.state(), "peers [1.1 1.1 (player)] publishers 1 tracks [1.1.0 1.1.1], 2 sessions"; got != want {
		t.Errorf("after the second play: %s, want %s", got, want)
	}

	_, again := w.publishWHIP("admin", 2)
	if r := w.do("DELETE", session, "", "", ""); r.status != http.StatusNotFound {
		t.Errorf("DELETE of the replaced publish's session: %d %s", r.status, r.body)
	}
	if r := w.do("DELETE", again, "", "", ""); r.status != http.StatusOK {
		t.Errorf("DELETE of the new publish's session: %d %s", r.status, r.body)
	}
	waitFor(t, "the call to end", func() bool { return w.state() == "no call, 0 sessions" })
}

// silentTURN listens on 127.0.0.1 for TCP connections that it accepts and
// never answers: a TURN server over TCP whose allocations never come, so
// that the SFU's gathering of relay candidates takes its whole
// publisherGatherTimeout. It returns the server's URL and a channel that
// hears each connection accepted.
func silentTURN(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 16)
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "turn:" + ln.Addr().String() + "?transport=tcp", accepted
}

// TestLeaveDuringPublish: Publish does not hold the participant while the
// SFU's candidates are gathered (a TURN server that never answers makes it
// wait its whole timeout): a Leave meanwhile goes ahead, the Publish then
// fails with ErrLeft, and its new PeerConnection is closed (no
// goroutine is left).
func TestLeaveDuringPublish(t *testing.T) {
	url, accepted := silentTURN(t)
	s := newTestSFU(t, Options{RelayServers: []webrtc.ICEServer{{URLs: []string{url}, Username: "u", Credential: "p"}}})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	c := joinPeer(t, s, 1, Peer{1, 1}, 'a', peerOptions{})
	if err := c.addTracks(nil); err != nil {
		t.Fatal(err)
	}
	c.pub.OnICECandidate(func(*webrtc.ICECandidate) {})
	offer := gatheredOffer(t, c.pub)
	published := make(chan error, 1)
	go func() {
		_, err := c.part.Publish(offer)
		published <- err
	}()
	select {
	case <-accepted: // the SFU is gathering its relay candidate
	case err := <-published:
		t.Fatalf("Publish returned before gathering its relay candidate: %v", err)
	}
	c.part.Leave() // with p.mu held through the gathering, it waited for the Publish to succeed
	if err := <-published; CodeOf(err) != CodeLeft {
		t.Errorf("the Publish a Leave interrupted: %v, want ErrLeft", err)
	}
	c.part.mu.Lock()
	pub := c.part.pub
	c.part.mu.Unlock()
	if pub == nil || pub.ConnectionState() != webrtc.PeerConnectionStateClosed {
		t.Errorf("the publisher PeerConnection of the interrupted Publish is not closed")
	}
}

// TestCloseWithStuckEvents: an events function that never returns does not
// hang Close, which waits for it eventsGrace and goes on; its goroutine ends
// when the function returns.
func TestCloseWithStuckEvents(t *testing.T) {
	s := newTestSFU(t, Options{})
	s.eventsGrace = 100 * time.Millisecond
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	stuck := func(Event) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	}
	if _, err := s.Join(1, Peer{1, 1}, stuck); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(1, Peer{2, 1}, nil); err != nil { // the first hears EventJoined
		t.Fatal(err)
	}
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		<-closed
		t.Fatal("Close waited for an events function that never returns")
	}
	if _, err := s.Join(1, Peer{3, 1}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after Close: %v, want ErrClosed", err)
	}
	close(release)
}

// TestNeverConnectedRemoved: a participant that joins and never negotiates
// (it neither publishes nor is offered anything, so it owes no packets) is
// removed once Options.SilenceTimeout plus Options.ICEFailedTimeout pass
// without a connection, and counted; one that publishes stays.
func TestNeverConnectedRemoved(t *testing.T) {
	s := newTestSFU(t, Options{SilenceTimeout: 200 * time.Millisecond, ICEFailedTimeout: 300 * time.Millisecond})
	for _, call := range []uint64{1, 2} {
		if err := s.Start(call); err != nil {
			t.Fatal(err)
		}
	}
	talker := joinPeer(t, s, 1, Peer{1, 1}, 'a', peerOptions{})
	if err := talker.publish(); err != nil {
		t.Fatal(err)
	}
	var idle streamEvents // alone in its call: it is offered nothing
	if _, err := s.Join(2, Peer{2, 1}, idle.add); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle participant's removal", func() bool {
		return slices.Contains(idle.kinds(), EventRemoved)
	})
	idle.mu.Lock()
	last := idle.events[len(idle.events)-1]
	idle.mu.Unlock()
	if last.Kind != EventRemoved || last.Reason != ReasonNeverConnected {
		t.Errorf("the idle participant's last event %+v, want its removal for never connecting", last)
	}
	if got := s.m.removedNeverConnected.Get(); got != 1 {
		t.Errorf("never_connected removals counted %d, want 1", got)
	}
	if talker.gone() {
		t.Error("the publishing participant was removed")
	}
}

// TestOffersOutsideRoomLock: a subscriber's offer (milliseconds of SDP
// work) is made with the room's lock let go, when a member joins into
// published tracks and when a publisher leaves and its tracks are taken from
// the others, so that a room is not held for each of its members' offers.
func TestOffersOutsideRoomLock(t *testing.T) {
	s := newTestSFU(t, Options{})
	if err := s.Start(1); err != nil {
		t.Fatal(err)
	}
	alice := joinPeer(t, s, 1, Peer{1, 1}, 'a', peerOptions{})
	if err := alice.publish(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice's two tracks", func() bool {
		alice.part.room.mu.Lock()
		defer alice.part.room.mu.Unlock()
		return len(alice.part.room.tracks) == 2
	})
	var offers, underLock atomic.Int32
	s.beforeOffer = func(p *Participant) {
		offers.Add(1)
		if !p.room.mu.TryLock() {
			underLock.Add(1)
			return
		}
		p.room.mu.Unlock()
	}
	bob := joinPeer(t, s, 1, Peer{2, 1}, 'b', peerOptions{}) // offered alice's tracks
	waitReceiving(t, bob, alice)
	alice.part.Leave() // bob's offer without them
	waitFor(t, "bob's offer without alice's tracks", func() bool { return offers.Load() >= 2 })
	if n := underLock.Load(); n > 0 {
		t.Errorf("%d of %d subscriber offers were made holding the room's lock", n, offers.Load())
	}
}

// TestICETCPUnboundCap: connections to the ICE-TCP port that never send a
// STUN binding are capped (tcpMaxUnboundPerIP from one address; the rest
// are closed on arrival) and closed after tcpBindTimeout, each counted, and
// their places free again.
func TestICETCPUnboundCap(t *testing.T) {
	s := newTestSFU(t, Options{})
	addr := &net.TCPAddr{IP: s.Addr().IP, Port: s.Addr().Port}
	const extra = 3
	closed := make(chan struct{}, tcpMaxUnboundPerIP+extra)
	for range tcpMaxUnboundPerIP + extra {
		c, err := net.DialTCP("tcp", nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		go func() { // ends when the SFU closes c, or the test does
			_, _ = io.Copy(io.Discard, c)
			closed <- struct{}{}
		}()
	}
	waitFor(t, "the connections over the cap refused", func() bool {
		return s.m.tcpRefusedCap.Get() == extra
	})
	deadline := time.After(10 * time.Second)
	for i := range tcpMaxUnboundPerIP + extra {
		select {
		case <-closed:
		case <-deadline:
			t.Fatalf("%d of %d connections that sent nothing are still open", tcpMaxUnboundPerIP+extra-i,
				tcpMaxUnboundPerIP+extra)
		}
	}
	if got := s.m.tcpRefusedBind.Get(); got != tcpMaxUnboundPerIP {
		t.Errorf("closed for no binding: %d, want %d", got, tcpMaxUnboundPerIP)
	}
	if n := s.tcp.unboundCount(); n != 0 {
		t.Errorf("%d connections still counted unbound", n)
	}
	if got := s.m.tcpRefusedCap.Get(); got != extra {
		t.Errorf("refused over the cap: %d, want %d", got, extra)
	}
}

// brokenWriter is a ResponseWriter whose client is gone: every Write fails.
type brokenWriter struct {
	header http.Header
	status int
}

func (b *brokenWriter) Header() http.Header       { return b.header }
func (b *brokenWriter) WriteHeader(status int)    { b.status = status }
func (b *brokenWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

// TestWHIPAnswerLost: a POST whose answer cannot be written ends its
// session and removes its participant, leaving nothing half-created: here
// the only participant, so the call ends.
func TestWHIPAnswerLost(t *testing.T) {
	w := newWHIPTest(t)
	c := newClient(t, "encoder", 1)
	if err := c.addTracks(nil); err != nil {
		t.Fatal(err)
	}
	c.pub.OnICECandidate(func(*webrtc.ICECandidate) {})
	req := httptest.NewRequest("POST", "/whip/live", strings.NewReader(gatheredOffer(t, c.pub)))
	req.Header.Set("Authorization", "Bearer admin")
	req.Header.Set("Content-Type", "application/sdp")
	bw := &brokenWriter{header: http.Header{}}
	w.h.ServeHTTP(bw, req)
	if bw.status != http.StatusCreated {
		t.Fatalf("status %d, want 201 (whose body is lost)", bw.status)
	}
	if got := w.state(); got != "no call, 0 sessions" {
		t.Errorf("after the lost answer: %s, want no call and no session", got)
	}
}

// TestWHIPAnswerAfterSlowGathering: the answer's write has its own time
// once the SFU has it, so an answer whose candidates took longer than the
// request's timeout and its grace (a TURN server that never answers) still
// reaches the client.
func TestWHIPAnswerAfterSlowGathering(t *testing.T) {
	url, _ := silentTURN(t)
	s := newTestSFU(t, Options{RelayServers: []webrtc.ICEServer{{URLs: []string{url}, Username: "u", Credential: "p"}}})
	auth := &fakeAuth{sfu: s, admins: map[string]Peer{"admin": {1, 1}}}
	h, err := NewWHIP(s, WHIPOptions{Authorizer: auth, Logger: s.log, RequestTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	w := &whipTest{t: t, sfu: s, h: h, srv: srv}
	_, session := w.publishWHIP("admin", 1)
	if r := w.do("DELETE", session, "", "", ""); r.status != http.StatusOK {
		t.Errorf("DELETE: %d %s", r.status, r.body)
	}
}

// TestCallGoroutinesEnd: every goroutine of a call (its participants'
// PeerConnections, track readers, event goroutines, a player's and an
// encoder's of the same device among them) ends when the call ends, while
// the SFU runs on.
func TestCallGoroutinesEnd(t *testing.T) {
	w := newWHIPTest(t)
	baseline := goleak.IgnoreCurrent()
	encoder, _ := w.publishWHIP("admin", 1)
	waitFor(t, "the encoder's two tracks", func() bool { return strings.Contains(w.state(), "tracks [1.1.0 1.1.1]") })
	own := w.playWHEP("admin", false)
	other := w.playWHEP("sub1", true)
	waitFor(t, "both players playing", func() bool { return own.playing(10, encoder) && other.playing(10, encoder) })
	if err := w.sfu.End(liveCall); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sessions to end", func() bool { return w.state() == "no call, 0 sessions" })
	for _, c := range []*testPeer{encoder, own.testPeer, other.testPeer} {
		c.close()
	}
	w.srv.CloseClientConnections()
	w.srv.Client().CloseIdleConnections()
	goleak.VerifyNone(t, baseline)
}
