package tools

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/nodecert"
)

// defaultServer is the node address client commands dial unless told.
const defaultServer = "127.0.0.1:7443"

// tokenEnv names the environment variable that holds the session token
// when --token is not given.
const tokenEnv = "GONETS_TOKEN"

// defaultDialTimeout bounds one connection attempt of the client
// commands: the handshakes and Hello up to Welcome. QUIC runs over UDP,
// so a port nothing listens on is not refused: it stays silent, and this
// is how long the commands wait before saying so. A node that answers at
// all takes a few round trips.
const defaultDialTimeout = 2500 * time.Millisecond

// clientNotes is the --help text of the client commands on certificates.
const clientNotes = `Certificates, the first that applies:
  --insecure         no checks at all (tests only);
  --fingerprint HEX  only the certificate with that SHA-256 (the tls line
                     gonets serve prints);
  --ca FILE          a chain to the system roots or to a CA in FILE (PEM),
                     valid for --server's host; ./gonets-data is not read;
  otherwise, for a node on this machine (--server on localhost, 127.0.0.1
  or ::1) or with --data given, the self-signed certificate in its data
  directory, or a chain to the system roots valid for the host;
  for any other node, a chain to the system roots valid for the host.`

// clientProfileNotes is the --help text of the client commands on
// saved logins.
const clientProfileNotes = `Login, the first that applies:
  --token TOKEN      a session token (gonets token mints one);
  --profile NAME     the login gonets login --profile NAME saved;
  $` + tokenEnv + `
  the "default" profile, when gonets login has saved one.
A profile names its node, so --server and the certificate flags are
needed only to override it; its access token is refreshed when it is
near expiry, and the rotated pair saved (profiles live in
$` + configDirEnv + `/profiles, or else your config directory's
gonets/profiles).`

// clientFlags are the flags the client commands (chat, send, tail,
// devices) share.
type clientFlags struct {
	fs          *flagSet
	server      string
	tcpServer   string
	token       string
	profile     string
	fingerprint string
	ca          string
	insecure    bool
	data        string
	dialTimeout time.Duration
	transport   client.Transport

	// Set by login from a profile.
	dataSet bool         // the profile names a data directory
	pf      *profileFile // nil: no profile in use
	prof    *profile     // its contents, tokens current
}

// addClientFlags defines the shared client flags on fs: how to reach
// and trust the node, and the login (--token or --profile).
func addClientFlags(fs *flagSet) *clientFlags {
	f := addConnFlags(fs)
	fs.StringVar(&f.token, "token", "", "session `token` (default: $"+tokenEnv+", else the default profile)")
	fs.StringVar(&f.profile, "profile", "", "use the login gonets login saved under this `name` (default: \""+defaultProfile+"\" when saved and no token is given)")
	fs.notes = clientNotes + "\n\n" + clientProfileNotes
	return f
}

// addConnFlags defines on fs the flags that reach and trust the node.
func addConnFlags(fs *flagSet) *clientFlags {
	f := &clientFlags{fs: fs}
	fs.StringVar(&f.server, "server", defaultServer, "the node's `address`, host:port: QUIC over UDP, and TLS over TCP on the same port")
	fs.StringVar(&f.tcpServer, "tcp-server", "", "the node's TLS-over-TCP `address`, host:port, when not --server's")
	fs.StringVar(&f.fingerprint, "fingerprint", "", "accept only the node certificate with this SHA-256 `hex` fingerprint")
	fs.StringVar(&f.ca, "ca", "", "verify the node's certificate against the system roots and the CA certificates in this PEM `file`")
	fs.BoolVar(&f.insecure, "insecure", false, "skip the node's certificate checks (tests only)")
	fs.StringVar(&f.data, "data", defaultDataDir, "a local node's data `dir`ectory, whose self-signed certificate is accepted")
	fs.DurationVar(&f.dialTimeout, "dial-timeout", defaultDialTimeout, "how long a connection attempt waits for the node to answer")
	fs.TextVar(&f.transport, "transport", client.TransportAuto,
		"`auto` (QUIC, and TLS over TCP when QUIC has not connected within 250 ms), quic or tcp")
	fs.notes = clientNotes
	return f
}

// usageError is a wrong use of the flags: the command exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// Usage errors of the shared flags.
var (
	errNoToken     = &usageError{"no session token: pass --token or set " + tokenEnv + ", or log in first: gonets login --phone +NUMBER"}
	errTokenProf   = &usageError{"--token and --profile are exclusive: pass one"}
	errExclusive   = &usageError{"--insecure, --fingerprint and --ca are exclusive: pass one"}
	errDialTimeout = &usageError{"--dial-timeout must be positive"}
)

// options maps the flags onto the SDK's options, on top of base.
func (f *clientFlags) options(base client.Options) (client.Options, error) {
	if f.token == "" && f.pf == nil {
		f.token = os.Getenv(tokenEnv)
	}
	if f.token == "" {
		return base, errNoToken
	}
	return f.connOptions(base)
}

// connOptions maps the flags but the token onto the SDK's options, on
// top of base: how to reach the node and trust it.
func (f *clientFlags) connOptions(base client.Options) (client.Options, error) {
	if f.dialTimeout <= 0 {
		return base, errDialTimeout
	}
	base.DialTimeout = f.dialTimeout
	base.Via, base.TCPAddr = f.transport, f.tcpServer
	n := 0
	for _, on := range []bool{f.insecure, f.fingerprint != "", f.ca != ""} {
		if on {
			n++
		}
	}
	switch {
	case n > 1:
		return base, errExclusive
	case f.insecure:
		base.Insecure = true
		return base, nil
	case f.fingerprint != "":
		base.Fingerprint = f.fingerprint
		return base, nil
	}
	v := &certVerifier{host: serverHost(f.server)}
	switch {
	case f.ca != "":
		pool, err := caPool(f.ca)
		if err != nil {
			return base, err
		}
		v.roots, v.ca = pool, f.ca
	case f.dataGiven() || isLocalHost(v.host):
		path := filepath.Join(f.data, nodecert.CertFile)
		if !f.dataGiven() && !exists(path) {
			break // no local node here: the system roots decide
		}
		fp, err := localFingerprint(f.data)
		if err != nil {
			return base, err
		}
		v.pin, v.pinFrom = fp, path
	}
	base.TLS = v.config()
	return base, nil
}

// dataGiven reports whether --data, or the profile in use, names a data
// directory.
func (f *clientFlags) dataGiven() bool { return f.dataSet || f.fs.isSet("data") }

// serverHost returns the host of a host:port address.
func serverHost(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// isLocalHost reports whether host names this machine: empty,
// localhost or a loopback IP.
func isLocalHost(host string) bool {
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// caPool returns the system roots with the CA certificates of the PEM
// file at path added.
func caPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// certVerifier checks a node's certificate: the pinned one (a local
// node's self-signed certificate) passes, and so does a chain to the
// roots that is valid for host.
type certVerifier struct {
	host    string
	roots   *x509.CertPool // nil: the system roots
	ca      string         // the --ca file roots came from, for errors
	pin     string         // SHA-256 fingerprint, hex; "" for none
	pinFrom string         // the file the pin came from, for errors
}

// config returns the TLS configuration that verifies with v.
func (v *certVerifier) config() *tls.Config {
	return &tls.Config{
		ServerName: v.host,
		// Verification is VerifyConnection's, which runs on every
		// handshake, resumed ones included.
		InsecureSkipVerify: true,
		VerifyConnection:   v.verify,
	}
}

// verify accepts cs's peer certificate or returns a *certError.
func (v *certVerifier) verify(cs tls.ConnectionState) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return &certError{v: v, err: errors.New("the node sent no certificate")}
	}
	fp := nodecert.Fingerprint(certs[0].Raw)
	if v.pin != "" && fp == v.pin {
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{DNSName: v.host, Roots: v.roots, Intermediates: inter})
	if err != nil {
		return &certError{v: v, got: fp, err: err}
	}
	return nil
}

// certError is a node certificate the client does not trust.
type certError struct {
	v   *certVerifier
	got string // the certificate's fingerprint
	err error  // why its chain failed
}

func (e *certError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the node's certificate (SHA-256 %s) is not trusted", e.got)
	if e.v.pinFrom != "" {
		fmt.Fprintf(&b, ": it is not the one in %s (stale?), and", e.v.pinFrom)
	} else {
		b.WriteString(":")
	}
	fmt.Fprintf(&b, " %v", e.err)
	var he x509.HostnameError
	switch {
	case errors.As(e.err, &he):
		b.WriteString("; pass --server with a host name the certificate holds")
	case e.v.ca != "":
		fmt.Fprintf(&b, "; is %s the CA that signed it?", e.v.ca)
	default:
		b.WriteString("; for a certificate a private CA signed pass --ca FILE, for a self-signed one --fingerprint HEX (the tls line gonets serve prints)")
	}
	return b.String()
}

func (e *certError) Unwrap() error { return e.err }

// noAnswerError is a node address where nothing answered a connection
// attempt over the transports tried.
type noAnswerError struct {
	addr string
	via  client.Transport
	wait time.Duration
}

func (e *noAnswerError) Error() string {
	over := "neither QUIC over UDP nor TLS over TCP"
	switch e.via {
	case client.TransportQUIC:
		over = "QUIC over UDP"
	case client.TransportTCP:
		over = "TLS over TCP"
	}
	return fmt.Sprintf("nothing answered at %s (%s) within %v: is a node running there? "+
		"Start one with `gonets serve`, or pass --server HOST:PORT of a running node (--dial-timeout waits longer)",
		e.addr, over, e.wait)
}

// localFingerprint returns the fingerprint of the certificate a node keeps
// in its data directory.
func localFingerprint(dir string) (string, error) {
	path := filepath.Join(dir, nodecert.CertFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no node certificate at %s: pass --fingerprint HEX (gonets serve prints it), --ca FILE, or --insecure", path)
	}
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s: no PEM certificate", path)
	}
	return nodecert.Fingerprint(block.Bytes), nil
}

// cliName names the command line in Hello, for the node's logs.
var cliName = "gonets-cli/" + Version

// dial connects with the flags' options on top of base, after settling
// the login (see login). Nothing answering at the address, and a
// certificate the flags do not trust, come back as errors that say so
// and what to do.
func (f *clientFlags) dial(ctx context.Context, base client.Options) (*client.Client, error) {
	if err := f.login(ctx); err != nil {
		return nil, err
	}
	o, err := f.options(base)
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = cliName
	}
	c, err := client.Dial(ctx, f.server, f.token, o)
	if err != nil {
		err = f.dialError(ctx, o, err)
		if f.pf != nil && (errors.Is(err, client.ErrDeviceEnded) || errors.Is(err, client.ErrUnauthenticated)) {
			err = fmt.Errorf("%w; log in again: %s", err, f.pf.loginHint(f.prof))
		}
		return nil, err
	}
	return c, nil
}

// dialError explains err, from a request to the node made with o under
// ctx: nothing answering, an untrusted certificate, or the node's own.
func (f *clientFlags) dialError(ctx context.Context, o client.Options, err error) error {
	wait := o.DialTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = time.Until(dl)
	}
	var ce *certError
	var hte *quic.HandshakeTimeoutError
	var ite *quic.IdleTimeoutError // what quic-go may report for a handshake that heard nothing
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return ce
	case errors.Is(err, client.ErrProtocol):
		return err // something answered that does not speak gonets/1
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &hte), errors.As(err, &ite), errors.Is(err, syscall.ECONNREFUSED):
		return &noAnswerError{addr: f.server, via: o.Via, wait: max(wait, 0).Round(100 * time.Millisecond)}
	}
	return err
}

// login settles the session token: --token; else the login saved under
// --profile; else $GONETS_TOKEN; else the "default" profile, when saved.
// A profile names the node and how to trust it, where no flag overrides
// them, and its access token is refreshed first when near expiry.
func (f *clientFlags) login(ctx context.Context) error {
	named := f.fs.isSet("profile")
	switch {
	case named && f.fs.isSet("token"):
		return errTokenProf
	case f.token != "":
		return nil
	case !named && os.Getenv(tokenEnv) != "":
		return nil // options takes it
	}
	name := f.profile
	if !named {
		name = defaultProfile
	}
	pf, err := openProfile(name)
	if err != nil {
		return err
	}
	if !named && !pf.exists() {
		return errNoToken
	}
	return f.useProfile(ctx, pf)
}

// useProfile takes the login saved in pf, refreshing its access token
// when near expiry.
func (f *clientFlags) useProfile(ctx context.Context, pf *profileFile) error {
	p, err := pf.load()
	if err != nil {
		return err
	}
	f.applyConn(p.nodeConn)
	if p, err = pf.current(ctx, time.Now(), refreshMargin, f.refresher()); err != nil {
		return err
	}
	f.pf, f.prof, f.token = pf, p, p.Access
	return nil
}

// applyConn takes the node's address and how to trust it from c, a
// saved login, where no flag overrides them.
func (f *clientFlags) applyConn(c nodeConn) {
	if !f.fs.isSet("server") {
		f.server = c.Server
		if !f.fs.isSet("tcp-server") {
			f.tcpServer = c.TCPServer
		}
	}
	for _, name := range []string{"insecure", "fingerprint", "ca", "data"} {
		if f.fs.isSet(name) {
			return
		}
	}
	f.insecure, f.fingerprint, f.ca = c.Insecure, c.Fingerprint, c.CA
	if c.Data != "" {
		f.data, f.dataSet = c.Data, true
	}
}

// refresher returns the refresher of the flags' node.
func (f *clientFlags) refresher() refresher {
	return func(ctx context.Context, refresh string) (client.Tokens, error) {
		o, err := f.connOptions(client.Options{Name: cliName})
		if err != nil {
			return client.Tokens{}, err
		}
		t, err := client.RefreshTokens(ctx, f.server, refresh, o)
		return t, f.dialError(ctx, o, err)
	}
}

// keep starts keepFresh for c, a long-running command's client, and
// returns the func that stops it and waits for it; call that before
// c.Close:
//
//	defer c.Close()
//	defer cf.keep(c, stderr, "tail")()
func (f *clientFlags) keep(c *client.Client, stderr io.Writer, cmd string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.keepFresh(ctx, c, stderr, cmd) })
	return func() {
		cancel()
		wg.Wait()
	}
}

// keepFresh renews c's access token from the profile in use before it
// expires, for the commands that run long (tail): under the profile's
// lock, taking the pair another process saved if it renewed first, and
// hands the token to c with Auth. It returns when ctx ends or c closes,
// at once without a profile.
//
// The SDK's own renewal (Options.Refresh) is not used: it would present
// the refresh token it holds without the lock, and a second gonets on the
// same profile (another tail, a send near expiry) may have spent that
// token already, which ends the device.
func (f *clientFlags) keepFresh(ctx context.Context, c *client.Client, stderr io.Writer, cmd string) {
	if f.pf == nil {
		return
	}
	held := f.prof.AccessExpires
	wait := renewAfter(held)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, time.Second)):
		}
		wait = 10 * time.Second // after a failure
		// Fresh unless saved with a later expiry than the token held.
		p, err := f.pf.current(ctx, time.Now(), time.Until(held)+time.Second, f.refresher())
		if err != nil {
			fmt.Fprintf(stderr, "gonets %s: renewing the access token: %v\n", cmd, err)
			if isDeadLogin(err) {
				return
			}
			continue
		}
		if p.User != c.User() || p.Device != c.Device() {
			fmt.Fprintf(stderr, "gonets %s: profile %s now holds another login (user %d device %d): this session's token is no longer renewed\n",
				cmd, f.pf.name, p.User, p.Device)
			return
		}
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = c.Auth(actx, p.Access)
		cancel()
		switch {
		case errors.Is(err, client.ErrClosed) || ctx.Err() != nil:
			return
		case err != nil:
			fmt.Fprintf(stderr, "gonets %s: renewing the access token: %v\n", cmd, err)
			continue
		}
		held = p.AccessExpires
		wait = renewAfter(held)
	}
}

// renewAfter is when to renew an access token that expires at exp: at
// three quarters of the life it has left, counted to the whole second
// before exp, as the token's own expiry is (a JWT's exp claim).
func renewAfter(exp time.Time) time.Duration {
	return (time.Until(exp) - time.Second) * 3 / 4
}

// cliFail reports err for command cmd and returns its exit code: 2 for
// a usage error (a missing token), 1 otherwise.
func cliFail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "gonets %s: %v\n", cmd, err)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// cliLogger logs the SDK's warnings to w.
func cliLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// syncWriter serializes writes from the SDK's goroutines and the
// command's own.
type syncWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// userList is a repeatable flag of user ids.
type userList []uint64

func (l *userList) String() string {
	s := make([]string, len(*l))
	for i, u := range *l {
		s[i] = strconv.FormatUint(u, 10)
	}
	return strings.Join(s, ",")
}

func (l *userList) Set(v string) error {
	u, err := strconv.ParseUint(v, 10, 64)
	if err != nil || u == 0 {
		return fmt.Errorf("user id %q is not a positive integer", v)
	}
	*l = append(*l, u)
	return nil
}
