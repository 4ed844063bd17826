package tools

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gonets/gonets/bots/botapi"
	"github.com/gonets/gonets/callsfu"
	"github.com/gonets/gonets/identity/token"
)

// The public HTTPS listener (node.public_addr) serves the node's public HTTP
// APIs: WHIP and WHEP now, uploads and the Bot API next. It is not the
// metrics listener (node.http_addr), which stays on a private address.
// Its server bounds what no handler can: the request's header, and idle
// connections; each handler bounds its own request and response (WHIP's
// RequestTimeout), so that an upload is not cut by a limit meant for SDP.
const (
	publicReadHeaderTimeout = 10 * time.Second
	publicIdleTimeout       = 2 * time.Minute
	publicMaxHeaderBytes    = 64 << 10
)

// publicAddr returns the public HTTPS listener's address, or "" when
// node.public_addr is "off".
func (c *config) publicAddr() string {
	if c.Node.PublicAddr == "off" {
		return ""
	}
	return c.Node.PublicAddr
}

// validatePublic checks that node.public_addr's port is not another TCP
// listener's of the node (a clash with the media port's ICE-TCP is
// validateCalls'). As there, the port number is compared whatever the
// hosts: two listeners of one node on one port number are a mistake far
// more often than a plan. A port 0 is a free port of its own.
func (c *config) validatePublic() error {
	addr := c.publicAddr()
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" {
		return nil // checkHostPort reported it; 0 clashes with nothing
	}
	for _, a := range c.listenAddrs() {
		if a.network != "tcp" || a.key == "node.public_addr" || a.key == "calls.udp_port" {
			continue
		}
		if _, p, err := net.SplitHostPort(a.addr); err == nil && p == port {
			return fmt.Errorf("node.public_addr %q has %s's port (TCP); give the public listener a port of its own", addr, a.key)
		}
	}
	return nil
}

// bindPublic binds node.public_addr, unless it is off. listenPublic
// builds its HTTPS server once the broker is built.
func (n *node) bindPublic() error {
	addr := n.cfg.publicAddr()
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("node.public_addr %s is in use (TCP): stop what holds it, or give the public listener another port: %w", addr, err)
	case err != nil:
		return fmt.Errorf("node.public_addr: %w", err)
	}
	n.publicLn = ln
	return nil
}

// publicPort returns the bound public listener's port, "" when it is off.
func (n *node) publicPort() string {
	if n.publicLn == nil {
		return ""
	}
	_, port, _ := net.SplitHostPort(n.publicLn.Addr().String())
	return port
}

// listenPublic builds the HTTPS server of the listener bindPublic bound,
// unless it is off: the node's certificate and key-exchange groups (base,
// the TCP listener's config, cloned), over HTTP/2 or HTTP/1.1 and TLS 1.2
// or later (WHIP encoders and players are HTTP clients with their own TLS
// stacks, not the SDK), and the public mux.
func (n *node) listenPublic(base *tls.Config, v *token.Verifier) error {
	if n.publicLn == nil {
		return nil
	}
	h, err := n.publicHandler(v)
	if err != nil {
		return err
	}
	conf := base.Clone()
	conf.MinVersion = tls.VersionTLS12
	conf.NextProtos = []string{"h2", "http/1.1"}
	n.publicLn = tls.NewListener(n.publicLn, conf)
	n.public = &http.Server{
		Handler:           h,
		TLSConfig:         conf,
		ReadHeaderTimeout: publicReadHeaderTimeout,
		IdleTimeout:       publicIdleTimeout,
		MaxHeaderBytes:    publicMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// publicHandler returns the public listener's mux: the state services'
// JWKS and ESIA callback when they are on (state.go), WHIP and WHEP on
// /whip/ and /whep/ and the browser call demo on /calls/demo when calls
// are on, and a JSON 404 for everything else.
func (n *node) publicHandler(v *token.Verifier) (http.Handler, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if n.bots != nil && !nodePath(r.URL.Path) {
			botapi.NotFound(w, r) // the Bot API's root: MAX's not.found
			return
		}
		publicError(w, http.StatusNotFound, "not_found", "no such path")
	})
	n.state.routes(mux, n.keys)
	n.botRoutes(mux)
	if n.sfu == nil {
		return mux, nil
	}
	live := newLiveStreams(n.broker.AnnounceLive, n.log)
	live.dir = filepath.Join(n.dataDir, liveDir)
	streams := &channelStreams{sfu: n.sfu, store: n.store, verifier: v, live: live, device: n.broker.CheckDevice}
	whip, err := callsfu.NewWHIP(n.sfu, callsfu.WHIPOptions{
		Authorizer: n.withTURN(streams),
		Logger:     n.log,
	})
	if err != nil {
		return nil, err
	}
	mux.Handle("/whip/", whip)
	mux.Handle("/whep/", whip)
	n.whip.Store(whip)
	demo, err := newCallDemo()
	if err != nil {
		return nil, err
	}
	mux.Handle("/calls/demo", demo)
	mux.Handle("/calls/demo/", demo)
	return mux, nil
}

// nodePath reports whether path is in one of the node's own spaces of
// the public listener, not the Bot API's: their refusals keep the node's
// codes.
func nodePath(path string) bool {
	for _, p := range []string{"/calls/", "/whip/", "/whep/", "/media/", "/.well-known/", "/esia/"} {
		if strings.HasPrefix(path+"/", p) {
			return true
		}
	}
	return false
}

// publicError writes a refusal as the WHIP handler does: a status and a
// JSON body with a stable code.
func publicError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, msg})
}

// servePublic serves the public listener until shutdown, then returns
// nil.
func (n *node) servePublic() error {
	err := n.public.Serve(n.publicLn)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("public https: %w", err)
}

// shutdownPublic stops the public listener and waits until ctx for the
// requests in flight; those left then are closed.
func (n *node) shutdownPublic(ctx context.Context) {
	if n.public == nil {
		return
	}
	if err := n.public.Shutdown(ctx); err != nil {
		n.log.Warn("public https requests did not finish in time; closed them", "err", err)
		n.public.Close()
	}
}

// closePublicListener closes the listener of a node that never served.
func (n *node) closePublicListener() {
	if n.publicLn != nil {
		n.publicLn.Close()
	}
}

// printPublic writes the banner's line of the public listener.
func (n *node) printPublic(w io.Writer) {
	if n.publicLn == nil {
		fmt.Fprintf(w, "  https off  (node.public_addr = \"off\": no WHIP, WHEP)\n")
		return
	}
	what := "no WHIP, WHEP: calls are off"
	if n.sfu != nil {
		what = "WHIP /whip/{channel}, WHEP /whep/{channel}, demo /calls/demo"
	}
	if n.media != nil {
		what += ", media /media/"
	}
	if n.bots != nil {
		what += ", Bot API /"
	}
	fmt.Fprintf(w, "  https %s  (public: %s)\n", n.publicLn.Addr(), what)
}

// streamCallBit marks the SFU call of a channel's live stream: its id is
// the channel's chat id with the top bit set. Chat ids are below 2^63
// (storage) and the broker's call ids are too (broker's newCallID), so a
// stream's call can never be a chat call's, and a channel has one stream
// call, which WHIP and WHEP find without any state of the node's.
const streamCallBit = 1 << 63

// streamCall returns the SFU call of the stream URL segment call, a
// channel's chat id in decimal, and that chat id; ok is false for
// anything else.
func streamCall(call string) (sfuCall, chat uint64, ok bool) {
	id, err := strconv.ParseUint(call, 10, 64)
	if err != nil || id == 0 || id&streamCallBit != 0 || strconv.FormatUint(id, 10) != call {
		return 0, 0, false
	}
	return id | streamCallBit, id, true
}
