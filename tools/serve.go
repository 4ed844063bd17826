package tools

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/callsfu"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/media/mediahttp"
	"github.com/gonets/gonets/storage"
)

// storeDir is the store's directory inside the data directory, which also
// holds the token key and the self-signed certificate.
const storeDir = "store"

// serveUsage is the synopsis of gonets serve.
const serveUsage = "usage: gonets serve [--config FILE] [--check-config] [--data DIR] [--quic ADDR] [--http ADDR] [--public ADDR] [--name NAME] [--tls-cert FILE --tls-key FILE] [--log-level LEVEL] [--pprof]"

// runServe runs a node until SIGINT or SIGTERM, then shuts it down
// gracefully and returns 0; a second signal exits at once with 1. With
// --check-config it only validates the configuration.
func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, check, err := parseServe(args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "gonets serve: %v\n", err)
		return 1
	}
	if check {
		if err := checkConfig(cfg, stderr); err != nil {
			fmt.Fprintf(stderr, "gonets serve: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "config ok")
		return 0
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { watchSignals(sigs, done, cancel, os.Exit, stderr) })
	err = serve(ctx, cfg, stdout, stderr)
	close(done)
	wg.Wait()
	if err != nil {
		fmt.Fprintf(stderr, "gonets serve: %v\n", err)
		return 1
	}
	return 0
}

// watchSignals cancels the node's ctx on the first signal and calls
// exit(1) on the second, for an operator who will not wait for the drain.
// It returns when done is closed.
func watchSignals(sigs <-chan os.Signal, done <-chan struct{}, cancel context.CancelCauseFunc, exit func(int), stderr io.Writer) {
	select {
	case sig := <-sigs:
		cancel(fmt.Errorf("signal %v", sig))
	case <-done:
		return
	}
	select {
	case sig := <-sigs:
		fmt.Fprintf(stderr, "gonets serve: second signal (%v): exiting now\n", sig)
		exit(1)
	case <-done:
	}
}

// errUsage reports a command line that parseServe refused, having printed
// the usage.
var errUsage = errors.New("usage")

// parseServe returns the configuration serve's arguments describe: the
// defaults, overlaid with the file --config names, overlaid with every
// flag given. It reports whether --check-config was given. It returns
// errUsage for a bad command line, having said why on stderr, and
// flag.ErrHelp after printing the flags to stdout for --help.
func parseServe(args []string, stdout, stderr io.Writer) (cfg config, check bool, err error) {
	fs := newFlagSet("serve", serveUsage, stdout, stderr)
	def := defaultConfig()
	path := fs.String("config", "", "TOML config `file`; docs/gonets.example.toml lists every key")
	checkOnly := fs.Bool("check-config", false, "validate the configuration and that its addresses can be bound, print \"config ok\" and exit, without opening the store")
	data := fs.String("data", def.Node.DataDir, "data `dir`ectory (node.data_dir)")
	quicAddr := fs.String("quic", def.Node.QUICAddr, "UDP `address` for QUIC clients (node.quic_addr)")
	tcpAddr := fs.String("tcp", "", "TCP `address` for TLS-over-TCP clients (node.tcp_addr; default: the QUIC address's, over TCP; \"off\" turns it off)")
	httpAddr := fs.String("http", def.Node.HTTPAddr, "TCP `address` for /metrics, /healthz and /readyz (node.http_addr)")
	publicAddr := fs.String("public", def.Node.PublicAddr, "TCP `address` of the public HTTPS listener: WHIP, WHEP (node.public_addr; \"off\" turns it off)")
	name := fs.String("name", "", "the node's `name` in Welcome (node.name; default: the host name)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate chain `file` (tls.cert; default: self-signed in the data dir)")
	tlsKey := fs.String("tls-key", "", "PEM private key `file` of --tls-cert (tls.key)")
	pprofOn := fs.Bool("pprof", false, "serve /debug/pprof/ on the HTTP port, for profiling (node.pprof)")
	level := def.Node.LogLevel
	fs.TextVar(&level, "log-level", def.Node.LogLevel, "debug, info, warn or error (node.log_level)")
	if code, ok := fs.parse(args); !ok {
		if code == 0 {
			return cfg, false, flag.ErrHelp
		}
		return cfg, false, errUsage
	}
	if fs.NArg() != 0 {
		fs.usage("%s", fs.noArgs())
		return cfg, false, errUsage
	}
	cfg = def
	if *path != "" {
		if cfg, err = loadConfig(*path); err != nil {
			return cfg, false, err
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "data":
			cfg.Node.DataDir = *data
		case "quic":
			cfg.Node.QUICAddr = *quicAddr
		case "tcp":
			cfg.Node.TCPAddr = *tcpAddr
		case "http":
			cfg.Node.HTTPAddr = *httpAddr
		case "public":
			cfg.Node.PublicAddr = *publicAddr
		case "name":
			cfg.Node.Name = *name
		case "tls-cert":
			cfg.TLS.Cert = *tlsCert
		case "tls-key":
			cfg.TLS.Key = *tlsKey
		case "log-level":
			cfg.Node.LogLevel = level
		case "pprof":
			cfg.Node.Pprof = *pprofOn
		}
	})
	if err := cfg.validate(); err != nil {
		return cfg, false, err
	}
	return cfg, *checkOnly, nil
}

// checkConfig validates cfg as serve would use it, without opening the
// node's store: it builds every component's Options and runs their
// validation (on a throwaway store in memory), loads the configured
// certificate and public keys, loads the node's own key and certificate
// if the data directory already holds them, and checks that the listen
// addresses resolve and can be bound (cfg.checkListen; an address in use
// is a warning on stderr). It creates nothing on disk.
func checkConfig(cfg config, stderr io.Writer) error {
	if cfg.TLS.Cert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	} else if exists(filepath.Join(cfg.Node.DataDir, nodecert.CertFile)) {
		if _, _, err := nodecert.LoadOrCreate(cfg.Node.DataDir, cfg.TLS.Hosts); err != nil {
			return err
		}
	}
	var nodeKey ed25519.PrivateKey
	var err error
	if exists(filepath.Join(cfg.Node.DataDir, token.KeyFile)) {
		nodeKey, err = token.LoadOrCreateKey(cfg.Node.DataDir)
	} else {
		// serve will create the key; a fresh one stands in for it here.
		_, nodeKey, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return err
	}
	v, err := newVerifier(cfg, []ed25519.PublicKey{nodeKey.Public().(ed25519.PublicKey)})
	if err != nil {
		return err
	}
	if err := checkState(cfg); err != nil {
		return err
	}
	sopts, err := cfg.storageOptions()
	if err != nil {
		return err
	}
	bopts, err := cfg.brokerOptions()
	if err != nil {
		return err
	}
	sopts.FS = vfs.NewMem()
	st, err := storage.Open(storeDir, sopts)
	if err != nil {
		return err
	}
	defer st.Close()
	bopts.Logger = slog.New(slog.DiscardHandler)
	b, err := broker.New(st, v, bopts)
	if err != nil {
		return err
	}
	if err := b.Shutdown(context.Background()); err != nil {
		return err
	}
	warnings, err := cfg.checkListen(context.Background())
	for _, w := range warnings {
		fmt.Fprintf(stderr, "gonets serve: warning: %s\n", w)
	}
	return err
}

// exists reports whether path names an existing file; any error other
// than "not there" counts as existing, so that loading it reports it.
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// newVerifier returns the token verifier for cfg: the node's own key and
// the keys of auth.public_keys.
func newVerifier(cfg config, nodeKeys []ed25519.PublicKey) (*token.Verifier, error) {
	keys, err := loadPublicKeys(cfg.Auth.PublicKeys)
	if err != nil {
		return nil, err
	}
	return token.NewVerifier(token.Options{Keys: append(slices.Clone(nodeKeys), keys...), Leeway: time.Duration(cfg.Auth.Leeway)})
}

// serve runs a node with cfg until ctx is done, then shuts it down
// gracefully. It prints where the node listens to stdout and logs to
// stderr. The command cancels ctx on the first SIGINT or SIGTERM.
func serve(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	return serveNode(ctx, cfg, nodeOptions{}, stdout, stderr)
}

// nodeOptions are a node's internal options, for tests: no config key or
// flag sets them. The zero value is what gonets serve runs with.
type nodeOptions struct {
	// storageFS is the file system under the store. Default: the OS's.
	storageFS vfs.FS
}

// serveNode is serve with internal options. The start-up (opening the
// store, which replays its WAL, and binding the ports) runs while ctx is
// watched: if ctx ends first, serveNode waits for the start-up until
// node.shutdown_timeout has passed, closes what it opened and returns
// nil, or returns an error at the deadline, leaving the process to exit
// (nothing was acknowledged yet, so nothing is lost).
func serveNode(ctx context.Context, cfg config, nopts nodeOptions, stdout, stderr io.Writer) error {
	log := slog.New(newLimitHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.Node.LogLevel}), time.Now))
	if cfg.Node.GOGC > 0 {
		debug.SetGCPercent(cfg.Node.GOGC)
	}
	if cfg.Node.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(cfg.Node.MemoryLimit))
	}
	type started struct {
		n   *node
		err error
	}
	// SIGHUP (reload) is caught from here on: left to its default it would
	// kill the process during the start-up, which may take a while (the
	// store's WAL replay). One that comes then is handled once run starts.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	startc := make(chan started, 1)
	go func() {
		n, err := startNode(cfg, log, nopts)
		startc <- started{n, err}
	}()
	select {
	case s := <-startc:
		if s.err != nil {
			return s.err
		}
		s.n.printBanner(stdout)
		s.n.hup = hup
		return s.n.run(ctx)
	case <-ctx.Done():
	}
	timeout := time.Duration(cfg.Node.ShutdownTimeout)
	deadline := time.Now().Add(timeout)
	log.Info("stopping during start-up", "cause", context.Cause(ctx))
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case s := <-startc:
		if s.err != nil {
			return s.err
		}
		return s.n.stop(nil, deadline)
	case <-t.C:
		// The start-up goroutine ends when the start-up does; whatever it
		// opened by then is closed.
		go func() {
			if s := <-startc; s.err == nil {
				s.n.stop(nil, time.Now().Add(timeout))
			}
		}()
		return fmt.Errorf("stopped (%v) during a start-up that did not end within node.shutdown_timeout (%v); nothing was acknowledged yet", context.Cause(ctx), timeout)
	}
}

// node is a running Gonets node: its store, broker, QUIC listener and
// HTTP server. startNode opens and binds everything; run serves until its
// ctx is done and then closes everything, in the reverse order.
type node struct {
	cfg    config
	log    *slog.Logger
	store  *storage.Store
	broker *broker.Broker
	quicLn *broker.Listener
	tcpLn  *broker.TCPListener // nil when node.tcp_addr is off
	sfu    *callsfu.SFU        // nil when calls.enabled is off
	ident  *identityNode       // nil when identity.enabled is off
	state  *stateNode          // nil when no state service is on (state.go)
	media  *mediaNode          // nil when media or the public listener is off (botsnode.go)
	bots   *botsNode           // nil when bots, identity or the public listener is off
	// adminToken authorises the admin API on the metrics listener
	// (gonets bot ...); "" while identity is off.
	adminToken string

	// keys are the node's token keys; verifier checks tokens against them
	// and authKeys (auth.public_keys).
	// whip serves WHIP and WHEP (nil while calls are off or the public
	// listener is not up): an ended device's sessions are ended there.
	whip atomic.Pointer[callsfu.WHIP]

	keys     *token.Keyring
	authKeys []ed25519.PublicKey
	verifier *token.Verifier
	turn     *callsfu.TURN // nil when calls.turn is off
	httpLn   net.Listener
	http     *http.Server
	dataDir  string // absolute

	// publicLn and public are the public HTTPS listener (public.go); nil
	// when node.public_addr is off.
	publicLn net.Listener
	public   *http.Server

	fingerprint string // the SHA-256 of the TLS certificate, hex
	certSource  string // where the certificate came from, for the banner

	storeMetrics, brokerMetrics, callMetrics, nodeMetrics *metrics.Set

	serving  atomic.Bool // set while the QUIC accept loop runs
	stopping atomic.Bool // set when shutdown begins: /readyz fails from then on
	// hup is SIGHUP's channel when serveNode caught it from before the
	// start-up; nil: run catches it.
	hup chan os.Signal
}

// startNode opens the store, builds the broker and binds the QUIC and
// HTTP listeners. On error it closes whatever it opened. nopts holds at
// most one nodeOptions; none means the defaults.
func startNode(cfg config, log *slog.Logger, nopts ...nodeOptions) (_ *node, err error) {
	n := &node{
		cfg:           cfg,
		log:           log,
		storeMetrics:  metrics.NewSet(),
		brokerMetrics: metrics.NewSet(),
		callMetrics:   metrics.NewSet(),
		nodeMetrics:   metrics.NewSet(),
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if n.dataDir, err = filepath.Abs(cfg.Node.DataDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(n.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	cert, err := n.loadCert()
	if err != nil {
		return nil, err
	}
	nodeKey, err := token.LoadOrCreateKey(n.dataDir)
	if err != nil {
		return nil, err
	}
	// The node's keys: the current one signs, the previous one (kept by
	// gonets keys rotate) still verifies; reloadKeys picks up a rotation.
	if n.keys, err = token.ReadKeyring(n.dataDir); err != nil {
		return nil, err
	}
	if n.authKeys, err = loadPublicKeys(cfg.Auth.PublicKeys); err != nil {
		return nil, err
	}
	v, err := newVerifier(cfg, n.keys.PublicKeys())
	if err != nil {
		return nil, err
	}
	n.verifier = v
	sopts, err := cfg.storageOptions()
	if err != nil {
		return nil, err
	}
	bopts, err := cfg.brokerOptions()
	if err != nil {
		return nil, err
	}
	sopts.Logger, sopts.Metrics = log.With("component", "storage"), n.storeMetrics
	// Bots are not bound by the chats-per-user cap: the accounts, opened
	// after the store, say who is one.
	var botAccounts atomic.Pointer[identity.Accounts]
	sopts.Uncapped = func(u storage.UserID) bool {
		a := botAccounts.Load()
		return a != nil && a.IsBot(u)
	}
	// Retention gives back the files of the media messages it removes to
	// the media store, opened after the message store: a sweep before
	// then waits for it (filesReady is closed once it is open, or when
	// the start fails, so that the store's Close does not wait on it).
	var sweptFiles atomic.Pointer[mediahttp.Server]
	filesReady := make(chan struct{})
	var readyOnce sync.Once
	markFilesReady := func() { readyOnce.Do(func() { close(filesReady) }) }
	if cfg.Media.Enabled {
		sopts.Removed = func(_ storage.ChatID, recs []storage.Record) {
			<-filesReady
			if srv := sweptFiles.Load(); srv != nil {
				broker.ReleaseRemoved(srv, recs)
			}
		}
	}
	bopts.Logger, bopts.Metrics = log.With("component", "broker"), n.brokerMetrics

	if len(nopts) > 0 && nopts[0].storageFS != nil {
		sopts.FS = nopts[0].storageFS
	}
	if n.store, err = storage.Open(filepath.Join(n.dataDir, storeDir), sopts); err != nil {
		switch {
		case errors.Is(err, storage.ErrLocked):
			return nil, fmt.Errorf("another node holds %s: stop it, or give this one another data directory", n.dataDir)
		case errors.Is(err, storage.ErrNoSpace):
			return nil, fmt.Errorf("%w: free space and start again", err)
		}
		return nil, err
	}
	undo = append(undo, func() { n.store.Close() })
	undo = append(undo, markFilesReady) // undone before the store closes
	if cfg.Calls.Enabled {
		if n.sfu, err = startSFU(cfg, log, n.callMetrics); err != nil {
			return nil, err
		}
		undo = append(undo, func() { n.sfu.Close() })
		bopts.Calls = callsfu.NewBrokerMedia(n.sfu)
		if cfg.Calls.TURN {
			if n.turn, err = startTURN(cfg, log, n.callMetrics, n.sfu); err != nil {
				return nil, err
			}
			undo = append(undo, n.closeTURN)
			bopts.CallICEServers = turnICEServers(n.turn)
		}
	}
	// The public port is bound before the state services, whose default
	// public URL carries it; its HTTPS server comes after the broker.
	if err := n.bindPublic(); err != nil {
		return nil, err
	}
	undo = append(undo, n.closePublicListener)
	var ended atomic.Pointer[broker.Broker] // set once the broker is built
	if cfg.Identity.Enabled {
		if n.ident, err = startIdentity(cfg, n.dataDir, log.With("component", "identity"), n.brokerMetrics,
			n.keys.Signer,
			func(u storage.UserID, d storage.DeviceID) {
				if b := ended.Load(); b != nil {
					b.DevicesEnded(u, []storage.DeviceID{d})
				}
				if w := n.whip.Load(); w != nil {
					// Its WHIP and WHEP sessions end too: a
					// participant's close may wait on its
					// connections, which the end does not.
					go w.EndPeer(callsfu.Peer{User: uint64(u), Device: uint64(d)})
				}
			}); err != nil {
			return nil, err
		}
		undo = append(undo, n.ident.close)
		botAccounts.Store(n.ident.accounts)
		bopts.Accounts = n.ident.svc
		if n.adminToken, err = loadOrCreateAdminToken(n.dataDir); err != nil {
			return nil, err
		}
		if n.state, err = startState(cfg, n.dataDir, n.publicPort(), n.ident.accounts, n.keys,
			log.With("component", "state"), n.brokerMetrics); err != nil {
			return nil, err
		}
		if n.state != nil {
			undo = append(undo, n.state.close)
			bopts.State = n.state.svc
			bopts.SigningTTL = time.Duration(cfg.State.Signing.Expiry)
		}
	}
	if n.media, err = n.startMedia(v, nodeKey, n.brokerMetrics, ended.Load); err != nil {
		return nil, err
	}
	if n.media != nil {
		// Closed after the message store, as at shutdown: a sweep may be
		// giving files back to it (the store's Close may run twice).
		undo = append(undo, func() { n.store.Close(); n.media.close() })
		bopts.Attachments = n.media.srv
		sweptFiles.Store(n.media.srv)
	}
	markFilesReady()
	if n.ident != nil {
		if n.bots, err = n.startBots(n.ident.accounts, n.media, nodeKey, log.With("component", "bots"), n.brokerMetrics); err != nil {
			return nil, err
		}
		if n.bots != nil {
			undo = append(undo, n.bots.close)
			bopts.Bots = n.bots.node
		}
	}
	if n.publicLn != nil {
		bopts.PublicURL = n.publicURL()
	}
	if n.broker, err = broker.New(n.store, v, bopts); err != nil {
		return nil, err
	}
	ended.Store(n.broker)
	n.recoverRecordings()
	recoverLive(filepath.Join(n.dataDir, liveDir), n.broker.AnnounceLive, time.Now(), n.log)
	undo = append(undo, func() { n.broker.Shutdown(context.Background()) })
	n.state.start(n.broker)
	n.bots.start(n.broker)
	undo = append(undo, func() { n.state.stop(time.Now().Add(time.Duration(cfg.Node.ShutdownTimeout))) })
	curves, err := cfg.tlsCurves()
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, CurvePreferences: curves}
	if n.quicLn, err = broker.ListenQUIC(cfg.Node.QUICAddr, tlsConf, broker.ListenOptions{
		ResetSecret:      nodeKey.Seed(),
		PathMTUDiscovery: cfg.Node.QUICPathMTUDiscovery,
	}); err != nil {
		return nil, err
	}
	undo = append(undo, func() { n.quicLn.Close() })
	if addr := cfg.tcpAddr(); addr != "" {
		if n.tcpLn, err = broker.ListenTCP(addr, tlsConf); err != nil {
			return nil, err
		}
		undo = append(undo, func() { n.tcpLn.Close() })
	}
	if n.httpLn, err = net.Listen("tcp", cfg.Node.HTTPAddr); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	n.http = &http.Server{Handler: n.handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	undo = append(undo, func() { n.httpLn.Close() })
	if err := n.listenPublic(tlsConf, v); err != nil {
		return nil, err
	}
	n.nodeMetrics.NewGauge("gonets_node_ready", func() float64 {
		if n.ready() {
			return 1
		}
		return 0
	})
	n.nodeMetrics.NewGauge(fmt.Sprintf("gonets_node_build_info{version=%q}", Version), func() float64 { return 1 })
	return n, nil
}

// startSFU opens the calls' media port and starts the SFU. A port in use
// is named with its config key, as the other listeners' are.
func startSFU(cfg config, log *slog.Logger, set *metrics.Set) (*callsfu.SFU, error) {
	opts := cfg.sfuOptions()
	opts.Logger, opts.Metrics = log, set
	opts.RecordDir = filepath.Join(cfg.Node.DataDir, recordingsDir)
	sfu, err := callsfu.New(opts)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		proto := "UDP"
		if cfg.Calls.ICETCP {
			proto = "UDP, or TCP for ICE-TCP"
		}
		return nil, fmt.Errorf("calls.udp_port %d is in use (%s): stop what holds it, or give the media another port: %w",
			cfg.Calls.UDPPort, proto, err)
	case err != nil:
		return nil, fmt.Errorf("calls: %w", err)
	}
	return sfu, nil
}

// loadCert returns the configured certificate, or the self-signed one in
// the data directory (creating it on first start), and records its
// fingerprint.
func (n *node) loadCert() (tls.Certificate, error) {
	var cert tls.Certificate
	var err error
	if n.cfg.TLS.Cert != "" {
		if cert, err = tls.LoadX509KeyPair(n.cfg.TLS.Cert, n.cfg.TLS.Key); err != nil {
			return cert, fmt.Errorf("tls: %w", err)
		}
		n.certSource = n.cfg.TLS.Cert
	} else {
		var created bool
		if cert, created, err = nodecert.LoadOrCreate(n.dataDir, n.cfg.TLS.Hosts); err != nil {
			return cert, err
		}
		n.certSource = "self-signed, " + filepath.Join(n.dataDir, nodecert.CertFile)
		if created {
			n.certSource += ", created now"
		}
	}
	n.fingerprint = nodecert.Fingerprint(cert.Certificate[0])
	return cert, nil
}

// handler serves /metrics, /healthz and /readyz.
func (n *node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		writeMetrics(w, n.nodeMetrics, n.storeMetrics, n.brokerMetrics, n.callMetrics)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !n.ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	if n.ident != nil && n.adminToken != "" {
		mux.Handle("/admin/", newBotAdminHandler(n.ident.accounts, n.adminToken, n.bots.tokenRevoked))
	}
	if n.cfg.Node.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// ready reports whether the node takes clients: the store is open and
// healthy, the QUIC listener serves, and shutdown has not begun.
func (n *node) ready() bool {
	return !n.stopping.Load() && n.serving.Load() && n.store.Healthy() && n.broker.Ready()
}

// printBanner tells the operator where the node listens and how clients
// pin its certificate.
func (n *node) printBanner(w io.Writer) {
	quicAddr := n.quicLn.Addr().String()
	fmt.Fprintf(w, "gonets serve: node %s\n", Version)
	fmt.Fprintf(w, "  quic  %s  (UDP, ALPN gonets/1)\n", quicAddr)
	if n.tcpLn != nil {
		fmt.Fprintf(w, "  tcp   %s  (TLS 1.3, ALPN gonets/1: the fallback where UDP is blocked)\n", n.tcpLn.Addr())
	}
	if n.sfu != nil {
		fmt.Fprintf(w, "  media %s  (UDP%s: call media)\n", n.sfu.Addr(), n.mediaTCP())
		if n.turn != nil {
			fmt.Fprintf(w, "  turn  %s  (UDP and TCP: the TURN relay for clients that reach nothing else)\n", n.turn.Addr())
		}
	} else {
		fmt.Fprintf(w, "  media off  (calls.enabled = false: calls are refused)\n")
	}
	fmt.Fprintf(w, "  http  %s  (/metrics /healthz /readyz)\n", n.httpLn.Addr())
	n.printPublic(w)
	n.printState(w)
	fmt.Fprintf(w, "  data  %s\n", n.dataDir)
	fmt.Fprintf(w, "  tls   %s  (SHA-256; %s)\n", n.fingerprint, n.certSource)
	switch {
	case n.ident == nil:
		fmt.Fprintf(w, "  login off  (identity.enabled = false: sessions from gonets token only)\n")
	case n.ident.file != nil:
		fmt.Fprintf(w, "  login %s  (phone login; identity.sms = \"file\": the codes are written here, for development only)\n", n.ident.outbox)
	default:
		fmt.Fprintf(w, "  login sms gateway  (phone login; codes by identity.sms_http)\n")
	}
	fmt.Fprintf(w, "  try   gonets login --server %s --fingerprint %s --phone +79000000001\n", dialable(quicAddr), n.fingerprint)
}

// mediaTCP says whether ICE-TCP shares the media port, for the banner.
func (n *node) mediaTCP() string {
	if n.cfg.Calls.ICETCP {
		return ", and ICE-TCP on the same port number"
	}
	return ""
}

// dialable turns a wildcard listen address into one a local client can
// dial.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// run serves until ctx is done or a listener fails, then shuts down
// within node.shutdown_timeout (stop).
func (n *node) run(ctx context.Context) error {
	hup := n.hup
	if hup == nil {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	reloadDone := make(chan struct{})
	defer close(reloadDone)
	go n.reloadOn(hup, reloadDone)
	errc := make(chan error, 4)
	pending := 2
	if n.public != nil {
		pending++
		go func() { errc <- n.servePublic() }()
	}
	if n.tcpLn != nil {
		pending++
		go func() {
			err := n.broker.ServeTCP(n.tcpLn)
			if errors.Is(err, broker.ErrShutdown) {
				err = nil
			}
			errc <- err
		}()
	}
	n.serving.Store(true)
	go func() {
		err := n.broker.ServeQUIC(n.quicLn)
		n.serving.Store(false)
		if errors.Is(err, broker.ErrShutdown) {
			err = nil // shutdown began before the accept loop started
		}
		errc <- err
	}()
	go func() {
		err := n.http.Serve(n.httpLn)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		} else if err != nil {
			err = fmt.Errorf("http: %w", err)
		}
		errc <- err
	}()
	var serveErr error
	select {
	case <-ctx.Done():
		n.log.Info("shutting down", "cause", context.Cause(ctx))
	case serveErr = <-errc:
		pending--
		if serveErr == nil {
			serveErr = errors.New("a listener stopped unexpectedly")
		}
		n.log.Error("shutting down", "err", serveErr)
	}
	deadline := time.Now().Add(time.Duration(n.cfg.Node.ShutdownTimeout))
	errs := []error{serveErr}
	collect := func() {
		t := time.NewTimer(max(time.Until(deadline), 0))
		defer t.Stop()
		for ; pending > 0; pending-- {
			select {
			case err := <-errc:
				errs = append(errs, err)
			case <-t.C:
				return // the process exits; the listeners' goroutines with it
			}
		}
	}
	errs = append(errs, n.stop(collect, deadline))
	err := errors.Join(errs...)
	if err == nil {
		n.log.Info("stopped")
	}
	return err
}

// stop shuts the node down by deadline: /readyz fails, the broker stops
// accepting, tells sessions it is going away and waits for their
// requests, the HTTP server closes, then (after listeners, which the
// caller's collect waits for) the store. Sessions get the time until
// deadline less a reserve for closing the store (a quarter, at most
// 2 s); the SFU's close, after them, gets half that reserve more. Sessions
// still open then are closed, which is logged and is no
// error. A store that has not closed by deadline (its committer waits on
// a sync that hangs) is an error: stop returns without waiting further,
// and the process exits; everything acknowledged was synced before its
// ack, so nothing acknowledged is lost either way.
func (n *node) stop(collect func(), deadline time.Time) error {
	n.stopping.Store(true)
	total := time.Until(deadline)
	reserve := min(total/4, 2*time.Second)
	drain := deadline.Add(-reserve)
	sctx, cancel := context.WithDeadline(context.Background(), drain)
	defer cancel()
	// The state services post through the broker: they stop first.
	n.state.stop(drain)
	// So do the bots; their long polls end now, not when the public
	// listener's shutdown would wait them out.
	n.bots.close()
	if !within(drain, func() {
		if err := n.broker.Shutdown(sctx); err != nil {
			n.log.Warn("sessions did not finish in time; closed them", "timeout", total, "err", err)
		}
	}) {
		n.log.Warn("the broker did not stop in time; closing the store", "timeout", total)
	}
	n.shutdownPublic(sctx)
	// The SFU's close writes what ends with it (a live stream's end, a
	// recording's announcement): it has half the store's reserve of its
	// own, not only what the sessions left of the time to drain.
	n.closeSFU(drain.Add(reserve / 2))
	n.closeTURN()
	if err := n.http.Shutdown(sctx); err != nil {
		n.log.Warn("http requests did not finish in time; closed them", "err", err)
		n.http.Close()
	}
	if collect == nil { // run never served: close what startNode bound
		n.httpLn.Close()
		n.closePublicListener()
		n.quicLn.Close()
		if n.tcpLn != nil {
			n.tcpLn.Close()
		}
	} else {
		collect()
	}
	n.state.close()
	n.ident.close() // after the broker: its sessions used the accounts
	var err error
	if !within(deadline, func() {
		if cerr := n.store.Close(); cerr != nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}) {
		n.media.close()
		return fmt.Errorf("the store did not close within node.shutdown_timeout (%v), likely waiting on a disk sync; exiting without it: everything acknowledged is durable", total.Round(time.Millisecond))
	}
	// After the public listener (its uploads used it) and the store
	// (retention's sweeper gives files back to it).
	n.media.close()
	return err
}

// closeSFU closes the SFU once the broker has ended its calls: each call's
// PeerConnections close, then the media sockets. One that has not closed
// by deadline is left to the process's exit.
func (n *node) closeSFU(deadline time.Time) {
	if n.sfu == nil {
		return
	}
	if !within(deadline, func() { n.sfu.Close() }) {
		n.log.Warn("the SFU did not close in time; leaving its calls to the exit")
	}
}

// within runs f and reports whether it returned by deadline. When it has
// not, f goes on in its goroutine: the caller gives up on it, and the
// process is about to exit.
func within(deadline time.Time, f func()) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	t := time.NewTimer(max(time.Until(deadline), 0))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		select {
		case <-done: // both ready: it did finish
			return true
		default:
			return false
		}
	}
}

// keysPoll is how often the node looks for a key rotation
// (gonets keys rotate) besides SIGHUP.
var keysPoll = 10 * time.Second

// reloadOn reloads what the node reads from files while it runs: the
// token keys on each SIGHUP and every keysPoll, the numbering registry on
// each SIGHUP; until done is closed.
func (n *node) reloadOn(hup <-chan os.Signal, done <-chan struct{}) {
	t := time.NewTicker(keysPoll)
	defer t.Stop()
	for {
		select {
		case <-hup:
			n.log.Info("SIGHUP: reloading")
			n.reloadKeys()
			n.ident.reloadRegistry()
		case <-t.C:
			n.reloadKeys()
		case <-done:
			return
		}
	}
}

// reloadKeys re-reads the token keys and, when they changed, verifies
// with the new set: new tokens are signed with the new current key, and
// those of the previous one verify until they expire.
func (n *node) reloadKeys() {
	// The verifier learns the new keys before the signer uses one.
	changed, err := n.keys.ReloadWith(func(keys []ed25519.PublicKey) error {
		return n.verifier.SetKeys(append(slices.Clone(keys), n.authKeys...))
	})
	if err != nil {
		n.log.Error("token keys not reloaded; the keys in force stay", "err", err)
		return
	}
	if !changed {
		return
	}
	keys := n.keys.PublicKeys()
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = token.KeyID(k)
	}
	n.log.Info("token keys reloaded", "current", ids[0], "verifying", strings.Join(ids, ","))
}
