package callsfu

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/goleak"
)

// t0 is the epoch of the tests' clocks.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeClock is an injectable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// sent is one packet a subscriber got, with the source packet it carried
// (the test payloads name their layer and source sequence number).
type sent struct {
	seq, srcSeq uint16
	ts          uint32
	ssrc        uint32
	pt          uint8
	layer       int
	keyframe    bool
	extensions  bool
}

// recorder is an rtpWriter that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	pkts []sent
	fail bool
}

func (r *recorder) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return 0, errors.New("write failed")
	}
	r.pkts = append(r.pkts, sent{
		seq: h.SequenceNumber, ts: h.Timestamp, ssrc: h.SSRC, pt: h.PayloadType,
		layer: int(payload[2]), srcSeq: binary.BigEndian.Uint16(payload[3:]),
		keyframe: vp8KeyframeStart(payload), extensions: h.Extension || len(h.Extensions) > 0,
	})
	return len(payload), nil
}

// take returns and forgets what the recorder got.
func (r *recorder) take() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pkts
	r.pkts = nil
	return p
}

// vp8Payload returns a VP8 payload: a keyframe's first packet, a delta
// frame's first packet, or a continuation, that names its layer and source
// sequence number (bytes 2 to 4), padded to size.
func vp8Payload(layer int, seq uint16, first, key bool, size int) []byte {
	b := make([]byte, max(size, 8))
	if first {
		b[0] = 0x10 // S=1, PID=0
		b[1] = 0x11 // P=1: interframe
		if key {
			b[1] = 0x10
		}
	}
	b[2] = byte(layer)
	binary.BigEndian.PutUint16(b[3:], seq)
	return b
}

// rtpPacket marshals an RTP packet with an audio level extension (id 1) so
// the forwarding has one to strip.
func rtpPacket(t testing.TB, seq uint16, ts uint32, marker bool, payload []byte) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 0xabc, Marker: marker}, Payload: payload}
	if err := p.SetExtension(1, []byte{0x30}); err != nil {
		t.Fatal(err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// simulcast plays a publisher: per layer, its own sequence numbers and
// timestamps (different bases, as different SSRCs have), frames of
// packetsPerFrame packets every 33 ms, a keyframe when asked for.
type simulcast struct {
	t        testing.TB
	u        *upTrack
	clock    *fakeClock
	seq      [maxLayers]uint16
	ts       [maxLayers]uint32
	stopped  [maxLayers]bool
	ssrc     [maxLayers]uint32 // each layer's SSRC; 0: rtpPacket's
	perFrame int
	pliMu    sync.Mutex
	plis     []int
	keyNext  [maxLayers]bool
}

// newSimulcast returns a publisher of layers layers into a new upTrack.
func newSimulcast(t testing.TB, layers, ring int) *simulcast {
	s := &simulcast{t: t, clock: newFakeClock(), perFrame: 2}
	s.u = newUpTrack(upTrackConfig{
		kind: kindVideo, layers: layers, mimeType: "video/VP8", ringSize: ring,
		onPLI: s.onPLI, now: s.clock.Now,
	})
	for l := range maxLayers {
		s.seq[l] = uint16(1000 * (l + 1))
		s.ts[l] = uint32(7_000_000 * (l + 1))
	}
	return s
}

func (s *simulcast) onPLI(layer int) {
	s.pliMu.Lock()
	defer s.pliMu.Unlock()
	s.plis = append(s.plis, layer)
}

// takePLIs returns and forgets the keyframe requests made.
func (s *simulcast) takePLIs() []int {
	s.pliMu.Lock()
	defer s.pliMu.Unlock()
	p := s.plis
	s.plis = nil
	return p
}

// frame sends one frame on every running layer, keyframes on the layers in
// keys, then moves the clock on by a frame interval.
func (s *simulcast) frame(keys ...int) {
	s.t.Helper()
	for _, l := range keys {
		s.keyNext[l] = true
	}
	now := s.clock.Now()
	for l := range s.u.cfg.layers {
		if s.stopped[l] {
			continue
		}
		key := s.keyNext[l]
		s.keyNext[l] = false
		for i := range s.perFrame {
			pkt := rtpPacket(s.t, s.seq[l], s.ts[l], i == s.perFrame-1, vp8Payload(l, s.seq[l], i == 0, key, 100))
			if s.ssrc[l] != 0 {
				binary.BigEndian.PutUint32(pkt[8:], s.ssrc[l])
			}
			if err := s.u.receive(l, pkt, now); err != nil {
				s.t.Fatal(err)
			}
			s.seq[l]++
		}
		s.ts[l] += 3000
	}
	s.clock.advance(33 * time.Millisecond)
}

// frames sends n frames without keyframes.
func (s *simulcast) frames(n int) {
	s.t.Helper()
	for range n {
		s.frame()
	}
}

func TestReceiveRefusesBadPackets(t *testing.T) {
	u := newUpTrack(upTrackConfig{kind: kindVideo, layers: 2, mimeType: "video/VP8"})
	good := rtpPacket(t, 1, 1, false, vp8Payload(0, 1, true, true, 10))
	v1 := append([]byte(nil), good...)
	v1[0] = v1[0]&0x3f | 1<<6
	badPad := append([]byte(nil), good...)
	badPad[0] |= 0x20 // padding flag, last byte (payload) says 0
	badPad[len(badPad)-1] = 0
	for _, c := range []struct {
		name  string
		layer int
		pkt   []byte
		want  error
	}{
		{"short", 0, good[:11], errRTPMalformed},
		{"version 1", 0, v1, errRTPMalformed},
		{"bad padding", 0, badPad, errRTPMalformed},
		{"cut extension", 0, good[:14], errRTPMalformed},
		{"too large", 0, make([]byte, rtpMaxPacket+1), errRTPTooLarge},
		{"layer -1", -1, good, errLayerRange},
		{"layer 2 of 2", 2, good, errLayerRange},
		{"good", 1, good, nil},
	} {
		if err := u.receive(c.layer, c.pkt, t0); !errors.Is(err, c.want) {
			t.Errorf("%s: receive = %v, want %v", c.name, err, c.want)
		}
	}
	if got := u.counters().malformed; got != 5 {
		t.Errorf("malformed = %d, want 5", got)
	}
	u.close()
	if err := u.receive(0, good, t0); !errors.Is(err, errUpTrackClosed) {
		t.Errorf("receive after close = %v, want errUpTrackClosed", err)
	}
}

func TestSubscriberStreamRewritten(t *testing.T) {
	s := newSimulcast(t, 1, 0)
	r := &recorder{}
	d := s.u.subscribe(r, 0x1234, 100)
	s.frame()
	if got := r.take(); len(got) != 0 {
		t.Fatalf("before a keyframe: sent %d packets", len(got))
	}
	if got := s.takePLIs(); len(got) != 1 || got[0] != 0 {
		t.Fatalf("keyframe requests at subscribe = %v, want [0]", got)
	}
	s.frame(0)
	s.frame()
	got := r.take()
	if len(got) != 4 {
		t.Fatalf("sent %d packets, want 4", len(got))
	}
	for i, p := range got {
		if p.ssrc != 0x1234 || p.pt != 100 || p.extensions {
			t.Errorf("packet %d: ssrc %#x pt %d extensions %v, want 0x1234, 100, none", i, p.ssrc, p.pt, p.extensions)
		}
	}
	if !got[0].keyframe || got[0].srcSeq != 1002 {
		t.Errorf("first packet sent: source %d keyframe %v, want the keyframe 1002", got[0].srcSeq, got[0].keyframe)
	}
	if d.currentLayer() != 0 {
		t.Errorf("currentLayer = %d, want 0", d.currentLayer())
	}
	st := s.u.counters()
	if st.received != 6 || st.forwarded != 4 {
		t.Errorf("counters: received %d forwarded %d, want 6, 4", st.received, st.forwarded)
	}
	s.u.unsubscribe(d)
	s.frame(0)
	if got := r.take(); len(got) != 0 {
		t.Errorf("after unsubscribe: sent %d packets", len(got))
	}
}

func TestWriteErrorsCounted(t *testing.T) {
	s := newSimulcast(t, 1, 0)
	r := &recorder{fail: true}
	s.u.subscribe(r, 1, 96)
	s.frame(0)
	if st := s.u.counters(); st.writeErrors != 2 || st.forwarded != 0 {
		t.Errorf("writeErrors %d forwarded %d, want 2, 0", st.writeErrors, st.forwarded)
	}
}

func TestSubscribeAfterClose(t *testing.T) {
	s := newSimulcast(t, 1, 0)
	s.u.close()
	r := &recorder{}
	d := s.u.subscribe(r, 1, 96)
	d.setMaxLayer(0)
	d.setMuted(false)
	d.keyframeRequest()
	d.nack([]uint16{1})
	s.u.unsubscribe(d)
	if got := s.takePLIs(); len(got) != 0 {
		t.Errorf("closed track asked for keyframes: %v", got)
	}
}

// TestConcurrentForwarding runs the three layers' readers against
// subscribers that come and go, switch layers, mute and NACK, for the race
// detector; a subscriber that stays on layer 0 must still see one
// continuous stream, and close must stop everything.
func TestConcurrentForwarding(t *testing.T) {
	defer goleak.VerifyNone(t)
	u := newUpTrack(upTrackConfig{kind: kindVideo, layers: 3, mimeType: "video/VP8", ringSize: 64, onPLI: func(int) {}})
	const packets = 2000
	send := func(l, i int) error {
		seq := uint16(i + 1000*l)
		pkt := rtpPacket(t, seq, uint32(i/4)*3000, i%4 == 3, vp8Payload(l, seq, i%4 == 0, i%40 == 0, 60))
		return u.receive(l, pkt, time.Now())
	}
	for l := range 3 { // every layer running before the steady subscriber comes
		if err := send(l, 0); err != nil {
			t.Fatal(err)
		}
	}
	steady := &recorder{}
	u.subscribe(steady, 1, 96).setMaxLayer(0)

	var readers, churn sync.WaitGroup
	stop := make(chan struct{})
	for l := range 3 {
		readers.Go(func() {
			for i := 1; i < packets; i++ {
				if err := send(l, i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for g := range 4 {
		churn.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := &recorder{}
				d := u.subscribe(r, uint32(10+g), 96)
				d.setMaxLayer(i % 3)
				d.setMuted(i%5 == 0)
				d.keyframeRequest()
				if got := r.take(); len(got) > 0 {
					d.nack([]uint16{got[0].seq, got[len(got)-1].seq})
				}
				d.setMuted(false)
				d.setMaxLayer((i + 1) % 3)
				d.currentLayer()
				u.unsubscribe(d)
			}
		})
	}
	readers.Wait()
	close(stop)
	churn.Wait()

	got := steady.take()
	checkContinuous(t, got)
	if len(got) < packets/2 {
		t.Errorf("the steady subscriber got %d packets of %d", len(got), packets)
	}
	for _, p := range got {
		if p.layer != 0 || p.ssrc != 1 {
			t.Fatalf("steady subscriber got %+v, want layer 0 only", p)
		}
	}
	u.close()
	if err := u.receive(0, rtpPacket(t, 1, 1, false, vp8Payload(0, 1, true, true, 10)), time.Now()); !errors.Is(err, errUpTrackClosed) {
		t.Errorf("receive after close = %v", err)
	}
	if len(*u.subs.Load()) != 0 {
		t.Errorf("%d subscribers left after close", len(*u.subs.Load()))
	}
}

func TestRingSizes(t *testing.T) {
	for _, c := range []struct {
		cfg  upTrackConfig
		want []int
	}{
		{upTrackConfig{kind: kindVideo, layers: 3}, []int{128, 256, 512}},
		{upTrackConfig{kind: kindVideo, layers: 1}, []int{512}},
		{upTrackConfig{kind: kindVideo, layers: 3, ringSize: 128}, []int{64, 64, 128}},
		{upTrackConfig{kind: kindVideo, layers: 2, ringSize: 20}, []int{32, 32}},
		{upTrackConfig{kind: kindAudio, layers: 3}, []int{128}},
	} {
		u := newUpTrack(c.cfg)
		var got []int
		for _, ly := range u.layers[:u.cfg.layers] {
			got = append(got, ly.ring.size())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%+v: ring sizes %v, want %v", c.cfg, got, c.want)
		}
	}
}
