package callsfu

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestMatchCodecH264Profile: a subscriber that negotiated several H.264
// profiles is sent a track in the one published; one that negotiated
// other profiles, in the first H.264 it has.
func TestMatchCodecH264Profile(t *testing.T) {
	negotiated := []webrtc.RTPCodecParameters{vp8Codec, h264Codecs[1], h264Codecs[2], h264Codecs[0]}
	for _, c := range []struct {
		fmtp string
		want webrtc.PayloadType
	}{
		{"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 106},
		{"packetization-mode=1;profile-level-id=42e034", 106}, // another level
		{"packetization-mode=1;profile-level-id=640c1f", 123},
		{"packetization-mode=1;profile-level-id=4d001f", 102}, // main: no such codec
	} {
		got, ok := matchCodec(webrtc.MimeTypeH264, c.fmtp, negotiated)
		if !ok || got.PayloadType != c.want {
			t.Errorf("matchCodec(H264 %s) = %d %v, want %d", c.fmtp, got.PayloadType, ok, c.want)
		}
	}
	if got, ok := matchCodec(webrtc.MimeTypeVP8, "", negotiated); !ok || got.PayloadType != 96 {
		t.Errorf("matchCodec(VP8) = %d %v", got.PayloadType, ok)
	}
	if _, ok := matchCodec(webrtc.MimeTypeH264, "", []webrtc.RTPCodecParameters{vp8Codec}); ok {
		t.Error("matchCodec found H.264 among VP8 alone")
	}
}
