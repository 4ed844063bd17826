package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/gonets/gonets/bench/result"
)

// The synthetic media a call's publishers send: what a browser sends for a
// camera in three simulcast layers and a microphone, at the bitrates the
// SFU fits its subscribers' layers to (callsfu.Options.LayerBitrates).
// Nothing is encoded: only the RTP framing and the VP8 payload header the
// SFU reads (where keyframes start) are real.
const (
	// audioBytes is an Opus packet's payload: 32 kbit/s in 20 ms packets.
	audioBytes  = 32000 / 8 / 50
	audioPeriod = 20 * time.Millisecond
	// frameRate is the camera's frames per second, each layer's.
	frameRate   = 30
	framePeriod = time.Second / frameRate
	// keyframeEvery is how often each layer sends a keyframe unasked.
	keyframeEvery = 3 * time.Second
	// maxVideoPayload is the most payload one video packet carries, as
	// browsers packetise to stay under a 1,200-byte MTU.
	maxVideoPayload = 1100
	// pacingTick and pacingFactor shape the video's pacer: a slice of
	// pacingFactor times the video's bitrate every pacingTick, as
	// WebRTC's pacer sends (2.5 ×, 5 ms).
	pacingTick   = 5 * time.Millisecond
	pacingFactor = 2.5
	// mediaStamp is the tail of every payload: the time the publisher
	// wrote the packet, Unix ns, big endian.
	mediaStamp = 8
)

// simulcastLayers are the camera's layers, lowest first: their rid and
// bitrate in bit/s.
var simulcastLayers = [3]struct {
	rid  string
	rate int
}{{"q", 150_000}, {"h", 500_000}, {"f", 1_500_000}}

// frameBytes is one frame of a layer of rate bit/s.
func frameBytes(rate int) int { return rate / 8 / frameRate }

// packetsPerSecond is what one publisher sends: audio and all three
// layers.
func packetsPerSecond() float64 {
	n := float64(time.Second / audioPeriod)
	for _, l := range simulcastLayers {
		n += frameRate * float64((frameBytes(l.rate)+maxVideoPayload-1)/maxVideoPayload)
	}
	return n
}

// newCallAPI returns the pion API every client PeerConnection of the bench
// is made with, as a browser's: Opus and VP8, the mid, rid and audio-level
// header extensions, pion's default interceptors but stats (NACK, RTCP
// reports, transport-wide congestion control feedback, which the SFU's
// bandwidth estimate reads), host candidates over IPv4 UDP, no mDNS. Each
// PeerConnection gets a socket of its own, as a browser's does. pion's
// logs are off: its interceptors complain of every closed pipe at the end.
func newCallAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	exts := []struct {
		uri  string
		kind webrtc.RTPCodecType
	}{
		{sdp.SDESMidURI, webrtc.RTPCodecTypeAudio}, {sdp.AudioLevelURI, webrtc.RTPCodecTypeAudio},
		{sdp.SDESMidURI, webrtc.RTPCodecTypeVideo}, {sdp.SDESRTPStreamIDURI, webrtc.RTPCodecTypeVideo},
	}
	for _, e := range exts {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, e.kind); err != nil {
			return nil, err
		}
	}
	logs := logging.NewDefaultLoggerFactory()
	logs.DefaultLogLevel = logging.LogLevelDisabled
	// pion's default interceptors but its stats one, which only counts
	// for getStats: what goes on the wire is a browser's.
	reg := &interceptor.Registry{}
	err := webrtc.ConfigureNackWithOptions(m, reg, []nack.GeneratorOption{nack.WithGeneratorLoggerFactory(logs)}, nack.WithResponderLoggerFactory(logs))
	if err == nil {
		err = webrtc.ConfigureRTCPReportsWithOptions(reg, []report.ReceiverOption{report.WithReceiverLoggerFactory(logs)}, report.WithSenderLoggerFactory(logs))
	}
	if err == nil {
		err = webrtc.ConfigureSimulcastExtensionHeaders(m)
	}
	if err == nil {
		err = webrtc.ConfigureTWCCSenderWithOptions(m, reg, twcc.WithLoggerFactory(logs))
	}
	if err != nil {
		return nil, err
	}
	std, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{LoggerFactory: logs}
	se.SetNet(bufferedNet{std})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.To4() != nil })
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// clientSocketBuffer is the receive buffer of the clients' UDP sockets
// (capped by net.core.rmem_max): the bench's own sockets should not be
// where packets are lost, as Linux's default (208 KiB, some 190 packets)
// would be whenever the generator's goroutine is late.
const clientSocketBuffer = 2 << 20

// bufferedNet is the clients' network: the host's, but that each UDP
// socket gets clientSocketBuffer.
type bufferedNet struct{ *stdnet.Net }

func (n bufferedNet) ListenUDP(network string, addr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, addr)
	if err == nil {
		_ = c.SetReadBuffer(clientSocketBuffer)
	}
	return c, err
}

// gathered sets pc's local description and waits (up to 5 s) for its
// candidates, which then travel inside the description: the bench trickles
// nothing, so no candidate can reach the SFU before its PeerConnection.
func gathered(pc *webrtc.PeerConnection, desc webrtc.SessionDescription) (string, error) {
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		return "", err
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return "", errors.New("bench: ICE gathering took over 5 s")
	}
	return pc.LocalDescription().SDP, nil
}

// callPublisher is a participant's publishing PeerConnection: an Opus
// track and a VP8 track in three simulcast layers.
type callPublisher struct {
	pc    *webrtc.PeerConnection
	audio *webrtc.TrackLocalStaticRTP
	video [3]*webrtc.TrackLocalStaticRTP
	// The negotiated header extension ids, and the video's mid.
	midID, ridID, levelID uint8
	audioMid, videoMid    string
	audioSender, vsender  *webrtc.RTPSender

	keyframe [3]atomic.Bool // a PLI asked for one
	sent     atomic.Int64   // RTP packets written, all tracks
	sentIn   atomic.Int64   // of those, while the window was open
}

// newCallPublisher makes the publishing PeerConnection and its tracks;
// offer then negotiates it.
func newCallPublisher(api *webrtc.API, name string) (*callPublisher, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &callPublisher{pc: pc}
	fail := func(err error) (*callPublisher, error) {
		pc.Close()
		return nil, err
	}
	if p.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", name); err != nil {
		return fail(err)
	}
	if p.audioSender, err = pc.AddTrack(p.audio); err != nil {
		return fail(err)
	}
	for i, l := range simulcastLayers {
		p.video[i], err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "camera", name, webrtc.WithRTPStreamID(l.rid))
		if err != nil {
			return fail(err)
		}
	}
	if p.vsender, err = pc.AddTrack(p.video[0]); err != nil {
		return fail(err)
	}
	for _, l := range p.video[1:] {
		if err := p.vsender.AddEncoding(l); err != nil {
			return fail(err)
		}
	}
	return p, nil
}

// offer creates the publisher's offer, has publish carry it to the SFU,
// and applies the answer.
func (p *callPublisher) offer(publish func(offer string) (answer string, err error)) error {
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	sdpOffer, err := gathered(p.pc, offer)
	if err != nil {
		return err
	}
	answer, err := publish(sdpOffer)
	if err != nil {
		return err
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return err
	}
	for _, e := range p.vsender.GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			p.midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			p.ridID = uint8(e.ID)
		}
	}
	for _, e := range p.audioSender.GetParameters().HeaderExtensions {
		if e.URI == sdp.AudioLevelURI {
			p.levelID = uint8(e.ID)
		}
	}
	for _, tr := range p.pc.GetTransceivers() {
		switch tr.Sender() {
		case p.vsender:
			p.videoMid = tr.Mid()
		case p.audioSender:
			p.audioMid = tr.Mid()
		}
	}
	return nil
}

// readRTCP drains the senders' RTCP, as pion's interceptors (the NACK
// responder) need, and marks a layer's keyframe due on a PLI or FIR. The
// goroutines end when the PeerConnection closes.
func (p *callPublisher) readRTCP(wg *sync.WaitGroup) {
	wg.Go(func() {
		for {
			if _, _, err := p.audioSender.ReadRTCP(); err != nil {
				return
			}
		}
	})
	for i, l := range simulcastLayers {
		wg.Go(func() {
			for {
				pkts, _, err := p.vsender.ReadSimulcastRTCP(l.rid)
				if err != nil {
					return
				}
				for _, pkt := range pkts {
					switch pkt.(type) {
					case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
						p.keyframe[i].Store(true)
					}
				}
			}
		})
	}
}

// videoPacket is a video packet waiting for the pacer.
type videoPacket struct {
	layer  int
	seq    uint16
	ts     uint32
	n      int // payload bytes
	first  bool
	key    bool
	marker bool
}

// send writes the publisher's media until stop closes: an Opus packet
// every 20 ms, and on each layer a frame every 1/30 s, a keyframe every
// keyframeEvery (phased by phase) or when a PLI asks. Audio goes out when
// due; video goes through a pacer, as a browser's does, at pacingFactor
// times the video's bitrate in slices of pacingTick, so that a frame's
// packets do not leave in one burst. Each payload ends in its write time;
// open reports whether the measured window is open.
func (p *callPublisher) send(stop <-chan struct{}, phase time.Duration, open func(time.Time) bool) {
	tick := time.NewTicker(pacingTick)
	defer tick.Stop()
	videoRate := 0
	for _, l := range simulcastLayers {
		videoRate += l.rate
	}
	perTick := int(pacingFactor * float64(videoRate) / 8 * pacingTick.Seconds())
	var (
		start      = time.Now()
		nextAudio  = start
		nextFrame  = start
		nextKey    = start.Add(phase % keyframeEvery)
		audioSeq   uint16
		audioTS    uint32
		videoSeq   [3]uint16
		videoTS    uint32
		queue      []videoPacket
		budget     int
		last       = start
		payload    = make([]byte, maxVideoPayload)
		pkt        rtp.Packet
		audioLevel = []byte{40}
	)
	write := func(track *webrtc.TrackLocalStaticRTP, n int) {
		now := time.Now()
		binary.BigEndian.PutUint64(payload[n-mediaStamp:n], uint64(now.UnixNano()))
		pkt.Payload = payload[:n]
		if track.WriteRTP(&pkt) == nil {
			p.sent.Add(1)
			if open(now) {
				p.sentIn.Add(1)
			}
		}
	}
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		for ; !nextAudio.After(now); nextAudio = nextAudio.Add(audioPeriod) {
			pkt.Header = rtp.Header{Version: 2, Marker: true, SequenceNumber: audioSeq, Timestamp: audioTS}
			if p.levelID != 0 {
				_ = pkt.Header.SetExtension(p.levelID, audioLevel)
			}
			if p.midID != 0 {
				_ = pkt.Header.SetExtension(p.midID, []byte(p.audioMid))
			}
			clear(payload[:audioBytes])
			write(p.audio, audioBytes)
			audioSeq++
			audioTS += 960
		}
		for ; !nextFrame.After(now); nextFrame = nextFrame.Add(framePeriod) {
			periodic := !nextKey.After(nextFrame)
			if periodic {
				nextKey = nextKey.Add(keyframeEvery)
			}
			for i, l := range simulcastLayers {
				key := periodic || p.keyframe[i].Swap(false)
				left := frameBytes(l.rate)
				for first := true; left > 0; first = false {
					n := min(left, maxVideoPayload)
					left -= n
					queue = append(queue, videoPacket{layer: i, seq: videoSeq[i], ts: videoTS, n: max(n, 1+10+mediaStamp), first: first, key: key, marker: left == 0})
					videoSeq[i]++
				}
			}
			videoTS += 90000 / frameRate
		}
		// The pacer: credit for the time since the last tick (a late
		// wake catches up, up to 100 ms), a tick's worth at most kept
		// while the queue is empty.
		budget = min(budget+int(float64(perTick)*float64(now.Sub(last))/float64(pacingTick)), 20*perTick)
		last = now
		sent := 0
		for _, v := range queue {
			if budget <= 0 {
				break
			}
			budget -= v.n
			sent++
			clear(payload[:v.n])
			if v.first {
				// VP8 payload descriptor S=1, partition 0; the frame tag
				// (P=0 for a keyframe, show_frame=1), and a keyframe's
				// start code.
				payload[0] = 0x10
				payload[1] = 0x10
				if v.key {
					payload[4], payload[5], payload[6] = 0x9d, 0x01, 0x2a
				} else {
					payload[1] |= 0x01
				}
			}
			pkt.Header = rtp.Header{Version: 2, Marker: v.marker, SequenceNumber: v.seq, Timestamp: v.ts}
			if p.midID != 0 && p.ridID != 0 {
				_ = pkt.Header.SetExtension(p.midID, []byte(p.videoMid))
				_ = pkt.Header.SetExtension(p.ridID, []byte(simulcastLayers[v.layer].rid))
			}
			write(p.video[v.layer], v.n)
		}
		queue = append(queue[:0], queue[sent:]...)
		if len(queue) == 0 {
			budget = min(budget, perTick)
		}
	}
}

// callSubscriber is a participant's subscribing PeerConnection, which the
// SFU offers, and what it received.
type callSubscriber struct {
	rx *rxStats
	// firstFrame is when the last packet of the first video frame (its
	// marker bit set) arrived, Unix ns; 0 before.
	firstFrame atomic.Int64

	mu      sync.Mutex // guards the following
	pc      *webrtc.PeerConnection
	streams []*rxStream
}

// answer applies one of the SFU's offers (making the PeerConnection on the
// first) and returns the answer, its candidates inside.
func (s *callSubscriber) answer(api *webrtc.API, offer string, wg *sync.WaitGroup) (string, error) {
	pc := s.conn()
	if pc == nil {
		var err error
		if pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
			return "", err
		}
		pc.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) { s.onTrack(tr, recv, wg) })
		s.mu.Lock()
		s.pc = pc
		s.mu.Unlock()
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	return gathered(pc, ans)
}

// conn returns the PeerConnection, nil before the first offer.
func (s *callSubscriber) conn() *webrtc.PeerConnection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pc
}

// onTrack reads a track the SFU forwards until it ends, counting its
// packets and recording their forwarding delay, and drains its receiver's
// RTCP (the sender reports the receiver reports refer to).
func (s *callSubscriber) onTrack(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver, wg *sync.WaitGroup) {
	st := &rxStream{video: tr.Kind() == webrtc.RTPCodecTypeVideo}
	s.mu.Lock()
	s.streams = append(s.streams, st)
	s.mu.Unlock()
	wg.Go(func() {
		for {
			if _, _, err := recv.ReadRTCP(); err != nil {
				return
			}
		}
	})
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			st.receive(buf[:n], s.rx)
			if st.video && n > 1 && buf[1]&0x80 != 0 && s.firstFrame.Load() == 0 {
				s.firstFrame.CompareAndSwap(0, time.Now().UnixNano())
			}
		}
	})
}

// flowing returns how many of the subscriber's tracks have received a
// packet.
func (s *callSubscriber) flowing() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.streams {
		if st.received.Load() > 0 {
			n++
		}
	}
	return n
}

// close closes the PeerConnection, if there is one.
func (s *callSubscriber) close() {
	if pc := s.conn(); pc != nil {
		pc.Close()
	}
}

// rxWindow is how many sequence numbers below the highest an rxStream
// remembers, to tell a retransmission or a reordered packet from a
// duplicate.
const rxWindow = 1024

// rxStream counts one forwarded track as a subscriber receives it. The
// SFU rewrites each subscriber's sequence numbers into one run without
// gaps (across layer switches), so what was lost is what the run skipped:
// expected (highest - first + 1) less the distinct packets received.
// receive runs on the track's reader only; the counters are read by the
// bench's ticks.
type rxStream struct {
	video bool

	started bool
	highest uint64 // extended sequence number
	seen    [rxWindow / 64]uint64

	first    atomic.Uint64
	top      atomic.Uint64 // highest, for readers
	received atomic.Int64  // distinct packets
	bytes    atomic.Int64  // their payload, while the window was open
}

// expected returns how many packets the run so far holds.
func (st *rxStream) expected() int64 {
	if st.received.Load() == 0 {
		return 0
	}
	return int64(st.top.Load() - st.first.Load() + 1)
}

// receive counts one RTP packet: new, or a duplicate (dropped), or older
// than the window remembers (counted as lost), or older than the first
// (not counted).
func (st *rxStream) receive(b []byte, rx *rxStats) {
	if len(b) < 12 {
		return
	}
	seq := binary.BigEndian.Uint16(b[2:4])
	ext := uint64(seq)
	if !st.started {
		st.started, st.highest = true, ext
		st.first.Store(ext)
		st.top.Store(ext)
	} else {
		// Extend by the nearest value to the highest.
		ext = st.highest&^0xffff | uint64(seq)
		switch d := int16(seq - uint16(st.highest)); {
		case d > 0 && ext < st.highest:
			ext += 1 << 16
		case d < 0 && ext > st.highest && ext >= 1<<16:
			ext -= 1 << 16
		}
	}
	switch {
	case ext < st.first.Load():
		return // sent before the first one received
	case ext > st.highest:
		for s := st.highest + 1; s < ext && s <= st.highest+rxWindow; s++ {
			st.seen[(s/64)%(rxWindow/64)] &^= 1 << (s % 64)
		}
		if ext-st.highest >= rxWindow {
			clear(st.seen[:])
		}
		st.highest = ext
		st.top.Store(ext)
	case st.highest-ext >= rxWindow:
		return // too old to tell: already counted as lost
	case st.received.Load() > 0 && st.seen[(ext/64)%(rxWindow/64)]&(1<<(ext%64)) != 0:
		return // a duplicate
	}
	st.seen[(ext/64)%(rxWindow/64)] |= 1 << (ext % 64)
	st.received.Add(1)
	now := time.Now()
	payload, ok := rtpPayload(b)
	if !ok || len(payload) < mediaStamp {
		return
	}
	sent := int64(binary.BigEndian.Uint64(payload[len(payload)-mediaStamp:]))
	if rx.record(now, now.UnixNano()-sent) && st.video {
		st.bytes.Add(int64(len(payload)))
	}
}

// rtpPayload returns an RTP packet's payload, without its header,
// extensions and padding.
func rtpPayload(b []byte) ([]byte, bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return nil, false
	}
	n := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < n+4 {
			return nil, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:n+4]))
	}
	end := len(b)
	if b[0]&0x20 != 0 && end > n {
		end -= int(b[end-1])
	}
	if n > end {
		return nil, false
	}
	return b[n:end], true
}

// rxStats is one participant's forwarding delays (write by the publisher
// to read by the subscriber, µs) over the measured window, and per second
// for the timeline. Its tracks' readers share it.
type rxStats struct {
	window *callWindow

	mu     sync.Mutex // guards the following
	delay  *hdrhistogram.Histogram
	second *hdrhistogram.Histogram
	count  int64 // packets recorded in the current second
}

func newRxStats(w *callWindow) *rxStats {
	return &rxStats{window: w, delay: result.NewHistogram(), second: result.NewHistogram()}
}

// record records a delay of ns received at now, and reports whether the
// window was open.
func (rx *rxStats) record(now time.Time, ns int64) bool {
	if !rx.window.open(now) {
		return false
	}
	us := max(1, ns/1000)
	rx.mu.Lock()
	rx.delay.RecordValue(us)
	rx.second.RecordValue(us)
	rx.count++
	rx.mu.Unlock()
	return true
}

// take moves the current second into into, returning its packets.
func (rx *rxStats) take(into *hdrhistogram.Histogram) int64 {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	into.Merge(rx.second)
	rx.second.Reset()
	n := rx.count
	rx.count = 0
	return n
}

// callWindow is the measured window: packets written and received while
// it is open are counted.
type callWindow struct {
	begin, end atomic.Int64 // Unix ns; 0 until set
}

func (w *callWindow) open(now time.Time) bool {
	b, e, t := w.begin.Load(), w.end.Load(), now.UnixNano()
	return b != 0 && t >= b && (e == 0 || t < e)
}

// streamCounts sums what a subscriber's streams counted.
type streamCounts struct{ expected, received, videoBytes, videoStreams int64 }

func (s *callSubscriber) counts() streamCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c streamCounts
	for _, st := range s.streams {
		c.expected += st.expected()
		c.received += st.received.Load()
		if st.video {
			c.videoBytes += st.bytes.Load()
			c.videoStreams++
		}
	}
	return c
}

func (c *streamCounts) add(o streamCounts) {
	c.expected += o.expected
	c.received += o.received
	c.videoBytes += o.videoBytes
	c.videoStreams += o.videoStreams
}

// String is for errors.
func (c streamCounts) String() string {
	return fmt.Sprintf("%d of %d packets", c.received, c.expected)
}

// socketDrops sums the drops the kernel counted (/proc/net/udp and udp6)
// on the UDP sockets process pid ("self" for this one) holds, or returns
// -1 where it cannot tell.
func socketDrops(pid string) int64 {
	fds, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		return -1
	}
	inodes := make(map[string]bool)
	for _, fd := range fds {
		link, err := os.Readlink("/proc/" + pid + "/fd/" + fd.Name())
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var drops int64
	for _, table := range []string{"udp", "udp6"} {
		b, err := os.ReadFile("/proc/" + pid + "/net/" + table)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
			f := strings.Fields(line)
			if len(f) < 13 || !inodes[f[9]] {
				continue
			}
			if n, err := strconv.ParseInt(f[len(f)-1], 10, 64); err == nil {
				drops += n
			}
		}
	}
	return drops
}
