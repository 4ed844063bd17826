package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gonets/gonets/bench/result"
	"github.com/gonets/gonets/broker/client"
	"github.com/gonets/gonets/broker/wire"
)

// Connect scenario goals.
const (
	connectGoalSessions   = 100000
	connectGoalBytes      = 32 << 10 // node memory per idle session
	connectGoalResumedSec = 3000
)

// idleSession is one bare authenticated session: the connect scenario
// holds many, so it skips the SDK's per-client goroutines.
type idleSession struct {
	conn    *quic.Conn // over QUIC
	tcp     *tls.Conn  // over TCP
	resumed bool       // TLS resumed a session
}

// close closes the session's connection.
func (s *idleSession) close(why string) {
	if s.tcp != nil {
		// No close_notify: a dropped connection, as in a storm.
		s.tcp.NetConn().Close()
		return
	}
	s.conn.CloseWithError(0, why)
}

// openIdle dials a session on tr, resuming its TLS session when tc's
// cache holds one, says Hello with tok and waits for Welcome. It does not
// send Hello in 0-RTT data, though the node accepts it: quic-go v0.65's
// client races (the race detector reports it) when a stream is opened on
// a connection still in 0-RTT.
func openIdle(ctx context.Context, tr *quic.Transport, addr *net.UDPAddr, tc *tls.Config, tok string) (*idleSession, error) {
	conn, err := tr.Dial(ctx, addr, tc, &quic.Config{MaxIdleTimeout: 5 * time.Minute, KeepAlivePeriod: time.Minute})
	if err != nil {
		return nil, err
	}
	st, err := conn.OpenStreamSync(ctx)
	if err == nil {
		err = hello(st, tok)
	}
	if err != nil {
		conn.CloseWithError(0, "")
		return nil, err
	}
	return &idleSession{conn: conn, resumed: conn.ConnectionState().TLS.DidResume}, nil
}

// openIdleTCP is openIdle over TLS on TCP, its connection dialled and
// counted by tcpc.
func openIdleTCP(ctx context.Context, tcpc *tcpCounter, addr string, tc *tls.Config, tok string) (*idleSession, error) {
	nc, err := tcpc.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(nc, tc)
	if err := c.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := hello(c, tok); err != nil {
		nc.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return &idleSession{tcp: c, resumed: c.ConnectionState().DidResume}, nil
}

// hello sends Hello on st and reads Welcome.
func hello(st io.ReadWriter, tok string) error {
	b, err := wire.AppendFrame(nil, &wire.Frame{Id: 1, Body: &wire.Frame_Hello{Hello: &wire.Hello{Version: 1, Token: tok, Client: "gonets-bench"}}}, 0)
	if err != nil {
		return err
	}
	if _, err := st.Write(b); err != nil {
		return err
	}
	var f wire.Frame
	if err := wire.NewReader(st, 0).Read(&f); err != nil {
		return err
	}
	if f.GetWelcome() == nil {
		return fmt.Errorf("no welcome: %v", &f)
	}
	return nil
}

// openAll opens one session per token, dialers at a time, and returns
// them with how long it took.
func openAll(ctx context.Context, n int, open func(ctx context.Context, i int) (*idleSession, error), live func(n int64)) ([]*idleSession, time.Duration, error) {
	out := make([]*idleSession, n)
	var next, done atomic.Int64
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	stopLive := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				live(done.Load())
			case <-stopLive:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range min(dialers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				var s *idleSession
				err := retry(ctx, func() (err error) {
					dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					s, err = open(dctx, i)
					return err
				})
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("bench: session %d: %w", i, err))
					mu.Unlock()
					return
				}
				out[i] = s
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stopLive)
	return out, time.Since(start), firstErr
}

// runConnect holds Sessions idle authenticated sessions, measures the
// node's memory per session and the handshake rate, then drops them all
// and measures how fast they come back with TLS session resumption.
func runConnect(ctx context.Context, cfg Config, t *target, res *result.Result) error {
	n := cfg.Sessions
	res.Params = map[string]any{"sessions": n, "sessions_per_socket": sessionsPerSocket, "dialers": dialers}
	res.Goal = fmt.Sprintf("%d sessions held, at most %d KiB of node memory each, at least %d resumed sessions/s in the storm",
		connectGoalSessions, connectGoalBytes>>10, connectGoalResumedSec)
	tc := t.tls.Clone()
	tc.NextProtos = []string{"gonets/1"}
	tc.MinVersion = tls.VersionTLS13
	tc.ServerName = "localhost"
	// Each session keeps its own ticket, as separate devices would: a
	// cache shared by all would hand one ticket (keyed by server name) to
	// every session, and resume it concurrently.
	tcs := make([]*tls.Config, n)
	for i := range tcs {
		tcs[i] = tc.Clone()
		tcs[i].ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	toks := make([]string, n)
	for i := range toks {
		toks[i] = t.token(uint64(i+1), 1)
	}
	var open func(ctx context.Context, i int) (*idleSession, error)
	var count counter
	var carried string
	if t.via == client.TransportTCP {
		tcpc := newTCPCounter()
		open = func(ctx context.Context, i int) (*idleSession, error) {
			return openIdleTCP(ctx, tcpc, t.tcpAddr, tcs[i], toks[i])
		}
		count = func(context.Context) (datagrams, error) {
			s, r := tcpc.counts()
			return datagrams{Sent: s, Received: r, Sessions: n}, nil
		}
		carried = "a TLS connection over TCP each"
	} else {
		addr, err := net.ResolveUDPAddr("udp", t.addr)
		if err != nil {
			return err
		}
		var trs []*quic.Transport
		var socks []*socket
		for range (n + sessionsPerSocket - 1) / sessionsPerSocket {
			s, err := listenSocket()
			if err != nil {
				return err
			}
			defer s.Close()
			tr := s.transport()
			defer tr.Close()
			trs, socks = append(trs, tr), append(socks, s)
		}
		open = func(ctx context.Context, i int) (*idleSession, error) {
			return openIdle(ctx, trs[i/sessionsPerSocket], addr, tcs[i], toks[i])
		}
		count = socketsCounter(func() int { return n }, socks...)
		carried = fmt.Sprintf("over %d UDP sockets", len(trs))
	}
	var rssBefore int64
	pid := t.pid()
	if pid != "" {
		rssBefore, _, _ = memory(pid)
	}
	var node *procMeter
	if pid != "" {
		node = startMeter(pid, cfg.ServerCPUs)
	}
	gen := startMeter("self", cfg.ClientCPUs)
	live := func(phase string) func(int64) {
		return func(k int64) {
			if cfg.Live != nil {
				fmt.Fprintf(cfg.Live, "\rconnect  %s: %d of %d sessions   ", phase, k, n)
			}
		}
	}
	handshakes, err := startCost(ctx, t, cfg.ServerCPUs, count)
	if err != nil {
		return err
	}
	sessions, took, err := openAll(ctx, n, open, live("handshakes"))
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.close("")
			}
		}
	}()
	if err != nil {
		return err
	}
	spent, err := handshakes.read(ctx)
	if err != nil {
		return err
	}
	spent.per(res, "handshake", int64(n))
	res.Metrics["sessions"] = float64(n)
	res.Metrics["handshakes_per_s"] = float64(n) / took.Seconds()
	res.Metrics["connect_seconds"] = took.Seconds()
	time.Sleep(time.Second) // let the node settle
	if pid != "" {
		rss, _, _ := memory(pid)
		res.Metrics["node_rss_bytes"] = float64(rss)
		res.Metrics["rss_bytes_per_session"] = float64(rss-rssBefore) / float64(n)
	}
	if err := quiet(ctx, t, cfg, count, res); err != nil {
		return err
	}
	// The storm: every session drops and comes back at once, resuming its
	// TLS session.
	storming, err := startCost(ctx, t, cfg.ServerCPUs, count)
	if err != nil {
		return err
	}
	for _, s := range sessions {
		s.close("storm")
	}
	back, storm, err := openAll(ctx, n, open, live("storm"))
	for i, s := range back {
		sessions[i] = s
	}
	if err != nil {
		return err
	}
	if spent, err = storming.read(ctx); err != nil {
		return err
	}
	spent.per(res, "resumption", int64(n))
	resumed := 0
	for _, s := range back {
		if s.resumed {
			resumed++
		}
	}
	res.Metrics["storm_seconds"] = storm.Seconds()
	res.Metrics["resumed_per_s"] = float64(n) / storm.Seconds()
	res.Metrics["resumed_ratio"] = float64(resumed) / float64(n)
	if cfg.Live != nil {
		fmt.Fprintln(cfg.Live)
	}
	if node != nil {
		res.Node = node.read()
	}
	res.Generator = gen.read()
	res.Seconds = (took + storm).Seconds()
	res.Rate = res.Metrics["handshakes_per_s"]
	res.DeliveredRatio = 1
	res.Notes = append(res.Notes, fmt.Sprintf("%d sessions %s, %d dialled at a time; the storm resumes TLS sessions (1-RTT: see openIdle on 0-RTT)",
		n, carried, dialers))
	perSession, hasRSS := res.Metrics["rss_bytes_per_session"]
	res.Met = n >= connectGoalSessions && hasRSS && perSession <= connectGoalBytes && res.Metrics["resumed_per_s"] >= connectGoalResumedSec
	return nil
}
