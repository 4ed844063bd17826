// Package brokertest runs a real node for tests: a store in a temporary
// directory and a broker serving QUIC and TLS over TCP on 127.0.0.1 (on
// the same port number when it is free for both, as gonets serve does),
// with a key to mint session tokens. The SDK's, the CLI's and the
// broker's own end-to-end tests use it.
package brokertest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gonets/gonets/broker"
	"github.com/gonets/gonets/broker/nodecert"
	"github.com/gonets/gonets/identity"
	"github.com/gonets/gonets/identity/statesvc"
	"github.com/gonets/gonets/identity/token"
	"github.com/gonets/gonets/storage"
)

// StoreDir is the store's directory inside the data directory, beside the
// node's certificate and token key, as `gonets serve` lays it out.
const StoreDir = "store"

// Options shape a test node. The zero value is a default node.
type Options struct {
	// Broker and Storage are the components' options; Logger, Metrics and
	// Now are filled in when unset.
	Broker  broker.Options
	Storage storage.Options
	// Dir is the data directory. Default: t.TempDir().
	Dir string
	// Now is the clock of the token verifier and the broker.
	Now func() time.Time
	// NoQUIC serves only TLS over TCP, as a node seen from a network
	// that drops UDP: nothing listens on the UDP port of Addr, which is
	// then the TCP address. Default: false.
	NoQUIC bool
	// Accounts serves phone login (identity.Service) with the accounts
	// store in Dir/identity and codes "sent" to an in-memory gateway that
	// Code reads back. Identity configures it; its Sender, Accounts,
	// Signer, Now and Logger are filled in, and Countries defaults to [7].
	Accounts bool
	Identity identity.ServiceOptions
	// AccountsOptions configure the accounts store; Key, Logger and
	// OnDeviceEnded are filled in.
	AccountsOptions identity.AccountsOptions
	// State, when set, builds the node's state services at each start,
	// from its accounts (Accounts must be on) and its token key: the
	// broker serves them, is attached to them, and they run until the
	// node stops.
	State func(accts *identity.Accounts, key ed25519.PrivateKey) (*statesvc.Services, error)
	// Bots, when set, builds the node's bot platform at each start from
	// its accounts (Accounts must be on); attach is called with the
	// broker once it is built.
	Bots func(accts *identity.Accounts) (bots broker.Bots, attach func(*broker.Broker))
}

// Node is a running test node.
type Node struct {
	// Addr is the node's QUIC address, "127.0.0.1:port"; it stays the same
	// across Restart.
	Addr string
	// TCPAddr is the node's TLS-over-TCP address, "127.0.0.1:port": Addr
	// when that port was free for TCP too. It stays the same across
	// Restart.
	TCPAddr string
	// Fingerprint is the SHA-256 fingerprint of the node's certificate,
	// for pinning.
	Fingerprint string
	// Dir is the data directory.
	Dir string

	opts      Options
	key       ed25519.PrivateKey
	cert      tls.Certificate
	pool      *x509.CertPool
	mu        sync.Mutex // guards the following
	store     *storage.Store
	broker    *broker.Broker
	quic      *broker.Listener // nil with NoQUIC
	tcp       *broker.TCPListener
	served    chan error
	svc       *identity.Service  // with Accounts
	accts     *identity.Accounts // with Accounts
	stateStop context.CancelFunc // stops the state services
	stateDone chan struct{}      // closed when they stopped
	sms       *SMSBox
}

// Start starts a node and stops it when the test ends.
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cert, _, err := nodecert.LoadOrCreate(opts.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := token.LoadOrCreateKey(opts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	n := &Node{Dir: opts.Dir, Fingerprint: nodecert.Fingerprint(cert.Certificate[0]), opts: opts, key: key, cert: cert, pool: pool, sms: &SMSBox{}}
	n.start(t, "127.0.0.1:0", "")
	t.Cleanup(n.Stop)
	return n
}

// start opens the store and serves QUIC on addr (unless NoQUIC) and TCP
// on tcpAddr, "" for the QUIC address's port when it is free for TCP,
// and any other when it is not.
func (n *Node) start(t testing.TB, addr, tcpAddr string) {
	t.Helper()
	so := n.opts.Storage
	if so.Logger == nil {
		so.Logger = quietLogger()
	}
	st, err := storage.Open(filepath.Join(n.Dir, StoreDir), so)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(token.Options{Keys: []ed25519.PublicKey{n.key.Public().(ed25519.PublicKey)}, Now: n.opts.Now})
	if err != nil {
		t.Fatal(err)
	}
	bo := n.opts.Broker
	if bo.Logger == nil {
		bo.Logger = quietLogger()
	}
	if bo.Now == nil {
		bo.Now = n.opts.Now
	}
	var (
		b     *broker.Broker
		svc   *identity.Service
		accts *identity.Accounts
		bmu   sync.Mutex // b is set after the accounts' OnDeviceEnded may run
	)
	if n.opts.Accounts {
		ao := n.opts.AccountsOptions
		ao.Key = []byte("brokertest accounts key, 32 bytes or more")
		if ao.Logger == nil {
			ao.Logger = quietLogger()
		}
		ao.OnDeviceEnded = func(user storage.UserID, device storage.DeviceID) {
			bmu.Lock()
			bb := b
			bmu.Unlock()
			if bb != nil {
				bb.DevicesEnded(user, []storage.DeviceID{device})
			}
		}
		if accts, err = identity.OpenAccounts(filepath.Join(n.Dir, "identity"), ao); err != nil {
			st.Close()
			t.Fatal(err)
		}
		so := n.opts.Identity
		if len(so.Countries) == 0 {
			so.Countries = []int{7}
		}
		signer := token.NewSigner(n.key)
		so.Sender, so.Accounts, so.Signer = n.sms, accts, func() *token.Signer { return signer }
		if so.Now == nil {
			so.Now = n.opts.Now
		}
		if so.Logger == nil {
			so.Logger = quietLogger()
		}
		if svc, err = identity.NewService(so); err != nil {
			accts.Close()
			st.Close()
			t.Fatal(err)
		}
		bo.Accounts = svc
	}
	var state *statesvc.Services
	if n.opts.State != nil {
		if accts == nil {
			t.Fatal("brokertest: State needs Accounts")
		}
		if state, err = n.opts.State(accts, n.key); err != nil {
			svc.Close()
			accts.Close()
			st.Close()
			t.Fatal(err)
		}
		bo.State = state
	}
	var attachBots func(*broker.Broker)
	if n.opts.Bots != nil {
		if accts == nil {
			t.Fatal("brokertest: Bots needs Accounts")
		}
		bo.Bots, attachBots = n.opts.Bots(accts)
	}
	bmu.Lock()
	b, err = broker.New(st, v, bo)
	bmu.Unlock()
	if err != nil {
		if svc != nil {
			svc.Close()
			accts.Close()
		}
		st.Close()
		t.Fatal(err)
	}
	var ln *broker.Listener
	if !n.opts.NoQUIC {
		ln, err = listen(addr, n.cert, n.key.Seed())
		if err != nil {
			st.Close()
			t.Fatal(err)
		}
		addr = ln.Addr().String()
	}
	var tln *broker.TCPListener
	if tcpAddr == "" {
		// The QUIC port's number, as gonets serve listens by default:
		// a client's default TCP address. Another test's TCP listener
		// may hold it; any port does then.
		tln, err = broker.ListenTCP(addr, &tls.Config{Certificates: []tls.Certificate{n.cert}})
		tcpAddr = "127.0.0.1:0"
	}
	if tln == nil {
		tln, err = listenTCP(tcpAddr, n.cert)
	}
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		st.Close()
		t.Fatal(err)
	}
	// The state services run once nothing above can fail the start.
	stateDone := make(chan struct{})
	stateCtx, stateStop := context.WithCancel(context.Background())
	if attachBots != nil {
		attachBots(b)
	}
	if state != nil {
		state.Attach(b)
		go func() {
			defer close(stateDone)
			if err := state.Run(stateCtx); err != nil {
				t.Errorf("brokertest: state services: %v", err)
			}
		}()
	} else {
		close(stateDone)
	}
	served := make(chan error, 2)
	if ln != nil {
		go func() { served <- b.ServeQUIC(ln) }()
	} else {
		served <- nil
		addr = tln.Addr().String()
	}
	go func() { served <- b.ServeTCP(tln) }()
	n.mu.Lock()
	n.Addr, n.TCPAddr, n.store, n.broker, n.served, n.quic, n.tcp = addr, tln.Addr().String(), st, b, served, ln, tln
	n.svc, n.accts = svc, accts
	n.stateStop, n.stateDone = stateStop, stateDone
	n.mu.Unlock()
}

// listen binds addr, retrying briefly: after a restart the old socket may
// take a moment to go.
func listen(addr string, cert tls.Certificate, resetSecret []byte) (*broker.Listener, error) {
	for i := 0; ; i++ {
		l, err := broker.ListenQUIC(addr, &tls.Config{Certificates: []tls.Certificate{cert}}, broker.ListenOptions{ResetSecret: resetSecret})
		if err == nil || i == 50 {
			return l, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listenTCP binds addr for TLS over TCP, retrying briefly as listen does.
func listenTCP(addr string, cert tls.Certificate) (*broker.TCPListener, error) {
	for i := 0; ; i++ {
		l, err := broker.ListenTCP(addr, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err == nil || i == 50 {
			return l, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Broker returns the running broker.
func (n *Node) Broker() *broker.Broker {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.broker
}

// Store returns the running node's store.
func (n *Node) Store() *storage.Store {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.store
}

// Token mints a session token for user and device, valid for an hour.
func (n *Node) Token(t testing.TB, user, device uint64) string {
	return n.TokenExpiring(t, user, device, n.opts.Now().Add(time.Hour))
}

// TokenExpiring mints a token that expires at exp.
func (n *Node) TokenExpiring(t testing.TB, user, device uint64, exp time.Time) string {
	t.Helper()
	tok, err := token.NewSigner(n.key).Sign(token.Claims{User: user, Device: device, Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ForgedToken mints a token signed by a key the node does not know.
func (n *Node) ForgedToken(t testing.TB, user, device uint64) string {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := token.NewSigner(key).Sign(token.Claims{User: user, Device: device, Expires: n.opts.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// PublicKey returns the node's token key: what its session tokens and
// digital IDs verify with.
func (n *Node) PublicKey() ed25519.PublicKey { return n.key.Public().(ed25519.PublicKey) }

// ClientTLS returns a client TLS config that trusts the node's
// certificate (ALPN gonets/1).
func (n *Node) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: n.pool, ServerName: "localhost", NextProtos: []string{broker.ALPN}, MinVersion: tls.VersionTLS13}
}

// Restart shuts the node down gracefully and starts it again on the same
// address and data directory.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	addr, tcpAddr := n.Addr, n.TCPAddr
	n.Stop()
	n.start(t, addr, tcpAddr)
}

// Crash stops the node as SIGKILL would, as its clients see it: its QUIC
// socket and its TCP sockets go first, so no connection is told anything
// (no GoingAway, no Error, no TLS close: the kernel ends the TCP
// connections), then the broker and the store close.
// It starts again on the same addresses and data directory, a restarted
// process with the same key: clients of the old one learn of it from its
// stateless resets, or their idle timeout.
func (n *Node) Crash(t testing.TB) {
	t.Helper()
	n.mu.Lock()
	addr, tcpAddr, q, tcp := n.Addr, n.TCPAddr, n.quic, n.tcp
	n.mu.Unlock()
	if q != nil {
		q.Abort()
	}
	if tcp != nil {
		tcp.Abort()
	}
	n.stop(0)
	n.start(t, addr, tcpAddr)
}

// Stop shuts the node down: sessions are told to go away and closed after
// a second, then the store closes. Stopping a stopped node does nothing.
func (n *Node) Stop() { n.stop(time.Second) }

// stop shuts the broker down, giving sessions grace to leave, and closes
// the store.
func (n *Node) stop(grace time.Duration) {
	n.mu.Lock()
	st, b, served, svc, accts := n.store, n.broker, n.served, n.svc, n.accts
	stateStop, stateDone := n.stateStop, n.stateDone
	n.store, n.broker, n.served, n.svc, n.accts = nil, nil, nil, nil, nil
	n.mu.Unlock()
	if b == nil {
		return
	}
	// The state services stop first: they post through the broker and
	// keep their records in the accounts' store.
	stateStop()
	<-stateDone
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	b.Shutdown(ctx)
	cancel()
	<-served
	<-served
	if svc != nil {
		svc.Close()
		accts.Close()
	}
	st.Close()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
