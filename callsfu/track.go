package callsfu

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Kind is a track's media kind.
type Kind uint8

// The kinds of track.
const (
	KindAudio Kind = iota + 1
	KindVideo
)

// Quality is the simulcast layer a subscriber asks for.
type Quality int8

// The qualities, from none to the publisher's best layer.
const (
	// QualityOff stops the track's forwarding to the subscriber (a video
	// not on screen).
	QualityOff Quality = iota - 1
	QualityLow
	QualityMedium
	QualityHigh
)

// Track describes a published track.
type Track struct {
	// ID is unique in the call: "user.device.mid". It is also the track ID
	// of the subscriber's SDP (its msid), whose stream ID is Peer.String().
	ID string
	// Name is the publisher's own track ID (from its msid), by which its
	// client tells a screen share from a camera.
	Name string
	// Peer publishes the track.
	Peer Peer
	// Kind is audio or video.
	Kind Kind
	// Layers is the number of simulcast layers, 1 to 3.
	Layers int
	// Muted says whether its publisher has muted it (SetMuted).
	Muted bool
}

// publishedTrack is a track a participant publishes: the forwarding core's
// upTrack fed by one reader goroutine per simulcast layer.
type publishedTrack struct {
	owner *Participant
	pc    *webrtc.PeerConnection // the owner's publisher PeerConnection, for PLIs
	info  Track
	mime  string
	fmtp  string   // the codec's fmtp line: which H.264 profile, say
	rids  []string // the simulcast layers, lowest first; none without simulcast
	up    *upTrack
	ssrcs [maxLayers]atomic.Uint32 // each layer's SSRC, once it arrived
	muted atomic.Bool
}

// newPublishedTrack returns the track of the publisher's transceiver mid,
// whose first layer is remote.
func newPublishedTrack(p *Participant, pc *webrtc.PeerConnection, mid string, remote *webrtc.TrackRemote,
	recv *webrtc.RTPReceiver, rids []string) *publishedTrack {
	codec := remote.Codec()
	t := &publishedTrack{
		owner: p,
		pc:    pc,
		mime:  codec.MimeType,
		fmtp:  codec.SDPFmtpLine,
		rids:  orderLayers(rids),
		info: Track{
			ID:     p.peer.String() + "." + mid,
			Name:   remote.ID(),
			Peer:   p.peer,
			Kind:   KindAudio,
			Layers: 1,
		},
	}
	cfg := upTrackConfig{kind: kindAudio, mimeType: codec.MimeType, clockRate: codec.ClockRate, onPLI: t.onPLI}
	if remote.Kind() == webrtc.RTPCodecTypeVideo {
		t.info.Kind, cfg.kind = KindVideo, kindVideo
		t.info.Layers = max(1, len(t.rids))
		cfg.layers = t.info.Layers
	} else {
		cfg.audioLevelExtID = extensionID(recv, sdp.AudioLevelURI)
		cfg.speaker = p.speaker
	}
	t.up = newUpTrack(cfg)
	return t
}

// knownLayerNames are rid sets whose names say their order, lowest first.
// Any other set is taken in the order of the offer's a=simulcast line.
var knownLayerNames = [][]string{
	{"q", "h", "f"},
	{"l", "m", "h"},
	{"low", "mid", "high"},
	{"0", "1", "2"},
}

// orderLayers returns rids lowest layer first, at most maxLayers of them.
func orderLayers(rids []string) []string {
	if len(rids) > maxLayers {
		rids = rids[:maxLayers]
	}
	for _, names := range knownLayerNames {
		var ordered []string
		for _, n := range names {
			for _, r := range rids {
				if r == n {
					ordered = append(ordered, r)
				}
			}
		}
		if len(ordered) == len(rids) {
			return ordered
		}
	}
	return rids
}

// layerOf returns the layer of rid; a track without simulcast has layer 0
// only.
func (t *publishedTrack) layerOf(rid string) (int, bool) {
	if len(t.rids) == 0 {
		return 0, rid == ""
	}
	for i, r := range t.rids {
		if r == rid {
			return i, true
		}
	}
	return 0, false
}

// extensionID returns the id the publisher negotiated for a header
// extension, 0 if none.
func extensionID(recv *webrtc.RTPReceiver, uri string) uint8 {
	for _, e := range recv.GetParameters().HeaderExtensions {
		if e.URI == uri && e.ID > 0 && e.ID < 256 {
			return uint8(e.ID)
		}
	}
	return 0
}

// onPLI asks the publisher for a keyframe of layer (the forwarding core
// throttles the calls).
func (t *publishedTrack) onPLI(layer int) {
	ssrc := t.ssrcs[layer].Load()
	if ssrc == 0 {
		return
	}
	t.owner.sfu.m.plisToPublisher.Inc()
	if err := t.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		t.owner.sfu.log.Debug("callsfu: PLI to publisher", "track", t.info.ID, "err", err)
	}
}

// readRTP feeds one layer's packets to the upTrack until the track ends.
func (t *publishedTrack) readRTP(layer int, remote *webrtc.TrackRemote) {
	buf := make([]byte, rtpMaxPacket)
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		t.owner.heardAt(now)
		// A malformed packet is counted by the upTrack; the next may be
		// fine. Its copies to the subscribers leave in one sendmmsg.
		conn := t.owner.sfu.conn
		conn.hold()
		_ = t.up.receive(layer, buf[:n], now)
		conn.release()
	}
}

// readRTCP drains one layer's RTCP (sender reports) through the
// interceptors, noting that the publisher is alive.
func (t *publishedTrack) readRTCP(recv *webrtc.RTPReceiver, rid string) {
	for {
		var err error
		if rid == "" {
			_, _, err = recv.ReadRTCP()
		} else {
			_, _, err = recv.ReadSimulcastRTCP(rid)
		}
		if err != nil {
			return
		}
		t.owner.heardAt(time.Now())
	}
}

// setMuted records that the publisher muted or unmuted the track; the room
// applies it to the subscribers.
func (t *publishedTrack) setMuted(muted bool) {
	t.muted.Store(muted)
}

// describe returns the track's description as of now (whether it is muted).
func (t *publishedTrack) describe() Track {
	info := t.info
	info.Muted = t.muted.Load()
	return info
}

// close ends the track for every subscriber.
func (t *publishedTrack) close() {
	t.up.close()
	t.owner.sfu.retire(t.up.counters())
}

// subscription is one participant's copy of another's track: the trackLocal
// bound to its subscriber PeerConnection and what it asked for.
type subscription struct {
	owner  *Participant
	track  *publishedTrack
	local  *trackLocal
	sender *webrtc.RTPSender

	// Guarded by owner.mu.
	requested Quality
	layer     int // the layer the bandwidth fit allows
}

// newSubscription adds t to p's subscriber PeerConnection.
func newSubscription(p *Participant, t *publishedTrack) (*subscription, error) {
	local := &trackLocal{track: t, sub: p, maxLayer: t.info.Layers - 1}
	sender, err := p.sub.AddTrack(local)
	if err != nil {
		return nil, fmt.Errorf("callsfu: add track %s: %w", t.info.ID, err)
	}
	return &subscription{owner: p, track: t, local: local, sender: sender, requested: QualityHigh}, nil
}

// readRTCP handles the subscriber's RTCP for this track: NACKs answered from
// the track's ring, PLI and FIR passed on as keyframe requests. The
// transport-wide CC feedback it also carries reaches the bandwidth estimator
// on the way, in the interceptors.
func (s *subscription) readRTCP() {
	m := &s.owner.sfu.m
	for {
		pkts, _, err := s.sender.ReadRTCP()
		if err != nil {
			return
		}
		s.owner.heardAt(time.Now())
		d := s.local.current()
		if d == nil {
			continue
		}
		for _, pkt := range pkts {
			switch pkt := pkt.(type) {
			case *rtcp.TransportLayerNack:
				for _, pair := range pkt.Nacks {
					m.nacks.Add(1 + bits.OnesCount16(uint16(pair.LostPackets)))
				}
				conn := s.owner.sfu.conn
				conn.hold()
				d.nackPairs(pkt.Nacks)
				conn.release()
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				m.plisFromSubs.Inc()
				d.keyframeRequest()
			}
		}
	}
}

// trackLocal is the webrtc.TrackLocal a subscriber's PeerConnection sends: on
// Bind it subscribes a downTrack to the published track, writing to the
// PeerConnection's stream with the SSRC and payload type negotiated there.
type trackLocal struct {
	track *publishedTrack
	sub   *Participant // the subscriber

	mu       sync.Mutex // guards the following
	down     *downTrack // nil while unbound
	maxLayer int
	muted    bool
	// waiting holds the downTrack muted until the subscriber's
	// PeerConnection is connected (transportUp): pion drops what is written
	// before DTLS is up without an error, and the keyframe a new subscriber
	// starts on would be lost with it, while the keyframe request made for
	// it held the publisher's throttle for a second.
	waiting bool
}

// Bind subscribes to the published track once the subscriber's answer has
// negotiated this sender.
func (l *trackLocal) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, ok := matchCodec(l.track.mime, l.track.fmtp, ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down != nil {
		l.track.up.unsubscribe(l.down)
	}
	l.waiting = !l.sub.subUp.Load()
	d := l.track.up.subscribeMuted(ctx.WriteStream(), uint32(ctx.SSRC()), uint8(codec.PayloadType), l.muted || l.waiting)
	d.setMaxLayer(l.maxLayer)
	l.down = d
	return codec, nil
}

// matchCodec returns the negotiated codec of mime: the one of the same
// format (fmtp: the same H.264 profile) if there is one, else the first of
// mime (a decoder of one H.264 profile decodes the others browsers send).
func matchCodec(mime, fmtp string, codecs []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	for _, c := range codecs {
		if sameFormat(c, mime, fmtp) {
			return c, true
		}
	}
	for _, c := range codecs {
		if strings.EqualFold(c.MimeType, mime) {
			return c, true
		}
	}
	return webrtc.RTPCodecParameters{}, false
}

// Unbind ends the subscription when the sender stops.
func (l *trackLocal) Unbind(webrtc.TrackLocalContext) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down != nil {
		l.track.up.unsubscribe(l.down)
		l.down = nil
	}
	return nil
}

// ID is the track's ID in the call (Track.ID).
func (l *trackLocal) ID() string { return l.track.info.ID }

// RID is empty: a subscriber receives one layer at a time on one SSRC.
func (l *trackLocal) RID() string { return "" }

// StreamID groups a publisher's tracks: its Peer.String().
func (l *trackLocal) StreamID() string { return l.track.info.Peer.String() }

// Kind is the published track's kind.
func (l *trackLocal) Kind() webrtc.RTPCodecType {
	if l.track.info.Kind == KindVideo {
		return webrtc.RTPCodecTypeVideo
	}
	return webrtc.RTPCodecTypeAudio
}

// current returns the bound downTrack, nil while unbound.
func (l *trackLocal) current() *downTrack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.down
}

// setMaxLayer caps the layer forwarded, now and after a later Bind.
func (l *trackLocal) setMaxLayer(layer int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if layer == l.maxLayer {
		return
	}
	l.maxLayer = layer
	if l.down != nil {
		l.down.setMaxLayer(layer)
	}
}

// setMuted stops or resumes the forwarding, now and after a later Bind.
func (l *trackLocal) setMuted(muted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if muted == l.muted {
		return
	}
	l.muted = muted
	if l.down != nil && !l.waiting {
		l.down.setMuted(muted)
	}
}

// transportUp starts the forwarding held while the subscriber's
// PeerConnection was not connected: at the next keyframe, which it
// requests.
func (l *trackLocal) transportUp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.waiting {
		return
	}
	l.waiting = false
	if l.down != nil && !l.muted {
		l.down.setMuted(false)
	}
}

// onEstimator receives the bandwidth estimator of the subscriber
// PeerConnection. Its estimates are only stored: the estimator calls back on
// the RTCP reader's goroutine, inside pion's interceptors, where taking p.mu
// would tie pion's locks to the participant's; refit applies them.
func (p *Participant) onEstimator(e cc.BandwidthEstimator) {
	p.estimate.Store(int64(e.GetTargetBitrate()))
	e.OnTargetBitrateChange(func(bps int) { p.estimate.Store(int64(bps)) })
}

// refitChange is the relative change of the bandwidth estimate that re-fits
// the layers; smaller ones would only make the fit flap.
const refitChange = 0.1

// refit fits the layers to the bandwidth estimate when it has moved by more
// than refitChange since the last fit. The sweeper calls it.
func (p *Participant) refit() {
	est := p.estimate.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := float64(est - p.fitted); !p.left && (d > refitChange*float64(p.fitted) || -d > refitChange*float64(p.fitted)) {
		p.allocateLocked()
	}
}

// allocateLocked fits the subscribed video into the bandwidth estimate:
// every simulcast track starts at its lowest layer, then the tracks are
// raised one layer at a time, all to medium before any to high, while the
// estimate has room and no higher than each one's requested quality.
// Single-layer tracks (audio, screen share) are always forwarded and are
// charged at their nominal bitrate first. Tracks are raised in the order of
// their IDs, so that a tight estimate always favours the same ones rather
// than flapping between them.
func (p *Participant) allocateLocked() {
	rates := p.sfu.opts.LayerBitrates
	p.fitted = p.estimate.Load()
	budget := int(p.fitted)
	var simulcast []*subscription
	for _, s := range p.subs {
		switch {
		case s.requested == QualityOff:
		case s.track.info.Kind == KindAudio:
			budget -= audioBitrate
		case s.track.info.Layers == 1:
			budget -= rates[1]
		default:
			simulcast = append(simulcast, s)
			s.layer = 0
			budget -= rates[0]
		}
	}
	slices.SortFunc(simulcast, func(a, b *subscription) int { return strings.Compare(a.track.info.ID, b.track.info.ID) })
	for l := 1; l < len(rates); l++ {
		for _, s := range simulcast {
			cost := rates[l] - rates[l-1]
			if int(s.requested) >= l && s.track.info.Layers > l && budget >= cost {
				s.layer = l
				budget -= cost
			}
		}
	}
	for _, s := range p.subs {
		s.local.setMaxLayer(s.layer)
		s.local.setMuted(s.track.muted.Load() || s.requested == QualityOff)
	}
}

// audioBitrate is what an Opus track is charged in the layer fit.
const audioBitrate = 40_000
