package callsfu

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"
)

// TURNOptions configures a TURN server. The zero value of every field but
// RelayIP and PeerPort means its default.
type TURNOptions struct {
	// ListenAddr is where the server takes TURN over UDP and, unless
	// DisableTCP, over TCP on the same port number. Port 0 picks an
	// ephemeral port (tests). Default: ":3478".
	ListenAddr string
	// DisableTCP leaves TURN over UDP only. Default: false.
	DisableTCP bool
	// RelayIP is the address relayed candidates carry and the TURN URLs
	// name: the node's public one. Required.
	RelayIP string
	// RelayBindHost is the host the relay sockets bind. Default:
	// ListenAddr's host (every interface when it is empty).
	RelayBindHost string
	// MinPort and MaxPort bound the relay sockets' ports (inclusive).
	// Default: 49152 and 65535.
	MinPort, MaxPort int
	// PeerPort is the SFU's media port: the only port the relay sends to.
	// Required.
	PeerPort int
	// PeerIPs are addresses of the SFU's candidates besides this host's own
	// interface addresses and RelayIP, which the relay always reaches (its
	// public addresses behind 1:1 NAT). The relay sends to nothing but
	// these IPs at PeerPort: it carries calls' media to the SFU and is no
	// open relay. Default: none.
	PeerIPs []string
	// Secret keys the credentials' HMAC. Default: 32 random bytes, new on
	// every start, so that credentials handed out before a restart stop
	// working with it.
	Secret []byte
	// CredentialTTL is how long a credential Credentials returns is valid
	// for new allocations and refreshes. Default: 1 h.
	CredentialTTL time.Duration
	// MaxAllocations caps the relay allocations of all users at once.
	// Default: 1024.
	MaxAllocations int
	// MaxUserAllocations caps one user's allocations at once (a device's
	// two PeerConnections, over UDP and TCP, and a few devices). Default: 8.
	MaxUserAllocations int
	// MaxConns caps the TURN-over-TCP connections at once: one more
	// takes the place of the oldest that has not authenticated a request
	// yet, or is closed as it is accepted when all have. Default: 1024.
	MaxConns int
	// IdleTimeout closes a TURN-over-TCP connection that sent nothing for
	// this long (ICE's consent checks cross it every few seconds while a
	// call runs). Default: 1 min.
	IdleTimeout time.Duration
	// Realm is the TURN realm. Default: "gonets".
	Realm string
	// Logger receives lifecycle and error logs. Default: slog.Default().
	Logger *slog.Logger
	// Metrics is the set the server registers its metrics in. Default: a
	// new set, returned by TURN.Metrics.
	Metrics *metrics.Set
	// Now is the clock of the credentials. Default: time.Now.
	Now func() time.Time
}

// withDefaults returns a copy of o with defaults filled in, or an error for
// a value that cannot work.
func (o TURNOptions) withDefaults() (TURNOptions, error) {
	if o.ListenAddr == "" {
		o.ListenAddr = ":3478"
	}
	host, _, err := net.SplitHostPort(o.ListenAddr)
	if err != nil {
		return o, fmt.Errorf("callsfu: TURN listen address %q: %w", o.ListenAddr, err)
	}
	if ip := net.ParseIP(o.RelayIP); ip == nil || ip.IsUnspecified() {
		return o, fmt.Errorf("callsfu: TURN relay address %q is not a unicast IP", o.RelayIP)
	}
	if o.RelayBindHost == "" {
		o.RelayBindHost = host
	}
	if o.RelayBindHost == "" {
		o.RelayBindHost = "0.0.0.0"
	}
	if o.MinPort == 0 && o.MaxPort == 0 {
		o.MinPort, o.MaxPort = 49152, 65535
	}
	if o.MinPort < 1 || o.MaxPort > 65535 || o.MinPort > o.MaxPort {
		return o, fmt.Errorf("callsfu: TURN relay ports %d-%d are not a range within 1-65535", o.MinPort, o.MaxPort)
	}
	if o.PeerPort < 1 || o.PeerPort > 65535 {
		return o, fmt.Errorf("callsfu: TURN peer port %d is not a port", o.PeerPort)
	}
	for _, ip := range o.PeerIPs {
		if net.ParseIP(ip) == nil {
			return o, fmt.Errorf("callsfu: TURN peer address %q is not an IP", ip)
		}
	}
	if len(o.Secret) == 0 {
		o.Secret = make([]byte, 32)
		rand.Read(o.Secret)
	}
	if o.CredentialTTL <= 0 {
		o.CredentialTTL = time.Hour
	}
	if o.MaxAllocations <= 0 {
		o.MaxAllocations = 1024
	}
	if o.MaxUserAllocations <= 0 {
		o.MaxUserAllocations = 8
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 1024
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Minute
	}
	if o.Realm == "" {
		o.Realm = "gonets"
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
	return o, nil
}

// TURN is the node's TURN server (RFC 8656, pion/turn): it relays calls'
// media between the SFU and clients whose networks let nothing else
// through (a UDP-hostile NAT, a proxy-only office), over UDP or TCP to
// the server and UDP from the relay to the SFU.
//
// Its credentials are those of the TURN REST API (draft-uberti-behave-
// turn-rest): the username is "<expiry, Unix seconds>:<user id>" and the
// password base64(HMAC-SHA1(secret, username)). Credentials makes them for
// a user the node has authenticated; the server checks the expiry and the
// HMAC of each request and keeps no credential store. The expiry bounds
// new allocations: an allocation's own requests (refreshes, permissions)
// go on with its credential past it, so that a long call keeps its relay.
//
// The relay sends only to the SFU (PeerPort on the host's addresses and
// PeerIPs) and allocates UDP relays only (no RFC 6062 TCP relays); a
// user has at most MaxUserAllocations at once and all users
// MaxAllocations, counted on the relay sockets themselves.
//
// Goroutines: pion's read loop of the UDP socket, its accept loop and one
// per TCP connection, and one per allocation reading its relay socket.
// Close closes every socket and connection and waits for the loops.
type TURN struct {
	opts   TURNOptions
	log    *slog.Logger
	server *turn.Server
	udp    *net.UDPConn
	tcp    net.Listener // nil with DisableTCP
	urls   []string
	peers  map[netip.Addr]struct{} // the IPs the relay sends to, unmapped
	live   sync.WaitGroup          // read and accept loops, connections, relays

	m turnMetrics

	mu     sync.Mutex // guards the following
	closed bool
	total  int                     // allocations
	byUser map[string]int          // allocations by user id
	relays map[*turnRelay]struct{} // open relay sockets
	conns  map[*turnConn]struct{}  // open TCP connections
	seq    uint64                  // TCP connections accepted
	byAddr map[string]*turnConn    // the open TCP connections by remote address
}

// turnMetrics are the server's counters.
type turnMetrics struct {
	names            []string
	allocations      atomic.Int64
	allocationsTotal *metrics.Counter
	refused          *metrics.Counter
	authExpired      *metrics.Counter
	authMalformed    *metrics.Counter
	authForged       *metrics.Counter
}

// errTURNQuota refuses an allocation past MaxAllocations or
// MaxUserAllocations; pion answers it 508 (Insufficient Capacity).
var errTURNQuota = errors.New("callsfu: TURN allocation quota reached")

// errTURNPeer refuses to send to anything but the SFU.
var errTURNPeer = errors.New("callsfu: TURN relays to the SFU only")

// errTURNTCPRelay refuses RFC 6062 TCP relays.
var errTURNTCPRelay = errors.New("callsfu: TURN relays over UDP only")

// NewTURN binds the TURN port (UDP, and TCP on the same number) and
// starts the server.
func NewTURN(opts TURNOptions) (*TURN, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &TURN{
		opts:   opts,
		log:    opts.Logger.With("component", "turn"),
		peers:  make(map[netip.Addr]struct{}),
		byUser: make(map[string]int),
		relays: make(map[*turnRelay]struct{}),
		conns:  make(map[*turnConn]struct{}),
		byAddr: make(map[string]*turnConn),
	}
	if err := t.addPeers(); err != nil {
		return nil, err
	}
	udp, tcp, err := listen(opts.ListenAddr, !opts.DisableTCP)
	if err != nil {
		return nil, err // "callsfu: listen udp ADDR: …"
	}
	t.udp, t.tcp = udp, tcp
	port := strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port)
	hostPort := net.JoinHostPort(opts.RelayIP, port)
	t.urls = []string{"turn:" + hostPort + "?transport=udp"}
	if tcp != nil {
		t.urls = append(t.urls, "turn:"+hostPort+"?transport=tcp")
	}
	t.registerMetrics()

	relays := &turnRelays{t: t, inner: &turn.RelayAddressGeneratorPortRange{
		RelayAddress: net.ParseIP(opts.RelayIP),
		Address:      opts.RelayBindHost,
		MinPort:      uint16(opts.MinPort),
		MaxPort:      uint16(opts.MaxPort),
		MaxRetries:   32,
	}}
	cfg := turn.ServerConfig{
		Realm:         opts.Realm,
		LoggerFactory: pionLogs{t.log},
		AuthHandler:   t.authenticate,
		QuotaHandler:  t.underQuota,
		EventHandler: turn.EventHandler{
			OnAuth: func(src, dst net.Addr, _, _, _, _ string, ok bool) {
				if !ok {
					t.m.authForged.Inc()
					return
				}
				if _, tcp := dst.(*net.TCPAddr); tcp {
					t.authenticated(src)
				}
			},
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            &turnSocket{PacketConn: udp, done: t.live.Done},
			RelayAddressGenerator: relays,
			PermissionHandler:     t.permit,
		}},
	}
	t.live.Add(1) // the UDP read loop
	if tcp != nil {
		cfg.ListenerConfigs = []turn.ListenerConfig{{
			Listener:              &turnListener{Listener: tcp, t: t},
			RelayAddressGenerator: relays,
			PermissionHandler:     t.permit,
		}}
		t.live.Add(1) // the accept loop
	}
	if t.server, err = turn.NewServer(cfg); err != nil {
		udp.Close()
		if tcp != nil {
			tcp.Close()
		}
		t.unregisterMetrics()
		return nil, fmt.Errorf("callsfu: TURN: %w", err)
	}
	t.log.Info("callsfu: TURN listening", "udp", udp.LocalAddr().String(), "tcp", tcp != nil,
		"relay", opts.RelayIP, "ports", fmt.Sprintf("%d-%d", opts.MinPort, opts.MaxPort))
	return t, nil
}

// addPeers fills t.peers: the host's interface addresses, RelayIP and
// PeerIPs.
func (t *TURN) addPeers() error {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("callsfu: TURN: interface addresses: %w", err)
	}
	add := func(ip net.IP) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			t.peers[a.Unmap()] = struct{}{}
		}
	}
	for _, a := range ifaddrs {
		if n, ok := a.(*net.IPNet); ok {
			add(n.IP)
		}
	}
	add(net.ParseIP(t.opts.RelayIP))
	for _, ip := range t.opts.PeerIPs {
		add(net.ParseIP(ip))
	}
	return nil
}

// registerMetrics creates the server's metrics in Options.Metrics.
func (t *TURN) registerMetrics() {
	set := t.opts.Metrics
	counter := func(name string) *metrics.Counter {
		t.m.names = append(t.m.names, name)
		return set.NewCounter(name)
	}
	t.m.names = append(t.m.names, "gonets_calls_turn_allocations")
	set.NewGauge("gonets_calls_turn_allocations", func() float64 { return float64(t.m.allocations.Load()) })
	t.m.allocationsTotal = counter("gonets_calls_turn_allocations_total")
	t.m.refused = counter("gonets_calls_turn_allocations_refused_total")
	t.m.authExpired = counter(`gonets_calls_turn_auth_failures_total{reason="expired"}`)
	t.m.authMalformed = counter(`gonets_calls_turn_auth_failures_total{reason="malformed"}`)
	t.m.authForged = counter(`gonets_calls_turn_auth_failures_total{reason="bad_credential"}`)
}

// unregisterMetrics takes the server's metrics out of Options.Metrics
// again, so that a later NewTURN may register them.
func (t *TURN) unregisterMetrics() {
	for _, name := range t.m.names {
		t.opts.Metrics.UnregisterMetric(name)
	}
}

// Metrics returns the set the server's metrics live in (Options.Metrics).
func (t *TURN) Metrics() *metrics.Set { return t.opts.Metrics }

// Addr returns the address of the server's UDP socket.
func (t *TURN) Addr() *net.UDPAddr { return t.udp.LocalAddr().(*net.UDPAddr) }

// Credentials returns the server as an ICE server for user, with a
// credential valid for CredentialTTL from now.
func (t *TURN) Credentials(user uint64) webrtc.ICEServer {
	exp := t.opts.Now().Add(t.opts.CredentialTTL).Unix()
	name := strconv.FormatInt(exp, 10) + ":" + strconv.FormatUint(user, 10)
	return webrtc.ICEServer{URLs: append([]string(nil), t.urls...), Username: name, Credential: t.password(name)}
}

// password returns base64(HMAC-SHA1(secret, username)).
func (t *TURN) password(username string) string {
	mac := hmac.New(sha1.New, t.opts.Secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// authenticate is pion's AuthHandler: it refuses a username that is not
// "<expiry>:<user id>", or whose expiry has passed for a new allocation
// (an allocation's own later requests may carry it past), and returns the
// key of the password the username's HMAC gives, which pion checks the
// request's MESSAGE-INTEGRITY against (a forged password fails there,
// counted by the OnAuth event).
func (t *TURN) authenticate(ra *turn.RequestAttributes) (string, []byte, bool) {
	expiry, user, ok := strings.Cut(ra.Username, ":")
	exp, err := strconv.ParseInt(expiry, 10, 64)
	if !ok || err != nil {
		t.m.authMalformed.Inc()
		return "", nil, false
	}
	if _, err := strconv.ParseUint(user, 10, 64); err != nil {
		t.m.authMalformed.Inc()
		return "", nil, false
	}
	if exp < t.opts.Now().Unix() && ra.Method == stun.MethodAllocate {
		// Only a new allocation needs a credential still valid: the
		// requests of one made with it (refreshes, permissions, channels,
		// from its own 5-tuple only) go on past it, so that a call longer
		// than CredentialTTL keeps its relay.
		t.m.authExpired.Inc()
		return "", nil, false
	}
	return user, turn.GenerateAuthKey(ra.Username, ra.Realm, t.password(ra.Username)), true
}

// underQuota is pion's QuotaHandler: an allocation past a quota is
// answered 486 (Allocation Quota Reached). turnRelays.AllocatePacketConn
// enforces the same quotas exactly, as two requests may pass here at once.
func (t *TURN) underQuota(user, _ string, _ net.Addr) bool {
	t.mu.Lock()
	ok := t.total < t.opts.MaxAllocations && t.byUser[user] < t.opts.MaxUserAllocations
	t.mu.Unlock()
	if !ok {
		t.m.refused.Inc()
	}
	return ok
}

// permit is pion's PermissionHandler: permissions and channels go to the
// SFU's addresses only.
func (t *TURN) permit(_ net.Addr, peer net.IP) bool {
	a, ok := netip.AddrFromSlice(peer)
	if !ok {
		return false
	}
	_, ok = t.peers[a.Unmap()]
	return ok
}

// isPeer reports whether addr is the SFU's media port on one of its
// addresses.
func (t *TURN) isPeer(addr net.Addr) bool {
	u, ok := addr.(*net.UDPAddr)
	return ok && u.Port == t.opts.PeerPort && t.permit(nil, u.IP)
}

// reserve counts a new allocation of user, or refuses it past a quota or
// once the server closes.
func (t *TURN) reserve(user string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return net.ErrClosed
	case t.total >= t.opts.MaxAllocations || t.byUser[user] >= t.opts.MaxUserAllocations:
		t.m.refused.Inc()
		return errTURNQuota
	}
	t.total++
	t.byUser[user]++
	t.live.Add(1)
	return nil
}

// release uncounts an allocation of user that reserve counted.
func (t *TURN) release(user string) {
	t.mu.Lock()
	t.total--
	if t.byUser[user]--; t.byUser[user] <= 0 {
		delete(t.byUser, user)
	}
	t.mu.Unlock()
	t.live.Done()
}

// Close stops the server: it closes the TURN sockets, every TCP
// connection and every relay socket (ending their allocations), and
// waits for the read and accept loops. It is safe to call more than once.
func (t *TURN) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	var closers []interface{ Close() error }
	for c := range t.conns {
		closers = append(closers, c)
	}
	for r := range t.relays {
		closers = append(closers, r)
	}
	t.mu.Unlock()
	err := t.server.Close()
	for _, c := range closers {
		c.Close()
	}
	t.live.Wait()
	return err
}

// turnRelays allocates the relay sockets: pion's port-range generator,
// counted against the quotas, sending to the SFU only.
type turnRelays struct {
	t     *TURN
	inner *turn.RelayAddressGeneratorPortRange
}

// Validate implements turn.RelayAddressGenerator.
func (r *turnRelays) Validate() error { return r.inner.Validate() }

// AllocatePacketConn implements turn.RelayAddressGenerator.
func (r *turnRelays) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if err := r.t.reserve(c.UserID); err != nil {
		return nil, nil, err
	}
	conn, addr, err := r.inner.AllocatePacketConn(c)
	if err != nil {
		r.t.release(c.UserID)
		return nil, nil, err
	}
	relay := &turnRelay{PacketConn: conn, t: r.t, user: c.UserID}
	r.t.mu.Lock()
	closed := r.t.closed
	if !closed {
		r.t.relays[relay] = struct{}{}
	}
	r.t.mu.Unlock()
	if closed { // Close took its list of relays before this one
		relay.Close()
		return nil, nil, net.ErrClosed
	}
	r.t.m.allocations.Add(1)
	r.t.m.allocationsTotal.Inc()
	return relay, addr, nil
}

// AllocateListener implements turn.RelayAddressGenerator: no TCP relays.
func (r *turnRelays) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errTURNTCPRelay
}

// AllocateConn implements turn.RelayAddressGenerator: no TCP relays.
func (r *turnRelays) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, errTURNTCPRelay
}

// turnRelay is one allocation's relay socket.
type turnRelay struct {
	net.PacketConn
	t    *TURN
	user string
	once sync.Once
}

// WriteTo sends to the SFU only.
func (r *turnRelay) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !r.t.isPeer(addr) {
		return 0, fmt.Errorf("%w: not %v", errTURNPeer, addr)
	}
	return r.PacketConn.WriteTo(b, addr)
}

// ReadFrom reads what the SFU sends, dropping datagrams from anything
// else (pion's permissions check the IP only).
func (r *turnRelay) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := r.PacketConn.ReadFrom(b)
		if err != nil || r.t.isPeer(addr) {
			return n, addr, err
		}
	}
}

// Close closes the socket and uncounts the allocation, once.
func (r *turnRelay) Close() error {
	err := net.ErrClosed
	r.once.Do(func() {
		err = r.PacketConn.Close()
		r.t.mu.Lock()
		_, counted := r.t.relays[r]
		delete(r.t.relays, r)
		r.t.mu.Unlock()
		if counted {
			r.t.m.allocations.Add(-1)
		}
		r.t.release(r.user)
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// turnSocket is the UDP TURN socket: it tells the server when pion's read
// loop ends (the loop returns on its first read error).
type turnSocket struct {
	net.PacketConn
	done func()
	once sync.Once
}

// ReadFrom reads one datagram.
func (s *turnSocket) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := s.PacketConn.ReadFrom(b)
	if err != nil {
		s.once.Do(s.done)
	}
	return n, addr, err
}

// turnListener is the TCP TURN listener: it caps the connections, closes
// them with the server, and keeps accepting past an error that is not its
// closing (pion's accept loop would stop for good on one).
type turnListener struct {
	net.Listener
	t    *TURN
	once sync.Once
}

// acceptPause is the pause after a failed Accept (out of file
// descriptors, say) before the next.
const acceptPause = 50 * time.Millisecond

// Accept returns the next connection the server takes.
func (l *turnListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.once.Do(l.t.live.Done)
				return nil, err
			}
			l.t.log.Warn("callsfu: TURN accept", "err", err)
			time.Sleep(acceptPause)
			continue
		}
		if tc := l.t.track(c); tc != nil {
			return tc, nil
		}
	}
}

// track counts an accepted connection, or closes it once the server
// closes. Past MaxConns the oldest connection that has authenticated no
// request yet is closed in its place (thousands of honest clients may
// share an address, and one that authenticates at once must get in past
// silent ones); when every one has, the new one is closed.
func (t *TURN) track(c net.Conn) *turnConn {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.Close()
		return nil
	}
	var evict *turnConn
	if len(t.conns) >= t.opts.MaxConns {
		for o := range t.conns {
			if !o.authed && (evict == nil || o.seq < evict.seq) {
				evict = o
			}
		}
		if evict == nil {
			t.mu.Unlock()
			c.Close()
			return nil
		}
		t.untrackLocked(evict) // its place is the new one's from now
	}
	t.seq++
	tc := &turnConn{Conn: c, t: t, addr: c.RemoteAddr().String(), seq: t.seq}
	t.conns[tc] = struct{}{}
	t.byAddr[tc.addr] = tc
	t.live.Add(1)
	t.mu.Unlock()
	if evict != nil {
		evict.Close()
	}
	return tc
}

// untrackLocked uncounts c.
func (t *TURN) untrackLocked(c *turnConn) {
	delete(t.conns, c)
	if t.byAddr[c.addr] == c {
		delete(t.byAddr, c.addr)
	}
}

// authenticated marks the TCP connection from src as one that
// authenticated a request: it is never evicted for a newcomer.
func (t *TURN) authenticated(src net.Addr) {
	t.mu.Lock()
	if c := t.byAddr[src.String()]; c != nil {
		c.authed = true
	}
	t.mu.Unlock()
}

// turnWriteTimeout bounds a write to a TURN-over-TCP connection: a client
// that takes nothing for this long is closed, never waited on.
const turnWriteTimeout = 5 * time.Second

// turnConn is one TURN-over-TCP connection.
type turnConn struct {
	net.Conn
	t    *TURN
	addr string // RemoteAddr's
	seq  uint64 // the order of its accept
	once sync.Once

	authed bool // guarded by t.mu: it authenticated a request
}

// Read reads what the client sends, closing the connection after
// IdleTimeout of silence.
func (c *turnConn) Read(b []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.t.opts.IdleTimeout))
	return c.Conn.Read(b)
}

// Write writes to the client within turnWriteTimeout.
func (c *turnConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(turnWriteTimeout))
	return c.Conn.Write(b)
}

// Close closes the connection and uncounts it, once.
func (c *turnConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		err = c.Conn.Close()
		c.t.mu.Lock()
		c.t.untrackLocked(c)
		c.t.mu.Unlock()
		c.t.live.Done()
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
