package callsfu

import "testing"

func TestVP8KeyframeStart(t *testing.T) {
	for _, c := range []struct {
		name    string
		payload []byte
		want    bool
	}{
		{"keyframe, no extension", []byte{0x10, 0x10, 0x00}, true},
		{"interframe", []byte{0x10, 0x11, 0x00}, false},
		{"continuation (S=0)", []byte{0x00, 0x10, 0x00}, false},
		{"second partition (PID=1)", []byte{0x11, 0x10, 0x00}, false},
		// X, I with a 15-bit picture id, L, T: four bytes before the header.
		{"keyframe, extended", []byte{0x90, 0xe0, 0x80 | 0x12, 0x34, 0x05, 0x40, 0x10}, true},
		{"interframe, extended", []byte{0x90, 0xe0, 0x80 | 0x12, 0x34, 0x05, 0x40, 0x11}, false},
		{"keyframe, 7-bit picture id", []byte{0x90, 0x80, 0x12, 0x10}, true},
		{"descriptor only", []byte{0x10}, false},
		{"cut picture id", []byte{0x90, 0x80, 0x80}, false},
		{"empty", nil, false},
	} {
		if got := vp8KeyframeStart(c.payload); got != c.want {
			t.Errorf("%s: vp8KeyframeStart = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestH264KeyframeStart(t *testing.T) {
	for _, c := range []struct {
		name    string
		payload []byte
		want    bool
	}{
		{"IDR", []byte{0x65, 0x88}, true},
		{"SPS", []byte{0x67, 0x42}, true},
		{"non-IDR slice", []byte{0x41, 0x9a}, false},
		{"STAP-A with SPS and PPS", []byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, true},
		{"STAP-A of slices", []byte{0x78, 0, 2, 0x41, 0x9a, 0, 2, 0x41, 0x9b}, false},
		{"STAP-A cut", []byte{0x78, 0, 9, 0x67}, false},
		{"FU-A start of IDR", []byte{0x7c, 0x85, 0x88}, true},
		{"FU-A middle of IDR", []byte{0x7c, 0x05, 0x88}, false},
		{"FU-A start of slice", []byte{0x7c, 0x81, 0x9a}, false},
		{"empty", nil, false},
	} {
		if got := h264KeyframeStart(c.payload); got != c.want {
			t.Errorf("%s: h264KeyframeStart = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSwitchPointFunc(t *testing.T) {
	vp8Delta := []byte{0x10, 0x11, 0x00}
	for _, c := range []struct {
		kind trackKind
		mime string
		want bool // for a VP8 interframe
	}{
		{kindVideo, "video/VP8", false},
		{kindVideo, "video/vp8", false},
		{kindVideo, "video/AV1", true}, // unparsed: every packet
		{kindAudio, "audio/opus", true},
	} {
		if got := switchPointFunc(c.kind, c.mime)(vp8Delta); got != c.want {
			t.Errorf("%s: switch point = %v, want %v", c.mime, got, c.want)
		}
	}
}
