package callsfu

import (
	"errors"
	"fmt"
	"sync"

	"github.com/pion/rtp"
)

// rtpMaxPacket is the largest RTP packet the forwarding core takes, header
// included. pion reads at most its receive MTU (1460 bytes) into a packet, so
// this leaves room; a larger packet is refused by upTrack.receive.
const rtpMaxPacket = 1500

// The errors of a packet upTrack.receive refuses. They wrap nothing: the
// packet was bad, and nothing of the track changed.
var (
	errRTPMalformed  = errors.New("callsfu: malformed RTP packet")
	errRTPTooLarge   = errors.New("callsfu: RTP packet larger than 1500 bytes")
	errLayerRange    = errors.New("callsfu: simulcast layer out of range")
	errUpTrackClosed = errors.New("callsfu: track closed")
)

// The outcomes of packetRing.store.
type storeResult uint8

const (
	stored    storeResult = iota // new: kept and to be forwarded
	duplicate                    // already in the ring: dropped
	tooLate                      // older than the ring's window: dropped
)

// packetRing keeps the most recent packets of one simulcast layer, indexed by
// extended sequence number, for NACK resends. It is the only copy: every
// subscriber's resend reads the same slot, and the forwarding path writes
// the slot's bytes to every subscriber (no copy per subscriber).
//
// One goroutine, the layer's reader (the caller of upTrack.receive for that
// layer), owns the ring: it alone stores packets and reads highest. It takes
// mu only to change a slot, so that nack goroutines, which read slots under
// mu.RLock, never see a half-written packet. The owner reads slots without
// the lock (nobody else writes them).
type packetRing struct {
	mu    sync.RWMutex // guards slots' contents (written by the owner only)
	slots []ringSlot
	mask  uint64 // len(slots)-1; len(slots) is a power of two

	// Owned by the layer's reader goroutine.
	highest uint64 // highest extended sequence number stored; 0: none yet
	late    int    // packets refused as too late in a row
}

// ringResyncAfter is how many packets in a row a ring refuses as too late
// before it takes the stream as having jumped (a publisher that restarted its
// sequence numbers on the same SSRC, or jumped by more than half the cycle):
// the next such packet is taken as the newest, and the stream goes on from
// there. A burst of stale retransmissions is interleaved with live packets,
// so it never gets that far.
const ringResyncAfter = 64

// ringSlot is one stored packet.
type ringSlot struct {
	ext uint64 // extended sequence number; 0: empty
	buf []byte // the raw packet; grows (and stays grown) to the largest it held
}

// newPacketRing returns a ring of size packets, rounded up to a power of two
// (at least 16).
func newPacketRing(size int) *packetRing {
	n := 16
	for n < size {
		n <<= 1
	}
	return &packetRing{slots: make([]ringSlot, n), mask: uint64(n - 1)}
}

// size returns the number of packets the ring keeps.
func (r *packetRing) size() int { return len(r.slots) }

// extend returns the extended (64-bit, never wrapping) sequence number of
// seq: the one nearest to the highest seen, so a packet up to 32,767 behind
// or ahead of it lands on the right cycle across 65535 → 0. The first packet
// starts at 2^32+seq, leaving room below for reordered ones.
func (r *packetRing) extend(seq uint16) uint64 {
	if r.highest == 0 {
		return 1<<32 | uint64(seq)
	}
	return extendNear(r.highest, seq)
}

// extendNear returns the extended sequence number nearest to ref whose low 16
// bits are seq.
func extendNear(ref uint64, seq uint16) uint64 {
	diff := int16(seq - uint16(ref))
	return uint64(int64(ref) + int64(diff))
}

// beyond returns the extended sequence number for seq of a stream that
// restarted: the lowest with seq's low 16 bits above the window of every
// packet stored, so that none of them is taken as a duplicate or as late.
// store then takes it as the highest. Only the owner calls it.
func (r *packetRing) beyond(seq uint16) uint64 {
	base := r.highest + uint64(len(r.slots)) + 1
	ext := base&^0xffff | uint64(seq)
	if ext < base {
		ext += 1 << 16
	}
	return ext
}

// store keeps a copy of pkt as packet ext (from extend), unless it is a
// duplicate or too old for the window (more than size() behind the
// highest), and returns the extended sequence number it was kept as: ext,
// or after ringResyncAfter packets too late in a row, the next number
// above the highest with the same low 16 bits. Only the owner calls it.
// After warm-up (each slot has held a packet as large) it allocates nothing.
func (r *packetRing) store(ext uint64, pkt []byte) (uint64, storeResult) {
	if r.highest != 0 && ext+uint64(len(r.slots)) <= r.highest {
		if r.late++; r.late <= ringResyncAfter {
			return ext, tooLate
		}
		ext = r.highest&^0xffff | ext&0xffff
		if ext <= r.highest {
			ext += 1 << 16
		}
	}
	r.late = 0
	s := &r.slots[ext&r.mask]
	if s.ext == ext {
		return ext, duplicate
	}
	r.mu.Lock()
	s.ext = ext
	s.buf = append(s.buf[:0], pkt...)
	r.mu.Unlock()
	if ext > r.highest {
		r.highest = ext
	}
	return ext, stored
}

// slot returns the owner's view of packet ext's bytes (valid until the owner
// stores over it), or nil if it is not in the ring. Only the owner calls it.
func (r *packetRing) slot(ext uint64) []byte {
	s := &r.slots[ext&r.mask]
	if s.ext != ext {
		return nil
	}
	return s.buf
}

// copyOut copies packet ext into dst (at least rtpMaxPacket long) and returns
// its length, or false if the packet is no longer (or never was) in the ring.
// Any goroutine may call it.
func (r *packetRing) copyOut(ext uint64, dst []byte) (int, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := &r.slots[ext&r.mask]
	if s.ext != ext {
		return 0, false
	}
	return copy(dst, s.buf), true
}

// parseRTP parses pkt's header into h (reusing h's slices, so it allocates
// nothing once they have grown) and returns the payload without padding.
func parseRTP(h *rtp.Header, pkt []byte) ([]byte, error) {
	if len(pkt) > rtpMaxPacket {
		return nil, errRTPTooLarge
	}
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return nil, errRTPMalformed
	}
	n, err := h.Unmarshal(pkt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errRTPMalformed, err)
	}
	end := len(pkt)
	h.PaddingSize = 0
	if h.Padding {
		pad := int(pkt[end-1])
		if pad == 0 || end-pad < n {
			return nil, errRTPMalformed
		}
		h.PaddingSize = byte(pad)
		end -= pad
	}
	return pkt[n:end], nil
}
