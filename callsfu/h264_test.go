package callsfu

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// h264Payloads are RTP payloads of RFC 6184, with whether each begins a
// keyframe.
var h264Payloads = []struct {
	name    string
	payload []byte
	key     bool
}{
	{"single NAL IDR", []byte{0x65, 0x88, 0x84}, true},
	{"single NAL SPS alone", []byte{0x67, 0x42, 0xe0, 0x1f}, true},
	{"single NAL PPS", []byte{0x68, 0xce, 0x3c}, false},
	{"single NAL non-IDR slice", []byte{0x41, 0x9a, 0x02}, false},
	{"single NAL SEI", []byte{0x06, 0x05}, false},
	{"STAP-A SPS, PPS, IDR", []byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce, 0, 2, 0x65, 0x88}, true},
	{"STAP-A PPS then IDR", []byte{0x78, 0, 2, 0x68, 0xce, 0, 2, 0x65, 0x88}, true},
	{"STAP-A of non-IDR slices", []byte{0x78, 0, 2, 0x41, 0x9a, 0, 2, 0x41, 0x9b}, false},
	{"STAP-A size past the end", []byte{0x78, 0, 9, 0x67, 0x42}, false},
	{"STAP-A size zero", []byte{0x78, 0, 0, 0x65}, false},
	{"STAP-A header only", []byte{0x78}, false},
	{"FU-A start of IDR", []byte{0x7c, 0x85, 0x88, 0x84}, true},
	{"FU-A middle of IDR", []byte{0x7c, 0x05, 0x88}, false},
	{"FU-A end of IDR", []byte{0x7c, 0x45, 0x88}, false},
	{"FU-A start of non-IDR slice", []byte{0x5c, 0x81, 0x9a}, false},
	{"FU-A indicator only", []byte{0x7c}, false},
	{"empty", nil, false},
}

// TestH264KeyframeTable: the forwarding's H.264 detector finds the start of
// every keyframe in the ways encoders packetize one, and no other packet.
func TestH264KeyframeTable(t *testing.T) {
	start := switchPointFunc(kindVideo, webrtc.MimeTypeH264)
	lower := switchPointFunc(kindVideo, "video/h264")
	for _, c := range h264Payloads {
		if got := start(c.payload); got != c.key {
			t.Errorf("%s: keyframe start = %v, want %v", c.name, got, c.key)
		}
		if got := lower(c.payload); got != c.key {
			t.Errorf("%s (video/h264): keyframe start = %v, want %v", c.name, got, c.key)
		}
	}
}

// TestH264KeyframeAllocs: the detector runs on every video packet and
// allocates nothing.
func TestH264KeyframeAllocs(t *testing.T) {
	start := switchPointFunc(kindVideo, webrtc.MimeTypeH264)
	n := 0
	allocs := testing.AllocsPerRun(100, func() {
		for _, c := range h264Payloads {
			if start(c.payload) {
				n++
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run of %d payloads, want 0", allocs, len(h264Payloads))
	}
	if n == 0 {
		t.Error("no keyframe found")
	}
}

// nalWriter records the first byte of each payload a downTrack sends.
type nalWriter struct {
	mu   sync.Mutex
	nals []byte
	pt   []uint8
}

func (w *nalWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nals = append(w.nals, payload[0])
	w.pt = append(w.pt, h.PayloadType)
	return len(payload), nil
}

// TestH264SubscriberStartsAtKeyframe: a subscriber of an H.264 track is
// sent nothing until a keyframe begins (which subscribing asked for), then
// everything: the STAP-A of SPS and PPS, the FU-A fragments of the IDR and
// the non-IDR slices after it.
func TestH264SubscriberStartsAtKeyframe(t *testing.T) {
	var plis atomic.Int64
	u := newUpTrack(upTrackConfig{kind: kindVideo, mimeType: webrtc.MimeTypeH264, ringSize: 64,
		onPLI: func(int) { plis.Add(1) }})
	defer u.close()
	w := &nalWriter{}
	u.subscribe(w, 0x1234, 106)
	if plis.Load() != 1 {
		t.Fatalf("%d keyframe requests at subscribe, want 1", plis.Load())
	}
	seq := uint16(500)
	send := func(payloads ...[]byte) {
		t.Helper()
		for i, p := range payloads {
			if err := u.receive(0, rtpPacket(t, seq, uint32(seq)*3000, i == len(payloads)-1, p), t0); err != nil {
				t.Fatal(err)
			}
			seq++
		}
	}
	slice := []byte{0x41, 0x9a, 0x00}
	send(slice, slice)                                       // before any keyframe
	send([]byte{0x7c, 0x05, 0x88}, []byte{0x7c, 0x45, 0x88}) // the end of an IDR begun before
	send([]byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, []byte{0x7c, 0x85, 0x88}, []byte{0x7c, 0x45, 0x88})
	send(slice, slice)
	w.mu.Lock()
	defer w.mu.Unlock()
	want := []byte{0x78, 0x7c, 0x7c, 0x41, 0x41}
	if string(w.nals) != string(want) {
		t.Errorf("sent NAL headers % x, want % x", w.nals, want)
	}
	for _, pt := range w.pt {
		if pt != 106 {
			t.Errorf("sent payload type %d, want the subscriber's 106", pt)
		}
	}
}

func BenchmarkH264KeyframeStart(b *testing.B) {
	stap := []byte{0x78, 0, 2, 0x68, 0xce, 0, 2, 0x41, 0x9a, 0, 2, 0x65, 0x88}
	b.ReportAllocs()
	b.SetBytes(int64(len(stap)))
	for b.Loop() {
		h264KeyframeStart(stap)
	}
}

// TestH264Format: the formats that tell H.264 codecs apart, and the codec
// a subscriber is sent a track in.
func TestH264Format(t *testing.T) {
	for _, c := range []struct {
		fmtp string
		want h264Format
	}{
		{"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", h264Format{"1", [2]byte{0x42, 0xe0}}},
		{"profile-level-id=640C1F; packetization-mode=1", h264Format{"1", [2]byte{0x64, 0x0c}}},
		{"profile-level-id=42001f", h264Format{"0", [2]byte{0x42, 0x00}}},
		{"profile-level-id=42e0", h264Format{"0", [2]byte{}}},
		{"", h264Format{"0", [2]byte{}}},
	} {
		if got := parseH264Format(c.fmtp); got != c.want {
			t.Errorf("parseH264Format(%q) = %+v, want %+v", c.fmtp, got, c.want)
		}
	}
}

// TestMediaEngineH264: the SFU answers an encoder that offers H.264 alone
// (OBS's WHIP output: constrained baseline, packetization mode 1) with
// H.264 and the video RTCP feedback.
func TestMediaEngineH264(t *testing.T) {
	m, err := newMediaEngine()
	if err != nil {
		t.Fatal(err)
	}
	sfu, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer sfu.Close()
	enc := h264Encoder(t, nil)
	defer enc.pc.Close()
	offer, err := enc.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sfu.SetRemoteDescription(offer); err != nil {
		t.Fatal(err)
	}
	answer, err := sfu.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"H264/90000", "profile-level-id=42e01f", "packetization-mode=1",
		"nack pli", "ccm fir", "transport-cc",
	} {
		if !strings.Contains(answer.SDP, want) {
			t.Errorf("the answer lacks %q:\n%s", want, answer.SDP)
		}
	}
}

// h264Enc is a WHIP encoder that sends H.264 video alone, as OBS does.
type h264Enc struct {
	pc     *webrtc.PeerConnection
	track  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	plis   atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
}

// h264Encoder returns an encoder whose one video track is H.264
// constrained baseline, packetization mode 1.
func h264Encoder(t *testing.T, api *webrtc.API) *h264Enc {
	t.Helper()
	if api == nil {
		api = newTestAPI(t, peerOptions{}, TargetPublisher)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	}, "camera", "obs")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	return &h264Enc{pc: pc, track: track, sender: sender, stop: make(chan struct{})}
}

// start sends a 30-packet group every 300 ms as an encoder packetizes it:
// a STAP-A of SPS and PPS, an IDR slice in three FU-A fragments, then
// non-IDR slices in single NAL units; a PLI brings the next group forward.
func (e *h264Enc) start() {
	e.wg.Add(2)
	pli := make(chan struct{}, 1)
	go func() {
		defer e.wg.Done()
		for {
			pkts, _, err := e.sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if _, ok := p.(*rtcp.PictureLossIndication); ok {
					e.plis.Add(1)
					select {
					case pli <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	go func() {
		defer e.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var seq uint16
		var ts uint32
		for i := 0; ; i++ {
			select {
			case <-e.stop:
				return
			case <-tick.C:
			}
			select {
			case <-pli:
				i = 0
			default:
			}
			var payloads [][]byte
			switch i % 30 {
			case 0:
				payloads = [][]byte{
					{0x78, 0, 4, 0x67, 0x42, 0xe0, 0x1f, 0, 3, 0x68, 0xce, 0x3c},
					{0x7c, 0x85, 0x88, 0x84},
					{0x7c, 0x05, 0x21, 0x00},
					{0x7c, 0x45, 0x21, 0x01},
				}
			default:
				payloads = [][]byte{{0x41, 0x9a, byte(i)}}
			}
			ts += 3000
			for j, p := range payloads {
				seq++
				h := rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: j == len(payloads)-1}
				_ = e.track.WriteRTP(&rtp.Packet{Header: h, Payload: p})
			}
		}
	}()
}

// close stops sending and closes the PeerConnection.
func (e *h264Enc) close() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	_ = e.pc.GracefulClose()
	e.wg.Wait()
}

// publishH264 publishes an H.264 encoder's video with WHIP as token.
func (w *whipTest) publishH264(token string) (*h264Enc, string) {
	t := w.t
	t.Helper()
	e := h264Encoder(t, nil)
	t.Cleanup(e.close)
	resp := w.do("POST", "/whip/live", token, "application/sdp", gatheredOffer(t, e.pc))
	if resp.status != http.StatusCreated {
		t.Fatalf("WHIP POST of H.264: %d %s", resp.status, resp.body)
	}
	if !strings.Contains(resp.body, "H264/90000") {
		t.Errorf("the answer has no H.264:\n%s", resp.body)
	}
	if err := e.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: resp.body}); err != nil {
		t.Fatal(err)
	}
	e.start()
	return e, resp.header.Get("Location")
}

// h264Player is a WHEP player's record of the video it receives.
type h264Player struct {
	pc      *webrtc.PeerConnection
	mime    atomic.Value // the track's codec: MIME type and fmtp
	packets atomic.Int64
	keys    atomic.Int64 // packets that begin a keyframe
	wg      sync.WaitGroup
}

// playH264 plays the stream as token with a recvonly video offer of api's
// codecs, and returns the player and the response.
func (w *whipTest) playH264(token string, api *webrtc.API) (*h264Player, response) {
	t := w.t
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	pl := &h264Player{pc: pc}
	t.Cleanup(func() {
		_ = pc.GracefulClose()
		pl.wg.Wait()
	})
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		pl.mime.Store(remote.Codec().MimeType + " " + remote.Codec().SDPFmtpLine)
		pl.wg.Add(1)
		go func() {
			defer pl.wg.Done()
			for {
				p, _, err := remote.ReadRTP()
				if err != nil {
					return
				}
				pl.packets.Add(1)
				if h264KeyframeStart(p.Payload) {
					pl.keys.Add(1)
				}
			}
		}()
	})
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	resp := w.do("POST", "/whep/live", token, "application/sdp", gatheredOffer(t, pc))
	if resp.status == http.StatusCreated {
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: resp.body}); err != nil {
			t.Fatal(err)
		}
	}
	return pl, resp
}

// vp8OnlyAPI is a player's API that receives VP8 video alone.
func vp8OnlyAPI(t *testing.T) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(vp8Codec, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m))
}

// TestWHIPH264: an encoder publishes H.264 with WHIP (as OBS does); a WHEP
// player that offers H.264 receives it in the profile published, its
// keyframes among it (the SFU asked the encoder for one when the player
// came); a player that offers VP8 alone is refused with bad_sdp naming
// the codec, and the call is as it was.
func TestWHIPH264(t *testing.T) {
	w := newWHIPTest(t)
	enc, session := w.publishH264("admin")
	waitFor(t, "the encoder's H.264 track", func() bool { return strings.Contains(w.state(), "tracks [1.1.0]") })

	before := w.state()
	_, r := w.playH264("sub2", vp8OnlyAPI(t))
	if r.status != http.StatusBadRequest || r.code() != whipBadSDP || !strings.Contains(r.body, "video/H264") {
		t.Errorf("a VP8-only player of an H.264 stream: %d %s", r.status, r.body)
	}
	if after := w.state(); after != before {
		t.Errorf("the refusal changed the call: %s, was %s", after, before)
	}

	pl, r := w.playH264("sub1", newTestAPI(t, peerOptions{}, TargetSubscriber))
	if r.status != http.StatusCreated {
		t.Fatalf("WHEP POST: %d %s", r.status, r.body)
	}
	waitFor(t, "H.264 video with two keyframes at the player", func() bool {
		return pl.packets.Load() >= 40 && pl.keys.Load() >= 2
	})
	if codec, _ := pl.mime.Load().(string); !strings.HasPrefix(strings.ToLower(codec), "video/h264 ") ||
		!strings.Contains(codec, "profile-level-id=42e01f") {
		t.Errorf("the player receives %q, want H.264 42e01f", codec)
	}
	if enc.plis.Load() == 0 {
		t.Error("the SFU asked the encoder for no keyframe when the player started")
	}
	if r := w.do("DELETE", session, "admin", "", ""); r.status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	waitFor(t, "the call to end", func() bool { return w.state() == "no call, 0 sessions" })
}
