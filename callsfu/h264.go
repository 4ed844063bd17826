package callsfu

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// H.264 is what encoders such as OBS send over WHIP by default. The SFU
// forwards it as it does VP8: the packets as they came, a subscriber
// starting or switching layer at a keyframe start (h264KeyframeStart in
// simulcast.go). It negotiates packetization mode 1 only (single NAL units,
// STAP-A and FU-A: what browsers and OBS send; mode 0 cannot carry a frame
// bigger than a packet) in three profiles: constrained baseline (42e01f),
// baseline (42001f) and constrained high (640c1f), all level 3.1, with
// level-asymmetry-allowed so that either side may send a higher level than
// it receives. The payload types are those browsers offer for them.
var h264Codecs = []webrtc.RTPCodecParameters{
	h264Codec(106, "42e01f"),
	h264Codec(102, "42001f"),
	h264Codec(123, "640c1f"),
}

// h264Codec returns the H.264 codec of profile-level-id profile at payload
// type pt, with the video RTCP feedback.
func h264Codec(pt webrtc.PayloadType, profile string) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile,
			RTCPFeedback: videoFeedback,
		},
		PayloadType: pt,
	}
}

// h264Format is what tells H.264 formats apart (RFC 6184 section 8.1):
// the packetization mode and the profile, profile_idc and profile-iop (the
// constraint flags) of profile-level-id. The level does not: a decoder of
// a level decodes the lower ones, and level-asymmetry-allowed lets each
// side send what the other can take.
type h264Format struct {
	mode    string  // packetization-mode, "0" when absent
	profile [2]byte // profile_idc, profile-iop; zero when absent or bad
}

// parseH264Format reads the format of an H.264 fmtp line.
func parseH264Format(fmtp string) h264Format {
	f := h264Format{mode: "0"}
	for param := range strings.SplitSeq(fmtp, ";") {
		key, value, _ := strings.Cut(strings.TrimSpace(param), "=")
		switch strings.ToLower(key) {
		case "packetization-mode":
			f.mode = value
		case "profile-level-id":
			if b, err := hex.DecodeString(value); err == nil && len(b) == 3 {
				f.profile = [2]byte{b[0], b[1]}
			}
		}
	}
	return f
}

// sameFormat reports whether a codec a subscriber negotiated carries a
// published track's media as it is: the same MIME type and, for H.264, the
// same packetization mode and profile.
func sameFormat(c webrtc.RTPCodecParameters, mime, fmtp string) bool {
	if !strings.EqualFold(c.MimeType, mime) {
		return false
	}
	if !strings.EqualFold(mime, webrtc.MimeTypeH264) {
		return true
	}
	return parseH264Format(c.SDPFmtpLine) == parseH264Format(fmtp)
}

// receivedCodecs returns the MIME types, lower case, that the sections of
// kind of a player's offer can receive, those that are not turned off
// (port 0) or inactive.
func receivedCodecs(d *sdp.SessionDescription, kind Kind) []string {
	media := kindMedia(kind)
	var mimes []string
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != media || m.MediaName.Port.Value == 0 || inactive(m) {
			continue
		}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			// "96 VP8/90000"
			_, enc, _ := strings.Cut(a.Value, " ")
			name, _, _ := strings.Cut(enc, "/")
			if mime := strings.ToLower(media + "/" + name); name != "" && !slices.Contains(mimes, mime) {
				mimes = append(mimes, mime)
			}
		}
	}
	return mimes
}

// inactive reports whether a media section's direction is inactive.
func inactive(m *sdp.MediaDescription) bool {
	for _, a := range m.Attributes {
		if a.Key == "inactive" {
			return true
		}
	}
	return false
}

// checkPlayable refuses a player's offer that cannot receive the codec of
// one of the tracks planned for it: a player that receives VP8 only, say,
// of an encoder that sends H.264. Playing the audio alone would look like
// a broken picture; the refusal says what the offer lacks.
func checkPlayable(offer string, tracks []*publishedTrack) error {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return err
	}
	for _, t := range tracks {
		mimes := receivedCodecs(&d, t.info.Kind)
		if len(mimes) == 0 || slices.Contains(mimes, strings.ToLower(t.mime)) {
			continue
		}
		return fmt.Errorf("the stream's %s track %s is %s, which the offer does not receive (it offers %s)",
			kindMedia(t.info.Kind), t.info.ID, t.mime, strings.Join(mimes, ", "))
	}
	return nil
}

// kindMedia names a kind as SDP does: "audio" or "video".
func kindMedia(k Kind) string {
	if k == KindVideo {
		return "video"
	}
	return "audio"
}
