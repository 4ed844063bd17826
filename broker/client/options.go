package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/broker/wire"
)

// ALPN is the TLS application protocol of Gonets version 1.
const ALPN = "gonets/1"

// ProtocolVersion is the protocol version the client speaks in Hello.
const ProtocolVersion = 1

// DefaultName is the client name sent in Hello unless Options.Name is set.
const DefaultName = "gonets-go/0.1"

// Options configure a Client. The zero value of every field means its
// default.
type Options struct {
	// TLS is the base TLS configuration. The client always sets ALPN
	// gonets/1 and TLS 1.3 on a copy. Default: verify the node against the
	// system roots.
	TLS *tls.Config
	// Fingerprint pins the node's certificate: the SHA-256 of its DER, in
	// hex (colons allowed), as printed by the node. Any certificate with
	// that fingerprint is accepted, whatever its issuer or names. Default:
	// none.
	Fingerprint string
	// Insecure skips certificate verification altogether, for tests and
	// local experiments. Default: false.
	Insecure bool

	// Via chooses the transport. TransportAuto races QUIC and TLS over
	// TCP (happy eyeballs): the transport that worked last for this
	// client (SyncState.Transport across restarts), QUIC when none has,
	// gets fallbackDelay (250 ms) to itself before the other starts, and
	// the first to connect wins. TransportQUIC and TransportTCP use only
	// that one. Default: TransportAuto.
	Via Transport
	// TCPAddr is the node's TLS-over-TCP address, host:port. Default: the
	// address passed to Dial, as the node uses the same port number for
	// both transports unless configured otherwise.
	TCPAddr string

	// Name names the client software in Hello, for the node's logs.
	// Default: DefaultName.
	Name string
	// DialTimeout bounds one connection attempt: the handshakes (of both
	// transports when they race) and Hello up to Welcome. Default: 10 s.
	DialTimeout time.Duration
	// KeepAlive is the longest keep-alive period: each client takes a
	// period up to a fifth shorter, at random, so that clients started
	// together do not ping the node together. Over QUIC it is QUIC's
	// keep-alive. Over TCP the node's heartbeats (every 25 s) keep the
	// connection open; the client pings the node only after hearing
	// nothing for halfway from this period to IdleTimeout (~40 s), and
	// the kernel's keep-alive probes start after a period of silence.
	// Default: 25 s (within the 30 s that mobile networks' NATs keep a
	// silent UDP mapping).
	KeepAlive time.Duration
	// IdleTimeout closes a connection that heard nothing from the node for
	// this long (the client then reconnects); over TCP it also bounds a
	// write that makes no progress. Default: 60 s, the node's.
	IdleTimeout time.Duration
	// Transport, when set, carries the client's QUIC connections over a
	// shared UDP socket (QUIC multiplexes connections on one), so that a
	// process holding many sessions does not need a socket, and a file
	// descriptor, for each. The caller closes it after the clients.
	// Default: a socket per connection.
	Transport *quic.Transport
	// DialTCP, when set, opens the TCP connections that TLS runs over
	// (through a proxy, from a chosen source address, or to count their
	// segments); it must honour ctx. The client runs the TLS handshake on
	// what it returns and closes it with the session. Default: a net.Dialer with the kernel's
	// keep-alives, probing after KeepAlive.
	DialTCP func(ctx context.Context, addr string) (net.Conn, error)
	// MaxReceiveBytes caps a frame the client accepts from the node; a
	// larger one ends the connection. Default: 16 MiB.
	MaxReceiveBytes int
	// PushBuffer caps the pushes (their encoded bytes; and 1,024 frames)
	// a TCP connection holds while the delivery goroutine is busy. Over
	// TCP pushes come between responses, so the client reads on rather
	// than leave responses waiting; past this bound it drops pushes
	// (Stats.DroppedPushes) and catches up from history, as it does when
	// the node stops pushing and sends Resync. Default: 4 MiB, the node's
	// own bound on a session's queued pushes.
	PushBuffer int

	// NoReconnect disables reconnecting: a lost connection stops the
	// client (Events closes, calls fail, Err says why). Default: false,
	// reconnect.
	NoReconnect bool
	// ReconnectMin is the first backoff ceiling between connection
	// attempts; it doubles on each failure up to ReconnectMax, and each
	// wait is drawn uniformly from [0, ceiling] (full jitter). Default:
	// 100 ms.
	ReconnectMin time.Duration
	// ReconnectMax caps the backoff ceiling. Default: 10 s.
	ReconnectMax time.Duration

	// EventBuffer is the capacity of the Events channel. While it is full
	// the client stops reading pushes, QUIC flow control holds the node
	// back, and the node eventually tells the client to resync (over TCP
	// the client holds up to PushBuffer of pushes and then resyncs by
	// itself), so an app that does not read costs memory bounded by this
	// buffer and the transport's. A negative value makes Events
	// unbuffered. Default: 64.
	EventBuffer int
	// OnEvent, if set, is called with every event in order, from the
	// client's one delivery goroutine, instead of sending it on Events
	// (which is then nil). It may call the Client's request methods (they
	// do not wait for events) but must not call Close. While it runs no
	// further push is read. Default: none.
	OnEvent func(Event)
	// State is where a restarted app resumes: the SyncState it saved from
	// an earlier Client. Messages up to State.Held are not delivered
	// again. Default: empty, so the first sync delivers every retained
	// message of every chat.
	State SyncState
	// FromNow makes Dial mark every chat the user is in as held up to its
	// last message, without delivering anything, so that Events carries
	// only what is appended after Dial returns (chats the user joins later
	// are still delivered from their first retained message). It takes
	// precedence over State. Default: false.
	FromNow bool
	// SendOnly turns delivery off, for tools that only make requests: the
	// client neither syncs nor reads history, drops pushes, and Events is
	// nil. Default: false.
	SendOnly bool
	// HistoryPage is how many messages one history request fetches while
	// the client catches up a chat. Default: 256.
	HistoryPage int
	// GapHold is how long a message that arrives past a gap in its chat
	// waits for the missing ones before they are fetched from history.
	// Pushes and the Acks of the client's own sends come on different
	// streams and overtake each other, so most gaps fill within a
	// millisecond; the wait spares those a history request. Other chats
	// are not held up. Default: 50 ms; negative fetches at once.
	GapHold time.Duration

	// Refresh is the device's refresh token (from VerifyLogin or
	// RefreshTokens), for Dial only: with it the Client renews its
	// access token by itself, at about three quarters of its life (read
	// from the token's exp claim) and whenever a connection is refused
	// TOKEN_EXPIRED, sends the new one with Auth and reconnects with it;
	// the token passed to Dial may then be empty (Dial refreshes first).
	// Each refresh rotates the refresh token: the Client uses each once,
	// one refresh at a time, and never sends one again whose answer was
	// lost (it stops with ErrRefreshLost instead; see Client). A dead
	// refresh token (REFRESH_INVALID, REFRESH_REUSED) or an ended device
	// (DEVICE_ENDED) stops the Client. Default: none, the app renews
	// the token itself with Auth.
	Refresh string
	// OnTokens is called with each new pair of tokens the Client got,
	// before it uses the new refresh token, so that the app persists the
	// rotated pair: the refresh token it held is spent, and sent again
	// after a restart it would end the device. Required with Refresh (an
	// app that keeps nothing across restarts says so with a function that
	// does nothing). Calls come one at a time, from Dial and then from the
	// Client's refresh goroutine; it must not block for long, nor call
	// Close.
	OnTokens func(Tokens)

	// Logger receives connection lifecycle and error logs. Default:
	// slog.Default().
	Logger *slog.Logger

	// fallbackDelay replaces fallbackDelay in tests (WithFallbackDelay).
	fallbackDelay time.Duration
}

// ensureDefaults fills defaults on a copy and validates.
func (o Options) ensureDefaults() (Options, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 25 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.MaxReceiveBytes == 0 {
		o.MaxReceiveBytes = 16 << 20
	}
	if o.PushBuffer == 0 {
		o.PushBuffer = 4 << 20
	}
	if o.ReconnectMin == 0 {
		o.ReconnectMin = 100 * time.Millisecond
	}
	if o.ReconnectMax == 0 {
		o.ReconnectMax = 10 * time.Second
	}
	if o.EventBuffer == 0 {
		o.EventBuffer = 64
	}
	if o.EventBuffer < 0 {
		o.EventBuffer = 0
	}
	if o.HistoryPage == 0 {
		o.HistoryPage = 256
	}
	if o.GapHold == 0 {
		o.GapHold = 50 * time.Millisecond
	}
	if o.GapHold < 0 {
		o.GapHold = 0
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.fallbackDelay == 0 {
		o.fallbackDelay = fallbackDelay
	}
	o.State = o.State.clone()
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("client: "+format, args...))
		}
	}
	check(o.Via <= TransportTCP, "unknown transport %v", o.Via)
	if o.TCPAddr != "" {
		_, _, err := net.SplitHostPort(o.TCPAddr)
		check(err == nil, "TCPAddr %q is not host:port", o.TCPAddr)
	}
	check(o.Fingerprint == "" || !o.Insecure, "Fingerprint and Insecure are exclusive")
	check(o.DialTimeout > 0 && o.KeepAlive > 0 && o.IdleTimeout > 0, "timeouts must be positive")
	check(o.KeepAlive < o.IdleTimeout, "KeepAlive %v must be below IdleTimeout %v", o.KeepAlive, o.IdleTimeout)
	check(o.MaxReceiveBytes >= 1<<10, "MaxReceiveBytes %d below 1 KiB", o.MaxReceiveBytes)
	check(o.PushBuffer > 0, "PushBuffer %d is not positive", o.PushBuffer)
	check(o.ReconnectMin > 0 && o.ReconnectMax >= o.ReconnectMin, "backoff [%v, %v] is not a positive range", o.ReconnectMin, o.ReconnectMax)
	check(o.HistoryPage > 0 && o.HistoryPage <= 1<<16, "HistoryPage %d outside [1, 65536]", o.HistoryPage)
	check(o.OnTokens == nil || o.Refresh != "", "OnTokens without Refresh")
	check(o.Refresh == "" || o.OnTokens != nil, "Refresh without OnTokens: the rotated refresh token would be lost")
	return o, errors.Join(errs...)
}

// tlsConfig returns the TLS configuration the options ask for.
func (o *Options) tlsConfig() (*tls.Config, error) {
	var cfg *tls.Config
	switch {
	case o.Fingerprint != "":
		c, err := nodecert.PinnedConfig(o.Fingerprint, o.TLS)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		cfg = c
	case o.TLS != nil:
		cfg = o.TLS.Clone()
	default:
		cfg = &tls.Config{}
	}
	if o.Insecure {
		cfg.InsecureSkipVerify = true
	}
	cfg.NextProtos = []string{ALPN}
	cfg.MinVersion = tls.VersionTLS13
	return cfg, nil
}

// keepAlivePeriod draws a client's keep-alive period, up to a fifth
// below KeepAlive.
func (o *Options) keepAlivePeriod() time.Duration {
	return o.KeepAlive - time.Duration(rand.Int64N(int64(o.KeepAlive/5)+1))
}

// quicConfig returns the QUIC configuration of the client's connections,
// with its keep-alive period.
func (o *Options) quicConfig(keepAlive time.Duration) *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout: o.DialTimeout,
		MaxIdleTimeout:       o.IdleTimeout,
		KeepAlivePeriod:      keepAlive,
	}
}

// maxSendBytes is the frame limit announced by w, or the protocol default.
func maxSendBytes(w *wire.Welcome) int {
	if n := int(w.GetMaxFrameBytes()); n > 0 {
		return n
	}
	return wire.DefaultMaxFrameBytes
}
