package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/gonets/gonets/broker/wire"
	"github.com/gonets/gonets/identity"
)

// Options configure a Broker. The zero value of every field means its
// default.
type Options struct {
	// Accounts serves the account requests: phone login before Hello,
	// token refresh, devices. Nil: the node has none (ACCOUNTS_OFF), and
	// sessions come with tokens its operator minted.
	Accounts *identity.Service

	// State serves the state-service requests (linking a state account,
	// digital IDs, document signing). Nil: STATE_SERVICES_OFF.
	State StateServices
	// SigningTTL is how long a signing request waits for its signature
	// before it ends expired. Default: 24 h.
	SigningTTL time.Duration

	// Attachments holds the files MEDIA messages carry. Nil: a message
	// with attachments is refused (UNKNOWN_FILE).
	Attachments Attachments
	// Bots is the node's bot platform. Nil: no user is a bot, callbacks
	// and mini-apps are refused.
	Bots Bots
	// PublicURL is the base URL of the node's public HTTPS listener,
	// sent in Welcome so that clients find uploads. Default: none.
	PublicURL string

	// Name names the node in Welcome. Default: the host name.
	Name string
	// MaxFrameBytes caps one frame in either direction. Default: 1 MiB.
	MaxFrameBytes int
	// SendRate is each user's sustained rate of sends, edits, deletes,
	// reactions and typing signals across all their devices, per second
	// (a token bucket). Default: 50.
	SendRate float64
	// SendBurst is the bucket's size. Default: 2 × SendRate.
	SendBurst int
	// MaxSessionsPerUser caps a user's concurrent sessions (devices);
	// the oldest is closed when a new one exceeds it. Default: 16.
	MaxSessionsPerUser int
	// Outbox bounds each session's queue of pushes.
	Outbox OutboxOptions
	// HelloTimeout is how long a new connection may take to authenticate.
	// The node's time on its pre-authentication requests (each at most
	// 30 s) does not count. Default: 10 s.
	HelloTimeout time.Duration
	// MaxUnauthenticated caps the connections that have not yet sent a
	// verified Hello. A new one beyond it evicts the oldest, so that a
	// flood of idle connections cannot keep an honest client, which
	// authenticates in milliseconds, out. One evicted while the node
	// serves its pre-authentication request is closed once answered.
	// Default: 1,024.
	MaxUnauthenticated int
	// MaxUnauthenticatedPerAddr caps those connections per source IP
	// address; a new one beyond it evicts that address's oldest. It is a
	// last resort with a high ceiling: thousands of honest mobile users
	// may share one address behind carrier-grade NAT. Default: 256.
	MaxUnauthenticatedPerAddr int
	// MaxHandshakes caps the TLS handshakes the node computes at once,
	// over QUIC and TCP together: a handshake holds a slot from its
	// ClientHello until its first flight is computed (key exchange,
	// signature), not while it waits for the client. One beyond it waits
	// for a slot, first come first served. Two per core keep the cores
	// busy while a handshake's packets are written and its goroutines
	// scheduled; more would only share the cores among more handshakes,
	// each finishing later, past its client's patience under a storm.
	// Default: 8 × GOMAXPROCS (a slot is held for the handshake's wall
	// time, which on a node sharing its cores is several times its CPU
	// time: at 2 × GOMAXPROCS the bound, not the CPU, capped the connect
	// bench's first handshakes at 588/s, against 701/s at 8 × and 708/s
	// unbounded).
	MaxHandshakes int
	// HandshakeWait is how long a handshake may wait for a slot before
	// it is refused (a TLS internal_error alert; the client retries after
	// its backoff). At most MaxUnauthenticated wait; beyond that the
	// oldest waiter is refused. Default: 1 s.
	HandshakeWait time.Duration
	// HandshakeHold is how long a handshake may hold its slot while
	// another waits; then the slot is taken back and handed to the
	// waiter, and the handshake goes on outside the bound. Computing a
	// first flight takes under a millisecond of CPU (BENCHMARKS.md) and
	// under 50 ms on a loaded 2-core node; a handshake holding its slot
	// longer waits on its client (over QUIC, after a HelloRetryRequest the
	// node cannot see go out), and a client that stops there would
	// otherwise hold the slot for quic-go's 10 s handshake timeout. 250 ms
	// is five times the loaded figure and a quarter of HandshakeWait, so
	// that a waiter queued behind stalled slots still gets one within its
	// wait. Default: 250 ms.
	HandshakeHold time.Duration
	// WriteTimeout is how long a write to a client may make no progress:
	// a session whose responses or pushes have not moved for this long
	// is closed, the reason counted. Default: 10 s.
	WriteTimeout time.Duration
	// CoalesceWindow is the most a session's pushes wait for others to
	// join their write: a session written to within the last window waits
	// out the rest of it, so that a busy session gets at most one push
	// write per window, and a session idle for a window is written to at
	// once. Negative disables it. Default: 1 ms; at most 50 ms.
	CoalesceWindow time.Duration
	// TCPHeartbeat is how long the node may write nothing to a session
	// over TCP before it writes a heartbeat (a Ping with id 0, which the
	// client does not answer): it keeps NAT mappings and middleboxes
	// open, and tells the client the node is there, so that the client
	// need not ping it. Each session draws its period once, up to a fifth
	// below, so that sessions dialled together do not beat together; one
	// sweep a second writes all that are due. Only clients that list the
	// heartbeat capability in Hello get them. None is written while the
	// socket holds bytes not yet acknowledged; a client gone from the
	// network leaves them unacknowledged, and the kernel drops the
	// connection within 2 minutes (TCP_USER_TIMEOUT, on Linux). Negative
	// disables it (clients
	// then ping after ~40 s of silence, and the kernel probes after their
	// keep-alive period). Default: 25 s, as the SDK's keep-alive over
	// QUIC; from 1 s to 5 min.
	TCPHeartbeat time.Duration
	// Calls is the media side of calls, the SFU. Default: nil, and call
	// requests are refused with CALLS_OFF.
	Calls CallMedia
	// CallICEServers, if set, returns the STUN and TURN servers for a
	// user's PeerConnections (the node's TURN relay, with credentials for
	// that user that expire), sent in every CallInfo that user gets. It
	// must not block. Default: nil, and CallInfo carries none.
	CallICEServers func(user uint64) []ICEServer
	// CallRingTimeout is how long a call rings a user who neither accepts
	// nor declines; then the ring counts as missed, and a call no one but
	// its caller joined ends. Default: 45 s.
	CallRingTimeout time.Duration
	// Logger receives lifecycle and error logs. Default: slog.Default().
	Logger *slog.Logger
	// Metrics is the set the broker registers its metrics in. Default: a
	// new set, returned by Broker.Metrics.
	Metrics *metrics.Set
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// ICEServer is a STUN or TURN server for a client's PeerConnections, as
// WebRTC's RTCIceServer has it (CallInfo.ice_servers).
type ICEServer struct {
	URLs       []string
	Username   string
	Credential string
}

// ensureDefaults fills defaults on a copy and validates.
func (o Options) ensureDefaults() (Options, error) {
	if o.Name == "" {
		o.Name, _ = os.Hostname()
		if o.Name == "" {
			o.Name = "gonets"
		}
	}
	if o.MaxFrameBytes == 0 {
		o.MaxFrameBytes = wire.DefaultMaxFrameBytes
	}
	if o.SendRate == 0 {
		o.SendRate = 50
	}
	if o.SendBurst == 0 {
		o.SendBurst = max(1, int(2*o.SendRate))
	}
	if o.MaxSessionsPerUser == 0 {
		o.MaxSessionsPerUser = 16
	}
	if o.HelloTimeout == 0 {
		o.HelloTimeout = 10 * time.Second
	}
	if o.MaxUnauthenticated == 0 {
		o.MaxUnauthenticated = 1024
	}
	if o.MaxUnauthenticatedPerAddr == 0 {
		o.MaxUnauthenticatedPerAddr = 256
	}
	if o.MaxHandshakes == 0 {
		o.MaxHandshakes = 8 * runtime.GOMAXPROCS(0)
	}
	if o.HandshakeWait == 0 {
		o.HandshakeWait = time.Second
	}
	if o.HandshakeHold == 0 {
		o.HandshakeHold = 250 * time.Millisecond
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.CoalesceWindow == 0 {
		o.CoalesceWindow = time.Millisecond
	}
	if o.TCPHeartbeat == 0 {
		o.TCPHeartbeat = 25 * time.Second
	}
	if o.CallRingTimeout == 0 {
		o.CallRingTimeout = 45 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("broker: "+format, args...))
		}
	}
	check(o.MaxFrameBytes >= 1<<10 && o.MaxFrameBytes <= 64<<20, "MaxFrameBytes %d outside [1 KiB, 64 MiB]", o.MaxFrameBytes)
	check(o.SendRate > 0, "SendRate %v must be positive", o.SendRate)
	check(o.SendBurst > 0, "SendBurst %d must be positive", o.SendBurst)
	check(o.MaxSessionsPerUser > 0, "MaxSessionsPerUser %d must be positive", o.MaxSessionsPerUser)
	check(o.Outbox.MaxFrames >= 0 && o.Outbox.MaxBytes >= 0, "Outbox bounds must not be negative")
	check(o.Outbox.MaxBytes == 0 || o.Outbox.MaxBytes >= o.MaxFrameBytes, "Outbox.MaxBytes %d below MaxFrameBytes %d", o.Outbox.MaxBytes, o.MaxFrameBytes)
	check(o.HelloTimeout > 0 && o.WriteTimeout > 0 && o.HandshakeWait > 0 && o.HandshakeHold > 0 && o.CallRingTimeout > 0, "timeouts must be positive")
	// A writer sleeps through the window uninterrupted: a long one would
	// hold closed sessions and Shutdown, and is no longer coalescing.
	check(o.CoalesceWindow <= maxCoalesceWindow, "CoalesceWindow %v above %v", o.CoalesceWindow, maxCoalesceWindow)
	check(o.TCPHeartbeat < 0 || (o.TCPHeartbeat >= heartbeatSweep && o.TCPHeartbeat <= maxTCPHeartbeat),
		"TCPHeartbeat %v outside [%v, %v]", o.TCPHeartbeat, heartbeatSweep, maxTCPHeartbeat)
	check(o.MaxHandshakes > 0, "MaxHandshakes %d must be positive", o.MaxHandshakes)
	check(o.MaxUnauthenticated > 0, "MaxUnauthenticated %d must be positive", o.MaxUnauthenticated)
	check(o.MaxUnauthenticatedPerAddr > 0 && o.MaxUnauthenticatedPerAddr <= o.MaxUnauthenticated,
		"MaxUnauthenticatedPerAddr %d outside [1, MaxUnauthenticated %d]", o.MaxUnauthenticatedPerAddr, o.MaxUnauthenticated)
	return o, errors.Join(errs...)
}
