package callsfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// The codecs the SFU negotiates: Opus for audio, and VP8 and H.264 (h264.go)
// for video, at the payload types browsers use, with the RTCP feedback the
// forwarding needs (NACK, PLI and FIR for video; transport-wide CC for both).
var (
	opusCodec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine:  "minptime=10;useinbandfec=1",
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}},
		},
		PayloadType: 111,
	}
	// videoFeedback is the RTCP feedback of every video codec: NACK, PLI
	// and FIR (the keyframe requests the forwarding passes on), and
	// transport-wide CC.
	videoFeedback = []webrtc.RTCPFeedback{
		{Type: webrtc.TypeRTCPFBNACK},
		{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
		{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
		{Type: webrtc.TypeRTCPFBTransportCC},
	}
	vp8Codec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFeedback,
		},
		PayloadType: 96,
	}
)

// forwardedCodecs names the codecs the SFU forwards, for the refusal of an
// offer it shares none with.
const forwardedCodecs = "audio/opus, video/VP8 and video/H264 (packetization-mode=1, profile-level-id 42e01f, 42001f or 640c1f)"

// newMediaEngine returns the MediaEngine shared by every PeerConnection (pion
// copies it into each): the codecs and the header extensions simulcast
// (mid, rid, repaired-rid), active speaker (audio level) and bandwidth
// estimation (transport-wide CC) need.
func newMediaEngine() (*webrtc.MediaEngine, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(opusCodec, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("callsfu: register opus: %w", err)
	}
	if err := m.RegisterCodec(vp8Codec, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("callsfu: register vp8: %w", err)
	}
	for _, c := range h264Codecs {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("callsfu: register h264 %s: %w", c.SDPFmtpLine, err)
		}
	}
	exts := []struct {
		uri  string
		kind webrtc.RTPCodecType
	}{
		{sdp.SDESMidURI, webrtc.RTPCodecTypeAudio},
		{sdp.AudioLevelURI, webrtc.RTPCodecTypeAudio},
		{sdp.TransportCCURI, webrtc.RTPCodecTypeAudio},
		{sdp.SDESMidURI, webrtc.RTPCodecTypeVideo},
		{sdp.SDESRTPStreamIDURI, webrtc.RTPCodecTypeVideo},
		{sdp.SDESRepairRTPStreamIDURI, webrtc.RTPCodecTypeVideo},
		{sdp.TransportCCURI, webrtc.RTPCodecTypeVideo},
	}
	for _, e := range exts {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, e.kind); err != nil {
			return nil, fmt.Errorf("callsfu: register header extension %s: %w", e.uri, err)
		}
	}
	return m, nil
}

// publisherInterceptors returns the interceptors of a publishing
// PeerConnection, the one that receives media: NACKs toward the publisher for
// lost packets, transport-wide CC feedback so the publisher's own estimator
// can pace its encoders, and receiver reports.
func publisherInterceptors(lf logging.LoggerFactory) (*interceptor.Registry, error) {
	reg := &interceptor.Registry{}
	gen, err := nack.NewGeneratorInterceptor(nack.WithGeneratorLoggerFactory(lf))
	if err != nil {
		return nil, fmt.Errorf("callsfu: nack generator: %w", err)
	}
	reg.Add(gen)
	fb, err := twcc.NewSenderInterceptor(twcc.WithLoggerFactory(lf))
	if err != nil {
		return nil, fmt.Errorf("callsfu: twcc feedback: %w", err)
	}
	reg.Add(fb)
	rr, err := report.NewReceiverInterceptor(report.WithReceiverLoggerFactory(lf))
	if err != nil {
		return nil, fmt.Errorf("callsfu: receiver reports: %w", err)
	}
	reg.Add(rr)
	return reg, nil
}

// subscriberInterceptors returns the interceptors of one subscribing
// PeerConnection, the one that sends media: a GCC bandwidth estimator whose
// target bitrate is handed to onEstimator, transport-wide sequence numbers on
// every packet it sends (registered after the estimator, so the number is set
// before the estimator records the packet), and sender reports for lip sync.
// There is no NACK responder: NACKs are answered from the track's shared ring.
//
// The estimator runs without a pacer: the forwarding core already sends at
// the publisher's pace, and a pacer would copy and queue every packet.
func subscriberInterceptors(lf logging.LoggerFactory, onEstimator func(cc.BandwidthEstimator)) (*interceptor.Registry, error) {
	reg := &interceptor.Registry{}
	bwe, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		return gcc.NewSendSideBWE(
			gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
			gcc.SendSideBWEInitialBitrate(1_000_000),
			gcc.WithLoggerFactory(lf),
		)
	})
	if err != nil {
		return nil, fmt.Errorf("callsfu: bandwidth estimator: %w", err)
	}
	bwe.OnNewPeerConnection(func(_ string, e cc.BandwidthEstimator) { onEstimator(e) })
	reg.Add(bwe)
	seq, err := twcc.NewHeaderExtensionInterceptor()
	if err != nil {
		return nil, fmt.Errorf("callsfu: twcc header extension: %w", err)
	}
	reg.Add(seq)
	sr, err := report.NewSenderInterceptor(report.WithSenderLoggerFactory(lf))
	if err != nil {
		return nil, fmt.Errorf("callsfu: sender reports: %w", err)
	}
	reg.Add(sr)
	return reg, nil
}

// pionLogs hands pion's logs to the SFU's slog.Logger one level down: pion
// warns of routine events (a connectivity check before the candidates are
// in, a packet for a closed stream), so its warnings are debug logs here and
// its errors warnings. Its debug and trace output is dropped.
type pionLogs struct{ log *slog.Logger }

// NewLogger returns the logger of one pion scope (ice, dtls, pc, …).
func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

// pionLogger is one scope's logger.
type pionLogger struct{ log *slog.Logger }

func (l pionLogger) Trace(string)                     {}
func (l pionLogger) Tracef(string, ...any)            {}
func (l pionLogger) Debug(string)                     {}
func (l pionLogger) Debugf(string, ...any)            {}
func (l pionLogger) Info(string)                      {}
func (l pionLogger) Infof(string, ...any)             {}
func (l pionLogger) Warn(msg string)                  { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Warnf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l pionLogger) Error(msg string)                 { l.logf(slog.LevelWarn, "%s", msg) }
func (l pionLogger) Errorf(format string, args ...any) {
	l.logf(slog.LevelWarn, format, args...)
}

// logf formats only when the level is on.
func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

// parsedOffer is what Publish needs to know of an offer before pion applies
// it.
type parsedOffer struct {
	sends   bool                // some media section sends
	sending map[string]bool     // the mids of the sections that send
	rids    map[string][]string // the simulcast rids each section sends, by mid
}

// parseOffer reads a publisher's offer: which sections send media and with
// which simulcast layers.
func parseOffer(offer string) (parsedOffer, error) {
	o := parsedOffer{sending: make(map[string]bool), rids: make(map[string][]string)}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return o, err
	}
	if len(d.MediaDescriptions) == 0 {
		return o, errors.New("no media sections")
	}
	for _, m := range d.MediaDescriptions {
		kind := m.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		mid, _ := m.Attribute("mid")
		if mid == "" {
			return o, fmt.Errorf("%s section without a mid", kind)
		}
		if m.MediaName.Port.Value == 0 || !sends(m) {
			continue
		}
		o.sends = true
		o.sending[mid] = true
		for _, a := range m.Attributes {
			if f := strings.Fields(a.Value); a.Key == "rid" && len(f) >= 2 && f[1] == "send" {
				o.rids[mid] = append(o.rids[mid], f[0])
			}
		}
		if n := len(o.rids[mid]); n > maxLayers {
			return o, fmt.Errorf("%s section %s sends %d simulcast layers (a=rid), at most %d", kind, mid, n, maxLayers)
		}
	}
	return o, nil
}

// sends reports whether a media section's direction sends (sendrecv, the
// default, or sendonly).
func sends(m *sdp.MediaDescription) bool {
	for _, a := range m.Attributes {
		switch a.Key {
		case "recvonly", "inactive":
			return false
		case "sendonly", "sendrecv":
			return true
		}
	}
	return true
}
