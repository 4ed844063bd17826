package callsfu

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// testPeer is a pion client of the SFU in the same process: a publisher
// PeerConnection it offers and a subscriber one it answers, signalled
// directly through a Participant.
type testPeer struct {
	t     *testing.T
	name  string
	tag   byte // first payload byte of everything it sends
	level byte // the RFC 6464 audio level it sends (127: silence)
	opts  peerOptions
	part  *Participant
	ready chan struct{} // closed once part is set

	pcMu sync.Mutex // guards sub against close
	pub  *webrtc.PeerConnection
	sub  *webrtc.PeerConnection

	mu       sync.Mutex // guards the following
	events   []Event
	received map[string]*receivedTrack // by the subscriber-side track ID (Track.ID)
	sending  []*sentTrack

	stop chan struct{}
	wg   sync.WaitGroup
}

// receivedTrack counts what the subscriber PeerConnection got of one track.
type receivedTrack struct {
	ssrc    uint32 // of the subscriber's stream
	kind    webrtc.RTPCodecType
	packets atomic.Int64
	lastTag atomic.Int32 // tag<<8 | layer of the newest packet
	layers  atomic.Int32 // bit i: a video packet of layer i arrived
	badSSRC atomic.Int64 // packets whose SSRC was not the stream's

	mu     sync.Mutex          // guards the following
	seqs   map[uint16]struct{} // the sequence numbers received
	last   uint16              // the newest one
	frames []seenFrame         // the video packets received, in order (the first maxSeen)
}

// seenFrame is a video packet a subscriber received: the publisher's
// simulcast layer and frame number it came from, and whether it starts a
// keyframe.
type seenFrame struct {
	seq   uint16 // the RTP sequence number it came with
	layer byte
	frame uint16
	key   bool
}

// maxSeen bounds receivedTrack.frames.
const maxSeen = 1 << 15

// missing returns how many of the n sequence numbers before the newest
// received but skip were never received.
func (rt *receivedTrack) missing(skip, n uint16) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	lost := 0
	for i := range n {
		if _, ok := rt.seqs[rt.last-skip-i]; !ok {
			lost++
		}
	}
	return lost
}

// received returns how many packets arrived.
func (rt *receivedTrack) received() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return len(rt.seqs)
}

// sentTrack is a track the publisher PeerConnection sends, one local track
// per simulcast layer.
type sentTrack struct {
	layers []*webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	kind   webrtc.RTPCodecType
	plis   atomic.Int64 // PLIs received for the first layer
	keyed  int64        // plis when the last keyframe was sent; startSending's own
}

// readRTCP drains the sender's RTCP, as an application must for pion's
// interceptors (the NACK responder) to see it, and counts PLIs.
func (st *sentTrack) readRTCP() {
	ssrc := uint32(st.sender.GetParameters().Encodings[0].SSRC)
	for {
		pkts, _, err := st.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			if pli, ok := p.(*rtcp.PictureLossIndication); ok && pli.MediaSSRC == ssrc {
				st.plis.Add(1)
			}
		}
	}
}

// peerOptions configure a test client's network.
type peerOptions struct {
	tcp bool         // ICE over TCP only
	cut *atomic.Bool // if set, each PeerConnection's UDP socket goes silent when it is
	// dropEvery, if set, loses every dropEvery-th RTP packet the publisher
	// PeerConnection sends and the subscriber one receives.
	dropEvery int
	// ssrcXor, if set and non-zero, is XORed into the SSRC of every video
	// packet the publisher PeerConnection sends (a client whose SSRCs change).
	ssrcXor *atomic.Uint32
	// config configures both PeerConnections (ICE servers, a relay-only
	// transport policy).
	config webrtc.Configuration
	// keyEvery, if set, makes only every keyEvery-th video frame a
	// keyframe (the others inter frames); else every frame is one.
	keyEvery int
	// keyOnPLI, with keyEvery, makes the next frame a keyframe too when a
	// PLI for the first layer came, as an encoder does.
	keyOnPLI bool
	// videoBytes, if set, pads each simulcast layer's video payload to
	// videoBytes[layer] bytes, so that the layers differ in bitrate.
	videoBytes []int
	// linkIn, if set and above zero, caps the RTP the subscriber
	// PeerConnection receives at that many bits a second (a token bucket
	// holding 100 ms): what is beyond it is lost, as on a slow link.
	linkIn *atomic.Int64
	// linkLog, if set, records the video packets that reach the capped
	// link, lost or not: what the SFU sent.
	linkLog *linkLog
}

// linkLog is what reached a capped link of the video stream that clocks
// it: each packet's RTP sequence number and size, and whether the link
// lost it.
type linkLog struct {
	mu   sync.Mutex
	pkts []linkPacket
}

type linkPacket struct {
	seq  uint16
	size int
	lost bool
}

func (l *linkLog) add(p linkPacket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pkts) < maxSeen {
		l.pkts = append(l.pkts, p)
	}
}

// sizes returns the size of each sequence number's first transmission.
func (l *linkLog) sizes() map[uint16]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[uint16]int, len(l.pkts))
	for _, p := range l.pkts {
		if _, ok := out[p.seq]; !ok {
			out[p.seq] = p.size
		}
	}
	return out
}

// testConn is a client's UDP socket that can go silent both ways, as a
// phone that lost its network does, and can lose RTP packets.
type testConn struct {
	net.PacketConn
	cut             *atomic.Bool
	dropIn, dropOut int // lose every n-th RTP packet received, sent
	nIn, nOut       atomic.Int64
	linkIn          *atomic.Int64 // bits a second of RTP received, if set and above zero

	linkLog *linkLog

	// The link's clock is the media's own: the RTP sequence numbers of
	// the first video stream received, one 10 ms frame each in the test
	// peers' video, so that a reader or an SFU starved of CPU for a while
	// (as under -race on a loaded machine) and then handed a burst of
	// queued packets sees them spread over the media time they cover, as
	// a link would have carried them, instead of dropping the burst.
	tokens    float64 // bytes the link may still carry; read by ReadFrom only
	clock     uint32  // SSRC of the video stream whose packets are the clock
	clocked   bool    // whether clock is chosen
	filledSeq uint16  // the clock's sequence number when tokens were last topped up
	filled    bool    // whether filledSeq is set
}

// framePeriod is the media time each video packet of the test peers
// covers; opusPayloadType is the SFU's payload type for Opus (media.go):
// audio packets use the link but do not drive its clock.
const (
	framePeriod     = 10 * time.Millisecond
	opusPayloadType = 111
)

// overLink reports whether an RTP packet of n bytes received now is beyond
// the receiving link's rate.
func (c *testConn) overLink(b []byte) bool {
	n := len(b)
	if c.linkIn == nil {
		return false
	}
	rate := float64(c.linkIn.Load()) / 8
	if rate <= 0 {
		return false
	}
	pt, ssrc, seq := b[1]&0x7f, binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint16(b[2:4])
	if !c.clocked && pt != opusPayloadType {
		c.clock, c.clocked = ssrc, true
	}
	video := c.clocked && ssrc == c.clock
	if video {
		// Only a later sequence number moves the clock on: a resent
		// packet carries its original one.
		if !c.filled {
			c.filledSeq, c.filled = seq, true
		} else if d := int16(seq - c.filledSeq); d > 0 {
			c.tokens = min(c.tokens+rate*float64(d)*framePeriod.Seconds(), rate/10)
			c.filledSeq = seq
		}
	}
	lost := c.tokens < float64(n)
	if video && c.linkLog != nil {
		c.linkLog.add(linkPacket{seq: seq, size: n, lost: lost})
	}
	if c.tokens < float64(n) {
		return true
	}
	c.tokens -= float64(n)
	return false
}

// isRTP reports whether a datagram is SRTP media (not STUN, DTLS or RTCP).
func isRTP(b []byte) bool {
	return len(b) > 1 && b[0]>>6 == 2 && (b[1] < 192 || b[1] > 223)
}

// ReadFrom drops what arrives once the link is cut, and every dropIn-th
// RTP packet.
func (c *testConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		if c.cut != nil && c.cut.Load() {
			continue
		}
		if c.dropIn > 0 && isRTP(b[:n]) && c.nIn.Add(1)%int64(c.dropIn) == 0 {
			continue
		}
		if isRTP(b[:n]) && n >= 12 && c.overLink(b[:n]) {
			continue
		}
		return n, addr, nil
	}
}

// WriteTo drops what is sent once the link is cut, and every dropOut-th
// RTP packet.
func (c *testConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.cut != nil && c.cut.Load() {
		return len(b), nil
	}
	if c.dropOut > 0 && isRTP(b) && c.nOut.Add(1)%int64(c.dropOut) == 0 {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}

// newTestAPI returns a client API for one PeerConnection (target) that
// speaks what browsers speak: Opus and VP8, the simulcast and audio-level
// header extensions, pion's default interceptors (NACK, reports, TWCC),
// loopback candidates only. With o.cut or o.dropEvery it sends and receives
// on a socket of its own (as a browser does for each PeerConnection) that
// goes silent on o.cut and loses RTP.
func newTestAPI(t *testing.T, o peerOptions, target Target) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		for _, uri := range []string{sdp.SDESMidURI, sdp.AudioLevelURI} {
			if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, kind); err != nil {
				t.Fatal(err)
			}
		}
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
		t.Fatal(err)
	}
	if o.ssrcXor != nil && target == TargetPublisher {
		reg.Add(ssrcShifterFactory{o.ssrcXor})
	}
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	if o.tcp {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	} else {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	if o.cut != nil || o.dropEvery > 0 || (o.linkIn != nil && target == TargetSubscriber) {
		udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { udp.Close() })
		quiet := pionLogs{slog.New(slog.DiscardHandler)}
		conn := &testConn{PacketConn: udp, cut: o.cut}
		if target == TargetPublisher {
			conn.dropOut = o.dropEvery
		} else {
			conn.dropIn = o.dropEvery
			conn.linkIn, conn.linkLog = o.linkIn, o.linkLog
		}
		se.SetICEUDPMux(ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: conn, Logger: quiet.NewLogger("udpmux")}))
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
}

// joinPeer joins a test client to call.
func joinPeer(t *testing.T, s *SFU, call uint64, peer Peer, tag byte, o peerOptions) *testPeer {
	t.Helper()
	c := &testPeer{
		t: t, name: peer.String(), tag: tag, level: 127, opts: o,
		ready: make(chan struct{}), received: make(map[string]*receivedTrack), stop: make(chan struct{}),
	}
	part, err := s.Join(call, peer, c.onEvent)
	if err != nil {
		t.Fatalf("join %s: %v", peer, err)
	}
	c.part = part
	close(c.ready)
	t.Cleanup(c.close)
	return c
}

// onEvent is the participant's events function: it answers offers, adds
// candidates and records everything.
func (c *testPeer) onEvent(e Event) {
	<-c.ready
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
	switch e.Kind {
	case EventOffer:
		if err := c.answer(e.SDP); err != nil && !c.gone() {
			c.t.Errorf("%s: answer: %v", c.name, err)
		}
	case EventCandidate:
		mid, index := e.Candidate.SDPMid, e.Candidate.SDPMLineIndex
		err := c.sub.AddICECandidate(webrtc.ICECandidateInit{Candidate: e.Candidate.Candidate, SDPMid: &mid, SDPMLineIndex: &index})
		if err != nil && !c.gone() {
			c.t.Errorf("%s: add candidate: %v", c.name, err)
		}
	}
}

// gone reports whether the participant has left (the SFU then closes its
// PeerConnections under events still queued) or the client is closing.
func (c *testPeer) gone() bool {
	select {
	case <-c.stop:
		return true
	default:
	}
	c.part.mu.Lock()
	defer c.part.mu.Unlock()
	return c.part.left
}

// answer applies the SFU's offer to the subscriber PeerConnection (created
// on the first) and sends the answer.
func (c *testPeer) answer(offer string) error {
	if c.sub == nil {
		pc, err := newTestAPI(c.t, c.opts, TargetSubscriber).NewPeerConnection(c.opts.config)
		if err != nil {
			return err
		}
		// close stops c before it reads c.sub under pcMu: a PeerConnection
		// made after that is closed here, never left running.
		c.pcMu.Lock()
		select {
		case <-c.stop:
			c.pcMu.Unlock()
			_ = pc.Close()
			return errors.New("test peer closed")
		default:
		}
		c.sub = pc
		c.pcMu.Unlock()
		pc.OnTrack(c.onTrack)
		pc.OnICECandidate(func(cand *webrtc.ICECandidate) { c.trickle(TargetSubscriber, cand) })
	}
	if err := c.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return err
	}
	answer, err := c.sub.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := c.sub.SetLocalDescription(answer); err != nil {
		return err
	}
	return c.part.Answer(answer.SDP)
}

// trickle sends one of the client's candidates to the SFU.
func (c *testPeer) trickle(target Target, cand *webrtc.ICECandidate) {
	if cand == nil {
		return
	}
	init := cand.ToJSON()
	tc := Candidate{Candidate: init.Candidate}
	if init.SDPMid != nil {
		tc.SDPMid = *init.SDPMid
	}
	if init.SDPMLineIndex != nil {
		tc.SDPMLineIndex = *init.SDPMLineIndex
	}
	if err := c.part.AddCandidate(target, tc); err != nil && !c.gone() {
		c.t.Errorf("%s: trickle: %v", c.name, err)
	}
}

// onTrack counts the packets of a track the SFU sends.
func (c *testPeer) onTrack(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	rt := &receivedTrack{ssrc: uint32(remote.SSRC()), kind: remote.Kind(), seqs: make(map[uint16]struct{})}
	c.mu.Lock()
	c.received[remote.ID()] = rt
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		var pkt rtp.Packet
		buf := make([]byte, 1500)
		for {
			n, _, err := remote.Read(buf)
			if err != nil {
				return
			}
			if pkt.Unmarshal(buf[:n]) != nil {
				continue
			}
			if pkt.SSRC != rt.ssrc {
				rt.badSSRC.Add(1)
			}
			rt.mu.Lock()
			rt.seqs[pkt.SequenceNumber] = struct{}{}
			if int16(pkt.SequenceNumber-rt.last) > 0 || len(rt.seqs) == 1 {
				rt.last = pkt.SequenceNumber
			}
			rt.mu.Unlock()
			if len(pkt.Payload) >= 2 {
				tag := pkt.Payload[0]
				if rt.kind == webrtc.RTPCodecTypeVideo && len(pkt.Payload) >= 9 {
					rt.lastTag.Store(int32(pkt.Payload[7])<<8 | int32(pkt.Payload[8]))
					rt.layers.Or(1 << (pkt.Payload[8] & 7))
					if len(pkt.Payload) >= 11 {
						rt.mu.Lock()
						if len(rt.frames) < maxSeen {
							rt.frames = append(rt.frames, seenFrame{
								seq:   pkt.SequenceNumber,
								layer: pkt.Payload[8],
								frame: uint16(pkt.Payload[9])<<8 | uint16(pkt.Payload[10]),
								key:   pkt.Payload[1]&1 == 0,
							})
						}
						rt.mu.Unlock()
					}
				} else {
					rt.lastTag.Store(int32(tag) << 8)
				}
			}
			rt.packets.Add(1)
		}
	}()
}

// publish offers audio and video (video in rids layers when given) and
// starts sending.
func (c *testPeer) publish(rids ...string) error {
	if err := c.addTracks(rids); err != nil {
		return err
	}
	if err := c.renegotiate(); err != nil {
		return err
	}
	for _, st := range c.sending {
		c.readRTCP(st)
	}
	c.startSending()
	return nil
}

// renegotiate offers the publisher PeerConnection's tracks as they are now.
func (c *testPeer) renegotiate() error {
	offer, err := c.pub.CreateOffer(nil)
	if err != nil {
		return err
	}
	if err := c.pub.SetLocalDescription(offer); err != nil {
		return err
	}
	answer, err := c.part.Publish(offer.SDP)
	if err != nil {
		return err
	}
	return c.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
}

// readRTCP drains a sent track's RTCP on a goroutine of the client's.
func (c *testPeer) readRTCP(st *sentTrack) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		st.readRTCP()
	}()
}

// addScreen starts sharing the screen: a second video track, offered anew.
func (c *testPeer) addScreen() (*sentTrack, error) {
	l, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "screen", c.name)
	if err != nil {
		return nil, err
	}
	sender, err := c.pub.AddTrack(l)
	if err != nil {
		return nil, err
	}
	st := &sentTrack{layers: []*webrtc.TrackLocalStaticRTP{l}, sender: sender, kind: webrtc.RTPCodecTypeVideo}
	if err := c.renegotiate(); err != nil {
		return nil, err
	}
	c.readRTCP(st)
	c.mu.Lock()
	c.sending = append(c.sending, st)
	c.mu.Unlock()
	return st, nil
}

// stopTrack stops sending st and offers anew.
func (c *testPeer) stopTrack(st *sentTrack) error {
	c.mu.Lock()
	c.sending = slices.DeleteFunc(c.sending, func(x *sentTrack) bool { return x == st })
	c.mu.Unlock()
	if err := c.pub.RemoveTrack(st.sender); err != nil {
		return err
	}
	return c.renegotiate()
}

// addTracks creates the publisher PeerConnection with an Opus and a VP8
// track.
func (c *testPeer) addTracks(rids []string) error {
	pc, err := newTestAPI(c.t, c.opts, TargetPublisher).NewPeerConnection(c.opts.config)
	if err != nil {
		return err
	}
	c.pub = pc
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) { c.trickle(TargetPublisher, cand) })
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "mic", c.name)
	if err != nil {
		return err
	}
	as, err := pc.AddTrack(audio)
	if err != nil {
		return err
	}
	c.sending = append(c.sending, &sentTrack{layers: []*webrtc.TrackLocalStaticRTP{audio}, sender: as, kind: webrtc.RTPCodecTypeAudio})
	video := &sentTrack{kind: webrtc.RTPCodecTypeVideo}
	if len(rids) == 0 {
		rids = []string{""}
	}
	for _, rid := range rids {
		var opts []func(*webrtc.TrackLocalStaticRTP)
		if rid != "" {
			opts = append(opts, webrtc.WithRTPStreamID(rid))
		}
		l, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "camera", c.name, opts...)
		if err != nil {
			return err
		}
		video.layers = append(video.layers, l)
	}
	if video.sender, err = pc.AddTrack(video.layers[0]); err != nil {
		return err
	}
	for _, l := range video.layers[1:] {
		if err := video.sender.AddEncoding(l); err != nil {
			return err
		}
	}
	c.sending = append(c.sending, video)
	return nil
}

// startSending writes a packet on every track and layer each 10 ms: Opus
// frames tagged with the client's tag, and VP8 keyframe starts tagged with
// the tag and layer (so any packet is a place to switch layers). Simulcast
// layers carry the mid and rid header extensions as browsers send them.
func (c *testPeer) startSending() {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var seq uint16
		for ts := uint32(0); ; ts += 960 {
			select {
			case <-c.stop:
				return
			case <-tick.C:
			}
			seq++
			c.mu.Lock()
			sending := slices.Clone(c.sending)
			c.mu.Unlock()
			for _, st := range sending {
				midID, ridID, levelID := sendExtensionIDs(st.sender)
				for layer, l := range st.layers {
					h := rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: true}
					payload := []byte{c.tag, 0, 0, 0, 0, 0, 0, 0, 0}
					if st.kind == webrtc.RTPCodecTypeVideo {
						// VP8 descriptor S=1 PID 0, then a keyframe header (P=0)
						// with its start code, then tag and layer.
						payload = []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, c.tag, byte(layer), byte(seq >> 8), byte(seq), 0}
						if k := c.opts.keyEvery; k > 0 && int(seq)%k != 0 {
							if n := st.plis.Load(); c.opts.keyOnPLI && layer == 0 && n != st.keyed {
								st.keyed = n
							} else {
								payload[1] = 0x01 // P=1: an inter frame
							}
						}
						if layer < len(c.opts.videoBytes) && c.opts.videoBytes[layer] > len(payload) {
							payload = append(payload, make([]byte, c.opts.videoBytes[layer]-len(payload))...)
						}
					}
					if st.kind == webrtc.RTPCodecTypeAudio && levelID != 0 {
						_ = h.SetExtension(levelID, []byte{c.level})
					}
					if l.RID() != "" && midID != 0 && ridID != 0 {
						_ = h.SetExtension(midID, []byte(transceiverMidOf(c.pub, st.sender)))
						_ = h.SetExtension(ridID, []byte(l.RID()))
					}
					_ = l.WriteRTP(&rtp.Packet{Header: h, Payload: payload})
				}
			}
		}
	}()
}

// sendExtensionIDs returns the mid, rid and audio level header extension
// ids negotiated for a sender.
func sendExtensionIDs(s *webrtc.RTPSender) (mid, rid, level uint8) {
	for _, e := range s.GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			mid = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			rid = uint8(e.ID)
		case sdp.AudioLevelURI:
			level = uint8(e.ID)
		}
	}
	return mid, rid, level
}

// transceiverMidOf returns the mid of a sender's transceiver.
func transceiverMidOf(pc *webrtc.PeerConnection, s *webrtc.RTPSender) string {
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() == s {
			return tr.Mid()
		}
	}
	return ""
}

// publishedBy returns the IDs of the tracks peer publishes, from the
// client's EventTrackPublished events.
func (c *testPeer) publishedBy(peer Peer) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for _, e := range c.events {
		if e.Kind == EventTrackPublished && e.Peer == peer {
			ids = append(ids, e.Track.ID)
		}
	}
	return ids
}

// track returns what the client received of a track, nil if nothing yet.
func (c *testPeer) track(id string) *receivedTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.received[id]
}

// sawEvent reports whether the client was sent an event matching f.
func (c *testPeer) sawEvent(f func(Event) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if f(e) {
			return true
		}
	}
	return false
}

// close stops sending and closes the client's PeerConnections.
func (c *testPeer) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.pcMu.Lock()
	pcs := []*webrtc.PeerConnection{c.pub, c.sub}
	c.pcMu.Unlock()
	for _, pc := range pcs {
		if pc != nil {
			_ = pc.GracefulClose()
		}
	}
	c.wg.Wait()
}

// waitFor polls cond until it holds or the test's patience (10 s) runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// flowing reports whether c has received at least n packets of every
// track in ids.
func (c *testPeer) flowing(n int64, ids ...string) bool {
	for _, id := range ids {
		rt := c.track(id)
		if rt == nil || rt.packets.Load() < n {
			return false
		}
	}
	return true
}
