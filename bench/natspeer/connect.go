package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gonets/gonets/bench/result"
	"github.com/nats-io/nats.go"
)

// fdReserve is the file descriptors each process keeps for things other
// than client connections (listener, store files, pipes).
const fdReserve = 500

// openFileLimit returns a process's soft RLIMIT_NOFILE (pid 0: this one).
func openFileLimit(pid int) (int, error) {
	if pid == 0 {
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("rlimit: %w", err)
		}
		return int(min(lim.Cur, 1<<30)), nil
	}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0, fmt.Errorf("rlimit: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Max open files")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 || fields[0] == "unlimited" {
			return 1 << 30, nil
		}
		return strconv.Atoi(fields[0])
	}
	return 0, fmt.Errorf("rlimit: no open files limit for pid %d", pid)
}

// connect holds opts.Sessions idle connections, then drops them all and
// reconnects them (the storm).
func (e *env) connect(ctx context.Context, res *result.Result) error {
	n, err := e.sessionCap()
	if err != nil {
		return err
	}
	tl := startTimeline(nil, nil)
	defer func() { res.Timeline = tl.close() }()
	var online atomic.Int64
	conns := make([]*nats.Conn, n)
	defer func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}()

	base, err := e.node.sample()
	if err != nil {
		return err
	}
	e.markFrom()
	began := time.Now()
	var retries atomic.Int64
	if _, err := e.dialAll(ctx, conns, &online, tl, nil, began, &retries); err != nil {
		return err
	}
	connectSecs := time.Since(began).Seconds()
	// No connection was open before: the segments are the handshakes'.
	e.perSession(res, "handshake", e.from, e.mark(), n)

	// Idle: let the node settle, then read its memory.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(e.opts.Duration):
	}
	held, err := e.node.sample()
	if err != nil {
		return err
	}
	perSession := float64(held.rss-base.rss) / float64(n)
	idleFrom := e.mark()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(e.opts.Idle):
	}
	e.idle(res, idleFrom, e.mark(), n)

	// The storm: drop every connection, then bring all back at once.
	stormFrom := e.mark()
	dropped := time.Now()
	e.closeAll(conns, &online, tl)
	dropSecs := time.Since(dropped).Seconds()
	back := result.NewHistogram()
	redial := time.Now()
	resumed, err := e.dialAll(ctx, conns, &online, tl, back, dropped, &retries)
	if err != nil {
		return err
	}
	reconnectSecs := time.Since(redial).Seconds()
	allBack := time.Since(dropped)
	// The dropped connections are forgotten: the segments are the new
	// ones'.
	stormTo := e.mark()
	stormFrom.segs = segments{}
	e.perSession(res, "resumption", stormFrom, stormTo, n)
	e.markTo(res)

	res.Seconds = connectSecs + reconnectSecs
	res.Rate = float64(n) / connectSecs
	res.Latency = result.Summarize(back)
	res.Histogram = result.Buckets(back)
	setMetric(res, "sessions", float64(n))
	setMetric(res, "handshakes_per_s", res.Rate)
	setMetric(res, "connect_seconds", connectSecs)
	setMetric(res, "node_rss_bytes_before", float64(base.rss))
	setMetric(res, "node_rss_bytes", float64(held.rss))
	setMetric(res, "rss_bytes_per_session", perSession)
	setMetric(res, "drop_ms", dropSecs*1000)
	setMetric(res, "storm_seconds", reconnectSecs)
	if n := retries.Load(); n > 0 {
		setMetric(res, "connect_retries", float64(n))
		e.note("connect: %d handshakes failed and were tried again (a handshake that outlasts the server's first PING fails in nats.go)", n)
	}
	setMetric(res, "resumed_per_s", float64(n)/reconnectSecs)
	setMetric(res, "reconnected_per_s", float64(n)/reconnectSecs)
	setMetric(res, "all_back_ms", float64(allBack.Microseconds())/1000)
	res.Goal = "100,000 sessions held; node memory at most 32 KiB per idle session; at least 3,000 resumed sessions/s in the storm"
	res.Met = n >= 100000 && perSession <= 32*1024 && float64(n)/reconnectSecs >= 3000
	e.note("connect: one TCP connection per session (nats.go, no subscriptions), opened %d at a time from source ports the generator binds in turn (the kernel's own choice slows down past ~14,000 connections to one address); idle for %s before the node's RSS is read; rss_bytes_per_session is (RSS held - RSS before) / sessions", e.opts.Dialers, e.opts.Duration)
	e.note("storm: the generator closes every connection, then reopens all %d at a time; latency is each session's time from the drop until it is connected again; all_back_ms is the last one", e.opts.Dialers)
	if e.opts.TLS {
		setMetric(res, "tls_resumed", float64(resumed))
		setMetric(res, "resumed_ratio", float64(resumed)/float64(n))
		e.note("storm: reconnects offer cached TLS 1.3 session tickets (no 0-RTT: NATS has none); tls_resumed counts the sessions the server resumed")
	} else {
		e.note("storm: plain TCP, so resumed_per_s counts reconnects without any TLS handshake")
	}
	return nil
}

// perSession sets the node's CPU and TCP segments per session opened
// from one mark to another, named as gonets bench names them:
// node_cpu_us_per_UNIT, node_packets_in_per_UNIT and
// node_packets_out_per_UNIT.
func (e *env) perSession(res *result.Result, unit string, from, to mark, n int) {
	if n == 0 || from.node.at.IsZero() || to.node.at.IsZero() {
		return
	}
	setMetric(res, "node_cpu_us_per_"+unit, 1e6*(to.node.cpuSeconds-from.node.cpuSeconds)/float64(n))
	setMetric(res, "node_packets_in_per_"+unit, float64(to.segs.sent-from.segs.sent)/float64(n))
	setMetric(res, "node_packets_out_per_"+unit, float64(to.segs.received-from.segs.received)/float64(n))
}

// sessionCap returns how many sessions fit both processes' file limits.
func (e *env) sessionCap() (int, error) {
	own, err := openFileLimit(0)
	if err != nil {
		return 0, err
	}
	node, err := openFileLimit(e.node.pid())
	if err != nil {
		return 0, err
	}
	n := min(e.opts.Sessions, min(own, node)-fdReserve)
	if n < 1 {
		return 0, fmt.Errorf("connect: file limit %d leaves no room for sessions", min(own, node))
	}
	if n < e.opts.Sessions {
		e.note("connect: %d sessions asked, %d held: each TCP session costs a file descriptor in the node and in the generator, and the open-file limit here is %d per process (QUIC sessions share UDP sockets and do not)", e.opts.Sessions, n, min(own, node))
	}
	return n, nil
}

// connectTries is how often a session tries to connect before the run
// fails: under load a handshake can outlast the server's first PING (2 s),
// which nats.go takes for a protocol error; a real client retries.
const connectTries = 5

// dialAll fills every nil entry of conns, opts.Dialers at a time. back,
// when set, records each connection's time since since. It returns how
// many TLS sessions were resumed, and adds failed attempts that were
// tried again to retries.
func (e *env) dialAll(ctx context.Context, conns []*nats.Conn, online *atomic.Int64, tl *timeline, back *hdrhistogram.Histogram, since time.Time, retries *atomic.Int64) (resumed int64, err error) {
	var next, tlsResumed atomic.Int64
	var mu sync.Mutex // guards back and first
	var first error
	var wg sync.WaitGroup
	for range min(e.opts.Dialers, len(conns)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				nc, err := e.dial.connect("session-" + strconv.Itoa(i))
				for try := 1; err != nil && try < connectTries && ctx.Err() == nil; try++ {
					retries.Add(1)
					nc, err = e.dial.connect("session-" + strconv.Itoa(i))
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("session %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				conns[i] = nc
				tl.setSessions(int(online.Add(1)))
				if cs, err := nc.TLSConnectionState(); err == nil && cs.DidResume {
					tlsResumed.Add(1)
				}
				if back != nil {
					d := time.Since(since).Nanoseconds()
					mu.Lock()
					recordMicros(back, d)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return tlsResumed.Load(), ctx.Err()
}

// closeAll closes every connection, opts.Dialers at a time.
func (e *env) closeAll(conns []*nats.Conn, online *atomic.Int64, tl *timeline) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(e.opts.Dialers, len(conns)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				if conns[i] != nil {
					conns[i].Close()
					conns[i] = nil
					tl.setSessions(int(online.Add(-1)))
				}
			}
		})
	}
	wg.Wait()
}
