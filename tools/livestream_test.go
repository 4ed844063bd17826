package tools

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/callsfu"
	"github.com/gonets/gonets/storage"
)

// noteLog is liveStreams' announce in the unit tests: it records the
// notes.
type noteLog struct {
	mu    sync.Mutex
	notes []broker.LiveNote
}

func (l *noteLog) announce(n broker.LiveNote) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.notes = append(l.notes, n)
	return nil
}

// take returns the notes written since the last take, as "started 7" and
// "ended 7 STOPPED 2s" (chat, reason, duration).
func (l *noteLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, n := range l.notes {
		chat := strconv.FormatUint(uint64(n.Chat), 10)
		if n.Ended.IsZero() {
			out = append(out, "started "+chat)
			continue
		}
		reason := strings.TrimPrefix(n.Reason.String(), "LIVE_END_REASON_")
		out = append(out, "ended "+chat+" "+reason+" "+n.Ended.Sub(n.Started).String())
	}
	l.notes = nil
	return out
}

// TestLiveStreamsNotes: the notes a channel's stream gets from its WHIP
// sessions' events: a start at the first track of the first session
// (later tracks and sessions add none), an end when the last live session
// goes (with its duration and why), nothing for a session that never went
// live, once per session however often its end is heard, and a handover,
// not an end and a start, when an encoder's new session replaces its old
// one.
func TestLiveStreamsNotes(t *testing.T) {
	log := &noteLog{}
	now := time.Unix(1_800_000_000, 0)
	l := newLiveStreams(log.announce, slog.New(slog.DiscardHandler))
	l.now = func() time.Time { return now }
	tick := func(d time.Duration) { now = now.Add(d) }
	enc, enc2 := callsfu.Peer{User: 2, Device: 1}, callsfu.Peer{User: 5, Device: 1}
	track := func(p callsfu.Peer) callsfu.Event {
		return callsfu.Event{Kind: callsfu.EventTrackPublished, Peer: p}
	}
	removed := func(r callsfu.Reason) callsfu.Event { return callsfu.Event{Kind: callsfu.EventRemoved, Reason: r} }
	check := func(what string, want ...string) {
		t.Helper()
		if got := log.take(); strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("%s: notes %q, want %q", what, got, want)
		}
	}

	a := l.session(7, enc)
	a(callsfu.Event{Kind: callsfu.EventJoined, Peer: enc2})
	a(track(enc2)) // another publisher's track
	check("before its own track")
	a(track(enc))
	a(track(enc))
	check("its tracks", "started 7")
	b := l.session(7, enc2)
	b(track(enc2))
	check("a second encoder")
	tick(2 * time.Second)
	a(removed(callsfu.ReasonLeft))
	a(removed(callsfu.ReasonLeft)) // the DELETE's and a late one
	check("the first encoder stops")
	tick(time.Second)
	b(removed(callsfu.ReasonSilent))
	b(track(enc2)) // queued before its removal
	check("the last encoder is lost", "ended 7 LOST 3s")

	never := l.session(8, enc)
	never(removed(callsfu.ReasonSilent))
	check("a session that never went live")

	old := l.session(9, enc)
	old(track(enc))
	check("a stream", "started 9")
	tick(time.Second)
	renewed := l.session(9, enc)
	old(removed(callsfu.ReasonReplaced))
	renewed(track(enc))
	check("the encoder reconnects")
	tick(time.Second)
	renewed(removed(callsfu.ReasonLeft))
	check("it stops", "ended 9 STOPPED 2s")

	old = l.session(10, enc)
	old(track(enc))
	replaced := l.session(10, enc)
	old(removed(callsfu.ReasonReplaced))
	tick(10 * time.Second)
	replaced(removed(callsfu.ReasonSilent))
	check("a reconnection that never sends", "started 10", "ended 10 LOST 10s")

	c1, c2 := l.session(11, enc), l.session(12, enc2)
	c1(track(enc))
	c2(track(enc2))
	tick(time.Second)
	c1(removed(callsfu.ReasonClosed))
	c2(removed(callsfu.ReasonClosed))
	// The second start, in the same microsecond, was moved a microsecond on.
	check("the node shuts down", "started 11", "started 12", "ended 11 SHUTDOWN 1s", "ended 12 SHUTDOWN 999.999ms")

	// Streams started in the same microsecond get distinct starts: their
	// notes' client message ids differ.
	d1, d2 := l.session(13, enc), l.session(13, enc)
	d1(track(enc))
	d1(removed(callsfu.ReasonLeft))
	d2(track(enc))
	l.mu.Lock()
	if st := l.channels[13].started; !st.After(now) {
		t.Errorf("a second stream in the same microsecond starts at %v, want after %v", st, now)
	}
	l.mu.Unlock()
	check("two streams at once", "started 13", "ended 13 STOPPED 0s", "started 13")
}

// TestLiveStreamsReplacedHeardLate: the old session of a reconnected
// encoder may be heard removed (ReasonReplaced) only after the new one's
// first track, each on its own participant's events goroutine; the stream
// still ends when the new session goes, instead of waiting forever for a
// handover that already happened (the channel left live, no live_ended).
func TestLiveStreamsReplacedHeardLate(t *testing.T) {
	log := &noteLog{}
	now := time.Unix(1_800_000_000, 0)
	l := newLiveStreams(log.announce, slog.New(slog.DiscardHandler))
	l.now = func() time.Time { return now }
	enc := callsfu.Peer{User: 2, Device: 1}
	track := callsfu.Event{Kind: callsfu.EventTrackPublished, Peer: enc}
	removed := func(r callsfu.Reason) callsfu.Event { return callsfu.Event{Kind: callsfu.EventRemoved, Reason: r} }

	old := l.session(7, enc)
	old(track)
	renewed := l.session(7, enc)
	renewed(track)
	old(removed(callsfu.ReasonReplaced)) // heard late
	now = now.Add(time.Second)
	renewed(removed(callsfu.ReasonLeft))
	if got, want := strings.Join(log.take(), "; "), "started 7; ended 7 STOPPED 1s"; got != want {
		t.Errorf("notes %q, want %q", got, want)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if ch := l.channels[7]; ch != nil {
		t.Errorf("channel 7 still live after its last encoder left: %d live, %d handing over", len(ch.live), len(ch.handover))
	}
}

// TestLiveStreamsWriteConcurrently: one channel's note that takes long to
// write (a slow sync) holds back no other channel's: notes are ordered per
// channel, not all under one lock, so that a node's many streams ending at
// once (its shutdown) are written together, and a channel's own notes
// still come in order.
func TestLiveStreamsWriteConcurrently(t *testing.T) {
	log := &noteLog{}
	slow, release := make(chan struct{}), make(chan struct{})
	announce := func(n broker.LiveNote) error {
		if n.Chat == 1 && n.Ended.IsZero() {
			close(slow)
			<-release
		}
		return log.announce(n)
	}
	l := newLiveStreams(announce, slog.New(slog.DiscardHandler))
	enc := callsfu.Peer{User: 2, Device: 1}
	track := callsfu.Event{Kind: callsfu.EventTrackPublished, Peer: enc}
	left := callsfu.Event{Kind: callsfu.EventRemoved, Reason: callsfu.ReasonLeft}

	a := l.session(1, enc)
	var wg sync.WaitGroup
	wg.Go(func() { a(track) })
	<-slow
	b := l.session(2, enc)
	written := make(chan struct{})
	go func() {
		b(track)
		close(written)
	}()
	select {
	case <-written:
	case <-time.After(5 * time.Second):
		close(release)
		wg.Wait()
		<-written
		t.Fatal("channel 2's start waited for channel 1's")
	}
	a(left) // channel 1's end, queued behind its start
	if got := strings.Join(log.take(), "; "); got != "started 2" {
		t.Errorf("notes while channel 1's start is being written: %q, want %q", got, "started 2")
	}
	close(release)
	wg.Wait()
	if got, want := strings.Join(log.take(), "; "), "started 1; ended 1 STOPPED 0s"; !strings.HasPrefix(got, "started 1; ended 1 STOPPED") {
		t.Errorf("channel 1's notes: %q, want %q", got, want)
	}
}

// TestLiveStreamsRecoverAfterCrash: a stream live when the node dies
// (nothing wrote its end) gets its end, LOST, when the node starts again
// (recoverLive over the files liveStreams keeps), once; one that ended
// leaves nothing to recover.
func TestLiveStreamsRecoverAfterCrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), liveDir)
	log := &noteLog{}
	now := time.Unix(1_800_000_000, 0)
	l := newLiveStreams(log.announce, slog.New(slog.DiscardHandler))
	l.now = func() time.Time { return now }
	l.dir = dir
	enc := callsfu.Peer{User: 2, Device: 1}
	track := callsfu.Event{Kind: callsfu.EventTrackPublished, Peer: enc}
	live, ended := l.session(7, enc), l.session(8, enc)
	live(track)
	ended(track)
	now = now.Add(time.Second)
	ended(callsfu.Event{Kind: callsfu.EventRemoved, Reason: callsfu.ReasonLeft})
	if got, want := strings.Join(log.take(), "; "), "started 7; started 8; ended 8 STOPPED 999.999ms"; got != want {
		t.Fatalf("notes %q, want %q", got, want)
	}

	// The node dies here; the next one starts.
	after := &noteLog{}
	quiet := slog.New(slog.DiscardHandler)
	recoverLive(dir, after.announce, now.Add(time.Minute), quiet)
	if got, want := strings.Join(after.take(), "; "), "ended 7 LOST 1m1s"; got != want {
		t.Fatalf("notes at the next start %q, want %q", got, want)
	}
	recoverLive(dir, after.announce, now.Add(2*time.Minute), quiet)
	if got := after.take(); len(got) != 0 {
		t.Fatalf("a second start wrote %q, want nothing", got)
	}
}

// publishLive publishes an Opus track into channel ch with WHIP as tok and
// sends until stop; it returns the session's URL and stop, which also
// closes the encoder's PeerConnection.
func publishLive(t *testing.T, s *streamNode, ch storage.ChatID, tok string) (session string, stop func()) {
	t.Helper()
	encoder := newStreamPeer(t)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "encoder")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := encoder.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", s.base+"/whip/"+strconv.FormatUint(uint64(ch), 10), strings.NewReader(offerOf(t, encoder)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP publish: %d %s %v", resp.StatusCode, body, err)
	}
	answer(t, encoder, string(body))
	done := make(chan struct{})
	var sending sync.WaitGroup
	sending.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(0); ; seq++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			p := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 480, Marker: true},
				Payload: []byte{0xfc, 0xff, 0xfe}}
			_ = track.WriteRTP(p)
		}
	})
	return resp.Header.Get("Location"), func() {
		close(done)
		sending.Wait()
		_ = encoder.GracefulClose()
	}
}

// nextLive waits for the next live stream note of chat among c's events.
func nextLive(t *testing.T, c *client.Client, chat storage.ChatID) client.LiveStream {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("the client's events ended: %v", c.Err())
			}
			if ev.Kind != client.EventMessage || ev.Message.Chat != uint64(chat) || ev.Message.Kind != wire.MsgKind_MSG_KIND_SERVICE {
				continue
			}
			ls, err := client.LiveStreamOf(ev.Message)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Message.Device != uint64(storage.DeviceNode) {
				t.Errorf("the note came from device %d, want the node's", ev.Message.Device)
			}
			return ls
		case <-timeout:
			t.Fatal("timed out waiting for a live stream note")
		}
	}
}

// TestServeLiveNotes: a channel's subscriber, online with the SDK, is told
// in the channel that its stream started when the admin's WHIP encoder's
// media arrives, and that it ended, with its duration, on the encoder's
// DELETE; a stream live when the node shuts down gets its end (SHUTDOWN)
// before the store closes.
func TestServeLiveNotes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	s := startStreamNode(t, cfg)
	stopped := false
	defer func() {
		if !stopped {
			s.stop()
		}
	}()
	ctx := context.Background()
	const owner, admin, subscriber = 1, 2, 3
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
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.Dial(dctx, s.n.quicLn.Addr().String(), s.token(subscriber), client.Options{
		Fingerprint: s.n.fingerprint, NoReconnect: true, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	session, stop1 := publishLive(t, s, ch.ID, s.token(admin))
	defer stop1()
	started := nextLive(t, c, ch.ID)
	if started.Ended || started.User != admin || started.Device != 1 || started.Started.IsZero() {
		t.Fatalf("live started: %+v", started)
	}
	time.Sleep(50 * time.Millisecond) // a duration of at least that
	req, err := http.NewRequest("DELETE", s.base+session, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	ended := nextLive(t, c, ch.ID)
	if !ended.Ended || !ended.Started.Equal(started.Started) || ended.User != admin ||
		ended.Reason != wire.LiveEndReason_LIVE_END_REASON_STOPPED || ended.Duration < 50*time.Millisecond || ended.Duration > time.Minute {
		t.Fatalf("live ended: %+v, want the stream started at %v, STOPPED, 50 ms to a minute", ended, started.Started)
	}

	_, stop2 := publishLive(t, s, ch.ID, s.token(admin))
	defer stop2()
	if again := nextLive(t, c, ch.ID); again.Ended || !again.Started.After(started.Started) {
		t.Fatalf("the second stream's start: %+v", again)
	}
	c.Close()
	s.stop()
	stopped = true
	st, err := storage.Open(filepath.Join(cfg.Node.DataDir, storeDir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var last wire.Service
	if _, err := st.ReadLatest(ch.ID, 1, func(r *storage.Record) error {
		if r.Kind != storage.MsgService {
			t.Errorf("the channel's last record is of kind %d, want a service message", r.Kind)
		}
		return proto.Unmarshal(r.Body, &last)
	}); err != nil {
		t.Fatal(err)
	}
	if e := last.GetLiveEnded(); e == nil || e.GetReason() != wire.LiveEndReason_LIVE_END_REASON_SHUTDOWN {
		t.Errorf("the channel's last note after the shutdown: %v, want live_ended SHUTDOWN", &last)
	}
}

// TestServeLiveNoteAtShutdownWithStraggler: a stream live when the node
// shuts down gets its end (SHUTDOWN) in the store even when a connection
// that never says Hello holds the broker's drain to its deadline: the
// SFU's close, which ends the stream and writes the note, must not be
// given up on at once and the store closed under it.
func TestServeLiveNoteAtShutdownWithStraggler(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	cfg.Node.ShutdownTimeout = duration(2 * time.Second)
	s := startStreamNode(t, cfg)
	stopped := false
	defer func() {
		if !stopped {
			s.stop()
		}
	}()
	if s.n.tcpLn == nil {
		t.Fatal("the test node has no TCP listener")
	}
	ctx := context.Background()
	const owner, admin, subscriber = 1, 2, 3
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
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.Dial(dctx, s.n.quicLn.Addr().String(), s.token(subscriber), client.Options{
		Fingerprint: s.n.fingerprint, NoReconnect: true, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, stopLive := publishLive(t, s, ch.ID, s.token(admin))
	defer stopLive()
	if started := nextLive(t, c, ch.ID); started.Ended {
		t.Fatalf("live started: %+v", started)
	}
	c.Close()
	straggler, err := net.Dial("tcp", s.n.tcpLn.Addr().String()) // says nothing
	if err != nil {
		t.Fatal(err)
	}
	defer straggler.Close()
	s.stop()
	stopped = true
	st, err := storage.Open(filepath.Join(cfg.Node.DataDir, storeDir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var last wire.Service
	if _, err := st.ReadLatest(ch.ID, 1, func(r *storage.Record) error {
		return proto.Unmarshal(r.Body, &last)
	}); err != nil {
		t.Fatal(err)
	}
	if e := last.GetLiveEnded(); e == nil || e.GetReason() != wire.LiveEndReason_LIVE_END_REASON_SHUTDOWN {
		t.Errorf("the channel's last note after the shutdown: %v, want live_ended SHUTDOWN", &last)
	}
}
