package callsfu

import (
	"strings"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// ssrcShifterFactory makes a test publisher's video SSRCs change: while
// xor holds a value other than 0, it is XORed into every video packet's
// SSRC (peerOptions.ssrcXor).
type ssrcShifterFactory struct{ xor *atomic.Uint32 }

func (f ssrcShifterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &ssrcShifter{xor: f.xor}, nil
}

type ssrcShifter struct {
	interceptor.NoOp
	xor *atomic.Uint32
}

func (s *ssrcShifter) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if !strings.HasPrefix(info.MimeType, "video/") {
		return w
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, a interceptor.Attributes) (int, error) {
		if x := s.xor.Load(); x != 0 {
			hh := *h
			hh.SSRC ^= x
			return w.Write(&hh, p, a)
		}
		return w.Write(h, p, a)
	})
}
