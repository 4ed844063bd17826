package callsfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// Peer is one device of one user in a call. A user may join a call from
// several devices; each is a participant of its own.
type Peer struct {
	User, Device uint64
}

// String returns "user.device", the form used as the media stream ID a
// subscriber sees in its SDP.
func (p Peer) String() string {
	return strconv.FormatUint(p.User, 10) + "." + strconv.FormatUint(p.Device, 10)
}

// EndReason says why a call ended.
type EndReason uint8

// The reasons a call ends.
const (
	// EndEmpty: the last participant left, or nobody joined within
	// Options.EmptyTimeout of Start.
	EndEmpty EndReason = iota + 1
	// EndHungUp: SFU.End was called.
	EndHungUp
	// EndClosed: the SFU closed.
	EndClosed
)

// String names the reason for logs.
func (r EndReason) String() string {
	switch r {
	case EndEmpty:
		return "empty"
	case EndHungUp:
		return "hung up"
	case EndClosed:
		return "closed"
	}
	return "unknown"
}

// SFU is the selective forwarding unit of a node: the calls running on it,
// their participants' PeerConnections, and the one UDP socket (and one TCP
// listener on the same port number) that carry all their media.
//
// # Signalling
//
// The broker drives the SFU through this Go API and carries its SDP and
// candidates to the clients. A call is started (Start), joined (Join) and
// ended (End, or when the last participant leaves). Each Participant has two
// PeerConnections, as LiveKit's do: a publisher one that the client offers
// (Publish; a new offer renegotiates it when the client adds or stops a
// track, a screen share being a second video track) and a subscriber one
// that the SFU offers (EventOffer, answered with Answer) and renegotiates as
// the others' tracks come and go. With one PeerConnection for both
// directions, every track change on either side would need an offer from
// whoever had not just offered, and the two sides would glare; with two,
// each has one offerer. The SFU's candidates of the publisher PeerConnection
// come inside Publish's answer (they are gathered from the muxes at once),
// so that no candidate can reach the client before the answer; those of the
// subscriber PeerConnection are trickled as events after their offer. The
// client trickles both with AddCandidate.
//
// A new subscriber offer waits for the answer to the previous one and, after
// the first, for the connection: changes meanwhile are folded into the next
// offer.
//
// A live stream into a channel is a call joined by an encoder that only
// publishes (JoinPublisher: a publisher PeerConnection, no offers) and by
// players that only play (Play: the player's recvonly offer answered once
// with the tracks published at that moment, never renegotiated; a player
// whose tracks end is removed). The WHIP handler (whip.go) serves both over
// HTTP.
//
// # Goroutines and locks
//
// The SFU owns a sweeper (speaker events, layer fits, silence, abandoned
// calls) and each participant's event goroutine; each Participant owns the
// reader goroutines of its tracks (RTP and RTCP of each published layer,
// RTCP of each subscription), which end when its PeerConnections close.
// Close waits for all of them, but for the event goroutines (which run the
// caller's events functions) no more than closeEventsGrace. Lock order: Participant.publishMu (one
// Publish at a time, held through its gathering, which Participant.mu is
// not) before all the others; room.mu, then SFU.mu (an ending
// room leaves the running calls at once), or room.mu, then Participant.mu,
// then a trackLocal's mu and the forwarding core's; SFU.mu is never held
// while another is taken. The SFU holds no lock while it calls out (events,
// CallEnded) or closes a PeerConnection.
type SFU struct {
	opts     Options
	log      *slog.Logger
	udpMux   *ice.UDPMuxDefault
	conn     *mediaConn        // the UDP socket under udpMux, which batches a fan-out's sends
	tcpMux   ice.TCPMux        // nil when Options.DisableTCP
	tcp      *tcpMediaListener // the mux's listener; nil when Options.DisableTCP
	udpAddr  *net.UDPAddr
	settings webrtc.SettingEngine
	media    *webrtc.MediaEngine
	pubAPI   *webrtc.API
	pionLogs logging.LoggerFactory
	m        sfuMetrics

	done chan struct{} // closed by Close, stops the sweeper
	wg   sync.WaitGroup
	// events counts the participants' event goroutines, which run the
	// caller's events functions: Close waits for them eventsGrace at most.
	events      sync.WaitGroup
	eventsLive  atomic.Int64
	eventsGrace time.Duration // closeEventsGrace; tests shorten it
	// beforeOffer, when set (by tests, before the first Join), is called
	// as a participant is about to be sent a subscriber offer.
	beforeOffer func(*Participant)

	mu     sync.Mutex // guards the following
	rooms  map[uint64]*room
	closed bool
}

// sfuMetrics are the SFU's counters, created once in New. The forwarding
// core counts per track, without a shared counter on its hot path; the
// sweeper sums the tracks' counts (those of ended tracks kept in retired)
// into forwarded, resent and resendRefused.
type sfuMetrics struct {
	names            []string // registered in Options.Metrics
	participants     atomic.Int64
	retired          struct{ forwarded, resent, refused atomic.Uint64 }
	reported         struct{ forwarded, resent, refused uint64 } // owned by the sweeper
	forwarded        *metrics.Counter
	resent           *metrics.Counter
	resendRefused    *metrics.Counter // NACKed packets not resent: budget, or resent just before
	nacks            *metrics.Counter
	plisToPublisher  *metrics.Counter
	plisFromSubs     *metrics.Counter
	removedSilent    *metrics.Counter
	removedICEFailed *metrics.Counter
	removedSlow      *metrics.Counter
	removedClosed    *metrics.Counter
	// removedStreamEnded counts players removed because every track they
	// played ended.
	removedStreamEnded *metrics.Counter
	// removedNeverConnected counts participants none of whose
	// PeerConnections connected in time (ReasonNeverConnected).
	removedNeverConnected *metrics.Counter
	tcpDropped            *metrics.Counter
	tcpStalled            *metrics.Counter
	// tcpRefusedCap counts ICE-TCP connections closed on arrival because
	// too many had not yet been answered a STUN binding; tcpRefusedBind
	// those closed because their first binding was not answered within
	// tcpBindTimeout.
	tcpRefusedCap  *metrics.Counter
	tcpRefusedBind *metrics.Counter
}

// New opens the media sockets and returns a running SFU.
func New(opts Options) (*SFU, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &SFU{
		opts:     opts,
		log:      opts.Logger.With("component", "callsfu"),
		pionLogs: pionLogs{opts.Logger.With("component", "callsfu")},
		done:     make(chan struct{}),
		rooms:    make(map[uint64]*room),

		eventsGrace: closeEventsGrace,
	}
	if s.media, err = newMediaEngine(); err != nil {
		return nil, err
	}
	udp, tcp, err := listen(opts.ListenAddr, !opts.DisableTCP)
	if err != nil {
		return nil, err
	}
	s.udpAddr = udp.LocalAddr().(*net.UDPAddr)
	s.registerMetrics() // before the TCP listener counts into them
	s.conn = newMediaConn(udp)
	s.udpMux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: s.conn, Logger: s.pionLogs.NewLogger("udpmux")})
	if tcp != nil {
		s.tcp = newTCPMediaListener(tcp, &s.m)
		s.tcpMux = ice.NewTCPMuxDefault(ice.TCPMuxParams{
			Listener:             s.tcp,
			Logger:               s.pionLogs.NewLogger("tcpmux"),
			ReadBufferSize:       64,
			WriteBufferSize:      tcpSocketBuffer,
			FirstStunBindTimeout: 2 * tcpBindTimeout, // a backstop: the listener's closes first
		})
	}
	if err := s.configure(); err != nil {
		s.closeSockets()
		s.unregisterMetrics()
		return nil, err
	}
	s.wg.Add(1)
	go s.sweep()
	s.log.Info("callsfu: listening", "udp", s.udpAddr.String(), "tcp", tcp != nil)
	return s, nil
}

// mediaSocketBuffer is the media socket's receive and send buffer, as
// the broker's QUIC socket has.
const mediaSocketBuffer = 8 << 20

// listen binds the UDP socket and, when withTCP, a TCP listener on the same
// IP and port number. With port 0 the UDP port is ephemeral; if TCP cannot
// have the same number, it tries a few other ephemeral ports.
func listen(addr string, withTCP bool) (*net.UDPConn, net.Listener, error) {
	uaddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("callsfu: resolve %q: %w", addr, err)
	}
	for attempt := 0; ; attempt++ {
		udp, err := net.ListenUDP("udp", uaddr)
		if err != nil {
			return nil, nil, fmt.Errorf("callsfu: listen udp %s: %w", addr, err)
		}
		// Every participant's media comes through this one socket: with
		// Linux's default 208 KiB a node short of CPU for a moment drops
		// bursts, and the NACKs and resends that follow make it worse
		// (bench call: 38% loss at 5 calls of 4). The kernel caps these
		// at net.core.rmem_max and wmem_max; errors leave the default.
		udp.SetReadBuffer(mediaSocketBuffer)
		udp.SetWriteBuffer(mediaSocketBuffer)
		if !withTCP {
			return udp, nil, nil
		}
		bound := udp.LocalAddr().(*net.UDPAddr)
		taddr := &net.TCPAddr{IP: uaddr.IP, Port: bound.Port, Zone: uaddr.Zone}
		tcp, err := net.ListenTCP("tcp", taddr)
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if uaddr.Port != 0 || attempt == 8 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("callsfu: listen tcp %s: %w", taddr, err)
		}
	}
}

// configure builds the SettingEngine every PeerConnection shares: the muxes,
// host (and relay) candidates only, no mDNS, the ICE timeouts, the public
// addresses of 1:1 NAT; and the API of publishing PeerConnections.
func (s *SFU) configure() error {
	se := &s.settings
	se.LoggerFactory = s.pionLogs
	se.SetICEUDPMux(s.udpMux)
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if s.tcpMux != nil {
		se.SetICETCPMux(s.tcpMux)
		types = append(types, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(types)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// Clients dial the node's passive ICE-TCP port; the node never dials
	// out to an address a client's candidate names (pion's active ICE-TCP
	// would, from every local interface).
	se.DisableActiveTCP(true)
	se.SetIncludeLoopbackCandidate(s.udpAddr.IP.IsLoopback())
	se.SetICETimeouts(s.opts.ICEDisconnectedTimeout, s.opts.ICEFailedTimeout, time.Second)
	if len(s.opts.NAT1To1IPs) > 0 {
		err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        s.opts.NAT1To1IPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		})
		if err != nil {
			return fmt.Errorf("callsfu: NAT 1:1 addresses: %w", err)
		}
	}
	reg, err := publisherInterceptors(s.pionLogs)
	if err != nil {
		return err
	}
	s.pubAPI = webrtc.NewAPI(webrtc.WithSettingEngine(s.settings), webrtc.WithMediaEngine(s.media),
		webrtc.WithInterceptorRegistry(reg))
	return nil
}

// subscriberAPI returns an API for one subscribing PeerConnection: its own
// interceptor registry, so that the bandwidth estimator GCC creates for it
// reaches onEstimator.
func (s *SFU) subscriberAPI(onEstimator func(cc.BandwidthEstimator)) (*webrtc.API, error) {
	reg, err := subscriberInterceptors(s.pionLogs, onEstimator)
	if err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(s.settings), webrtc.WithMediaEngine(s.media),
		webrtc.WithInterceptorRegistry(reg)), nil
}

// rtcConfig is the Configuration of every PeerConnection: relay servers when
// configured, bundled media on one transport, RTCP multiplexed.
func (s *SFU) rtcConfig() webrtc.Configuration {
	return webrtc.Configuration{
		ICEServers:    s.opts.RelayServers,
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	}
}

// registerMetrics creates the SFU's metrics in Options.Metrics.
func (s *SFU) registerMetrics() {
	set := s.opts.Metrics
	gauge := func(name string, f func() float64) {
		set.NewGauge(name, f)
		s.m.names = append(s.m.names, name)
	}
	counter := func(name string) *metrics.Counter {
		s.m.names = append(s.m.names, name)
		return set.NewCounter(name)
	}
	gauge("gonets_calls_rooms", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.rooms))
	})
	gauge("gonets_calls_participants", func() float64 { return float64(s.m.participants.Load()) })
	s.m.forwarded = counter("gonets_calls_forwarded_packets_total")
	s.m.resent = counter("gonets_calls_resent_packets_total")
	s.m.resendRefused = counter("gonets_calls_resend_refused_packets_total")
	s.m.nacks = counter("gonets_calls_nacked_packets_total")
	s.m.plisToPublisher = counter(`gonets_calls_keyframe_requests_total{to="publisher"}`)
	s.m.plisFromSubs = counter(`gonets_calls_keyframe_requests_total{to="sfu"}`)
	s.m.removedSilent = counter(`gonets_calls_participants_removed_total{reason="silent"}`)
	s.m.removedICEFailed = counter(`gonets_calls_participants_removed_total{reason="ice_failed"}`)
	s.m.removedSlow = counter(`gonets_calls_participants_removed_total{reason="slow_events"}`)
	s.m.removedClosed = counter(`gonets_calls_participants_removed_total{reason="client_closed"}`)
	s.m.removedStreamEnded = counter(`gonets_calls_participants_removed_total{reason="stream_ended"}`)
	s.m.removedNeverConnected = counter(`gonets_calls_participants_removed_total{reason="never_connected"}`)
	s.m.tcpDropped = counter("gonets_calls_tcp_dropped_packets_total")
	s.m.tcpStalled = counter("gonets_calls_tcp_stalled_connections_total")
	s.m.tcpRefusedCap = counter(`gonets_calls_tcp_refused_connections_total{reason="unbound_cap"}`)
	s.m.tcpRefusedBind = counter(`gonets_calls_tcp_refused_connections_total{reason="bind_timeout"}`)
	counter("gonets_calls_recording_dropped_packets_total") // counted by recordings (record.go)
	counter("gonets_calls_recording_lost_packets_total")
}

// unregisterMetrics takes the SFU's metrics out of Options.Metrics again (a
// New that failed), so that a later New may register them.
func (s *SFU) unregisterMetrics() {
	for _, name := range s.m.names {
		s.opts.Metrics.UnregisterMetric(name)
	}
}

// updateCounters adds what the tracks forwarded and resent since the last
// update. A track is out of the room before its counts are retired, so the
// sum can dip for a moment; only growth past what was reported is added.
func (s *SFU) updateCounters() {
	live := s.liveCounters()
	forwarded := s.m.retired.forwarded.Load() + live.forwarded
	resent := s.m.retired.resent.Load() + live.resent
	if forwarded > s.m.reported.forwarded {
		s.m.forwarded.AddInt64(int64(forwarded - s.m.reported.forwarded))
		s.m.reported.forwarded = forwarded
	}
	if resent > s.m.reported.resent {
		s.m.resent.AddInt64(int64(resent - s.m.reported.resent))
		s.m.reported.resent = resent
	}
	if refused := s.m.retired.refused.Load() + live.resendRefused; refused > s.m.reported.refused {
		s.m.resendRefused.AddInt64(int64(refused - s.m.reported.refused))
		s.m.reported.refused = refused
	}
}

// liveCounters sums the counters of the tracks being forwarded.
func (s *SFU) liveCounters() upTrackStats {
	s.mu.Lock()
	rooms := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	var sum upTrackStats
	for _, r := range rooms {
		r.mu.Lock()
		for _, t := range r.tracks {
			c := t.up.counters()
			sum.forwarded += c.forwarded
			sum.resent += c.resent
			sum.resendRefused += c.resendRefused + c.resendRepeated
		}
		r.mu.Unlock()
	}
	return sum
}

// retire keeps the counts of a track that ended.
func (s *SFU) retire(c upTrackStats) {
	s.m.retired.forwarded.Add(c.forwarded)
	s.m.retired.resent.Add(c.resent)
	s.m.retired.refused.Add(c.resendRefused + c.resendRepeated)
}

// Metrics returns the set the SFU's metrics live in (Options.Metrics).
func (s *SFU) Metrics() *metrics.Set { return s.opts.Metrics }

// Addr returns the address of the media socket (UDP; ICE-TCP listens on the
// same IP and port number unless Options.DisableTCP).
func (s *SFU) Addr() *net.UDPAddr { return s.udpAddr }

// Start opens a call. Participants join it with Join; it ends with End, when
// the last participant leaves, or when nobody joins within
// Options.EmptyTimeout.
func (s *SFU) Start(call uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if _, ok := s.rooms[call]; ok {
		return fmt.Errorf("callsfu: start call %d: %w", call, ErrCallExists)
	}
	s.rooms[call] = newRoom(s, call)
	s.log.Info("callsfu: call started", "call", call)
	return nil
}

// Join adds peer to a started call and returns its Participant. events is
// called with everything the participant must hear (see Event), in order,
// from one goroutine of the participant's own; it may call the Participant's
// methods, and should not block: a participant Options.EventQueue events
// behind is removed. A peer already in the call is replaced: the old
// participant is removed with ReasonReplaced.
func (s *SFU) Join(call uint64, peer Peer, events func(Event)) (*Participant, error) {
	if events == nil {
		events = func(Event) {}
	}
	r, err := s.room(call)
	if err != nil {
		return nil, fmt.Errorf("callsfu: join call %d: %w", call, err)
	}
	return r.join(peer, events)
}

// End hangs up a call: every participant is removed with ReasonCallEnded and
// its PeerConnections closed before End returns. The call may be started
// again at once.
func (s *SFU) End(call uint64) error {
	s.mu.Lock()
	r, ok := s.rooms[call]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("callsfu: end call %d: %w", call, ErrUnknownCall)
	}
	r.end(EndHungUp, ReasonCallEnded)
	return nil
}

// room returns the running call's room.
func (s *SFU) room(call uint64) (*room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	r, ok := s.rooms[call]
	if !ok {
		return nil, ErrUnknownCall
	}
	return r, nil
}

// detach drops an ending room from the running calls, so that the call can
// be started afresh at once while the room's participants are torn down.
func (s *SFU) detach(r *room) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rooms[r.call] == r {
		delete(s.rooms, r.call)
	}
}

// ended reports the end of a call, its participants torn down, to
// Options.CallEnded.
func (s *SFU) ended(r *room, why EndReason) {
	s.log.Info("callsfu: call ended", "call", r.call, "why", why.String())
	r.stopRecording()
	if s.opts.CallEnded != nil {
		s.opts.CallEnded(r.call, why)
	}
}

// goTracked runs f on a goroutine the SFU waits for in Close, and reports
// whether it did: once Close has begun it runs nothing (Close removes every
// participant itself), so that no goroutine starts behind its wait.
func (s *SFU) goTracked(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// goEvents runs a participant's event loop f on a goroutine that Close
// waits for, for closeEventsGrace at most (f runs the caller's events
// function, which may never return), and reports whether it did: once Close
// has begun it runs nothing.
func (s *SFU) goEvents(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.events.Add(1)
	s.eventsLive.Add(1)
	go func() {
		defer s.events.Done()
		defer s.eventsLive.Add(-1)
		f()
	}()
	return true
}

// closeEventsGrace is how long Close waits for the participants' events
// functions to return once their queues are closed.
const closeEventsGrace = 5 * time.Second

// waitEvents waits for the event goroutines, eventsGrace at most, and logs
// the events functions that have not returned by then: Close does not hang
// on a caller's events function that blocks. Each goroutine left ends when
// its events function returns, and the waiter with the last.
func (s *SFU) waitEvents() {
	done := make(chan struct{})
	go func() {
		s.events.Wait()
		close(done)
	}()
	t := time.NewTimer(s.eventsGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("callsfu: close: events functions still running", "n", s.eventsLive.Load(),
			"waited", s.eventsGrace.String())
	}
}

// sweepInterval is how often the sweeper looks for a new dominant speaker
// (within the 100 to 300 ms the speaker detector wants).
const sweepInterval = 200 * time.Millisecond

// sweep announces dominant speakers, removes silent participants, ends
// calls nobody joined and brings the packet counters up to date.
func (s *SFU) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(min(sweepInterval, s.opts.SilenceTimeout/4))
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.mu.Lock()
			rooms := make([]*room, 0, len(s.rooms))
			for _, r := range s.rooms {
				rooms = append(rooms, r)
			}
			s.mu.Unlock()
			for _, r := range rooms {
				r.sweep(now)
			}
			s.updateCounters()
		}
	}
}

// Close ends every call (ReasonClosed), waits for their goroutines and closes
// the media sockets. The SFU refuses everything after. It waits for the
// participants' events functions 5 s at most: one that has not returned by
// then is logged and left to return on its own.
func (s *SFU) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	rooms := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	for _, r := range rooms {
		r.end(EndClosed, ReasonClosed)
	}
	close(s.done)
	s.wg.Wait()
	s.waitEvents()
	s.closeSockets()
	s.updateCounters()
	return nil
}

// closeSockets closes the muxes and with them the UDP socket and the TCP
// listener.
func (s *SFU) closeSockets() {
	if s.tcpMux != nil {
		if err := s.tcpMux.Close(); err != nil {
			s.log.Warn("callsfu: close tcp mux", "err", err)
		}
	}
	if err := s.udpMux.Close(); err != nil {
		s.log.Warn("callsfu: close udp mux", "err", err)
	}
}

// The ICE-TCP write policy. A UDP write never blocks: the kernel drops what
// does not fit. A TCP write blocks once the socket's buffer is full, and
// pion writes a subscriber's packets on the publisher's reader goroutine, so
// one subscriber that stops reading would stall the track for everyone. So
// each ICE-TCP connection queues its packets for a writer goroutine of its
// own, drops (and counts) those that find the queue full, and is closed when
// its socket takes nothing for tcpWriteTimeout, which fails its ICE.
const (
	tcpQueue        = 256       // packets queued per connection, about 300 KB
	tcpSocketBuffer = 256 << 10 // the kernel's send buffer: ~1 s of video; more only adds delay
	tcpWriteTimeout = 2 * time.Second
)

// The ICE-TCP admission policy. Anyone may connect to the media port, and
// pion's mux holds each connection until its first STUN binding request
// and, for a username no call knows, 30 s more. So a connection counts as
// unbound until the SFU first writes on it (its ICE agent answers a binding
// request only with the right credentials): at most tcpMaxUnbound of them
// at once, tcpMaxUnboundPerIP from one address, and one whose binding is
// not answered within tcpBindTimeout is closed. A connection over a cap is
// closed on arrival. Each is counted by reason.
const (
	tcpMaxUnbound      = 128
	tcpMaxUnboundPerIP = 8
	tcpBindTimeout     = 3 * time.Second
)

// tcpMediaListener accepts ICE-TCP connections whose writes never block,
// and caps those not bound yet.
type tcpMediaListener struct {
	net.Listener
	m           *sfuMetrics
	timeout     time.Duration // of a write
	bindTimeout time.Duration
	maxUnbound  int
	maxPerIP    int

	mu      sync.Mutex // guards the following
	unbound map[netip.Addr]int
	total   int
}

// newTCPMediaListener wraps l with the ICE-TCP policies.
func newTCPMediaListener(l net.Listener, m *sfuMetrics) *tcpMediaListener {
	return &tcpMediaListener{
		Listener: l, m: m, timeout: tcpWriteTimeout, bindTimeout: tcpBindTimeout,
		maxUnbound: tcpMaxUnbound, maxPerIP: tcpMaxUnboundPerIP,
		unbound: make(map[netip.Addr]int),
	}
}

// Accept returns the next connection within the caps, wrapped in a
// queuedConn; it closes those over a cap. It returns only the listener's
// closing as an error: pion's mux stops accepting for good on any, and an
// error such as EMFILE passes (after acceptPause).
func (l *tcpMediaListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			time.Sleep(acceptPause)
			continue
		}
		ip := remoteIP(c)
		if !l.hold(ip) {
			c.Close()
			l.m.tcpRefusedCap.Inc()
			continue
		}
		q := newQueuedConn(c, l.m, l.timeout)
		q.awaitBinding(l, ip)
		return q, nil
	}
}

// remoteIP returns the address a connection comes from.
func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// hold counts a new unbound connection from ip, or reports false when that
// would exceed a cap.
func (l *tcpMediaListener) hold(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.maxUnbound || l.unbound[ip] >= l.maxPerIP {
		return false
	}
	l.total++
	l.unbound[ip]++
	return true
}

// release stops counting an unbound connection from ip.
func (l *tcpMediaListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.unbound[ip]--; l.unbound[ip] <= 0 {
		delete(l.unbound, ip)
	}
}

// unboundCount returns how many connections are unbound now.
func (l *tcpMediaListener) unboundCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// queuedConn is an ICE-TCP connection whose Write queues a copy of the
// packet (pion writes each framed packet in one Write) for its writer
// goroutine and never blocks.
type queuedConn struct {
	net.Conn
	m       *sfuMetrics
	timeout time.Duration
	queue   chan *[]byte
	done    chan struct{} // closed by Close
	exited  chan struct{} // closed when the writer returns
	once    sync.Once
	err     error // of closing the socket

	// Set by awaitBinding, before the connection is handed to pion.
	admission *tcpMediaListener // nil when not counted as unbound
	ip        netip.Addr
	unbound   atomic.Bool // counted in admission until the first Write
	bindTimer *time.Timer
}

// tcpBuffers recycles the queued packets' copies.
var tcpBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1500); return &b }}

// newQueuedConn wraps c and starts its writer.
func newQueuedConn(c net.Conn, m *sfuMetrics, timeout time.Duration) *queuedConn {
	q := &queuedConn{
		Conn: c, m: m, timeout: timeout,
		queue:  make(chan *[]byte, tcpQueue),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	go q.write()
	return q
}

// awaitBinding counts q as unbound in l until its first Write, and closes
// it if that does not come within l.bindTimeout.
func (q *queuedConn) awaitBinding(l *tcpMediaListener, ip netip.Addr) {
	q.admission, q.ip = l, ip
	q.unbound.Store(true)
	q.bindTimer = time.AfterFunc(l.bindTimeout, func() {
		if q.release() { // q.bindTimer is not for this goroutine to read
			q.m.tcpRefusedBind.Inc()
			q.shut()
		}
	})
}

// bound stops counting q as unbound and its timer.
func (q *queuedConn) bound() {
	if q.release() {
		q.bindTimer.Stop()
	}
}

// release stops counting q as unbound and reports whether it still was.
func (q *queuedConn) release() bool {
	if q.admission == nil || !q.unbound.CompareAndSwap(true, false) {
		return false
	}
	q.admission.release(q.ip)
	return true
}

// Write queues a copy of b, or drops it when the queue is full. The first
// one (pion answers a STUN binding only for a call's ICE credentials) binds
// the connection.
func (q *queuedConn) Write(b []byte) (int, error) {
	select {
	case <-q.done:
		return 0, net.ErrClosed
	default:
	}
	if q.unbound.Load() {
		q.bound()
	}
	buf := tcpBuffers.Get().(*[]byte)
	*buf = append((*buf)[:0], b...)
	select {
	case q.queue <- buf:
	default:
		tcpBuffers.Put(buf)
		q.m.tcpDropped.Inc()
	}
	return len(b), nil
}

// write sends the queued packets, each with a deadline, until the
// connection closes or its socket stalls.
func (q *queuedConn) write() {
	defer close(q.exited)
	for {
		select {
		case <-q.done:
			return
		case buf := <-q.queue:
			if err := q.Conn.SetWriteDeadline(time.Now().Add(q.timeout)); err != nil {
				q.shut()
				return
			}
			_, err := q.Conn.Write(*buf)
			tcpBuffers.Put(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					q.m.tcpStalled.Inc()
				}
				q.shut()
				return
			}
		}
	}
}

// shut stops the writer's loop and closes the socket.
func (q *queuedConn) shut() {
	q.once.Do(func() {
		q.bound() // a connection closed unbound frees its place
		close(q.done)
		q.err = q.Conn.Close()
	})
}

// Close closes the connection and waits for its writer.
func (q *queuedConn) Close() error {
	q.shut()
	<-q.exited
	return q.err
}
