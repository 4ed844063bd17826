package callsfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// segHistory is how many segments (runs of packets from one layer with one
// sequence and timestamp offset) a downTrack remembers to map NACKs back to
// source packets. A NACK for a packet sent before the oldest is not
// answered; at one switch per second this covers far more than the ring.
const segHistory = 8

// seqSegment is a run of packets a downTrack sent from one layer with one
// offset: source packet srcStart+k went out as outStart+k (extended
// numbers), its timestamp moved by tsOffset. A new segment starts at each
// layer switch and each resume (start, unmute), right after the previous
// one's highest sequence number, so the subscriber sees no gap.
type seqSegment struct {
	layer    int
	restarts uint32 // of the layer's source (fwdPacket.restarts)
	srcStart uint64
	outStart uint64
	tsOffset uint32
}

// downTrack is one subscriber's view of an upTrack: one stream with its own
// SSRC and payload type, whose sequence numbers run on without a gap and
// whose timestamps stay continuous across layer switches and mutes.
//
// Concurrency: forward runs on the readers of the upTrack's layers (two at
// once around a switch), nack and keyframeRequest on the subscriber's RTCP
// reader, setMaxLayer and setMuted on whichever goroutine decides. mu guards
// the rewriting state and is held only to compute one packet's header
// fields, never across a write, so a slow write holds no lock that another
// goroutine waits for (it does hold up the reader that makes it: see
// rtpWriter). accept and seen mirror state under mu so a reader
// can skip packets of a layer this downTrack is not on without the lock.
// nackMu serialises this downTrack's resends, which share one scratch
// buffer; it is held across their writes but only ever blocks another nack
// of the same subscriber. Lock order: nackMu, then mu, then a ring's mu.
type downTrack struct {
	up   *upTrack
	w    rtpWriter
	ssrc uint32
	pt   uint8

	// accept is the mask of layers whose packets this downTrack takes now
	// (the one it is on and the one it is switching to); 0 when muted or
	// closed. Written under mu.
	accept atomic.Uint32
	// seen is the upTrack state (layers received and generation) that
	// the target was last chosen from. Written under mu.
	seen atomic.Uint64

	mu       sync.Mutex // guards the following
	closed   bool
	muted    bool
	maxLayer int  // the highest layer wanted
	current  int  // layer being sent; -1 before the first packet
	target   int  // layer to be on; switched to at its next switch point
	resume   bool // nothing goes out until a switch point of target (start, unmute)
	segs     [segHistory]seqSegment
	nsegs    int    // segments ever started; the newest is segs[(nsegs-1)%segHistory]
	lastOut  uint64 // extended sequence number of the highest packet sent; 0: none yet
	lastTS   uint32 // its timestamp
	lastTime int64  // its arrival (ns since the upTrack's epoch)

	nackMu sync.Mutex   // serialises resends; guards *rs
	rs     *resendState // apart, so that what forward reads stays in few cache lines
}

// resendState is a downTrack's scratch and budget for resends.
type resendState struct {
	hdr    rtp.Header
	buf    [rtpMaxPacket]byte
	tokens int                        // resends the subscriber may still have
	earned uint64                     // lastOut up to which sent packets have earned tokens; 0: none yet
	recent [nackRecentSize]nackRecord // the recent resends, by extended sequence number mod nackRecentSize
}

// The resend budget of a subscriber. A subscriber that NACKs every packet,
// or the same ones over and over (a broken or hostile client), must not
// make the node send its stream again and again: each downTrack may resend
// one packet for every nackShare packets it sent (25 %, above the loss a
// call survives), holding at most nackBurst (a keyframe lost whole) in
// reserve, and resends a packet at most once per nackRepeatWindow (about a
// round trip: the receiver asks again when its resend has not come by then).
// Refusals are counted (resendRefused, resendRepeated).
const (
	nackShare        = 4
	nackBurst        = 64
	nackRepeatWindow = 100 * time.Millisecond
	nackRecentSize   = 128 // a power of two
)

// nackRecord is a packet resent (its subscriber's extended sequence number)
// and when.
type nackRecord struct {
	out uint64
	at  int64 // ns since the upTrack's epoch
}

// newDownTrack returns a downTrack of u that starts at u's highest layer.
func newDownTrack(u *upTrack, w rtpWriter, ssrc uint32, pt uint8) *downTrack {
	top := u.cfg.layers - 1
	return &downTrack{up: u, w: w, ssrc: ssrc, pt: pt, maxLayer: top, current: -1, target: top, resume: true, rs: &resendState{}}
}

// start chooses the first layer and, for video, asks for its keyframe
// (unless muted: then at the unmute).
func (d *downTrack) start() {
	d.mu.Lock()
	want := d.retargetLocked(d.up.state.Load())
	d.mu.Unlock()
	if want >= 0 {
		d.up.requestKeyframe(want, d.up.clock())
	}
}

// close stops the downTrack for good.
func (d *downTrack) close() {
	d.mu.Lock()
	d.closed = true
	d.accept.Store(0)
	d.mu.Unlock()
}

// currentLayer returns the layer being sent, -1 before the first packet.
func (d *downTrack) currentLayer() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current
}

// forward sends p to the subscriber if p is for it, with the header
// rewritten, and reports whether it did. state is the upTrack's state when p
// arrived. Called by p's layer's reader; allocates nothing.
func (d *downTrack) forward(p *fwdPacket, state uint64) bool {
	acc := d.accept.Load()
	if acc == 0 || (acc&(1<<p.layer) == 0 && d.seen.Load() == state) {
		return false
	}
	d.mu.Lock()
	if d.closed || d.muted {
		d.mu.Unlock()
		return false
	}
	want := -1
	if state != d.seen.Load() {
		want = d.retargetLocked(state)
	}
	out, ts, ok, wantKey := d.rewriteLocked(p)
	if wantKey {
		want = d.target
	}
	d.mu.Unlock()
	if want >= 0 {
		d.up.requestKeyframe(want, p.arrival)
	}
	if !ok {
		return false
	}
	h := &p.hdr
	h.SSRC, h.PayloadType = d.ssrc, d.pt
	h.SequenceNumber, h.Timestamp = uint16(out), ts
	h.Extension, h.Extensions = false, h.Extensions[:0]
	return d.write(h, p.payload)
}

// write sends one packet, counting a failure. The publisher's header
// extensions are not sent on: their ids were negotiated with the publisher,
// and the subscriber's own interceptors add the ones its session uses.
func (d *downTrack) write(h *rtp.Header, payload []byte) bool {
	if _, err := d.w.WriteRTP(h, payload); err != nil {
		d.up.stats.writeErrors.Add(1)
		return false
	}
	return true
}

// rewriteLocked decides whether p goes to this subscriber and, if so,
// returns its new extended sequence number and timestamp. wantKey reports a
// packet of the target layer dropped while waiting for its keyframe, so the
// caller asks for one (throttled).
func (d *downTrack) rewriteLocked(p *fwdPacket) (out uint64, ts uint32, ok, wantKey bool) {
	if p.layer == d.current && !d.resume {
		seg := &d.segs[(d.nsegs-1)%segHistory]
		if p.restarts == seg.restarts {
			if p.ext < seg.srcStart {
				return 0, 0, false, false // before this run: sent from another layer
			}
			out = seg.outStart + (p.ext - seg.srcStart)
			ts = p.ts + seg.tsOffset
			if out > d.lastOut {
				d.lastOut, d.lastTS, d.lastTime = out, ts, p.arrival
			}
			return out, ts, true, false
		}
		// The layer's source restarted: its numbers say nothing of this
		// run's. Resume at its first keyframe (or the target's).
		d.resume = true
		d.accept.Store(d.acceptLocked())
	}
	if p.layer != d.target {
		return 0, 0, false, false
	}
	if !p.switchPoint {
		return 0, 0, false, true
	}
	seg := d.startSegmentLocked(p)
	out, ts = seg.outStart, p.ts+seg.tsOffset
	d.current, d.resume = p.layer, false
	d.lastOut, d.lastTS, d.lastTime = out, ts, p.arrival
	d.accept.Store(d.acceptLocked())
	return out, ts, true, false
}

// startSegmentLocked starts a run at p, right after the highest sequence
// number sent. Its timestamps continue from the last packet sent, moved on
// by the time between the two packets' arrivals (at least one tick), unless
// it resumes the layer of the run before with no restart of its source in
// between, whose offset still holds.
func (d *downTrack) startSegmentLocked(p *fwdPacket) seqSegment {
	seg := seqSegment{layer: p.layer, restarts: p.restarts, srcStart: p.ext}
	last := &d.segs[(d.nsegs+segHistory-1)%segHistory]
	switch {
	case d.nsegs == 0:
		// The first packet keeps its source numbers.
		seg.outStart = 1<<32 | p.ext&0xffff
	case last.layer == p.layer && last.restarts == p.restarts:
		seg.outStart = d.lastOut + 1
		seg.tsOffset = last.tsOffset
	default:
		seg.outStart = d.lastOut + 1
		ticks := uint32(1)
		if elapsed := p.arrival - d.lastTime; elapsed > 0 {
			ticks = max(1, uint32(uint64(float64(elapsed)*float64(d.up.cfg.clockRate)/1e9)))
		}
		seg.tsOffset = d.lastTS + ticks - p.ts
	}
	d.segs[d.nsegs%segHistory] = seg
	d.nsegs++
	return seg
}

// retargetLocked chooses the layer to be on from the upTrack's state and
// returns it if a keyframe of it is now needed, else -1.
func (d *downTrack) retargetLocked(state uint64) int {
	d.seen.Store(state)
	d.target = selectLayer(uint8(state), d.maxLayer)
	d.accept.Store(d.acceptLocked())
	if d.closed || d.muted || (d.target == d.current && !d.resume) {
		return -1
	}
	return d.target
}

// acceptLocked returns the mask of layers whose packets matter now.
func (d *downTrack) acceptLocked() uint32 {
	if d.closed || d.muted {
		return 0
	}
	acc := uint32(1) << d.target
	if d.current >= 0 && !d.resume {
		acc |= 1 << d.current
	}
	return acc
}

// setMaxLayer sets the highest layer the subscriber wants (from its
// bandwidth estimate and the size it shows the video at). The switch happens
// at the next keyframe of the layer chosen (selectLayer: the best received
// at or below it), which it requests; until then the current layer goes on.
func (d *downTrack) setMaxLayer(layer int) {
	layer = min(max(layer, 0), d.up.cfg.layers-1)
	d.mu.Lock()
	d.maxLayer = layer
	want := d.retargetLocked(d.up.state.Load())
	d.mu.Unlock()
	if want >= 0 {
		d.up.requestKeyframe(want, d.up.clock())
	}
}

// setMuted stops (true) or resumes (false) sending. A muted downTrack sends
// nothing and answers no NACK; it resumes at the next switch point (a
// keyframe for video, which it requests), with no gap in its sequence
// numbers and its timestamps moved on by the time it was muted.
func (d *downTrack) setMuted(muted bool) {
	d.mu.Lock()
	if d.muted == muted || d.closed {
		d.mu.Unlock()
		return
	}
	d.muted = muted
	want := -1
	if !muted {
		d.resume = true
		want = d.retargetLocked(d.up.state.Load())
	}
	d.accept.Store(d.acceptLocked())
	d.mu.Unlock()
	if want >= 0 {
		d.up.requestKeyframe(want, d.up.clock())
	}
}

// keyframeRequest passes the subscriber's PLI or FIR on to the publisher, for
// the layer it is on or switching to, through the throttle.
func (d *downTrack) keyframeRequest() {
	d.mu.Lock()
	layer, off := d.target, d.closed || d.muted
	d.mu.Unlock()
	if !off {
		d.up.requestKeyframe(layer, d.up.clock())
	}
}

// nack resends the packets the subscriber reports lost, given by the
// sequence numbers it saw (the rewritten ones), from the rings, within its
// resend budget (nackShare). A packet no longer in its ring, or sent before
// the segments remembered, is skipped; so is one resent less than
// nackRepeatWindow ago. Allocates nothing.
func (d *downTrack) nack(seqs []uint16) {
	now := d.up.clock()
	d.nackMu.Lock()
	defer d.nackMu.Unlock()
	for _, seq := range seqs {
		d.resendLocked(seq, now)
	}
}

// nackPairs is nack for the pairs of an rtcp.TransportLayerNack, without
// building the list of sequence numbers (NackPair.PacketList allocates).
func (d *downTrack) nackPairs(pairs []rtcp.NackPair) {
	now := d.up.clock()
	d.nackMu.Lock()
	defer d.nackMu.Unlock()
	for _, p := range pairs {
		d.resendLocked(p.PacketID, now)
		for i := range uint16(16) {
			if p.LostPackets&(1<<i) != 0 {
				d.resendLocked(p.PacketID+i+1, now)
			}
		}
	}
}

// resendLocked resends the packet the subscriber saw as seq, at now (ns
// since the upTrack's epoch), if its budget allows. nackMu is held.
func (d *downTrack) resendLocked(seq uint16, now int64) {
	d.mu.Lock()
	if d.closed || d.muted {
		d.mu.Unlock()
		return
	}
	out, layer, src, tsOffset, ok := d.sourceLocked(seq)
	lastOut := d.lastOut
	d.mu.Unlock()
	if !ok {
		d.up.stats.resendMissed.Add(1)
		return
	}
	rec := &d.rs.recent[out%nackRecentSize]
	if rec.out == out && now-rec.at < int64(nackRepeatWindow) {
		d.up.stats.resendRepeated.Add(1)
		return
	}
	if !d.earnLocked(lastOut) {
		d.up.stats.resendRefused.Add(1)
		return
	}
	n, ok := d.up.layers[layer].ring.copyOut(src, d.rs.buf[:])
	if !ok {
		d.up.stats.resendMissed.Add(1)
		return
	}
	h := &d.rs.hdr
	payload, err := parseRTP(h, d.rs.buf[:n])
	if err != nil {
		return // the ring holds only packets that parsed
	}
	d.rs.tokens--
	rec.out, rec.at = out, now
	h.SSRC, h.PayloadType = d.ssrc, d.pt
	h.SequenceNumber, h.Timestamp = seq, h.Timestamp+tsOffset
	h.Extension, h.Extensions = false, h.Extensions[:0]
	if d.write(h, payload) {
		d.up.stats.resent.Add(1)
	}
}

// earnLocked adds the tokens the packets sent up to lastOut have earned
// since the last call and reports whether one is left to spend. nackMu is
// held.
func (d *downTrack) earnLocked(lastOut uint64) bool {
	rs := d.rs
	if rs.earned == 0 {
		rs.earned, rs.tokens = lastOut, nackBurst
	}
	if sent := lastOut - rs.earned; lastOut > rs.earned && sent >= nackShare {
		rs.tokens = min(nackBurst, rs.tokens+int(sent/nackShare))
		rs.earned += sent - sent%nackShare
	}
	return rs.tokens > 0
}

// sourceLocked maps a sequence number the subscriber saw back to the source
// packet: the extended number it went out as, its layer, its extended
// source sequence number and the timestamp offset it went out with.
func (d *downTrack) sourceLocked(seq uint16) (out uint64, layer int, src uint64, tsOffset uint32, ok bool) {
	if d.lastOut == 0 {
		return 0, 0, 0, 0, false
	}
	out = extendNear(d.lastOut, seq)
	if out > d.lastOut {
		return 0, 0, 0, 0, false
	}
	for i := d.nsegs - 1; i >= max(0, d.nsegs-segHistory); i-- {
		seg := &d.segs[i%segHistory]
		if seg.outStart <= out {
			return out, seg.layer, seg.srcStart + (out - seg.outStart), seg.tsOffset, true
		}
	}
	return 0, 0, 0, 0, false
}
