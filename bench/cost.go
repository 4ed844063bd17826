package bench

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gonets/gonets/bench/result"
)

// The cost model (docs/bench.md): what the node spends per unit of work,
// over a window. Its CPU comes from its process (when the bench started
// it); its packets are the datagrams the load generator's sockets
// exchanged with it (socket.go), which on this machine are the node's
// own, in and out.

// counter returns the load generator's datagram counts so far.
type counter func(ctx context.Context) (datagrams, error)

// partsCounter sums the counts of a load scenario's parts.
func partsCounter(parts []part) counter {
	return func(ctx context.Context) (datagrams, error) {
		counts := make([]datagrams, len(parts))
		err := eachIndex(parts, func(i int, p part) (err error) { counts[i], err = p.datagrams(ctx); return err })
		var all datagrams
		for _, c := range counts {
			all.add(c)
		}
		return all, err
	}
}

// socketsCounter counts socks, holding sessions.
func socketsCounter(sessions func() int, socks ...*socket) counter {
	return func(context.Context) (datagrams, error) {
		d := countSockets(socks)
		d.Sessions = sessions()
		return d, nil
	}
}

// costMeter measures what the node spends from its start until read.
type costMeter struct {
	t        *target
	node     *procMeter // nil for a running node
	nodePort int        // the node's UDP port, for its socket's drops; 0 for a running node
	count    counter
	from     datagrams
	drops    int64 // the node socket's, at the start
	start    time.Time
	// busy and steal are the machine's, at the start (machineCPU).
	busy, steal time.Duration
	// store is the node's store counters at the start; nil when they
	// could not be read (a running node, or no metrics endpoint).
	store *storeCounts
}

// startCost starts measuring the node t with the generator's counts.
func startCost(ctx context.Context, t *target, cpus string, count counter) (*costMeter, error) {
	m := &costMeter{count: count, t: t}
	if pid := t.pid(); pid != "" {
		m.node = startMeter(pid, cpus)
		if _, port, err := net.SplitHostPort(t.addr); err == nil {
			m.nodePort, _ = strconv.Atoi(port)
			m.drops = udpDrops(m.nodePort)
		}
	}
	m.store = t.storeCounts(ctx)
	var err error
	m.from, err = count(ctx)
	m.busy, m.steal, _ = machineCPU()
	m.start = time.Now()
	return m, err
}

// read returns what the node spent since the meter started.
func (m *costMeter) read(ctx context.Context) (*cost, error) {
	to, err := m.count(ctx)
	if err != nil {
		return nil, err
	}
	c := &cost{
		Seconds:        time.Since(m.start).Seconds(),
		In:             to.Sent - m.from.Sent,
		Out:            to.Received + to.Dropped - m.from.Received - m.from.Dropped,
		GeneratorDrops: to.Dropped - m.from.Dropped,
		Sessions:       to.Sessions,
	}
	if m.node != nil {
		c.Node = m.node.read()
		c.NodeDrops = udpDrops(m.nodePort) - m.drops
	}
	if m.store != nil {
		if to := m.t.storeCounts(ctx); to != nil {
			c.Syncs, c.Appends = to.syncs-m.store.syncs, to.appends-m.store.appends
		}
	}
	if busy, steal, err := machineCPU(); err == nil && m.busy > 0 {
		c.MachineBusy, c.Steal = (busy - m.busy).Seconds(), (steal - m.steal).Seconds()
	}
	return c, nil
}

// cost is what the node spent over a window.
type cost struct {
	Node    *result.Process // nil for a running node
	Seconds float64
	// In counts the datagrams the generator sent to the node; Out those
	// the node sent to the generator, read or dropped by a full socket
	// buffer (GeneratorDrops). NodeDrops are those of In that the node's
	// own socket dropped.
	In, Out                   int64
	GeneratorDrops, NodeDrops int64
	Sessions                  int
	// MachineBusy is the CPU the whole machine used (seconds, all
	// cores), Steal what the hypervisor took from it.
	MachineBusy, Steal float64
	// Syncs are the WAL syncs the node's store asked for, Appends the
	// messages it appended (0 when its metrics were not read).
	Syncs, Appends float64
}

// cpuMicros is the node's CPU over the window in µs, or NaN when it was
// not measured.
func (c *cost) cpuMicros() float64 {
	if c.Node == nil {
		return math.NaN()
	}
	return c.Node.CPUSeconds * 1e6
}

// per sets the node's cost per unit of work, n of them in the window:
// node_cpu_us_per_UNIT (with a node the bench started), and
// node_packets_in_per_UNIT and node_packets_out_per_UNIT. Nothing is set
// for n = 0. Per message, it also sets node_syncs_per_message: the WAL
// syncs the node's store asked for per message it appended, both counted
// by the node over the window (with a node the bench started).
func (c *cost) per(res *result.Result, unit string, n int64) {
	if n <= 0 {
		return
	}
	if unit == "message" && c.Appends > 0 {
		res.Metrics["node_syncs_per_message"] = c.Syncs / c.Appends
	}
	if cpu := c.cpuMicros(); !math.IsNaN(cpu) {
		res.Metrics["node_cpu_us_per_"+unit] = cpu / float64(n)
	}
	res.Metrics["node_packets_in_per_"+unit] = float64(c.In) / float64(n)
	res.Metrics["node_packets_out_per_"+unit] = float64(c.Out) / float64(n)
}

// totals sets the window's datagram counts and drops, and, with the
// generator's own CPU over the window (nil if unknown), the CPU that the
// rest of the machine took meanwhile, as the NATS peer reports it
// (other_cpu_percent, steal_percent; 100 is one core), with a note when
// it was enough to disturb the figures.
func (c *cost) totals(res *result.Result, gen *result.Process) {
	res.Metrics["node_packets_in"] = float64(c.In)
	res.Metrics["node_packets_out"] = float64(c.Out)
	res.Metrics["generator_socket_drops"] = float64(c.GeneratorDrops)
	if c.Node == nil || gen == nil || c.MachineBusy == 0 || c.Seconds <= 0 {
		return
	}
	res.Metrics["node_socket_drops"] = float64(c.NodeDrops)
	other := max(0, 100*(c.MachineBusy-c.Node.CPUSeconds-gen.CPUSeconds)/c.Seconds)
	steal := 100 * c.Steal / c.Seconds
	res.Metrics["other_cpu_percent"] = other
	res.Metrics["steal_percent"] = steal
	if other >= 10 || steal >= 10 {
		res.Notes = append(res.Notes, fmt.Sprintf("while this was measured, other processes used %.0f%% CPU and the hypervisor stole %.0f%% (100 = one core): the figures are disturbed; run again on a quiet machine", other, steal))
	}
}

// idle sets what the node spends holding its sessions with no load:
// node_idle_cpu_pct_per_1000_sessions (percent of one core) and
// node_idle_packets_per_s_per_1000_sessions, in and out together.
func (c *cost) idle(res *result.Result) {
	if c.Sessions == 0 || c.Seconds <= 0 {
		return
	}
	thousands := float64(c.Sessions) / 1000
	res.Metrics["idle_sessions"] = float64(c.Sessions)
	res.Metrics["idle_seconds"] = c.Seconds
	if c.Node != nil {
		res.Metrics["node_idle_cpu_pct_per_1000_sessions"] = 100 * c.Node.CPUSeconds / c.Seconds / thousands
	}
	res.Metrics["node_idle_packets_per_s_per_1000_sessions"] = float64(c.In+c.Out) / c.Seconds / thousands
}

// idleSettle is how long the sessions rest before the quiet window, so
// that what their setup left (acknowledgements, the node's collection of
// the setup's garbage; in NATS, the server's first PING 2 s after each
// connection) does not count as idle. A window shorter than that
// settles as long as it lasts.
const idleSettle = 3 * time.Second

// quiet measures the node over cfg.Idle while its sessions are idle,
// after idleSettle, before the load, and sets the idle figures in res.
func quiet(ctx context.Context, t *target, cfg Config, count counter, res *result.Result) error {
	select {
	case <-time.After(min(idleSettle, cfg.Idle)):
	case <-ctx.Done():
		return ctx.Err()
	}
	m, err := startCost(ctx, t, cfg.ServerCPUs, count)
	if err != nil {
		return err
	}
	if cfg.Live != nil {
		fmt.Fprintf(cfg.Live, "\r%-8s quiet window of %v before the load   ", res.Scenario, cfg.Idle)
	}
	select {
	case <-time.After(cfg.Idle):
	case <-ctx.Done():
		return ctx.Err()
	}
	c, err := m.read(ctx)
	if err != nil {
		return err
	}
	c.idle(res)
	if cfg.Live != nil {
		fmt.Fprintln(cfg.Live)
	}
	return nil
}

// storeCounts are the node's store counters that node_syncs_per_message
// divides.
type storeCounts struct{ syncs, appends float64 }

// storeCounts reads the store's counters from the metrics endpoint of a
// node the bench started, or returns nil: for a running node, or when
// the endpoint does not answer with both.
func (t *target) storeCounts(ctx context.Context) *storeCounts {
	if t.httpURL == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.httpURL+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var sc storeCounts
	found := 0
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		name, val, ok := strings.Cut(lines.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "gonets_storage_syncs_total":
			dst = &sc.syncs
		case "gonets_storage_appends_total":
			dst = &sc.appends
		default:
			continue
		}
		if *dst, err = strconv.ParseFloat(val, 64); err == nil {
			found++
		}
	}
	if found != 2 {
		return nil
	}
	return &sc
}
