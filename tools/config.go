package tools

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/callsfu"
	"github.com/gonets/gonets/storage"
)

// config is a node's configuration: the shape of the TOML file, with the
// flags of `gonets serve` applied on top. Every key is optional; a zero
// value in the storage and broker sections means the component's default.
// docs/operations.md documents each key and docs/gonets.example.toml lists
// them all.
type config struct {
	Node     nodeConfig     `toml:"node"`
	TLS      tlsConfig      `toml:"tls"`
	Auth     authConfig     `toml:"auth"`
	Storage  storageConfig  `toml:"storage"`
	Broker   brokerConfig   `toml:"broker"`
	Calls    callsConfig    `toml:"calls"`
	Identity identityConfig `toml:"identity"`
	State    stateConfig    `toml:"state"`
	Media    mediaConfig    `toml:"media"`
	Bots     botsConfig     `toml:"bots"`
}

// nodeConfig is the [node] section.
type nodeConfig struct {
	Name     string `toml:"name"`
	DataDir  string `toml:"data_dir"`
	QUICAddr string `toml:"quic_addr"`
	// TCPAddr is the TLS-over-TCP fallback's address; empty turns it off.
	TCPAddr  string `toml:"tcp_addr"`
	HTTPAddr string `toml:"http_addr"`
	// PublicAddr is the public HTTPS listener's address (WHIP and WHEP);
	// "off" turns it off.
	PublicAddr      string     `toml:"public_addr"`
	ShutdownTimeout duration   `toml:"shutdown_timeout"`
	LogLevel        slog.Level `toml:"log_level"`
	// Pprof serves net/http/pprof under /debug/pprof/ on the HTTP port.
	Pprof bool `toml:"pprof"`
	// QUICPathMTUDiscovery turns on QUIC Path-MTU probing (off: its probe
	// packets cost every connection, idle or not).
	QUICPathMTUDiscovery bool `toml:"quic_path_mtu_discovery"`
	// GOGC is the garbage collector's target percentage (0: Go's default,
	// 100, or the GOGC environment variable); MemoryLimit the soft memory
	// limit the collector works to (0: none, or GOMEMLIMIT).
	GOGC        int      `toml:"gogc"`
	MemoryLimit byteSize `toml:"memory_limit"`
	// TLSCurves are the TLS key-exchange groups both listeners accept, by
	// name (tlsCurveNames); empty: Go's default.
	TLSCurves []string `toml:"tls_curves"`
}

// tlsConfig is the [tls] section.
type tlsConfig struct {
	Cert  string   `toml:"cert"`
	Key   string   `toml:"key"`
	Hosts []string `toml:"hosts"`
}

// authConfig is the [auth] section.
type authConfig struct {
	PublicKeys []string `toml:"public_keys"`
	Leeway     duration `toml:"leeway"`
}

// storageConfig is the [storage] section; it maps onto storage.Options.
// Counts that storage holds as uint64 are int64 here: the TOML decoder
// wraps a negative integer into a uint64 silently, so validate rejects
// negatives instead.
type storageConfig struct {
	Shards          int             `toml:"shards"`
	MaxBodyBytes    byteSize        `toml:"max_body_bytes"`
	MaxBatchBytes   byteSize        `toml:"max_batch_bytes"`
	MaxQueuedBytes  byteSize        `toml:"max_queued_bytes"`
	SyncDelayMax    duration        `toml:"sync_delay_max"`
	DedupeWindow    duration        `toml:"dedupe_window"`
	MaxMembers      int64           `toml:"max_members"`
	PushMembers     int64           `toml:"push_members"`
	SweepInterval   duration        `toml:"sweep_interval"`
	SweepBatch      int             `toml:"sweep_batch"`
	CacheChats      int             `toml:"cache_chats"`
	MaxChatsPerUser int64           `toml:"max_chats_per_user"`
	CacheBytes      byteSize        `toml:"cache_bytes"`
	MemtableBytes   byteSize        `toml:"memtable_bytes"`
	Retention       retentionConfig `toml:"retention"`
}

// retentionConfig is the [storage.retention] section: one table per chat
// kind.
type retentionConfig struct {
	Direct  retention `toml:"direct"`
	Group   retention `toml:"group"`
	Channel retention `toml:"channel"`
}

// retention is one chat kind's default retention.
type retention struct {
	MaxAge   duration `toml:"max_age"`
	MaxCount int64    `toml:"max_count"`
}

// brokerConfig is the [broker] section; with node.name it maps onto
// broker.Options.
type brokerConfig struct {
	MaxFrameBytes      byteSize `toml:"max_frame_bytes"`
	SendRate           float64  `toml:"send_rate"`
	SendBurst          int      `toml:"send_burst"`
	MaxSessionsPerUser int      `toml:"max_sessions_per_user"`
	HelloTimeout       duration `toml:"hello_timeout"`
	WriteTimeout       duration `toml:"write_timeout"`
	// PushCoalesceWindow is broker.Options.CoalesceWindow; negative
	// disables it.
	PushCoalesceWindow duration `toml:"push_coalesce_window"`
	// TCPHeartbeat is broker.Options.TCPHeartbeat; negative disables it.
	TCPHeartbeat duration `toml:"tcp_heartbeat"`
	// MaxUnauthenticated and MaxUnauthenticatedPerAddr bound the
	// connections that have not yet authenticated.
	MaxUnauthenticated        int `toml:"max_unauthenticated"`
	MaxUnauthenticatedPerAddr int `toml:"max_unauthenticated_per_addr"`
	// MaxHandshakes bounds the TLS handshakes computed at once;
	// HandshakeWait is how long one beyond it may wait, HandshakeHold
	// how long one may hold its slot while another waits.
	MaxHandshakes int      `toml:"max_handshakes"`
	HandshakeWait duration `toml:"handshake_wait"`
	HandshakeHold duration `toml:"handshake_hold"`
	// CallRingTimeout is how long a call rings a user who neither accepts
	// nor declines it (broker.Options.CallRingTimeout).
	CallRingTimeout duration     `toml:"call_ring_timeout"`
	Outbox          outboxConfig `toml:"outbox"`
}

// outboxConfig is the [broker.outbox] section: each session's queue.
type outboxConfig struct {
	MaxFrames int      `toml:"max_frames"`
	MaxBytes  byteSize `toml:"max_bytes"`
}

// callsConfig is the [calls] section: the SFU that carries calls' media
// (callsfu.Options). A zero count or duration means the SFU's default.
type callsConfig struct {
	// Enabled starts the SFU; off, the node refuses calls (CALLS_OFF).
	Enabled bool `toml:"enabled"`
	// UDPPort is the one UDP port of all media, on node.quic_addr's host
	// (every interface by default);
	// ICE-TCP listens on the same number unless ICETCP is off. 0 picks a
	// free port (tests).
	UDPPort int  `toml:"udp_port"`
	ICETCP  bool `toml:"ice_tcp"`
	// PublicIPs are the node's public addresses behind 1:1 NAT, which
	// its candidates carry instead of the local ones.
	PublicIPs              []string `toml:"public_ips"`
	MaxPublishers          int      `toml:"max_publishers"`
	MaxTracks              int      `toml:"max_tracks"`
	SilenceTimeout         duration `toml:"silence_timeout"`
	ICEDisconnectedTimeout duration `toml:"ice_disconnected_timeout"`
	ICEFailedTimeout       duration `toml:"ice_failed_timeout"`
	// TURN starts the node's TURN server (callsfu.TURN) on TURNPort, UDP
	// and TCP, on node.quic_addr's host; its relays carry PublicIPs[0], or
	// that host. The rest are callsfu.TURNOptions.
	TURN                   bool     `toml:"turn"`
	TURNPort               int      `toml:"turn_port"`
	TURNRelayMinPort       int      `toml:"turn_relay_min_port"`
	TURNRelayMaxPort       int      `toml:"turn_relay_max_port"`
	TURNSecret             string   `toml:"turn_secret"`
	TURNCredentialTTL      duration `toml:"turn_credential_ttl"`
	TURNMaxAllocations     int      `toml:"turn_max_allocations"`
	TURNMaxUserAllocations int      `toml:"turn_max_user_allocations"`
}

// defaultMediaPort is calls.udp_port's default.
const defaultMediaPort = 7444

// defaultTURNPort is calls.turn_port's default, TURN's registered port.
const defaultTURNPort = 3478

// Defaults of the [node] section. The other sections default in their
// components.
const (
	defaultQUICAddr        = ":7443"
	defaultHTTPAddr        = "127.0.0.1:7080"
	defaultPublicAddr      = ":7445"
	defaultShutdownTimeout = 10 * time.Second
)

// defaultConfig returns the configuration of a node started with no file
// and no flags.
func defaultConfig() config {
	return config{
		Node: nodeConfig{
			DataDir:         defaultDataDir,
			QUICAddr:        defaultQUICAddr,
			HTTPAddr:        defaultHTTPAddr,
			PublicAddr:      defaultPublicAddr,
			ShutdownTimeout: duration(defaultShutdownTimeout),
			LogLevel:        slog.LevelInfo,
		},
		Calls:    callsConfig{Enabled: true, UDPPort: defaultMediaPort, ICETCP: true, TURNPort: defaultTURNPort},
		Identity: defaultIdentity(),
		State:    defaultState(),
		Media:    defaultMedia(),
		Bots:     defaultBots(),
	}
}

// loadConfig returns the defaults overlaid with the TOML file at path.
// Relative paths in the file are resolved against the file's directory,
// so that a file means the same wherever the node is started from. A key
// the file does not know is an error that names it.
func loadConfig(path string) (config, error) {
	c := defaultConfig()
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = strconv.Quote(k.String())
		}
		noun := "key"
		if len(keys) > 1 {
			noun = "keys"
		}
		return c, fmt.Errorf("config %s: unknown %s %s", path, noun, strings.Join(keys, ", "))
	}
	base := filepath.Dir(path)
	resolve := func(p *string, key ...string) {
		if md.IsDefined(key...) && *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	resolve(&c.Node.DataDir, "node", "data_dir")
	resolve(&c.TLS.Cert, "tls", "cert")
	resolve(&c.TLS.Key, "tls", "key")
	for i := range c.Auth.PublicKeys {
		resolve(&c.Auth.PublicKeys[i], "auth", "public_keys")
	}
	resolve(&c.Identity.Registry, "identity", "registry")
	resolve(&c.Identity.SMSOutbox, "identity", "sms_outbox")
	resolve(&c.Identity.KeyFile, "identity", "key_file")
	resolve(&c.State.ESIA.DevKeyDir, "state", "esia", "dev_key_dir")
	resolve(&c.State.Signing.Roots, "state", "signing", "roots")
	return c, nil
}

// validate checks what the components do not: the [node], [tls] and
// [auth] sections, and values no component would reject clearly. The
// storage and broker sections are validated by their components' New.
func (c *config) validate() error {
	switch {
	case c.Node.DataDir == "":
		return errors.New("node.data_dir is empty")
	case c.Node.QUICAddr == "":
		return errors.New("node.quic_addr is empty")
	case c.Node.HTTPAddr == "":
		return errors.New("node.http_addr is empty")
	case c.Node.PublicAddr == "":
		return errors.New(`node.public_addr is empty; "off" turns the public listener off`)
	case c.Node.GOGC < 0:
		return fmt.Errorf("node.gogc %d is negative; the collector cannot be turned off here", c.Node.GOGC)
	case c.Node.MemoryLimit < 0:
		return fmt.Errorf("node.memory_limit %d is negative", c.Node.MemoryLimit)
	case c.Node.ShutdownTimeout <= 0:
		return fmt.Errorf("node.shutdown_timeout %v must be positive", time.Duration(c.Node.ShutdownTimeout))
	case (c.TLS.Cert == "") != (c.TLS.Key == ""):
		return errors.New("tls.cert and tls.key must be set together")
	case c.Auth.Leeway < 0:
		return fmt.Errorf("auth.leeway %v is negative", time.Duration(c.Auth.Leeway))
	}
	if _, err := c.tlsCurves(); err != nil {
		return err
	}
	if c.Broker.CallRingTimeout < 0 {
		return fmt.Errorf("broker.call_ring_timeout %v is negative", time.Duration(c.Broker.CallRingTimeout))
	}
	if err := c.validateCalls(); err != nil {
		return err
	}
	if err := c.validateIdentity(); err != nil {
		return err
	}
	if err := c.validateState(); err != nil {
		return err
	}
	for _, a := range c.listenAddrs() {
		if err := checkHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q: %w", a.key, a.addr, err)
		}
	}
	if err := c.validateBots(); err != nil {
		return err
	}
	if err := c.validatePublic(); err != nil {
		return err
	}
	for _, p := range c.Auth.PublicKeys {
		if p == "" {
			return errors.New("auth.public_keys holds an empty path")
		}
	}
	s := &c.Storage
	for _, d := range []struct {
		key string
		v   duration
	}{
		{"storage.dedupe_window", s.DedupeWindow},
		{"storage.retention.direct.max_age", s.Retention.Direct.MaxAge},
		{"storage.retention.group.max_age", s.Retention.Group.MaxAge},
		{"storage.retention.channel.max_age", s.Retention.Channel.MaxAge},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s %v is negative", d.key, time.Duration(d.v))
		}
	}
	for _, n := range []struct {
		key string
		v   int64
	}{
		{"storage.shards", int64(s.Shards)},
		{"storage.max_members", s.MaxMembers},
		{"storage.push_members", s.PushMembers},
		{"storage.sweep_batch", int64(s.SweepBatch)},
		{"storage.cache_chats", int64(s.CacheChats)},
		{"storage.max_chats_per_user", s.MaxChatsPerUser},
		{"storage.retention.direct.max_count", s.Retention.Direct.MaxCount},
		{"storage.retention.group.max_count", s.Retention.Group.MaxCount},
		{"storage.retention.channel.max_count", s.Retention.Channel.MaxCount},
	} {
		if n.v < 0 {
			return fmt.Errorf("%s %d is negative", n.key, n.v)
		}
	}
	return nil
}

// validateCalls checks the [calls] section, and that the media port is no
// other listener's: the SFU's own checks would only say "address in use".
func (c *config) validateCalls() error {
	k := &c.Calls
	if k.UDPPort < 0 || k.UDPPort > 65535 {
		return fmt.Errorf("calls.udp_port %d is not a port number from 0 to 65535", k.UDPPort)
	}
	for _, ip := range k.PublicIPs {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("calls.public_ips: %q is not an IP address", ip)
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"calls.max_publishers", k.MaxPublishers}, {"calls.max_tracks", k.MaxTracks}} {
		if n.v < 0 {
			return fmt.Errorf("%s %d is negative", n.key, n.v)
		}
	}
	for _, d := range []struct {
		key string
		v   duration
	}{
		{"calls.silence_timeout", k.SilenceTimeout},
		{"calls.ice_disconnected_timeout", k.ICEDisconnectedTimeout},
		{"calls.ice_failed_timeout", k.ICEFailedTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s %v is negative", d.key, time.Duration(d.v))
		}
	}
	if err := c.validateTURN(); err != nil {
		return err
	}
	if !k.Enabled || k.UDPPort == 0 {
		return nil
	}
	for _, a := range c.listenAddrs() {
		if strings.HasPrefix(a.key, "calls.") || a.network == "tcp" && !k.ICETCP {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err == nil && port == strconv.Itoa(k.UDPPort) {
			return fmt.Errorf("calls.udp_port %d is %s's port too (%s); give the media a port of its own", k.UDPPort, a.key, strings.ToUpper(a.network))
		}
	}
	return nil
}

// listenAddr is one address the node listens on.
type listenAddr struct {
	key     string // its config key
	network string // "udp" or "tcp"
	addr    string
}

// listenAddrs returns the addresses the node listens on.
func (c *config) listenAddrs() []listenAddr {
	addrs := []listenAddr{
		{"node.quic_addr", "udp", c.Node.QUICAddr},
		{"node.http_addr", "tcp", c.Node.HTTPAddr},
	}
	if a := c.tcpAddr(); a != "" {
		addrs = append(addrs, listenAddr{"node.tcp_addr", "tcp", a})
	}
	if a := c.publicAddr(); a != "" {
		addrs = append(addrs, listenAddr{"node.public_addr", "tcp", a})
	}
	if c.Calls.Enabled {
		media := c.mediaAddr()
		addrs = append(addrs, listenAddr{"calls.udp_port", "udp", media})
		if c.Calls.ICETCP {
			addrs = append(addrs, listenAddr{"calls.udp_port", "tcp", media})
		}
		if c.Calls.TURN {
			turn := c.turnAddr()
			addrs = append(addrs, listenAddr{"calls.turn_port", "udp", turn}, listenAddr{"calls.turn_port", "tcp", turn})
		}
	}
	return addrs
}

// validateTURN checks the TURN keys of [calls], and that the TURN port
// is no other listener's.
func (c *config) validateTURN() error {
	k := &c.Calls
	switch {
	case k.TURNPort < 0 || k.TURNPort > 65535:
		return fmt.Errorf("calls.turn_port %d is not a port number from 0 to 65535", k.TURNPort)
	case k.TURNRelayMinPort < 0 || k.TURNRelayMaxPort < 0 || k.TURNRelayMinPort > 65535 || k.TURNRelayMaxPort > 65535:
		return fmt.Errorf("calls.turn_relay_min_port %d and turn_relay_max_port %d are not port numbers from 1 to 65535", k.TURNRelayMinPort, k.TURNRelayMaxPort)
	case (k.TURNRelayMinPort == 0) != (k.TURNRelayMaxPort == 0):
		return errors.New("calls.turn_relay_min_port and calls.turn_relay_max_port are set together")
	case k.TURNRelayMinPort > k.TURNRelayMaxPort:
		return fmt.Errorf("calls.turn_relay_min_port %d is above calls.turn_relay_max_port %d", k.TURNRelayMinPort, k.TURNRelayMaxPort)
	case k.TURNCredentialTTL < 0:
		return fmt.Errorf("calls.turn_credential_ttl %v is negative", time.Duration(k.TURNCredentialTTL))
	case k.TURNMaxAllocations < 0:
		return fmt.Errorf("calls.turn_max_allocations %d is negative", k.TURNMaxAllocations)
	case k.TURNMaxUserAllocations < 0:
		return fmt.Errorf("calls.turn_max_user_allocations %d is negative", k.TURNMaxUserAllocations)
	}
	if !k.Enabled || !k.TURN {
		return nil
	}
	if c.turnRelayIP() == "" {
		return errors.New("calls.turn needs the node's public address for its relays: set calls.public_ips, or node.quic_addr to the node's IP")
	}
	if k.TURNPort == 0 {
		return nil
	}
	for _, a := range c.listenAddrs() {
		if a.key == "calls.turn_port" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err == nil && port == strconv.Itoa(k.TURNPort) {
			return fmt.Errorf("calls.turn_port %d is %s's port too (%s); give TURN a port of its own", k.TURNPort, a.key, strings.ToUpper(a.network))
		}
	}
	return nil
}

// turnAddr returns the address of the TURN server: calls.turn_port on
// node.quic_addr's host, as the media port.
func (c *config) turnAddr() string {
	host, _, err := net.SplitHostPort(c.Node.QUICAddr)
	if err != nil {
		host = ""
	}
	return net.JoinHostPort(host, strconv.Itoa(c.Calls.TURNPort))
}

// turnRelayIP returns the address the TURN relays carry: the first of
// calls.public_ips, or node.quic_addr's host when it is an IP of one
// interface; "" when there is neither.
func (c *config) turnRelayIP() string {
	if len(c.Calls.PublicIPs) > 0 {
		return c.Calls.PublicIPs[0]
	}
	host, _, err := net.SplitHostPort(c.Node.QUICAddr)
	if ip := net.ParseIP(host); err == nil && ip != nil && !ip.IsUnspecified() {
		return host
	}
	return ""
}

// turnOptions maps the TURN keys of [calls] onto callsfu.TURNOptions;
// PeerPort (the SFU's port), Logger and Metrics are the caller's to set.
func (c *config) turnOptions() callsfu.TURNOptions {
	k := &c.Calls
	o := callsfu.TURNOptions{
		ListenAddr:         c.turnAddr(),
		RelayIP:            c.turnRelayIP(),
		MinPort:            k.TURNRelayMinPort,
		MaxPort:            k.TURNRelayMaxPort,
		PeerIPs:            slices.Clone(k.PublicIPs),
		CredentialTTL:      time.Duration(k.TURNCredentialTTL),
		MaxAllocations:     k.TURNMaxAllocations,
		MaxUserAllocations: k.TURNMaxUserAllocations,
	}
	if k.TURNSecret != "" {
		o.Secret = []byte(k.TURNSecret)
	}
	return o
}

// mediaAddr returns the address of the SFU's socket: calls.udp_port on
// node.quic_addr's host, so that a node bound to one address (127.0.0.1
// in tests and the bench) offers its media there too; every interface
// when that host is empty, as by default.
func (c *config) mediaAddr() string {
	host, _, err := net.SplitHostPort(c.Node.QUICAddr)
	if err != nil {
		host = ""
	}
	return net.JoinHostPort(host, strconv.Itoa(c.Calls.UDPPort))
}

// tlsCurveNames name the key-exchange groups node.tls_curves may list,
// as crypto/tls names its CurveIDs (P256 for CurveP256).
var tlsCurveNames = []struct {
	name string
	id   tls.CurveID
}{
	{"X25519MLKEM768", tls.X25519MLKEM768},
	{"SecP256r1MLKEM768", tls.SecP256r1MLKEM768},
	{"SecP384r1MLKEM1024", tls.SecP384r1MLKEM1024},
	{"X25519", tls.X25519},
	{"P256", tls.CurveP256},
	{"P384", tls.CurveP384},
	{"P521", tls.CurveP521},
}

// tlsCurves returns node.tls_curves as CurveIDs, nil for Go's default.
// Names match without regard to case, with or without Go's "Curve"
// prefix (CurveP256).
func (c *config) tlsCurves() ([]tls.CurveID, error) {
	var ids []tls.CurveID
	for _, name := range c.Node.TLSCurves {
		i := len(tlsCurveNames) - 1
		for ; i >= 0; i-- {
			if n := tlsCurveNames[i].name; strings.EqualFold(n, name) || strings.EqualFold("Curve"+n, name) {
				break
			}
		}
		if i < 0 {
			known := make([]string, len(tlsCurveNames))
			for j, n := range tlsCurveNames {
				known[j] = n.name
			}
			return nil, fmt.Errorf("node.tls_curves: unknown key-exchange group %q; known: %s", name, strings.Join(known, ", "))
		}
		if slices.Contains(ids, tlsCurveNames[i].id) {
			return nil, fmt.Errorf("node.tls_curves: %q is listed twice", name)
		}
		ids = append(ids, tlsCurveNames[i].id)
	}
	return ids, nil
}

// tcpAddr returns the address of the TLS-over-TCP listener, or "" when it
// is off: node.tcp_addr, or by default the same host and port number as
// node.quic_addr (a port 0 there gives TCP a free port of its own).
func (c *config) tcpAddr() string {
	switch c.Node.TCPAddr {
	case "off":
		return ""
	case "":
		return c.Node.QUICAddr
	}
	return c.Node.TCPAddr
}

// checkHostPort checks that addr is host:port with a numeric port from 0
// to 65535 (0: a free port). An empty host means every interface.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, such as \":7443\" or \"127.0.0.1:7080\": %w", err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if strings.ContainsAny(host, " /\\") {
		return fmt.Errorf("host %q is neither an IP address nor a host name", host)
	}
	return nil
}

// checkListen checks that the node can listen where c says, for
// --check-config: each host is an IP or resolves, and each address can be
// bound now, which it tries, releasing it at once. An address in use is a
// warning rather than an error, since the node about to be restarted
// holds it; any other failure (an address not on this host, a port below
// 1024 without the privilege) is an error that names the key.
func (c *config) checkListen(ctx context.Context) (warnings []string, err error) {
	for _, a := range c.listenAddrs() {
		host, _, err := net.SplitHostPort(a.addr)
		if err != nil {
			return warnings, fmt.Errorf("%s %q: %w", a.key, a.addr, err)
		}
		if _, perr := netip.ParseAddr(host); host != "" && perr != nil {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := net.DefaultResolver.LookupHost(rctx, host)
			cancel()
			if err != nil {
				return warnings, fmt.Errorf("%s %q: host %q does not resolve: %w", a.key, a.addr, host, err)
			}
		}
		var l io.Closer
		if a.network == "udp" {
			l, err = net.ListenPacket(a.network, a.addr)
		} else {
			l, err = net.Listen(a.network, a.addr)
		}
		switch {
		case err == nil:
			l.Close()
		case errors.Is(err, syscall.EADDRINUSE):
			warnings = append(warnings, fmt.Sprintf("%s %s: address in use (%s), by the running node? The node cannot start while it is",
				a.key, a.addr, strings.ToUpper(a.network)))
		default:
			return warnings, fmt.Errorf("%s %q: cannot listen: %w", a.key, a.addr, err)
		}
	}
	return warnings, nil
}

// storageOptions maps the [storage] section onto storage.Options.
func (c *config) storageOptions() (storage.Options, error) {
	s := &c.Storage
	var err error
	toInt := func(key string, b byteSize) int {
		if err == nil && int64(b) > math.MaxInt {
			err = fmt.Errorf("%s %d does not fit this platform's int", key, b)
		}
		return int(b)
	}
	opts := storage.Options{
		Shards:          s.Shards,
		MaxBodyBytes:    toInt("storage.max_body_bytes", s.MaxBodyBytes),
		MaxBatchBytes:   toInt("storage.max_batch_bytes", s.MaxBatchBytes),
		MaxQueuedBytes:  toInt("storage.max_queued_bytes", s.MaxQueuedBytes),
		SyncDelayMax:    time.Duration(s.SyncDelayMax),
		DedupeWindow:    time.Duration(s.DedupeWindow),
		MaxMembers:      uint64(s.MaxMembers),
		PushMembers:     uint64(s.PushMembers),
		SweepInterval:   time.Duration(s.SweepInterval),
		SweepBatch:      s.SweepBatch,
		CacheChats:      s.CacheChats,
		MaxChatsPerUser: uint64(s.MaxChatsPerUser),
		CacheBytes:      int64(s.CacheBytes),
		MemTableBytes:   uint64(s.MemtableBytes),
	}
	opts.Retention[storage.ChatDirect] = s.Retention.Direct.options()
	opts.Retention[storage.ChatGroup] = s.Retention.Group.options()
	opts.Retention[storage.ChatChannel] = s.Retention.Channel.options()
	return opts, err
}

// checkStorageOptions runs storage's own validation of opts, which lives in
// storage.Open, on a throwaway store in memory: --check-config must not
// open the node's store.
func checkStorageOptions(opts storage.Options) error {
	opts.FS = vfs.NewMem()
	st, err := storage.Open("store", opts)
	if err != nil {
		return err
	}
	return st.Close()
}

// brokerOptions maps node.name and the [broker] section onto
// broker.Options.
func (c *config) brokerOptions() (broker.Options, error) {
	b := &c.Broker
	var err error
	toInt := func(key string, v byteSize) int {
		if err == nil && int64(v) > math.MaxInt {
			err = fmt.Errorf("%s %d does not fit this platform's int", key, v)
		}
		return int(v)
	}
	opts := broker.Options{
		Name:                      c.Node.Name,
		MaxFrameBytes:             toInt("broker.max_frame_bytes", b.MaxFrameBytes),
		SendRate:                  b.SendRate,
		SendBurst:                 b.SendBurst,
		MaxSessionsPerUser:        b.MaxSessionsPerUser,
		HelloTimeout:              time.Duration(b.HelloTimeout),
		WriteTimeout:              time.Duration(b.WriteTimeout),
		CoalesceWindow:            time.Duration(b.PushCoalesceWindow),
		TCPHeartbeat:              time.Duration(b.TCPHeartbeat),
		MaxUnauthenticated:        b.MaxUnauthenticated,
		MaxUnauthenticatedPerAddr: b.MaxUnauthenticatedPerAddr,
		MaxHandshakes:             b.MaxHandshakes,
		HandshakeWait:             time.Duration(b.HandshakeWait),
		HandshakeHold:             time.Duration(b.HandshakeHold),
		CallRingTimeout:           time.Duration(b.CallRingTimeout),
		Outbox: broker.OutboxOptions{
			MaxFrames: b.Outbox.MaxFrames,
			MaxBytes:  toInt("broker.outbox.max_bytes", b.Outbox.MaxBytes),
		},
	}
	return opts, err
}

// sfuOptions maps the [calls] section onto callsfu.Options; Logger,
// Metrics and CallEnded are the caller's to set.
func (c *config) sfuOptions() callsfu.Options {
	k := &c.Calls
	return callsfu.Options{
		ListenAddr:             c.mediaAddr(),
		NAT1To1IPs:             slices.Clone(k.PublicIPs),
		DisableTCP:             !k.ICETCP,
		MaxPublishers:          k.MaxPublishers,
		MaxTracks:              k.MaxTracks,
		SilenceTimeout:         time.Duration(k.SilenceTimeout),
		ICEDisconnectedTimeout: time.Duration(k.ICEDisconnectedTimeout),
		ICEFailedTimeout:       time.Duration(k.ICEFailedTimeout),
	}
}

func (r retention) options() storage.Retention {
	return storage.Retention{MaxAge: time.Duration(r.MaxAge), MaxCount: uint64(r.MaxCount)}
}

// loadPublicKeys reads the Ed25519 public keys in files: each file holds
// one or more PEM "PUBLIC KEY" blocks (PKIX, as `openssl pkey -pubout`
// writes them).
func loadPublicKeys(files []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("auth.public_keys: %w", err)
		}
		n := 0
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			n++
			if blk.Type != "PUBLIC KEY" {
				return nil, fmt.Errorf("auth.public_keys: %s: block %d is a %q, want a \"PUBLIC KEY\"", path, n, blk.Type)
			}
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("auth.public_keys: %s: block %d: %w", path, n, err)
			}
			pub, ok := k.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("auth.public_keys: %s: block %d is a %T, not an Ed25519 key", path, n, k)
			}
			keys = append(keys, pub)
		}
		if n == 0 {
			return nil, fmt.Errorf("auth.public_keys: %s: no PEM \"PUBLIC KEY\" block", path)
		}
	}
	return keys, nil
}

// duration is a TOML string in time.ParseDuration's syntax: "90s", "24h".
type duration time.Duration

// UnmarshalTOML implements toml.Unmarshaler.
func (d *duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("want a duration string like \"24h\", got %v", v)
	}
	x, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration string like \"24h\": %w", err)
	}
	*d = duration(x)
	return nil
}

// byteSize is a TOML integer of bytes, or a string with a binary unit:
// "512KiB", "64MiB", "1GiB".
type byteSize int64

// UnmarshalTOML implements toml.Unmarshaler.
func (b *byteSize) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("size %d is negative", x)
		}
		*b = byteSize(x)
		return nil
	case string:
		n, err := parseSize(x)
		if err != nil {
			return err
		}
		*b = byteSize(n)
		return nil
	}
	return fmt.Errorf("want a size: an integer of bytes or a string like \"64MiB\", got %v", v)
}

// sizeUnits are the units parseSize accepts: powers of 1024 only, so that
// "MB" (is it 10^6 or 2^20?) is never guessed.
var sizeUnits = map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}

// parseSize parses a non-negative integer with an optional binary unit.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	unit := strings.TrimSpace(t[i:])
	mult, ok := sizeUnits[unit]
	if i == 0 || !ok {
		return 0, fmt.Errorf("size %q: want an integer of bytes, optionally followed by KiB, MiB, GiB or TiB", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}
