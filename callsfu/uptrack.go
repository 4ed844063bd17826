package callsfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// rtpWriter is where a subscriber's packets go. pion's
// webrtc.TrackLocalWriter (TrackLocalContext.WriteStream()) is one: it runs
// the subscriber's interceptors and encrypts and sends the packet before it
// returns. WriteRTP must not keep h or payload after it returns (pion's
// interceptors copy what they keep), and may change h's header extensions
// (the transport-wide CC interceptor adds its sequence number): the caller
// resets them before the next write. WriteRTP is called on a publisher's
// reader goroutine, for one subscriber after another, so it must not block:
// a UDP send does not, but a write to a stalled ICE-TCP connection would
// hold up the layer's other subscribers until it fails.
type rtpWriter interface {
	WriteRTP(h *rtp.Header, payload []byte) (int, error)
}

// trackKind says whether a track carries audio or video.
type trackKind uint8

// The kinds of track.
const (
	kindAudio trackKind = iota
	kindVideo
)

// Defaults of upTrackConfig.
const (
	defaultVideoRing    = 512
	defaultAudioRing    = 128
	defaultLayerTimeout = time.Second
	layerSweepInterval  = 100 * time.Millisecond
)

// upTrackConfig describes a published track. The zero value of each field
// means its default.
type upTrackConfig struct {
	// kind is audio or video. Default: audio.
	kind trackKind
	// layers is the number of simulcast layers, 1 to 3; layer 0 is the
	// lowest. Audio always has 1. Default: 1.
	layers int
	// mimeType is the codec (webrtc.MimeTypeVP8, …), which says where its
	// keyframes start (switchPointFunc). Default: none, every packet a
	// switch point.
	mimeType string
	// clockRate is the RTP clock rate in Hz, used to keep timestamps
	// continuous across a layer switch. Default: 90,000 for video, 48,000
	// for audio.
	clockRate uint32
	// audioLevelExtID is the header extension id the publisher negotiated
	// for urn:ietf:params:rtp-hdrext:ssrc-audio-level; with speaker set,
	// each packet's level is fed to it. Default: 0, none.
	audioLevelExtID uint8
	// speaker receives this track's audio levels (see audioLevelExtID).
	// Default: nil, none.
	speaker *speaker
	// ringSize is the number of recent packets kept for NACK resends by
	// the top layer, rounded up to a power of two; each layer below keeps
	// half as many as the one above it (at least 64), its bitrate being
	// about a third, so every layer keeps a few seconds. Default: 512 for
	// video (over 3 s of a 1.5 Mbit/s layer), 128 for audio.
	ringSize int
	// onPLI asks the publisher for a keyframe of layer (a PLI on that
	// layer's SSRC). It is called at most once per second per layer, from
	// the goroutine of receive or of a downTrack method, with no lock of
	// this package held; it must not block. Default: nil, no requests.
	onPLI func(layer int)
	// layerTimeout is how long a layer may go without a packet before it
	// counts as stopped, so its subscribers fall back to the best layer
	// still arriving (the browser pauses its high layers when its own
	// uplink is short). Default: 1 s.
	layerTimeout time.Duration
	// now is the clock of keyframe requests that no packet carries a time
	// for (a subscriber's PLI, setMaxLayer, setMuted). Tests inject one.
	// Default: time.Now.
	now func() time.Time
}

// withDefaults returns a copy of c with its defaults filled in.
func (c upTrackConfig) withDefaults() upTrackConfig {
	if c.kind == kindAudio || c.layers < 1 {
		c.layers = 1
	}
	c.layers = min(c.layers, maxLayers)
	if c.clockRate == 0 {
		c.clockRate = 48000
		if c.kind == kindVideo {
			c.clockRate = 90000
		}
	}
	if c.ringSize <= 0 {
		c.ringSize = defaultAudioRing
		if c.kind == kindVideo {
			c.ringSize = defaultVideoRing
		}
	}
	if c.layerTimeout <= 0 {
		c.layerTimeout = defaultLayerTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// upTrack is one published track with its simulcast layers (1 to 3, layer 0
// the lowest), each layer fed by one reader goroutine of its own calling
// receive. It keeps each layer's recent packets in a ring shared by every
// subscriber for NACK resends, and forwards each new packet to every
// downTrack, which decides (lock-free for the layers it is not on) whether
// the packet is for it and rewrites its header.
//
// Concurrency: receive for a given layer is called by one goroutine at a
// time (the layer's reader); different layers run in parallel. subscribe,
// unsubscribe and close may come from any goroutine. The subscriber list
// is copy-on-write: receive loads it with one atomic read and never takes
// mu; mu serialises its writers. No lock is held while a downTrack writes.
type upTrack struct {
	cfg        upTrackConfig
	epoch      time.Time // the zero of the nanosecond times below
	switchAt   func(payload []byte) bool
	pli        *pliThrottle
	layers     [maxLayers]*upLayer
	subs       atomic.Pointer[[]*downTrack] // the subscribers; replaced, never changed, under mu
	closedFlag atomic.Bool

	// state is the layers being received (bits 0-7, bit i: layer i) and a
	// generation (the bits above) bumped at each change, in one word so a
	// downTrack sees both with one load: a downTrack that has evaluated
	// the current state skips the layers it is not on without its lock.
	state atomic.Uint64

	mu     sync.Mutex // serialises changes of subs and closed
	closed bool

	stats upTrackCounters
}

// upLayer is one simulcast layer: its ring and its reader's scratch.
type upLayer struct {
	ring *packetRing
	// pkt is the packet being forwarded; owned by the layer's reader.
	pkt fwdPacket
	// lastArrival is when the layer's newest packet came (ns since
	// epoch); read by the other layers' readers to tell a stopped layer.
	lastArrival atomic.Int64
	// lastSweep is when this layer's reader last looked for stopped
	// layers; owned by the reader.
	lastSweep int64

	// The source's stream, to tell when it restarts (see restarted); owned
	// by the reader: its SSRC and the one before (0: none yet), when the
	// SSRC last changed, the timestamp and arrival of the newest packet
	// (the highest sequence number), and how many times it restarted.
	ssrc, prevSSRC uint32
	ssrcSince      int64
	newestTS       uint32
	newestArrival  int64
	restarts       uint32
	// The run before the last restart on the same SSRC, whose stragglers
	// are dropped: its highest extended sequence number, its newest
	// timestamp, and when the restart came.
	prevRun     bool
	prevHighest uint64
	prevTS      uint32
	prevRunAt   int64
}

// fwdPacket is one received packet on its way to the subscribers, parsed
// once. hdr is rewritten for each subscriber just before its write; the
// fields below it keep the source values.
type fwdPacket struct {
	hdr         rtp.Header
	payload     []byte // in the ring slot
	layer       int
	ext         uint64 // extended source sequence number
	ts          uint32 // source timestamp
	arrival     int64  // ns since the upTrack's epoch
	restarts    uint32 // the layer's source restarts before this packet's run
	switchPoint bool   // begins a keyframe (always, for audio)
}

// upTrackCounters count what happened to a track's packets. All are atomic;
// they are read by upTrack.counters for metrics.
type upTrackCounters struct {
	received       atomic.Uint64 // packets accepted into a ring
	duplicates     atomic.Uint64 // dropped: already in the ring
	late           atomic.Uint64 // dropped: older than the ring's window
	malformed      atomic.Uint64 // refused: not RTP, or too large
	forwarded      atomic.Uint64 // packets written to subscribers
	writeErrors    atomic.Uint64 // writes to subscribers that failed
	resent         atomic.Uint64 // NACKed packets resent from the ring
	resendMissed   atomic.Uint64 // NACKed packets no longer in the ring
	resendRefused  atomic.Uint64 // NACKed packets not resent: over the subscriber's budget
	resendRepeated atomic.Uint64 // NACKed packets not resent: resent to it less than nackRepeatWindow ago
	pliSent        atomic.Uint64 // keyframe requests passed to onPLI
	pliThrottled   atomic.Uint64 // keyframe requests dropped by the throttle
	restarts       atomic.Uint64 // a layer's source restarted (new SSRC, sequence or timestamp jump)
}

// upTrackStats is a snapshot of upTrackCounters.
type upTrackStats struct {
	received, duplicates, late, malformed uint64
	forwarded, writeErrors                uint64
	resent, resendMissed                  uint64
	resendRefused, resendRepeated         uint64
	pliSent, pliThrottled                 uint64
	restarts                              uint64
}

// newUpTrack returns a track described by cfg, with no subscribers.
func newUpTrack(cfg upTrackConfig) *upTrack {
	cfg = cfg.withDefaults()
	u := &upTrack{
		cfg:      cfg,
		epoch:    cfg.now(),
		switchAt: switchPointFunc(cfg.kind, cfg.mimeType),
		pli:      newPLIThrottle(pliInterval),
	}
	for i := range cfg.layers {
		u.layers[i] = &upLayer{ring: newPacketRing(ringSizeOf(cfg.ringSize, cfg.layers-1-i))}
	}
	u.subs.Store(&[]*downTrack{})
	return u
}

// ringSizeOf returns the ring size of the layer below times steps under the
// top one, whose ring holds top packets.
func ringSizeOf(top, below int) int {
	return max(top>>below, min(top, 64))
}

// receive takes one raw RTP packet of layer as read from the publisher at
// arrival, a time of the clock upTrackConfig.now reads (time.Now by
// default). pkt is the caller's, reused after return: receive copies it
// into the layer's ring, which is the NACK buffer of every subscriber, and
// writes that copy to every downTrack currently on the layer. A duplicate
// or a packet older than the ring's window is dropped (counted, no error;
// see ringResyncAfter for a stream that jumped). It returns an error only
// for a packet that is not RTP or is too large, or after close. It
// allocates nothing once the ring's slots have grown to the packets' size.
func (u *upTrack) receive(layer int, pkt []byte, arrival time.Time) error {
	if layer < 0 || layer >= u.cfg.layers {
		return errLayerRange
	}
	if u.closedFlag.Load() {
		return errUpTrackClosed
	}
	ly := u.layers[layer]
	p := &ly.pkt
	payload, err := parseRTP(&p.hdr, pkt)
	if err != nil {
		u.stats.malformed.Add(1)
		return err
	}
	now := arrival.Sub(u.epoch).Nanoseconds()
	ext := ly.ring.extend(p.hdr.SequenceNumber)
	restart, stale := ly.restarted(&p.hdr, ext, now, u.cfg.clockRate)
	if stale {
		u.stats.late.Add(1)
		return nil
	}
	if restart {
		ext = ly.ring.beyond(p.hdr.SequenceNumber)
	}
	got, res := ly.ring.store(ext, pkt)
	switch res {
	case duplicate:
		u.stats.duplicates.Add(1)
		return nil
	case tooLate:
		u.stats.late.Add(1)
		return nil
	}
	if got != ext { // the ring took a run of late packets as a jump back
		restart, ext = true, got
	}
	if ext == ly.ring.highest {
		ly.newestTS, ly.newestArrival = p.hdr.Timestamp, now
	}
	u.stats.received.Add(1)
	if u.cfg.speaker != nil && u.cfg.audioLevelExtID != 0 {
		if lv := p.hdr.GetExtension(u.cfg.audioLevelExtID); len(lv) > 0 {
			u.cfg.speaker.observe(lv[0]&0x7f, arrival)
		}
	}
	if restart {
		ly.restarts++
		u.stats.restarts.Add(1)
		if len(*u.subs.Load()) > 0 {
			u.requestKeyframe(layer, now)
		}
	}
	hdrLen := len(pkt) - len(payload) - int(p.hdr.PaddingSize)
	p.payload = ly.ring.slot(ext)[hdrLen : hdrLen+len(payload)]
	p.layer, p.ext, p.ts, p.arrival = layer, ext, p.hdr.Timestamp, now
	p.restarts = ly.restarts
	p.switchPoint = u.switchAt(payload)
	ly.lastArrival.Store(now)
	u.trackLayers(layer, now)

	state := u.state.Load()
	n := 0
	for _, d := range *u.subs.Load() {
		if d.forward(p, state) {
			n++
		}
	}
	u.stats.forwarded.Add(uint64(n))
	return nil
}

// Source restarts. A publisher's layer restarts its stream when the browser
// renegotiates or its encoder restarts: a new SSRC, or on the same SSRC new
// sequence numbers and timestamps unrelated to the old ones. Rewriting them
// with the old run's offsets would make a subscriber's stream leap or go
// back, so the layer starts a new run (restarts) instead: its packets are
// numbered beyond the ring's window, and each downTrack on the layer resumes
// at the run's first keyframe, its own numbers going on without a gap.
const (
	// tsJumpLimit is how far, in seconds of the clock rate, a packet's
	// timestamp may stray from the newest packet's timestamp moved on by
	// the time between their arrivals before the stream counts as
	// restarted. A sender's pacer holds packets for 2 s at most; a
	// restarted stream's random timestamps miss by hours.
	tsJumpLimit = 5
	// staleSSRCAfter is how long after an SSRC change packets of the old
	// SSRC still arrive (reordered, or retransmitted by the sender); they
	// are dropped as late rather than taken as a restart back to it.
	staleSSRCAfter = time.Second
)

// restarted reports whether the packet with header h and extended sequence
// number ext, arriving at now, begins a new run of the layer's source
// (restart), or belongs to the run before a recent SSRC change or restart
// (stale; one whose timestamp is near that run's newest): an SSRC change,
// a jump of the sequence numbers ahead past the ring's window
// (a gap no NACK can fill: the subscribers need a keyframe anyway), a
// timestamp that strays over tsJumpLimit, or a packet too late for the
// window whose timestamp is not older than the newest packet's (a stale
// packet's is). Should that miss a jump back, the ring takes a run of late
// packets as one (ringResyncAfter). Only the layer's reader calls it; it
// records the SSRC.
func (ly *upLayer) restarted(h *rtp.Header, ext uint64, now int64, clockRate uint32) (restart, stale bool) {
	if h.SSRC != ly.ssrc {
		if ly.ssrc != 0 && h.SSRC == ly.prevSSRC && now-ly.ssrcSince < int64(staleSSRCAfter) {
			return false, true
		}
		restart = ly.ssrc != 0
		ly.prevSSRC, ly.ssrc, ly.ssrcSince = ly.ssrc, h.SSRC, now
		return restart, false
	}
	highest, window := ly.ring.highest, uint64(ly.ring.size())
	if highest == 0 {
		return false, false
	}
	age := int64(int32(h.Timestamp - ly.newestTS))
	limit := int64(clockRate) * tsJumpLimit
	switch {
	case ext+window <= highest:
		// Too late for the ring: a stale packet has an older timestamp
		// than the newest, by seconds at most.
		restart = age >= 0 || age < -limit
	case ext > highest+window:
		restart = true
	default:
		off := age - (now-ly.newestArrival)/1000*int64(clockRate)/1_000_000
		restart = off > limit || off < -limit
	}
	if !restart {
		return false, false
	}
	// A straggler of the run before a recent restart on this SSRC (its
	// numbers are as unrelated to this run's as a new run's, but fit that
	// run's) is stale.
	if ly.prevRun && now-ly.prevRunAt < int64(staleSSRCAfter) {
		e := extendNear(ly.prevHighest, h.SequenceNumber)
		d := int64(int32(h.Timestamp - ly.prevTS))
		if e+window > ly.prevHighest && e <= ly.prevHighest+window && d <= limit && d >= -limit {
			return false, true
		}
	}
	ly.prevRun, ly.prevHighest, ly.prevTS, ly.prevRunAt = true, highest, ly.newestTS, now
	return true, false
}

// trackLayers marks layer as being received and, at most every
// layerSweepInterval per layer, marks the layers silent for layerTimeout as
// stopped. Called by layer's reader at now.
func (u *upTrack) trackLayers(layer int, now int64) {
	u.setReceiving(layer, true)
	ly := u.layers[layer]
	if now-ly.lastSweep < int64(layerSweepInterval) {
		return
	}
	ly.lastSweep = now
	for l := range u.cfg.layers {
		if l != layer && now-u.layers[l].lastArrival.Load() > int64(u.cfg.layerTimeout) {
			u.setReceiving(l, false)
		}
	}
}

// setReceiving sets whether layer is being received, bumping the state's
// generation if that changes it.
func (u *upTrack) setReceiving(layer int, on bool) {
	for {
		old := u.state.Load()
		mask := uint8(old)
		next := mask &^ (1 << layer)
		if on {
			next = mask | 1<<layer
		}
		if next == mask {
			return
		}
		if u.state.CompareAndSwap(old, (old>>8+1)<<8|uint64(next)) {
			return
		}
	}
}

// receiving returns the mask of layers being received (bit i: layer i).
func (u *upTrack) receiving() uint8 { return uint8(u.state.Load()) }

// requestKeyframe asks the publisher for a keyframe of layer at now (ns since
// epoch) through the throttle. Audio has no keyframes.
func (u *upTrack) requestKeyframe(layer int, now int64) {
	if u.cfg.kind != kindVideo || u.cfg.onPLI == nil {
		return
	}
	if !u.pli.allow(layer, now) {
		u.stats.pliThrottled.Add(1)
		return
	}
	u.stats.pliSent.Add(1)
	u.cfg.onPLI(layer)
}

// clock returns the current time in ns since epoch.
func (u *upTrack) clock() int64 { return u.cfg.now().Sub(u.epoch).Nanoseconds() }

// subscribe adds a subscriber whose packets go to w with its own SSRC and
// payload type (the ones negotiated for it). The downTrack starts at the
// highest layer (call setMaxLayer to lower it), with video at that layer's
// next keyframe, which it requests. After close it returns a downTrack that
// never sends.
func (u *upTrack) subscribe(w rtpWriter, ssrc uint32, payloadType uint8) *downTrack {
	return u.subscribeMuted(w, ssrc, payloadType, false)
}

// subscribeMuted is subscribe, with the downTrack muted from the start when
// muted is set: it sends nothing and requests no keyframe until unmuted.
func (u *upTrack) subscribeMuted(w rtpWriter, ssrc uint32, payloadType uint8, muted bool) *downTrack {
	d := newDownTrack(u, w, ssrc, payloadType)
	d.muted = muted
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		d.close()
		return d
	}
	old := *u.subs.Load()
	subs := make([]*downTrack, len(old), len(old)+1)
	copy(subs, old)
	subs = append(subs, d)
	u.subs.Store(&subs)
	u.mu.Unlock()
	d.start()
	return d
}

// unsubscribe removes d; it sends nothing once this returns (but for a write
// already under way). Removing one that is not there does nothing.
func (u *upTrack) unsubscribe(d *downTrack) {
	d.close()
	u.mu.Lock()
	defer u.mu.Unlock()
	old := *u.subs.Load()
	subs := make([]*downTrack, 0, len(old))
	for _, s := range old {
		if s != d {
			subs = append(subs, s)
		}
	}
	u.subs.Store(&subs)
}

// close ends the track: receive refuses packets and every downTrack stops.
func (u *upTrack) close() {
	u.mu.Lock()
	u.closed = true
	u.closedFlag.Store(true)
	old := *u.subs.Load()
	u.subs.Store(&[]*downTrack{})
	u.mu.Unlock()
	for _, d := range old {
		d.close()
	}
}

// counters returns a snapshot of the track's counters.
func (u *upTrack) counters() upTrackStats {
	c := &u.stats
	return upTrackStats{
		received: c.received.Load(), duplicates: c.duplicates.Load(),
		late: c.late.Load(), malformed: c.malformed.Load(),
		forwarded: c.forwarded.Load(), writeErrors: c.writeErrors.Load(),
		resent: c.resent.Load(), resendMissed: c.resendMissed.Load(),
		resendRefused: c.resendRefused.Load(), resendRepeated: c.resendRepeated.Load(),
		pliSent: c.pliSent.Load(), pliThrottled: c.pliThrottled.Load(),
		restarts: c.restarts.Load(),
	}
}
