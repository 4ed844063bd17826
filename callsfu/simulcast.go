package callsfu

import (
	"strings"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// maxLayers is the most simulcast layers a track has (the three rid layers
// browsers send: low, medium, high).
const maxLayers = 3

// selectLayer returns the layer a subscriber that wants at most maxLayer
// should receive, given the mask of layers being received (bit i: layer i):
// the best received layer at or below maxLayer; if none is, the lowest
// received layer above it (some video beats none, and the publisher sends
// that one anyway); if nothing is being received, maxLayer itself, to be
// taken as soon as it starts.
func selectLayer(avail uint8, maxLayer int) int {
	for l := maxLayer; l >= 0; l-- {
		if avail&(1<<l) != 0 {
			return l
		}
	}
	for l := maxLayer + 1; l < maxLayers; l++ {
		if avail&(1<<l) != 0 {
			return l
		}
	}
	return maxLayer
}

// switchPointFunc returns the function that tells whether a packet's payload
// begins a keyframe, the only place a subscriber may start, resume or change
// layer, for the codec of mimeType. Audio has no keyframes: every packet is a
// switch point. So is every packet of a video codec the SFU cannot parse: a
// subscriber then starts anywhere, and its decoder waits for the keyframe
// that starting requests.
func switchPointFunc(kind trackKind, mimeType string) func(payload []byte) bool {
	if kind == kindVideo {
		switch {
		case strings.EqualFold(mimeType, webrtc.MimeTypeVP8):
			return vp8KeyframeStart
		case strings.EqualFold(mimeType, webrtc.MimeTypeH264):
			return h264KeyframeStart
		}
	}
	return func([]byte) bool { return true }
}

// vp8KeyframeStart reports whether a VP8 RTP payload is the first packet of
// a keyframe (RFC 7741): its payload descriptor has S=1 and partition index
// 0, so the VP8 payload header follows, and that header's P bit (bit 0 of
// its first byte, the inverse key frame flag) is 0.
func vp8KeyframeStart(payload []byte) bool {
	var vp8 codecs.VP8Packet
	frame, err := vp8.Unmarshal(payload)
	if err != nil || vp8.S != 1 || vp8.PID != 0 || len(frame) == 0 {
		return false
	}
	return frame[0]&0x01 == 0
}

// The H.264 NAL unit types that matter here (RFC 6184).
const (
	h264NALIDR   = 5
	h264NALSPS   = 7
	h264NALSTAPA = 24
	h264NALFUA   = 28
)

// h264KeyframeStart reports whether an H.264 RTP payload begins an IDR
// picture or carries a sequence parameter set (which browsers send right
// before one): a single NAL unit of type 5 or 7, a STAP-A holding one, or the
// first fragment of an FU-A of type 5.
func h264KeyframeStart(payload []byte) bool {
	if len(payload) < 1 {
		return false
	}
	switch nal := payload[0] & 0x1f; nal {
	case h264NALIDR, h264NALSPS:
		return true
	case h264NALSTAPA:
		for b := payload[1:]; len(b) > 2; {
			size := int(b[0])<<8 | int(b[1])
			if size == 0 || len(b) < 2+size {
				return false
			}
			if t := b[2] & 0x1f; t == h264NALIDR || t == h264NALSPS {
				return true
			}
			b = b[2+size:]
		}
		return false
	case h264NALFUA:
		return len(payload) > 1 && payload[1]&0x80 != 0 && payload[1]&0x1f == h264NALIDR
	}
	return false
}
