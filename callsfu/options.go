package callsfu

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/webrtc/v4"
)

// Options configures an SFU. The zero value of every field means its default.
type Options struct {
	// ListenAddr is the address of the one UDP socket that carries all media
	// (ICE UDP mux); ICE-TCP listens on the same IP and port number. Port 0
	// picks an ephemeral port (tests). Default: ":7444".
	ListenAddr string
	// NAT1To1IPs are the public addresses of a host behind 1:1 NAT. When set,
	// host candidates carry these addresses instead of the local ones.
	// Default: none (the local addresses).
	NAT1To1IPs []string
	// DisableTCP turns ICE-TCP off, leaving UDP only. Default: false.
	DisableTCP bool
	// RelayServers are TURN servers the SFU gathers relay candidates from.
	// The SFU offers host candidates and, when this is set, relay ones,
	// never server-reflexive ones; so only turns: URLs and turn: URLs with
	// ?transport=tcp are accepted (pion takes a TURN server over UDP for a
	// STUN server too, and would gather a server-reflexive candidate from
	// it on a socket of its own, beside the media port). Default: none.
	RelayServers []webrtc.ICEServer

	// MaxPublishers caps the participants of one call that publish media at
	// once; the next one's offer is refused with ErrTooManyPublishers.
	// Default: 16.
	MaxPublishers int
	// MaxStreamPublishers caps the publishers of a call that a publish-only
	// participant (JoinPublisher, a WHIP encoder) may join: it is refused
	// with ErrTooManyPublishers when the call has this many publishers
	// already, of any kind. A live stream has one encoder; its players are
	// answered with one track of each kind their offer receives.
	// Default: 1.
	MaxStreamPublishers int
	// MaxTracks caps the media sections one publisher sends (microphone,
	// camera, screen share and its audio); an offer with more is refused
	// with ErrTooManyTracks. Default: 4.
	MaxTracks int
	// SilenceTimeout removes a participant none of whose PeerConnections has
	// received RTP or RTCP for this long (or, before its first packet, since
	// it joined). Default: 10 s.
	SilenceTimeout time.Duration
	// ICEDisconnectedTimeout is how long ICE waits without a binding response
	// before it calls a connection disconnected. Default: 5 s.
	ICEDisconnectedTimeout time.Duration
	// ICEFailedTimeout is how long a disconnected connection waits before ICE
	// fails, which removes its participant. Default: 10 s.
	ICEFailedTimeout time.Duration
	// EmptyTimeout ends a started call that nobody has joined for this long.
	// Default: 30 s.
	EmptyTimeout time.Duration
	// EventQueue bounds the events waiting for one participant's events
	// function; a participant whose queue overflows is removed
	// (ReasonSlowEvents). Default: 256.
	EventQueue int
	// LayerBitrates are the nominal bitrates in bit/s of the simulcast layers
	// (low, medium, high) used to fit a subscriber's video into its bandwidth
	// estimate. Default: 150,000, 500,000 and 1,500,000.
	LayerBitrates [3]int
	// CallEnded, if set, is called once when a call ends, after its
	// participants are torn down, never under the SFU's locks: from the
	// goroutine that ended it (End, Close, the last Leave, or the SFU's own
	// sweeper for silence, ICE failure and abandoned calls). Default: nil.
	CallEnded func(call uint64, why EndReason)

	// RecordDir is the directory calls are recorded in (StartRecording),
	// one directory per recording: <RecordDir>/<call>/<n>. Default: none,
	// and StartRecording is refused with ErrRecordingOff.
	RecordDir string

	// Logger receives lifecycle and error logs (pion's warnings and errors
	// included). Default: slog.Default().
	Logger *slog.Logger
	// Metrics is the set the SFU registers its metrics in. Default: a new
	// set, returned by SFU.Metrics.
	Metrics *metrics.Set
}

// withDefaults returns a copy of o with defaults filled in, or an error for a
// value that cannot work.
func (o Options) withDefaults() (Options, error) {
	if o.ListenAddr == "" {
		o.ListenAddr = ":7444"
	}
	if _, _, err := net.SplitHostPort(o.ListenAddr); err != nil {
		return o, fmt.Errorf("callsfu: listen address %q: %w", o.ListenAddr, err)
	}
	for _, ip := range o.NAT1To1IPs {
		if net.ParseIP(ip) == nil {
			return o, fmt.Errorf("callsfu: NAT 1:1 address %q is not an IP", ip)
		}
	}
	for _, s := range o.RelayServers {
		for _, u := range s.URLs {
			if !strings.HasPrefix(u, "turns:") && !(strings.HasPrefix(u, "turn:") && strings.HasSuffix(u, "?transport=tcp")) {
				return o, fmt.Errorf("callsfu: relay server %q is neither turns: nor turn: over TCP (?transport=tcp)", u)
			}
		}
	}
	if o.MaxPublishers <= 0 {
		o.MaxPublishers = 16
	}
	if o.MaxStreamPublishers <= 0 {
		o.MaxStreamPublishers = 1
	}
	if o.MaxTracks <= 0 {
		o.MaxTracks = 4
	}
	if o.SilenceTimeout <= 0 {
		o.SilenceTimeout = 10 * time.Second
	}
	if o.ICEDisconnectedTimeout <= 0 {
		o.ICEDisconnectedTimeout = 5 * time.Second
	}
	if o.ICEFailedTimeout <= 0 {
		o.ICEFailedTimeout = 10 * time.Second
	}
	if o.EmptyTimeout <= 0 {
		o.EmptyTimeout = 30 * time.Second
	}
	if o.EventQueue <= 0 {
		o.EventQueue = 256
	}
	if o.LayerBitrates == [3]int{} {
		o.LayerBitrates = [3]int{150_000, 500_000, 1_500_000}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	return o, nil
}
